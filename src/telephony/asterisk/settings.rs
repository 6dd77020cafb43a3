//! Asterisk's settings: where AudioSocket listens, and the secret its dialplan and
//! chan_websocket present.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::config::{ConfigError, Env};

/// TOML `audiosocket_listen`, `asterisk_token`; environment `WARMLINE_AUDIOSOCKET_LISTEN`,
/// `WARMLINE_ASTERISK_TOKEN`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AsteriskSettings {
    /// Where Asterisk's AudioSocket connects (e.g. `127.0.0.1:9092`); off when unset.
    pub audiosocket_listen: Option<SocketAddr>,
    /// Shared secret the Asterisk dialplan sends when it asks warmline for a call's route;
    /// AudioSocket and chan_websocket stay off without it.
    #[serde(rename = "asterisk_token")]
    pub token: Option<String>,
}

impl AsteriskSettings {
    pub fn apply_env(&mut self, env: &Env) -> Result<(), ConfigError> {
        if let Some(addr) = env.parse("WARMLINE_AUDIOSOCKET_LISTEN")? {
            self.audiosocket_listen = Some(addr);
        }
        env.set("WARMLINE_ASTERISK_TOKEN", &mut self.token);
        Ok(())
    }

    /// The secret, if it is long enough to guard the route lookups and the media upgrade.
    pub fn usable_token(&self) -> Option<&str> {
        self.token.as_deref().filter(|t| t.len() >= 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Settings, env};

    #[test]
    fn toml_keys_and_env_names_reach_the_same_fields() {
        let mut s: Settings = toml::from_str(
            "audiosocket_listen = \"127.0.0.1:9092\"\nasterisk_token = \"file-secret-123\"",
        )
        .unwrap();
        assert_eq!(
            s.providers.asterisk,
            AsteriskSettings {
                audiosocket_listen: Some("127.0.0.1:9092".parse().unwrap()),
                token: Some("file-secret-123".into()),
            }
        );
        s.apply_env(env(&[
            ("WARMLINE_AUDIOSOCKET_LISTEN", "10.0.0.5:9093"),
            ("WARMLINE_ASTERISK_TOKEN", "env-secret-456"),
        ]))
        .unwrap();
        assert_eq!(
            s.providers.asterisk,
            AsteriskSettings {
                audiosocket_listen: Some("10.0.0.5:9093".parse().unwrap()),
                token: Some("env-secret-456".into()),
            }
        );
        assert_eq!(
            Settings::default().providers.asterisk,
            AsteriskSettings::default()
        );
    }

    #[test]
    fn a_bad_listen_address_names_its_variable_or_key() {
        let e = Settings::default()
            .apply_env(env(&[("WARMLINE_AUDIOSOCKET_LISTEN", "nope")]))
            .unwrap_err();
        assert!(e.to_string().contains("WARMLINE_AUDIOSOCKET_LISTEN"), "{e}");
        let e = toml::from_str::<Settings>("audiosocket_listen = \"nope\"").unwrap_err();
        assert!(e.to_string().contains("socket address"), "{e}");
    }
}
