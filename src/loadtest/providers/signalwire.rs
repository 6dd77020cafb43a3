//! SignalWire: Twilio's media protocol and cXML under `/signalwire/…`. Webhooks are signed
//! with the project's Signing Key in `X-SignalWire-Signature` (Twilio's algorithm); the
//! transfer is a LaML REST update (`/api/laml/2010-04-01/Accounts/{project}/Calls/{call}`,
//! basic auth project:token) whose `Url=` is warmline's transfer document.

use crate::config::Settings;

pub const PROJECT: &str = "b6a6d1e4-0000-4000-8000-00000000load";
pub const API_TOKEN: &str = "PTloadtest-signalwire-api-token";
pub const SIGNING_KEY: &str = "PSKloadtest-signing-key";
pub const SIGNATURE_HEADER: &str = "X-SignalWire-Signature";

/// The LaML call-update route the fake space serves.
pub const LAML_UPDATE: &str = "/api/laml/2010-04-01/Accounts/{acct}/Calls/{call}";

pub fn configure(s: &mut Settings, fake_base: &str) {
    s.providers.signalwire.project = Some(PROJECT.into());
    s.providers.signalwire.token = Some(API_TOKEN.into());
    s.providers.signalwire.signing_key = Some(SIGNING_KEY.into());
    s.providers.signalwire.space_url = Some(fake_base.to_string());
}
