//! Telnyx: Call Control answers the call with a bidirectional media stream (`stream_url`,
//! RTP mode, PCMU); media flows as JSON over WebSocket (`media`, `mark`, `clear` out; `start`,
//! `media`, `dtmf`, `mark`, `stop` in); a transfer is a Call Control `transfer` whose
//! `audio_url` plays warmline's spoken summary to the agent before bridging. Webhooks are
//! Ed25519-signed (`telnyx-signature-ed25519` over `timestamp|body`).
//!
//! Telnyx has no TwiML-style "after the stream" callback, so the fail-open path runs when the
//! stream ends here (the socket closes) or Telnyx reports `streaming.stopped`/`streaming.failed`
//! for a call this process is not driving (a restart): either way a caller who was neither
//! transferred nor said goodbye is transferred to the fallback queue with the card.
//!
//! Sources: developers.telnyx.com `api-reference/websockets/stream-call-media-over-websocket`,
//! call-commands pages; team-telnyx/telnyx-python `lib/webhook_verification.py`,
//! `types/calls/action_*_params.py`; pipecat `serializers/telnyx.py`;
//! ../shared/notes/telephony-providers.md §1.

pub mod call_control;
pub mod codec;
pub mod routes;
pub mod settings;
pub mod signature;

use std::sync::Arc;

use anyhow::Context;

pub use settings::TelnyxSettings;

use crate::config::Settings;
use crate::telephony::twilio::rest::{RetryPolicy, TwilioRest};
use routes::TelnyxCarrier;

/// Telnyx, when its API key and public key are set; a public key that does not decode stops
/// startup.
pub fn carrier(s: &Settings) -> anyhow::Result<Option<Arc<TelnyxCarrier>>> {
    let t = &s.providers.telnyx;
    let (Some(key), Some(public)) = (&t.api_key, &t.public_key) else {
        tracing::info!("Telnyx off (set TELNYX_API_KEY and TELNYX_PUBLIC_KEY)");
        return Ok(None);
    };
    let public = signature::PublicKey::from_base64(public).context("reading TELNYX_PUBLIC_KEY")?;
    let rest = TwilioRest::bearer(&t.api_base, key, RetryPolicy::default())
        .context("building the Telnyx REST client")?;
    tracing::info!("Telnyx on: /telnyx/call");
    Ok(Some(Arc::new(TelnyxCarrier::new(
        public,
        rest,
        &s.public_url,
    ))))
}
