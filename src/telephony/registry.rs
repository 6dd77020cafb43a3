//! The one list of providers. Each provider's folder owns its settings (TOML keys and
//! environment variables), a constructor that turns them into its carrier — or leaves it off
//! and says how to turn it on — its routes and any listener of its own. The server mounts and
//! starts whatever [`Provider::from_settings`] returns, without naming any of them.

use std::sync::{Arc, OnceLock};

use axum::Router;
use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, Visitor};
use tokio::sync::watch;

use super::asterisk::{self, AsteriskSettings, routes::AsteriskCarrier};
use super::plivo::{self, PlivoSettings, routes::PlivoCarrier};
use super::signalwire::{self, SignalWireSettings};
use super::telnyx::{self, TelnyxSettings, routes::TelnyxCarrier};
use super::twilio::{self, TwilioSettings, routes::TwimlCarrier};
use crate::config::{ConfigError, Env, Settings};
use crate::server::AppState;

/// Every provider's settings. In the settings file they sit at the top level beside the rest
/// (`twilio_account_sid = …`), as they always have.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderSettings {
    pub twilio: TwilioSettings,
    pub signalwire: SignalWireSettings,
    pub plivo: PlivoSettings,
    pub telnyx: TelnyxSettings,
    pub asterisk: AsteriskSettings,
}

impl ProviderSettings {
    /// The TOML keys any provider reads.
    pub fn keys() -> &'static [&'static str] {
        static KEYS: OnceLock<&'static [&'static str]> = OnceLock::new();
        KEYS.get_or_init(|| {
            // Destructured, so a provider added to the struct but not here does not compile.
            let ProviderSettings {
                twilio,
                signalwire,
                plivo,
                telnyx,
                asterisk,
            } = ProviderSettings::default();
            let all = [
                keys_like(&twilio),
                keys_like(&signalwire),
                keys_like(&plivo),
                keys_like(&telnyx),
                keys_like(&asterisk),
            ];
            Vec::leak(all.concat())
        })
    }

    pub fn apply_env(&mut self, env: &Env) -> Result<(), ConfigError> {
        let ProviderSettings {
            twilio,
            signalwire,
            plivo,
            telnyx,
            asterisk,
        } = self;
        twilio.apply_env(env)?;
        signalwire.apply_env(env)?;
        plivo.apply_env(env)?;
        telnyx.apply_env(env)?;
        asterisk.apply_env(env)
    }
}

/// `Settings` flattens this and refuses unknown keys. serde hands a flattened struct only the
/// keys it names in `deserialize_struct`, so this names every provider's keys, takes them as
/// one table and lets each provider's derived `Deserialize` read its own from it; anything no
/// one names stays behind for `Settings` to refuse.
impl<'de> Deserialize<'de> for ProviderSettings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Table;
        impl<'de> Visitor<'de> for Table {
            type Value = toml::Table;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("provider settings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<toml::Table, A::Error> {
                let mut table = toml::Table::new();
                while let Some((k, v)) = map.next_entry::<String, toml::Value>()? {
                    table.insert(k, v);
                }
                Ok(table)
            }
        }
        let table = deserializer.deserialize_struct("ProviderSettings", Self::keys(), Table)?;
        fn own<T: DeserializeOwned, E: de::Error>(table: &toml::Table) -> Result<T, E> {
            table.clone().try_into().map_err(E::custom)
        }
        Ok(ProviderSettings {
            twilio: own(&table)?,
            signalwire: own(&table)?,
            plivo: own(&table)?,
            telnyx: own(&table)?,
            asterisk: own(&table)?,
        })
    }
}

/// The keys a derived `Deserialize` struct reads, as it names them to the deserializer, so the
/// list cannot drift from the struct.
fn keys_like<T: DeserializeOwned>(_: &T) -> &'static [&'static str] {
    #[derive(Debug)]
    struct Named(&'static [&'static str]);
    impl std::fmt::Display for Named {
        fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "fields {:?}", self.0)
        }
    }
    impl std::error::Error for Named {}
    impl de::Error for Named {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Named(&[])
        }
    }
    struct Probe;
    impl<'de> Deserializer<'de> for Probe {
        type Error = Named;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Named> {
            Err(Named(&[]))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Named> {
            Err(Named(fields))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    match T::deserialize(Probe) {
        Err(Named(fields)) => fields,
        Ok(_) => &[],
    }
}

/// A provider the settings turned on: the closed set of carriers, the shape of str0m's pacer
/// (no trait objects; each variant is its provider's own type).
#[derive(Debug)]
pub enum Provider {
    Twilio(Arc<TwimlCarrier>),
    SignalWire(Arc<TwimlCarrier>),
    Plivo(Arc<PlivoCarrier>),
    Telnyx(Arc<TelnyxCarrier>),
    Asterisk(Arc<AsteriskCarrier>),
}

impl Provider {
    /// Every provider whose settings are complete. One without its credentials logs what to
    /// set and is left out; settings that are there but unusable stop startup.
    pub fn from_settings(s: &Settings) -> anyhow::Result<Vec<Provider>> {
        let all = [
            twilio::carrier(s)?.map(Provider::Twilio),
            signalwire::carrier(s)?.map(Provider::SignalWire),
            plivo::carrier(s)?.map(Provider::Plivo),
            telnyx::carrier(s)?.map(Provider::Telnyx),
            asterisk::carrier(s)?.map(Provider::Asterisk),
        ];
        Ok(all.into_iter().flatten().collect())
    }

    /// Its HTTP routes, under `/{name}/`.
    pub fn routes(&self, app: Arc<AppState>) -> Router {
        match self {
            Provider::Twilio(c) | Provider::SignalWire(c) => twilio::routes::routes(app, c.clone()),
            Provider::Plivo(c) => plivo::routes::routes(app, c.clone()),
            Provider::Telnyx(c) => telnyx::routes::routes(app, c.clone()),
            Provider::Asterisk(c) => asterisk::routes::routes(app, c.clone()),
        }
    }

    /// Starts what it serves besides HTTP (Asterisk's AudioSocket), until `stop`. A listener
    /// that cannot start is logged; the HTTP side keeps serving.
    pub async fn listen(&self, app: &Arc<AppState>, stop: &watch::Receiver<bool>) {
        match self {
            Provider::Asterisk(c) => asterisk::routes::listen(c, app, stop).await,
            Provider::Twilio(_)
            | Provider::SignalWire(_)
            | Provider::Plivo(_)
            | Provider::Telnyx(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_key_is_claimed_and_nothing_else() {
        let mut keys = ProviderSettings::keys().to_vec();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "asterisk_token",
                "audiosocket_listen",
                "plivo_api_base",
                "plivo_auth_id",
                "plivo_auth_token",
                "signalwire_project",
                "signalwire_signing_key",
                "signalwire_space_url",
                "signalwire_token",
                "telnyx_api_base",
                "telnyx_api_key",
                "telnyx_public_key",
                "twilio_account_sid",
                "twilio_api_base",
                "twilio_auth_token",
            ]
        );
    }

    #[test]
    fn provider_keys_sit_beside_the_rest_and_typos_are_still_refused() {
        let s: Settings = toml::from_str(
            "max_calls = 3\ntwilio_account_sid = \"AC1\"\nplivo_auth_id = \"MA1\"\n\
             [limits]\nsend_ms = 500",
        )
        .unwrap();
        assert_eq!(s.max_calls, 3);
        assert_eq!(s.limits.send_ms, 500);
        assert_eq!(s.providers.twilio.account_sid.as_deref(), Some("AC1"));
        assert_eq!(s.providers.plivo.auth_id.as_deref(), Some("MA1"));
        assert_eq!(s.providers.telnyx, TelnyxSettings::default());
        let e = toml::from_str::<Settings>("twilio_acount_sid = \"AC1\"").unwrap_err();
        assert!(e.to_string().contains("twilio_acount_sid"), "{e}");
        let e = toml::from_str::<Settings>("plivo_api_base = 5").unwrap_err();
        assert!(e.to_string().contains("string"), "{e}");
    }

    /// Every provider variable in the README and CONTRACT.md, set at once.
    #[test]
    fn every_documented_variable_reaches_its_provider() {
        let mut s = Settings::default();
        s.apply_env(crate::config::env(&[
            ("TWILIO_ACCOUNT_SID", "AC1"),
            ("TWILIO_AUTH_TOKEN", "tw-token"),
            ("WARMLINE_TWILIO_API_BASE", "http://twilio.test"),
            ("SIGNALWIRE_PROJECT_ID", "sw-project"),
            ("SIGNALWIRE_API_TOKEN", "sw-token"),
            ("SIGNALWIRE_SIGNING_KEY", "sw-key"),
            ("SIGNALWIRE_SPACE_URL", "https://x.signalwire.com"),
            ("PLIVO_AUTH_ID", "MA1"),
            ("PLIVO_AUTH_TOKEN", "pl-token"),
            ("WARMLINE_PLIVO_API_BASE", "http://plivo.test"),
            ("TELNYX_API_KEY", "KEY1"),
            ("TELNYX_PUBLIC_KEY", "cHVi"),
            ("WARMLINE_TELNYX_API_BASE", "http://telnyx.test"),
            ("WARMLINE_AUDIOSOCKET_LISTEN", "127.0.0.1:9092"),
            ("WARMLINE_ASTERISK_TOKEN", "pbx-secret-1"),
        ]))
        .unwrap();
        let p = &s.providers;
        let got = [
            p.twilio.account_sid.as_deref(),
            p.twilio.auth_token.as_deref(),
            Some(p.twilio.api_base.as_str()),
            p.signalwire.project.as_deref(),
            p.signalwire.token.as_deref(),
            p.signalwire.signing_key.as_deref(),
            p.signalwire.space_url.as_deref(),
            p.plivo.auth_id.as_deref(),
            p.plivo.auth_token.as_deref(),
            Some(p.plivo.api_base.as_str()),
            p.telnyx.api_key.as_deref(),
            p.telnyx.public_key.as_deref(),
            Some(p.telnyx.api_base.as_str()),
            p.asterisk.token.as_deref(),
        ];
        assert_eq!(
            got,
            [
                "AC1",
                "tw-token",
                "http://twilio.test",
                "sw-project",
                "sw-token",
                "sw-key",
                "https://x.signalwire.com",
                "MA1",
                "pl-token",
                "http://plivo.test",
                "KEY1",
                "cHVi",
                "http://telnyx.test",
                "pbx-secret-1",
            ]
            .map(Some)
        );
        assert_eq!(
            p.asterisk.audiosocket_listen,
            Some("127.0.0.1:9092".parse().unwrap())
        );
    }

    #[test]
    fn blank_variables_leave_the_file_alone() {
        let mut s: Settings = toml::from_str("telnyx_api_key = \"KEYfile\"").unwrap();
        s.apply_env(crate::config::env(&[("TELNYX_API_KEY", "  ")]))
            .unwrap();
        assert_eq!(s.providers.telnyx.api_key.as_deref(), Some("KEYfile"));
    }
}
