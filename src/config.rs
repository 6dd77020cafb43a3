//! Settings: a TOML file, overridden by the environment variables of CONTRACT.md.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::audio::frontend::FrontendConfig;
use crate::stt::engine::SttConfig;
use crate::telephony::ProviderSettings;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read settings file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("settings file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("{var}={value:?}: {message}")]
    Env {
        var: &'static str,
        value: String,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub listen: SocketAddr,
    /// What the provider calls back; the media WebSocket URL is derived from it.
    pub public_url: String,
    pub dialplan: PathBuf,
    pub prompts_dir: PathBuf,
    pub data_dir: PathBuf,
    /// `postgres://…`: keep call records in PostgreSQL, shared by every instance, instead of
    /// SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// This instance's own base URL (`https://wl-3.internal`), when several instances sit
    /// behind one `public_url`: media streams are pointed here, so each lands on the instance
    /// that admitted its call. Unset: derived from `public_url`.
    pub media_url: Option<String>,
    /// A ggml Whisper model; when unset the default model is pulled into `models_dir`.
    pub model: Option<PathBuf>,
    pub models_dir: PathBuf,
    /// Every provider's settings, under the same top-level keys as the rest (`twilio_account_sid`,
    /// `telnyx_api_key`, …); each provider's folder owns its own (see `telephony::registry`).
    #[serde(flatten)]
    pub providers: ProviderSettings,
    /// Providers' request signatures are checked; off only for local development.
    pub validate_signatures: bool,
    pub handoff_webhook: Option<String>,
    /// Bearer tokens for the caller-data routes (`/api/calls*`). Plain, or `sha256:<hex>` so
    /// the file need not hold the secret. None set: those routes answer 401 to everyone.
    pub api_tokens: Vec<String>,
    /// Lets the server listen on a non-loopback address with provider signature validation
    /// off. Without it that combination is refused at startup: anyone could inject calls.
    pub allow_insecure: bool,
    /// Calls served at once; beyond this, new calls go straight to a human.
    pub max_calls: usize,
    pub limits: Limits,
    pub stt: SttConfig,
    pub audio: FrontendConfig,
    pub console: ConsoleSettings,
    /// Opt-in recording of callers' audio (`[recording]`; see `crate::recording`).
    pub recording: crate::recording::RecordingSettings,
}

/// The web console at `/console`: who may log in, and for how long.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleSettings {
    /// People who may log in. None: the console only shows its login page, which says so.
    pub users: Vec<ConsoleUser>,
    /// A session ends this long after login, active or not, so a forgotten tab does not
    /// keep showing caller data forever.
    pub session_minutes: u64,
    /// Failed logins one client address may make per minute before it is told to wait.
    pub login_failures_per_minute: u32,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            users: Vec::new(),
            session_minutes: 12 * 60,
            login_failures_per_minute: 5,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleUser {
    pub name: String,
    pub role: ConsoleRole,
    /// An argon2 PHC string (`warmline console hash-password` makes one); never the password.
    pub password_hash: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsoleRole {
    /// The live board, context cards and history.
    Agent,
    /// Everything, including trends and who is logged in.
    Admin,
}

/// Bounds on what the network may hold or send. Each one closes a way an outsider could
/// exhaust the server; the defaults are far above what a provider ever needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Open HTTP/WebSocket connections at once (further capped by the fd limit). At the cap,
    /// the oldest connection that has no request in flight makes room for the newcomer.
    pub max_connections: usize,
    /// A client must send a request's headers within this.
    pub header_read_ms: u64,
    /// An HTTP connection with no bytes either way for this long is closed.
    pub idle_ms: u64,
    /// A media stream that sends nothing for this long is treated as dropped.
    pub media_idle_ms: u64,
    /// One WebSocket send may take this long before the peer counts as not reading.
    pub send_ms: u64,
    /// Malformed or out-of-place frames tolerated before `start`, then the socket closes.
    pub bad_frames_before_start: u32,
    /// Caller audio may run this far ahead of real time (network bunching); beyond it the
    /// excess is dropped, so one stream cannot take another caller's speech recognition.
    pub media_burst_ms: u64,
    /// How long a voice-webhook answer reserves a call slot (and its single-use stream
    /// token) for the media stream to connect.
    pub stream_connect_ms: u64,
    /// On SIGTERM, how long live calls get to hand their callers over before exit. Longer
    /// than the provider REST retry budget, so no transfer is abandoned mid-flight.
    pub drain_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 2048,
            header_read_ms: 5_000,
            idle_ms: 30_000,
            media_idle_ms: 15_000,
            send_ms: 2_000,
            bad_frames_before_start: 16,
            media_burst_ms: 2_000,
            stream_connect_ms: 30_000,
            drain_ms: 15_000,
        }
    }
}

impl Limits {
    pub fn ms(v: u64) -> std::time::Duration {
        std::time::Duration::from_millis(v)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:8080".parse().expect("valid literal address"),
            public_url: "http://127.0.0.1:8080".into(),
            dialplan: "dialplans/support.toml".into(),
            prompts_dir: "voice-prompts".into(),
            data_dir: "data".into(),
            database_url: None,
            media_url: None,
            model: None,
            models_dir: "models".into(),
            providers: ProviderSettings::default(),
            validate_signatures: true,
            handoff_webhook: None,
            api_tokens: Vec::new(),
            allow_insecure: false,
            max_calls: 64,
            limits: Limits::default(),
            stt: SttConfig::default(),
            audio: FrontendConfig::default(),
            console: ConsoleSettings::default(),
            recording: crate::recording::RecordingSettings::default(),
        }
    }
}

impl Settings {
    /// These settings with the shipped dialplan, prompts and model directory taken from the
    /// checkout at `root`, for tests, benches and tools that may run from any directory.
    pub fn with_shipped_assets_at(self, root: &Path) -> Settings {
        let defaults = Settings::default();
        Settings {
            dialplan: root.join(defaults.dialplan),
            prompts_dir: root.join(defaults.prompts_dir),
            models_dir: root.join(defaults.models_dir),
            ..self
        }
    }

    /// Reads `file` (if given), then applies the environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut s = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?
            }
            None => Settings::default(),
        };
        s.apply_env(|k| std::env::var(k).ok())?;
        Ok(s)
    }

    /// Applies overrides from a variable lookup (the process environment, or a map in tests).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let env = Env(&get);
        if let Some(v) = env.parse("WARMLINE_LISTEN")? {
            self.listen = v;
        }
        if let Some(v) = env.get("WARMLINE_PUBLIC_URL") {
            self.public_url = v;
        }
        if let Some(v) = env.get("WARMLINE_DIALPLAN") {
            self.dialplan = v.into();
        }
        if let Some(v) = env.get("WARMLINE_DATA_DIR") {
            self.data_dir = v.into();
        }
        env.set("WARMLINE_DATABASE_URL", &mut self.database_url);
        env.set("WARMLINE_MEDIA_URL", &mut self.media_url);
        if let Some(v) = env.get("WARMLINE_MODEL") {
            self.model = Some(v.into());
        }
        if let Some(v) = env.flag("WARMLINE_VALIDATE_SIGNATURES")? {
            self.validate_signatures = v;
        }
        if let Some(v) = env.flag("WARMLINE_ALLOW_INSECURE")? {
            self.allow_insecure = v;
        }
        self.providers.apply_env(&env)?;
        if let Some(v) = env.get("WARMLINE_API_TOKENS") {
            self.api_tokens = v
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect();
        }
        env.set("WARMLINE_HANDOFF_WEBHOOK", &mut self.handoff_webhook);
        if let Some(v) = env.flag("WARMLINE_RECORD_CALLS")? {
            self.recording.enabled = v;
        }
        if let Some(v) = env.flag("WARMLINE_REDACT_NUMBERS")? {
            self.recording.redact_numbers = v;
        }
        self.public_url = self.public_url.trim_end_matches('/').to_string();
        if !(self.public_url.starts_with("http://") || self.public_url.starts_with("https://")) {
            return Err(ConfigError::Env {
                var: "WARMLINE_PUBLIC_URL",
                value: self.public_url.clone(),
                message: "must start with http:// or https://".into(),
            });
        }
        Ok(())
    }

    /// Why these settings must not be served as they are, if they must not.
    pub fn refuse_reason(&self) -> Option<String> {
        if self.listen.ip().is_loopback() || self.allow_insecure {
            return None;
        }
        if !self.validate_signatures {
            return Some(format!(
                "listening on {} with signature validation off lets anyone on the network inject calls; \
                 turn WARMLINE_VALIDATE_SIGNATURES back on, listen on 127.0.0.1, or set WARMLINE_ALLOW_INSECURE=true",
                self.listen
            ));
        }
        None
    }

    /// The media WebSocket URL a carrier connects to: `ws(s)://…/{prefix}/media`.
    pub fn media_ws_url(&self, prefix: &str) -> String {
        let base = self
            .media_url
            .as_deref()
            .map_or(self.public_url.as_str(), |m| m.trim_end_matches('/'));
        let ws = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else {
            format!("ws://{}", base.trim_start_matches("http://"))
        };
        format!("{ws}/{prefix}/media")
    }
}

/// The environment as settings read it, for [`Settings::apply_env`] and each provider's own
/// settings: a variable set to blanks counts as unset, and a value that does not parse is an
/// error naming its variable.
pub struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    pub fn get(&self, var: &str) -> Option<String> {
        (self.0)(var).filter(|v| !v.trim().is_empty())
    }

    /// Overwrites `slot` when `var` is set.
    pub fn set(&self, var: &str, slot: &mut Option<String>) {
        if let Some(v) = self.get(var) {
            *slot = Some(v);
        }
    }

    pub fn parse<T>(&self, var: &'static str) -> Result<Option<T>, ConfigError>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        let Some(v) = self.get(var) else {
            return Ok(None);
        };
        match v.parse() {
            Ok(parsed) => Ok(Some(parsed)),
            Err(e) => Err(ConfigError::Env {
                var,
                message: e.to_string(),
                value: v,
            }),
        }
    }

    pub fn flag(&self, var: &'static str) -> Result<Option<bool>, ConfigError> {
        let Some(v) = self.get(var) else {
            return Ok(None);
        };
        match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Some(true)),
            "0" | "false" | "no" | "off" => Ok(Some(false)),
            _ => Err(ConfigError::Env {
                var,
                value: v,
                message: "expected true or false".into(),
            }),
        }
    }
}

/// A variable lookup holding just `pairs`, for tests of the environment layer.
#[cfg(test)]
pub(crate) fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let m: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| m.get(k).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_assets_are_found_from_anywhere_and_nothing_else_moves() {
        let s = Settings {
            max_calls: 3,
            ..Settings::default()
        }
        .with_shipped_assets_at(Path::new("/srv/warmline"));
        assert_eq!(
            s.dialplan,
            Path::new("/srv/warmline/dialplans/support.toml")
        );
        assert_eq!(s.prompts_dir, Path::new("/srv/warmline/voice-prompts"));
        assert_eq!(s.models_dir, Path::new("/srv/warmline/models"));
        assert_eq!((s.max_calls, s.data_dir), (3, PathBuf::from("data")));
    }

    #[test]
    fn database_url_and_instance_media_url() {
        let mut s: Settings = toml::from_str(
            "public_url = \"https://line.example.com\"\ndatabase_url = \"postgres://a@db/w\"",
        )
        .unwrap();
        assert_eq!(s.database_url.as_deref(), Some("postgres://a@db/w"));
        s.apply_env(env(&[
            ("WARMLINE_DATABASE_URL", "postgres://b@db2/w"),
            ("WARMLINE_MEDIA_URL", "https://wl-2.internal/"),
        ]))
        .unwrap();
        assert_eq!(s.database_url.as_deref(), Some("postgres://b@db2/w"));
        // Webhooks stay on the shared address; only the media socket goes to this instance.
        assert_eq!(s.media_ws_url("twilio"), "wss://wl-2.internal/twilio/media");
        assert_eq!(s.public_url, "https://line.example.com");
    }

    #[test]
    fn env_overrides_file_and_derives_wss() {
        let mut s: Settings = toml::from_str("public_url = \"http://a\"\nmax_calls = 3").unwrap();
        s.apply_env(env(&[
            ("WARMLINE_PUBLIC_URL", "https://line.example.com/"),
            ("WARMLINE_VALIDATE_SIGNATURES", "false"),
            ("WARMLINE_LISTEN", "0.0.0.0:9000"),
        ]))
        .unwrap();
        assert_eq!(
            s.media_ws_url("twilio"),
            "wss://line.example.com/twilio/media"
        );
        assert!(!s.validate_signatures);
        assert_eq!(s.max_calls, 3);
        assert_eq!(s.listen.port(), 9000);
    }

    #[test]
    fn bad_env_values_are_named() {
        let mut s = Settings::default();
        let e = s
            .apply_env(env(&[("WARMLINE_VALIDATE_SIGNATURES", "maybe")]))
            .unwrap_err();
        assert!(
            e.to_string().contains("WARMLINE_VALIDATE_SIGNATURES"),
            "{e}"
        );
        let e = s
            .apply_env(env(&[("WARMLINE_LISTEN", "nope")]))
            .unwrap_err();
        assert!(e.to_string().contains("WARMLINE_LISTEN"), "{e}");
    }

    #[test]
    fn api_tokens_come_from_a_comma_separated_variable() {
        let mut s = Settings::default();
        s.apply_env(env(&[("WARMLINE_API_TOKENS", " alpha, ,beta ")]))
            .unwrap();
        assert_eq!(s.api_tokens, ["alpha", "beta"]);
    }

    #[test]
    fn a_public_listener_without_signature_checks_is_refused_unless_allowed() {
        let mut s = Settings::default();
        s.apply_env(env(&[
            ("WARMLINE_LISTEN", "0.0.0.0:8080"),
            ("WARMLINE_VALIDATE_SIGNATURES", "false"),
        ]))
        .unwrap();
        let why = s.refuse_reason().expect("refused");
        assert!(why.contains("WARMLINE_ALLOW_INSECURE"), "{why}");
        s.apply_env(env(&[("WARMLINE_ALLOW_INSECURE", "true")]))
            .unwrap();
        assert_eq!(s.refuse_reason(), None);
        // Loopback is a developer's machine: no refusal.
        let local = Settings {
            validate_signatures: false,
            ..Settings::default()
        };
        assert_eq!(local.refuse_reason(), None);
    }

    #[test]
    fn limits_are_set_in_their_own_table() {
        let s: Settings = toml::from_str("[limits]\nmax_connections = 10\nsend_ms = 500").unwrap();
        assert_eq!((s.limits.max_connections, s.limits.send_ms), (10, 500));
        assert_eq!(s.limits.drain_ms, Limits::default().drain_ms);
        assert!(toml::from_str::<Settings>("[limits]\nmax_conections = 10").is_err());
    }

    #[test]
    fn recording_is_off_unless_asked_for() {
        let mut s = Settings::default();
        assert!(!s.recording.enabled && !s.recording.redact_numbers);
        s.apply_env(env(&[("WARMLINE_RECORD_CALLS", "true")]))
            .unwrap();
        assert!(s.recording.enabled);
        let t: Settings = toml::from_str("[recording]\nenabled = true\nmax_age_days = 7").unwrap();
        assert!(t.recording.enabled);
        assert_eq!(t.recording.max_age_days, 7);
    }

    #[test]
    fn unknown_setting_is_refused() {
        assert!(toml::from_str::<Settings>("lisen = \"x\"").is_err());
    }
}
