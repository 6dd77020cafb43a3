//! Twilio: Media Streams codec, TwiML builders, webhook signatures and the REST client.

pub mod codec;
pub mod messages;
pub mod rest;
pub mod routes;
pub mod settings;
pub mod signature;
pub mod twiml;

use std::sync::Arc;

use anyhow::Context;

pub use settings::TwilioSettings;

use crate::config::Settings;
use crate::telephony::control::Control;
use rest::{RetryPolicy, TwilioRest};
use routes::TwimlCarrier;

/// Always on: without the account its webhooks still answer (and fail open to a person),
/// while transfers fail loudly and fall back to the stream-ended `<Dial>`.
pub fn carrier(s: &Settings) -> anyhow::Result<Option<Arc<TwimlCarrier>>> {
    let t = &s.providers.twilio;
    let rest = match (&t.account_sid, &t.auth_token) {
        (Some(sid), Some(token)) => Some(
            TwilioRest::new(&t.api_base, sid, token, RetryPolicy::default())
                .context("building the Twilio REST client")?,
        ),
        _ => {
            tracing::warn!(
                "TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN not set: transfers will fail and fall back to the stream-ended <Dial>"
            );
            None
        }
    };
    Ok(Some(Arc::new(TwimlCarrier {
        prefix: "twilio",
        account: t.account_sid.clone(),
        signing_key: t.auth_token.clone(),
        signature_headers: &["x-twilio-signature"],
        control: Control::TwilioTwiml {
            rest,
            public_url: s.public_url.clone(),
            prefix: "twilio",
        },
    })))
}
