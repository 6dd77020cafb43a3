//! SignalWire's settings: its project, keys and space.

use serde::Deserialize;

use crate::config::{ConfigError, Env};

/// TOML `signalwire_project`, `signalwire_token`, `signalwire_signing_key`,
/// `signalwire_space_url`; environment `SIGNALWIRE_PROJECT_ID`, `SIGNALWIRE_API_TOKEN`,
/// `SIGNALWIRE_SIGNING_KEY`, `SIGNALWIRE_SPACE_URL`. SignalWire is off unless all four are set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct SignalWireSettings {
    /// Project id (the `AccountSid` of its cXML webhooks; REST basic-auth user).
    #[serde(rename = "signalwire_project")]
    pub project: Option<String>,
    /// API token (REST basic-auth password).
    #[serde(rename = "signalwire_token")]
    pub token: Option<String>,
    /// Signing Key (signs its webhooks).
    #[serde(rename = "signalwire_signing_key")]
    pub signing_key: Option<String>,
    /// Space URL, e.g. `https://example.signalwire.com`.
    #[serde(rename = "signalwire_space_url")]
    pub space_url: Option<String>,
}

impl SignalWireSettings {
    pub fn apply_env(&mut self, env: &Env) -> Result<(), ConfigError> {
        env.set("SIGNALWIRE_PROJECT_ID", &mut self.project);
        env.set("SIGNALWIRE_API_TOKEN", &mut self.token);
        env.set("SIGNALWIRE_SIGNING_KEY", &mut self.signing_key);
        env.set("SIGNALWIRE_SPACE_URL", &mut self.space_url);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Settings, env};

    fn all(tag: &str) -> SignalWireSettings {
        SignalWireSettings {
            project: Some(format!("project-{tag}")),
            token: Some(format!("PT-{tag}")),
            signing_key: Some(format!("PSK-{tag}")),
            space_url: Some(format!("https://{tag}.signalwire.com")),
        }
    }

    #[test]
    fn toml_keys_and_env_names_reach_the_same_fields() {
        let mut s: Settings = toml::from_str(
            "signalwire_project = \"project-file\"\nsignalwire_token = \"PT-file\"\n\
             signalwire_signing_key = \"PSK-file\"\n\
             signalwire_space_url = \"https://file.signalwire.com\"",
        )
        .unwrap();
        assert_eq!(s.providers.signalwire, all("file"));
        s.apply_env(env(&[
            ("SIGNALWIRE_PROJECT_ID", "project-env"),
            ("SIGNALWIRE_API_TOKEN", "PT-env"),
            ("SIGNALWIRE_SIGNING_KEY", "PSK-env"),
            ("SIGNALWIRE_SPACE_URL", "https://env.signalwire.com"),
        ]))
        .unwrap();
        assert_eq!(s.providers.signalwire, all("env"));
        assert_eq!(
            Settings::default().providers.signalwire,
            SignalWireSettings::default()
        );
    }
}
