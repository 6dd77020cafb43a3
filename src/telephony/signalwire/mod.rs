//! SignalWire (cXML): Twilio-compatible media streams and markup, its own signature header
//! and signing key, and its own REST host. The wire codec is Twilio's.

pub mod settings;

use std::sync::Arc;

use anyhow::Context;

pub use settings::SignalWireSettings;

use crate::config::Settings;
use crate::telephony::control::{Control, Documents};
use crate::telephony::twilio::rest::{RetryPolicy, TwilioRest};
use crate::telephony::twilio::routes::TwimlCarrier;

/// SignalWire, when its project, API token, signing key and space are all set. It is served
/// by Twilio's routes under `/signalwire/`.
pub fn carrier(s: &Settings) -> anyhow::Result<Option<Arc<TwimlCarrier>>> {
    let sw = &s.providers.signalwire;
    let (Some(project), Some(token), Some(key), Some(space)) =
        (&sw.project, &sw.token, &sw.signing_key, &sw.space_url)
    else {
        tracing::info!(
            "SignalWire off (set SIGNALWIRE_PROJECT_ID, SIGNALWIRE_API_TOKEN, SIGNALWIRE_SIGNING_KEY, SIGNALWIRE_SPACE_URL)"
        );
        return Ok(None);
    };
    // SignalWire's LaML REST API mirrors Twilio's paths under /api/laml.
    let base = format!("{}/api/laml", space.trim_end_matches('/'));
    let rest = TwilioRest::new(&base, project, token, RetryPolicy::default())
        .context("building the SignalWire REST client")?;
    tracing::info!(space = %space, "SignalWire on: /signalwire/voice");
    Ok(Some(Arc::new(TwimlCarrier {
        prefix: "signalwire",
        account: Some(project.clone()),
        signing_key: Some(key.clone()),
        // Source: signalwire-typescript src/WebhookValidator.ts (it also accepts Twilio's).
        signature_headers: &["x-signalwire-signature", "x-twilio-signature"],
        control: Control::DocumentUrl {
            rest: Some(rest),
            public_url: s.public_url.clone(),
            prefix: "signalwire",
            docs: Arc::new(Documents::default()),
        },
    })))
}
