//! The carriers a load test can play: what differs between them on the wire the load
//! generator speaks (webhook paths, signatures, the REST API the transfer arrives on).
//! The shared driver in `loadtest.rs` asks the provider for these and nothing else.

use serde::Serialize;

use crate::config::Settings;

pub mod signalwire;
pub mod twilio;

/// `--provider`: whose protocol the simulated callers speak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Twilio Media Streams, TwiML webhooks signed with the auth token, REST call updates.
    #[default]
    Twilio,
    /// Twilio's media protocol under `/signalwire/…`, cXML signed with the Signing Key, the
    /// transfer as a LaML REST update with `Url=` (warmline's transfer document).
    Signalwire,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Twilio => "twilio",
            Provider::Signalwire => "signalwire",
        }
    }

    /// The path segment of its webhooks and media route (`/{prefix}/voice`, …).
    pub fn prefix(self) -> &'static str {
        self.name()
    }

    pub fn signature_header(self) -> &'static str {
        match self {
            Provider::Twilio => "X-Twilio-Signature",
            Provider::Signalwire => signalwire::SIGNATURE_HEADER,
        }
    }

    /// The account id webhooks carry and the secret they are signed with.
    pub fn credentials(self, account_sid: &str, auth_token: &str) -> (String, String) {
        match self {
            Provider::Twilio => (account_sid.to_string(), auth_token.to_string()),
            Provider::Signalwire => (
                signalwire::PROJECT.to_string(),
                signalwire::SIGNING_KEY.to_string(),
            ),
        }
    }

    /// Points the in-process server's settings for this provider at the fake REST API.
    pub fn configure(self, s: &mut Settings, fake_base: &str) {
        match self {
            Provider::Twilio => {}
            Provider::Signalwire => signalwire::configure(s, fake_base),
        }
    }

    /// The REST call update moved the caller to a person: a `<Dial>` in the TwiML (Twilio),
    /// or the URL of warmline's transfer document (SignalWire).
    pub fn is_transfer(self, update_body: &str) -> bool {
        match self {
            Provider::Twilio => update_body.contains("<Dial"),
            Provider::Signalwire => update_body.contains("/signalwire/transfer/"),
        }
    }
}
