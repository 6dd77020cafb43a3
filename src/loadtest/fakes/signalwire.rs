//! A fake SignalWire space: Twilio's media protocol and cXML under `/signalwire/…`, webhooks
//! signed with the project's Signing Key in `X-SignalWire-Signature` (Twilio's algorithm),
//! and the transfer as a LaML REST update (`/api/laml/2010-04-01/Accounts/{project}/Calls/
//! {call}`, basic auth project:token) whose `Url=` is warmline's transfer document. The
//! LaML endpoint is [`super::twilio::Fake`]'s, which accepts this project by default.

pub const PROJECT: &str = "b6a6d1e4-0000-4000-8000-00000000load";
pub const API_TOKEN: &str = "PTloadtest-signalwire-api-token";
pub const SIGNING_KEY: &str = "PSKloadtest-signing-key";
pub const SIGNATURE_HEADER: &str = "X-SignalWire-Signature";

/// `X-SignalWire-Signature` for a form POST: Twilio's algorithm keyed with the Signing Key.
pub fn sign(url: &str, params: &[(String, String)]) -> String {
    super::twilio::sign(SIGNING_KEY, url, params)
}

/// The settings (by their documented environment names) that point warmline's SignalWire
/// side at a fake space on `fake_base`.
pub fn server_env(fake_base: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SIGNALWIRE_PROJECT_ID", PROJECT.into()),
        ("SIGNALWIRE_API_TOKEN", API_TOKEN.into()),
        ("SIGNALWIRE_SIGNING_KEY", SIGNING_KEY.into()),
        ("SIGNALWIRE_SPACE_URL", fake_base.into()),
    ]
}
