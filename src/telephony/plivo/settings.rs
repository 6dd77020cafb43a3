//! Plivo's settings: its auth id and token, and where its REST API lives.

use serde::Deserialize;

use crate::config::{ConfigError, Env};

/// TOML `plivo_auth_id`, `plivo_auth_token`, `plivo_api_base`; environment `PLIVO_AUTH_ID`,
/// `PLIVO_AUTH_TOKEN`, `WARMLINE_PLIVO_API_BASE`. Plivo is off without the id and token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PlivoSettings {
    /// REST user, and the account its webhooks are signed for.
    #[serde(rename = "plivo_auth_id")]
    pub auth_id: Option<String>,
    /// REST password; signs its webhooks.
    #[serde(rename = "plivo_auth_token")]
    pub auth_token: Option<String>,
    /// Plivo REST base URL.
    #[serde(rename = "plivo_api_base")]
    pub api_base: String,
}

impl Default for PlivoSettings {
    fn default() -> Self {
        PlivoSettings {
            auth_id: None,
            auth_token: None,
            api_base: "https://api.plivo.com".into(),
        }
    }
}

impl PlivoSettings {
    pub fn apply_env(&mut self, env: &Env) -> Result<(), ConfigError> {
        env.set("PLIVO_AUTH_ID", &mut self.auth_id);
        env.set("PLIVO_AUTH_TOKEN", &mut self.auth_token);
        if let Some(v) = env.get("WARMLINE_PLIVO_API_BASE") {
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
            "plivo_auth_id = \"MAfile\"\nplivo_auth_token = \"tok-file\"\n\
             plivo_api_base = \"http://file.test\"",
        )
        .unwrap();
        assert_eq!(
            s.providers.plivo,
            PlivoSettings {
                auth_id: Some("MAfile".into()),
                auth_token: Some("tok-file".into()),
                api_base: "http://file.test".into(),
            }
        );
        s.apply_env(env(&[
            ("PLIVO_AUTH_ID", "MAenv"),
            ("PLIVO_AUTH_TOKEN", "tok-env"),
            ("WARMLINE_PLIVO_API_BASE", "http://env.test"),
        ]))
        .unwrap();
        assert_eq!(
            s.providers.plivo,
            PlivoSettings {
                auth_id: Some("MAenv".into()),
                auth_token: Some("tok-env".into()),
                api_base: "http://env.test".into(),
            }
        );
        assert_eq!(
            Settings::default().providers.plivo.api_base,
            "https://api.plivo.com"
        );
    }
}
