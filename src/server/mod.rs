//! `warmline serve`: the HTTP + WebSocket server that puts the call engine on the wire.
//!
//! Layout after mini-redis: one listener, one task per call, shared state behind `Arc`, a
//! connection limit that fails open (extra callers go to a human), and a graceful shutdown
//! that hands every live caller to a person before the process exits.

mod api;
mod media;
mod records;
mod stt_load;
mod twilio;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::routing::{get, post};
use tokio::sync::watch;

use crate::call::Playbook;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::stt::engine::SttEngine;
use crate::telephony::twilio::rest::{RetryPolicy, TwilioRest};

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
    pub rest: Option<TwilioRest>,
    pub http: reqwest::Client,
    /// Key for the per-call stream tokens handed out in the voice webhook answer.
    pub token_key: [u8; 32],
    pub active_calls: AtomicUsize,
    /// The decoder states (one permit each: transcriptions beyond them wait briefly, then fail
    /// open), how many transcriptions wait for one and how long they take.
    pub stt_load: stt_load::SttLoad,
    /// Flips to true on SIGTERM/SIGINT: live calls hand their callers over and end.
    pub shutdown: watch::Receiver<bool>,
}

impl AppState {
    pub fn ready(&self) -> bool {
        self.stt.get().is_some()
    }
}

/// The router, for the server and for tests that bring their own listener.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .route("/api/calls", get(api::list_calls))
        .route("/api/calls/{call_sid}", get(api::get_call))
        .route("/twilio/voice", post(twilio::voice))
        .route("/twilio/stream-ended", post(twilio::stream_ended))
        .route(
            "/twilio/agent-whisper/{id}",
            post(twilio::agent_whisper).get(twilio::agent_whisper),
        )
        .route("/twilio/media", get(media::upgrade))
        .with_state(state)
}

/// Builds the shared state. The model is loaded separately (see [`load_model`]).
pub fn build_state(
    settings: Settings,
    book: Arc<Playbook>,
    shutdown: watch::Receiver<bool>,
) -> Result<Arc<AppState>> {
    let store = Store::open(&settings.data_dir)
        .with_context(|| format!("opening call records in {}", settings.data_dir.display()))?;
    let records = RecordWriter::spawn(store.clone());
    let rest = match (&settings.twilio_account_sid, &settings.twilio_auth_token) {
        (Some(sid), Some(token)) => Some(
            TwilioRest::new(
                &settings.twilio_api_base,
                sid,
                token,
                RetryPolicy::default(),
            )
            .context("building the Twilio REST client")?,
        ),
        _ => {
            tracing::warn!(
                "TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN not set: transfers will fail and fall back to the stream-ended <Dial>"
            );
            None
        }
    };
    let mut token_key = [0u8; 32];
    rand::fill(&mut token_key);
    Ok(Arc::new(AppState {
        stt: OnceLock::new(),
        store,
        records,
        metrics: Arc::new(Metrics::default()),
        rest,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?,
        token_key,
        active_calls: AtomicUsize::new(0),
        stt_load: stt_load::SttLoad::new(settings.stt.max_states),
        shutdown,
        book,
        settings,
    }))
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

/// Runs the server until SIGTERM/SIGINT, then drains live calls.
pub async fn serve(settings: Settings) -> Result<()> {
    let book = crate::setup::load_playbook(&settings)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let state = build_state(settings.clone(), book, stop_rx)?;
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
    let app = router(state.clone());
    let drain_state = state.clone();
    let failure = Arc::new(std::sync::Mutex::new(None));
    let failure_slot = failure.clone();
    axum::serve(listener, app.into_make_service())
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = shutdown_signal() => tracing::info!("shutting down: handing live callers to people"),
                Ok(e) = failed_rx => {
                    tracing::error!(error = %format!("{e:#}"), "cannot load the model");
                    *failure_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                }
            }
            let _ = stop_tx.send(true);
            // Give call tasks time to transfer their callers before connections are dropped.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while drain_state.active_calls.load(Ordering::SeqCst) > 0
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .context("server error")?;
    state.records.flush();
    if let Some(e) = failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e);
    }
    tracing::info!("stopped");
    Ok(())
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
