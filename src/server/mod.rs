//! `warmline serve`: the HTTP + WebSocket server that puts the call engine on the wire.
//!
//! Layout after mini-redis: one listener with a connection cap ([`listener`]), one task per
//! call, shared state behind `Arc`, admission that fails open (extra callers go to a human),
//! and a graceful shutdown that stops admitting, hands every live caller to a person, lets
//! their transfers finish, and exits within `limits.drain_ms` plus a second.

pub(crate) mod admission;
mod api;
pub mod audio;
pub(crate) mod auth;
pub mod console;
pub(crate) mod driver;
pub(crate) mod fail_open;
mod listener;
pub(crate) mod log_limit;
pub(crate) mod records;
mod stt_load;
pub(crate) mod transport;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::routing::get;
use tokio::sync::watch;

use crate::call::Playbook;
use crate::config::{self, Settings};
use crate::metrics::Metrics;
use crate::speech::Speech;
use crate::store::Store;
use crate::stt::engine::SttEngine;
use crate::telephony::Provider;

pub use records::RecordWriter;

/// Everything the handlers share.
pub struct AppState {
    pub settings: Settings,
    pub book: Arc<Playbook>,
    /// Set once the model has loaded; until then calls go straight to a human.
    pub stt: OnceLock<Arc<SttEngine>>,
    pub store: Store,
    pub records: RecordWriter,
    pub metrics: Arc<Metrics>,
    /// The providers the settings turned on, each with its account, keys and call control.
    pub providers: Vec<Provider>,
    pub http: reqwest::Client,
    /// Call slots and the single-use stream tokens that claim them.
    pub admission: Arc<admission::Admission>,
    /// Digests of the bearer tokens that may read caller data.
    pub api_tokens: auth::ApiTokens,
    /// The decoder states (one permit each: transcriptions beyond them wait briefly, then fail
    /// open), how many transcriptions wait for one and how long they take.
    pub stt_load: stt_load::SttLoad,
    /// Flips to true on SIGTERM/SIGINT: live calls hand their callers over and end.
    pub shutdown: watch::Receiver<bool>,
    /// The web console's users and sessions.
    pub console: console::Sessions,
    /// The pre-rendered fragments the spoken summary is said with (`/audio/summary/{id}`).
    pub speech: Arc<Speech>,
    /// Callers' audio and call timelines, when recording is on.
    pub recorder: crate::recording::Recorder,
}

/// What is being wound down, in order: first the calls (drain), then the listener (stop).
pub struct Shutdown {
    pub drain: watch::Sender<bool>,
    pub stop: watch::Sender<bool>,
}

impl AppState {
    /// A provider's call webhook asks for a media stream: reserves a call slot and returns the
    /// single-use token the stream must present, or why the caller goes straight to a person
    /// (the line is full, or the model is still loading) — counted and logged here, once for
    /// every carrier.
    pub fn admit_webhook(&self, promised: admission::Promised) -> Result<String, String> {
        let token = fail_open::random_id();
        let refused = if self.ready() {
            self.admission
                .reserve(promised, token.clone(), std::time::Instant::now())
                .err()
                .map(|r| r.to_string())
        } else {
            Some("model still loading".to_string())
        };
        match refused {
            None => Ok(token),
            Some(why) => {
                tracing::warn!(why, "sending the caller straight to a person");
                self.metrics.inc_overload_handoffs();
                Err(why)
            }
        }
    }

    pub fn ready(&self) -> bool {
        self.stt.get().is_some()
    }
}

/// The router, for the server and for tests that bring their own listener.
pub fn router(state: Arc<AppState>) -> Router {
    // Everything that shows caller data sits behind the token check.
    let caller_data = Router::new()
        .route("/api/calls", get(api::list_calls))
        .route(
            "/api/calls/{call_sid}",
            get(api::get_call).delete(api::delete_call),
        )
        .route("/api/calls/{call_sid}/fixture", get(api::call_fixture))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_api_token,
        ));
    let mut app = Router::new()
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .merge(caller_data)
        .route("/audio/summary/{handoff_id}", get(audio::summary))
        // The web console (its own login; see console/mod.rs).
        .merge(console::routes(state.clone()))
        .with_state(state.clone());
    for provider in &state.providers {
        app = app.merge(provider.routes(state.clone()));
    }
    app
}

/// Builds the shared state. The model is loaded separately (see [`load_model`]).
pub fn build_state(
    mut settings: Settings,
    book: Arc<Playbook>,
    shutdown: watch::Receiver<bool>,
) -> Result<Arc<AppState>> {
    let api_tokens =
        auth::ApiTokens::new(&settings.api_tokens).context("reading WARMLINE_API_TOKENS")?;
    // Only the digests are kept.
    settings.api_tokens.clear();
    let store = Store::from_settings(&settings).context("opening the call records")?;
    tracing::info!(records = %store.describe(), "call records");
    let metrics = Arc::new(Metrics::default());
    let speech = load_speech(&settings, &book)?;
    let records = RecordWriter::spawn(store.clone(), metrics.clone());
    let recorder = crate::recording::Recorder::new(&settings.data_dir, settings.recording.clone());
    let book = crate::recording::playbook_for(book, &settings.recording);
    let providers = Provider::from_settings(&settings)?;
    Ok(Arc::new(AppState {
        stt: OnceLock::new(),
        store,
        records,
        metrics,
        providers,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?,
        admission: admission::Admission::new(
            settings.max_calls,
            config::Limits::ms(settings.limits.stream_connect_ms),
        ),
        api_tokens,
        stt_load: stt_load::SttLoad::new(settings.stt.max_states)
            .with_solo_threads(settings.stt.solo_threads),
        shutdown,
        console: console::Sessions::new(&settings.console, &settings.public_url)
            .context("reading the [console] settings")?,
        speech,
        recorder,
        book,
        settings,
    }))
}

/// The spoken-summary fragments (`<prompts_dir>/fragments`); a missing one stops startup.
fn load_speech(settings: &Settings, book: &Playbook) -> Result<Arc<Speech>> {
    let speech = match &book.speech {
        Some(s) => s.clone(),
        None => {
            let dir = settings.prompts_dir.join("fragments");
            Arc::new(
                Speech::load(&dir)
                    .with_context(|| format!("loading speech fragments from {}", dir.display()))?,
            )
        }
    };
    let queues = book.dialplan.queues.iter().map(|q| q.name.as_str());
    for q in speech.queues_without_fragment(queues) {
        tracing::warn!(queue = %q, "no q_{q} fragment: the agent hears \"Incoming call\" for this queue (see voice-prompts/fragments/)");
    }
    Ok(speech)
}

/// Loads (pulling on first run) the model into the state; `/healthz` turns 200 after this.
pub async fn load_model(state: Arc<AppState>) -> Result<()> {
    let settings = state.settings.clone();
    let engine = tokio::task::spawn_blocking(move || crate::setup::load_stt(&settings))
        .await
        .context("model loader panicked")??;
    let _ = state.stt.set(engine);
    tracing::info!("ready: model loaded");
    Ok(())
}

/// Serves `state` on `listener` through the bounded accept loop until `stop` turns true.
pub async fn serve_listener(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    stop: watch::Receiver<bool>,
) {
    for provider in &state.providers {
        provider.listen(&state, &stop).await;
    }
    if state.recorder.enabled() {
        tokio::spawn(api::sweep_recordings(state.clone(), stop.clone()));
    }
    tokio::spawn(read_machine_load(stop.clone()));
    let limits = &state.settings.limits;
    let conn = listener::ConnLimits {
        max_connections: limits.max_connections,
        header_read: config::Limits::ms(limits.header_read_ms),
        idle: config::Limits::ms(limits.idle_ms),
    };
    let metrics = state.metrics.clone();
    listener::serve(listener, router(state), conn, metrics, stop).await
}

/// Keeps [`crate::procstat::OTHERS`] fresh for a transcription that asks whether it may run
/// on every core: one reading per interval for the whole process, not one per call's frame.
/// Several in-process instances each run one; the reading itself is taken at most once an
/// interval.
async fn read_machine_load(mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(crate::procstat::SAMPLE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => crate::procstat::OTHERS.sample(),
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Says out loud what the settings leave open, and refuses what must not run.
fn check_exposure(settings: &Settings, tokens: usize) -> Result<()> {
    if let Some(why) = settings.refuse_reason() {
        anyhow::bail!("refusing to start: {why}");
    }
    if !settings.validate_signatures {
        tracing::warn!(
            "!!! SIGNATURE VALIDATION IS OFF: anyone who can reach this server can start calls, \
             end them and read agent whispers. Only for local development. !!!"
        );
    }
    if tokens == 0 {
        tracing::warn!(
            "no WARMLINE_API_TOKENS set: /api/calls answers 401 to everyone (caller data stays private)"
        );
    }
    Ok(())
}

/// Runs the server until SIGTERM/SIGINT, then drains live calls.
pub async fn serve(mut settings: Settings) -> Result<()> {
    check_exposure(&settings, settings.api_tokens.len())?;
    settings.limits.max_connections = listener::fit_to_fd_limit(settings.limits.max_connections);
    let book = crate::setup::load_playbook(&settings)?;
    let (drain_tx, drain_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let state = build_state(settings.clone(), book, drain_rx)?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!(%addr, public_url = %settings.public_url, "listening");

    // The model loads while the server already answers: /healthz says 503 until it is ready
    // and early callers go straight to a human. If it cannot load, the server stops.
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<anyhow::Error>();
    let loader_state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = load_model(loader_state).await {
            let _ = failed_tx.send(e);
        }
    });
    let server = tokio::spawn(serve_listener(listener, state.clone(), stop_rx));
    let failure = tokio::select! {
        _ = shutdown_signal() => {
            tracing::info!("shutting down: no new calls; handing live callers to people");
            None
        }
        Ok(e) = failed_rx => {
            tracing::error!(error = %format!("{e:#}"), "cannot load the model");
            Some(e)
        }
    };
    drain(
        &state,
        Shutdown {
            drain: drain_tx,
            stop: stop_tx,
        },
    )
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
    state.records.flush();
    if let Some(e) = failure {
        return Err(e);
    }
    tracing::info!("stopped");
    Ok(())
}

/// Stops admitting calls, hands live callers over and waits for their transfers (bounded by
/// `limits.drain_ms`), then stops the listener. The listener stays up during the drain so
/// the provider can still reach `stream-ended` and the agent whispers of those transfers.
pub async fn drain(state: &AppState, shutdown: Shutdown) {
    state.admission.drain();
    let _ = shutdown.drain.send(true);
    let bound = config::Limits::ms(state.settings.limits.drain_ms);
    let deadline = tokio::time::Instant::now() + bound;
    while state.admission.live() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = state.admission.live();
    if left > 0 {
        tracing::error!(left, ?bound, "drain bound reached with calls still live");
    } else {
        tracing::info!("every live call handed over");
    }
    let _ = shutdown.stop.send(true);
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
