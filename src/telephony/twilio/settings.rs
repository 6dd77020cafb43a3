//! Twilio's settings: the account whose calls are taken and where its REST API lives.

use serde::Deserialize;

use crate::config::{ConfigError, Env};

/// TOML `twilio_account_sid`, `twilio_auth_token`, `twilio_api_base`; environment
/// `TWILIO_ACCOUNT_SID`, `TWILIO_AUTH_TOKEN`, `WARMLINE_TWILIO_API_BASE`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct TwilioSettings {
    /// The `AccountSid` webhooks must name; REST basic-auth user.
    #[serde(rename = "twilio_account_sid")]
    pub account_sid: Option<String>,
    /// Signs Twilio's webhooks; REST basic-auth password.
    #[serde(rename = "twilio_auth_token")]
    pub auth_token: Option<String>,
    /// Twilio REST base URL.
    #[serde(rename = "twilio_api_base")]
    pub api_base: String,
}

impl Default for TwilioSettings {
    fn default() -> Self {
        TwilioSettings {
            account_sid: None,
            auth_token: None,
            api_base: "https://api.twilio.com".into(),
        }
    }
}

impl TwilioSettings {
    pub fn apply_env(&mut self, env: &Env) -> Result<(), ConfigError> {
        env.set("TWILIO_ACCOUNT_SID", &mut self.account_sid);
        env.set("TWILIO_AUTH_TOKEN", &mut self.auth_token);
        if let Some(v) = env.get("WARMLINE_TWILIO_API_BASE") {
            self.api_base = v;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Settings, env};

    #[test]
    fn toml_keys_and_env_names_reach_the_same_fields() {
        let file: Settings = toml::from_str(
            "twilio_account_sid = \"ACfile\"\ntwilio_auth_token = \"tok-file\"\n\
             twilio_api_base = \"http://file.test\"",
        )
        .unwrap();
        assert_eq!(
            file.providers.twilio,
            TwilioSettings {
                account_sid: Some("ACfile".into()),
                auth_token: Some("tok-file".into()),
                api_base: "http://file.test".into(),
            }
        );
        let mut s = file;
        s.apply_env(env(&[
            ("TWILIO_ACCOUNT_SID", "ACenv"),
            ("TWILIO_AUTH_TOKEN", "tok-env"),
            ("WARMLINE_TWILIO_API_BASE", "http://env.test"),
        ]))
        .unwrap();
        assert_eq!(
            s.providers.twilio,
            TwilioSettings {
                account_sid: Some("ACenv".into()),
                auth_token: Some("tok-env".into()),
                api_base: "http://env.test".into(),
            }
        );
        assert_eq!(
            Settings::default().providers.twilio.api_base,
            "https://api.twilio.com"
        );
    }
}
