//! Telnyx's settings: its API key, the public key its webhooks verify against, and where its
//! REST API lives.

use serde::Deserialize;

use crate::config::{ConfigError, Env};

/// TOML `telnyx_api_key`, `telnyx_public_key`, `telnyx_api_base`; environment
/// `TELNYX_API_KEY`, `TELNYX_PUBLIC_KEY`, `WARMLINE_TELNYX_API_BASE`. Telnyx is off without
/// both keys.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct TelnyxSettings {
    /// API v2 key (Call Control commands, `Authorization: Bearer`).
    #[serde(rename = "telnyx_api_key")]
    pub api_key: Option<String>,
    /// The account's public key, base64 of the 32-byte Ed25519 key (verifies its webhooks).
    #[serde(rename = "telnyx_public_key")]
    pub public_key: Option<String>,
    /// Telnyx REST base URL.
    #[serde(rename = "telnyx_api_base")]
    pub api_base: String,
}

impl Default for TelnyxSettings {
    fn default() -> Self {
        TelnyxSettings {
            api_key: None,
            public_key: None,
            api_base: "https://api.telnyx.com".into(),
        }
    }
}

impl TelnyxSettings {
    pub fn apply_env(&mut self, env: &Env) -> Result<(), ConfigError> {
        env.set("TELNYX_API_KEY", &mut self.api_key);
        env.set("TELNYX_PUBLIC_KEY", &mut self.public_key);
        if let Some(v) = env.get("WARMLINE_TELNYX_API_BASE") {
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
        let mut s: Settings = toml::from_str(
            "telnyx_api_key = \"KEYfile\"\ntelnyx_public_key = \"cHViLWZpbGU=\"\n\
             telnyx_api_base = \"http://file.test\"",
        )
        .unwrap();
        assert_eq!(
            s.providers.telnyx,
            TelnyxSettings {
                api_key: Some("KEYfile".into()),
                public_key: Some("cHViLWZpbGU=".into()),
                api_base: "http://file.test".into(),
            }
        );
        s.apply_env(env(&[
            ("TELNYX_API_KEY", "KEYenv"),
            ("TELNYX_PUBLIC_KEY", "cHViLWVudg=="),
            ("WARMLINE_TELNYX_API_BASE", "http://env.test"),
        ]))
        .unwrap();
        assert_eq!(
            s.providers.telnyx,
            TelnyxSettings {
                api_key: Some("KEYenv".into()),
                public_key: Some("cHViLWVudg==".into()),
                api_base: "http://env.test".into(),
            }
        );
        assert_eq!(
            Settings::default().providers.telnyx.api_base,
            "https://api.telnyx.com"
        );
    }
}
