//! Plivo: the answer URL returns Plivo XML with a bidirectional `<Stream>`; media flows as
//! JSON over WebSocket (`playAudio`, `checkpoint`, `clearAudio` out; `media`, `dtmf`,
//! `playedStream` in); a transfer redirects the caller's leg (`aleg_url`) to a document
//! that speaks to them and dials the team, playing the agent the summary first
//! (`confirmSound`). Webhooks carry `X-Plivo-Signature-V3`.
//!
//! Sources: plivo.com docs `voice/audio-streaming`, `xml/the-stream-element`,
//! `api/call/transfer-a-call`, `xml/dial`; plivo-python `plivo/utils/signature_v3.py`
//! (read for the signature base string); ../shared/notes/telephony-providers.md §3.

pub mod codec;
pub mod routes;
pub mod settings;
pub mod signature;
pub mod xml;

use std::sync::Arc;

use anyhow::Context;

pub use settings::PlivoSettings;

use crate::config::Settings;
use crate::telephony::control::{Control, Documents};
use crate::telephony::twilio::rest::{RetryPolicy, TwilioRest};
use routes::PlivoCarrier;

/// Plivo, when its auth id and token are set.
pub fn carrier(s: &Settings) -> anyhow::Result<Option<Arc<PlivoCarrier>>> {
    let p = &s.providers.plivo;
    let (Some(id), Some(token)) = (&p.auth_id, &p.auth_token) else {
        tracing::info!("Plivo off (set PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN)");
        return Ok(None);
    };
    let rest = TwilioRest::new(&p.api_base, id, token, RetryPolicy::default())
        .context("building the Plivo REST client")?;
    tracing::info!("Plivo on: /plivo/answer");
    Ok(Some(Arc::new(PlivoCarrier {
        auth_id: id.clone(),
        auth_token: token.clone(),
        control: Control::Plivo {
            rest: Some(rest),
            public_url: s.public_url.clone(),
            docs: Arc::new(Documents::default()),
        },
    })))
}
