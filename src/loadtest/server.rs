//! The warmline a load test calls: one already running (`--url`), or one started in this
//! process on its own runtime, configured through the documented environment variables
//! (the stable contract, whatever shape the settings take inside) to talk to the fakes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::LoadtestOptions;
use super::fakes;
use super::providers::Provider;
use crate::config::Settings;

/// Threads of the in-process server start with this (its runtime, the record writer, and the
/// Whisper threads they spawn); everything else in the process is the load generator.
pub(super) const SERVER_THREAD_PREFIX: &str = "warmline-";
const SERVER_THREAD_NAME: &str = "warmline-srv";
const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) enum Server {
    InProcess(InProcess),
    Remote {
        base: String,
        pid: Option<u32>,
        /// Its AudioSocket listener (`--audiosocket`), for `--provider asterisk`.
        audiosocket: Option<SocketAddr>,
    },
}

impl Server {
    /// The `--url` server, or a new one in this process using the fakes at `fake_base`.
    pub(super) async fn for_run(opts: &LoadtestOptions, fake_base: &str) -> Result<Server> {
        Ok(match &opts.url {
            Some(url) => Server::Remote {
                base: url.trim_end_matches('/').to_string(),
                pid: opts.server_pid,
                audiosocket: opts.audiosocket,
            },
            None => Server::InProcess(InProcess::start(opts, fake_base).await?),
        })
    }

    pub(super) fn base(&self) -> &str {
        match self {
            Server::InProcess(s) => &s.base,
            Server::Remote { base, .. } => base,
        }
    }

    pub(super) fn audiosocket(&self) -> Option<SocketAddr> {
        match self {
            Server::InProcess(s) => s.audiosocket,
            Server::Remote { audiosocket, .. } => *audiosocket,
        }
    }

    /// The same server seen from outside, as a `--url` one (without its /proc entry).
    pub(super) fn remote_view(&self) -> Server {
        Server::Remote {
            base: self.base().to_string(),
            pid: None,
            audiosocket: self.audiosocket(),
        }
    }

    /// Where the server's /proc entry is, when it can be measured.
    pub(super) fn proc_dir(&self) -> Option<PathBuf> {
        match self {
            Server::InProcess(_) => Some(PathBuf::from("/proc/self")),
            Server::Remote { pid, .. } => pid.map(|p| PathBuf::from(format!("/proc/{p}"))),
        }
    }
}

/// warmline in this process, on its own runtime so its threads (and CPU time) are told apart
/// from the load generator's, as they would be in a separate `warmline serve`.
pub(super) struct InProcess {
    runtime: Option<tokio::runtime::Runtime>,
    base: String,
    audiosocket: Option<SocketAddr>,
    data_dir: PathBuf,
    _stop: watch::Sender<bool>,
}

impl InProcess {
    pub(super) async fn start(opts: &LoadtestOptions, fake_base: &str) -> Result<InProcess> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name(SERVER_THREAD_NAME)
            .build()
            .context("building the server runtime")?;
        let data_dir = std::env::temp_dir().join(format!(
            "warmline-loadtest-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        let audiosocket = match opts.provider {
            Provider::Asterisk => Some(free_loopback_port()?),
            _ => None,
        };
        let mut env = vec![
            ("WARMLINE_DATA_DIR", data_dir.display().to_string()),
            ("WARMLINE_VALIDATE_SIGNATURES", "true".to_string()),
            ("WARMLINE_API_TOKENS", opts.api_token.clone()),
        ];
        // Twilio is configured whatever the provider: its fake also takes the handoff webhook.
        env.extend(fakes::twilio::server_env(
            &opts.account_sid,
            &opts.auth_token,
            fake_base,
        ));
        env.extend(opts.provider.server_env(fake_base, audiosocket));
        let mut s = (*opts.settings).clone();
        apply(&mut s, &env)?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut server = InProcess {
            runtime: None,
            base: String::new(),
            audiosocket,
            data_dir,
            _stop: stop_tx,
        };
        // Spawned on the server runtime so the threads it creates carry the server's name.
        let booted = runtime.spawn(serve_in_process(s, stop_rx));
        server.runtime = Some(runtime);
        server.base = booted.await.context("in-process server start panicked")??;
        Ok(server)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        // Dropping a runtime from inside another runtime panics; let its threads wind down.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Sets `env` as `warmline serve` would read it from the environment.
fn apply(s: &mut Settings, env: &[(&'static str, String)]) -> Result<()> {
    s.apply_env(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
        .context("configuring the in-process server")
}

/// A port nothing listens on right now (the server binds it a moment later).
fn free_loopback_port() -> Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?)
}

async fn serve_in_process(mut s: Settings, stop: watch::Receiver<bool>) -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let base = format!("http://{addr}");
    apply(
        &mut s,
        &[
            ("WARMLINE_LISTEN", addr.to_string()),
            ("WARMLINE_PUBLIC_URL", base.clone()),
        ],
    )?;
    let load = s.clone();
    let (book, stt) = tokio::task::spawn_blocking(move || -> Result<_> {
        Ok((
            crate::setup::load_playbook(&load)?,
            crate::setup::load_stt(&load)?,
        ))
    })
    .await
    .context("model loader panicked")??;
    let state = crate::server::build_state(s, book, stop)?;
    let _ = state.stt.set(stt);
    let (_stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        // The stop sender lives as long as the server: the in-process server runs until the
        // load test's runtime is dropped.
        let _stop_tx = _stop_tx;
        crate::server::serve_listener(listener, state, stop_rx).await;
    });
    Ok(base)
}

/// Waits for `/healthz` (the model is loaded) and, for Asterisk, the AudioSocket listener.
pub(super) async fn wait_ready(http: &reqwest::Client, server: &Server) -> Result<()> {
    let base = server.base();
    let until = Instant::now() + READY_TIMEOUT;
    loop {
        let status = http.get(format!("{base}/healthz")).send().await;
        if status.as_ref().is_ok_and(|r| r.status().is_success()) {
            break;
        }
        if Instant::now() > until {
            bail!("{base}/healthz not ready after {READY_TIMEOUT:?}: {status:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let Some(addr) = server.audiosocket() else {
        return Ok(());
    };
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            // A probe that never sends the UUID frame is dropped by warmline as a bad start.
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > until => {
                bail!("the AudioSocket listener {addr} is not up after {READY_TIMEOUT:?}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
