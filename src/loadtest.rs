//! `warmline loadtest`: many callers at once against a real warmline, each driven exactly as
//! Twilio drives a call, to see what a caller feels when the line is busy.
//!
//! Per call: a signed voice webhook, the `<Connect><Stream>` answer parsed, the media WebSocket
//! opened with the answer's `<Parameter>`s, then a caller that behaves like the Twilio simulator
//! (`shared/tools/twilio-sim`): 20 ms media frames on a real-time clock (silence when not
//! talking), marks echoed once their audio would have finished playing, `clear` honoured, a
//! pause of `pause_before_ms` after each prompt ends, keypresses as `dtmf` events. A fake Twilio
//! REST API on loopback records each call update with its arrival time; decision latency is that
//! arrival minus the end of the fixture's trigger turn, i.e. what the caller waits for.
//!
//! Only loopback is ever contacted: this measures a developer's or a CI box's own server.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::tungstenite::Message;

use crate::audio::ulaw;
use crate::config::Settings;
use crate::replay::fixture::{Act, Fixture};
use crate::telephony::twilio::signature;

pub mod ceiling;
pub mod fakes;
mod machine;
pub mod providers;
mod scale;
pub use ceiling::{Ceiling, CeilingOptions, Search, Step};
pub use machine::Machine;
pub use providers::Provider;
pub use scale::InstanceFigures;

/// Credentials of the in-process server; start a `--url` server with these (or pass yours).
pub const TEST_ACCOUNT_SID: &str = "ACtest0000000000000000000000000000";
pub const TEST_AUTH_TOKEN: &str = "test-auth-token";
pub const MAX_CALLS: usize = 500;
pub const MAX_CONCURRENCY: usize = 100;

const FRAME_BYTES: usize = 160;
const FRAME_TIME: Duration = Duration::from_millis(20);
/// μ-law digital silence: what Twilio streams while the caller says nothing.
const SILENCE: [u8; FRAME_BYTES] = [0xFF; FRAME_BYTES];
/// Outbound audio louder than this (mean |sample|, 16-bit) is warmline talking; the
/// simulator's threshold, so near-silent padding does not count as a prompt still playing.
const VOICED_MEAN_ABS: u32 = 24;
// The caller's patience, as in the Twilio simulator.
const GREETING_TIMEOUT: Duration = Duration::from_secs(6);
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
const PROMPT_IDLE: Duration = Duration::from_millis(300);
const MAX_PROMPT: Duration = Duration::from_secs(45);
const DURING_PROMPT: Duration = Duration::from_secs(1);
/// A REST update racing warmline's own close of the stream by less than this still wins.
const CLOSE_RACE: Duration = Duration::from_millis(500);
/// Between Twilio's answer to the call update and its `stop` on the media stream.
const REDIRECT_DELAY: Duration = Duration::from_millis(100);
const POLL: Duration = Duration::from_millis(20);
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const CALLED: &str = "+15550009000";
/// Threads of the in-process server start with this (its runtime, the record writer, and the
/// Whisper threads they spawn); everything else in the process is the load generator.
const SERVER_THREAD_PREFIX: &str = "warmline-";
const SERVER_THREAD_NAME: &str = "warmline-srv";
/// /proc reports CPU time in USER_HZ ticks, fixed at 100 by the Linux ABI.
const TICKS_PER_SECOND: f64 = 100.0;

/// What to run; also the `warmline loadtest` command line.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadtestOptions {
    /// Calls to place in total (at most 500).
    #[arg(long, default_value_t = 20)]
    pub calls: usize,
    /// Calls in progress at once (at most 100).
    #[arg(long, default_value_t = 20)]
    pub concurrency: usize,
    /// A running warmline on loopback, given as its WARMLINE_PUBLIC_URL (webhooks are signed
    /// over it) and started with WARMLINE_TWILIO_API_BASE=http://127.0.0.1:<fake-port> (and
    /// WARMLINE_HANDOFF_WEBHOOK=http://127.0.0.1:<fake-port>/handoff). Without it the server
    /// runs in this process.
    #[arg(long)]
    pub url: Option<String>,
    /// Port of the fake Twilio REST API (required with --url; default: any free port).
    #[arg(long)]
    pub fake_port: Option<u16>,
    /// Fixture calls, files or directories (default: the transfer calls in fixtures/calls,
    /// placed round-robin).
    #[arg(long, num_args = 1..)]
    pub fixtures: Vec<PathBuf>,
    /// Stop placing and driving calls after this long and report what finished.
    #[arg(long, default_value_t = 600)]
    pub max_seconds: u64,
    /// A call neither transferred nor ended with a goodbye within this is lost.
    #[arg(long, default_value_t = 120)]
    pub call_timeout: u64,
    /// Spread the first `concurrency` call starts over this many seconds (0: all at once).
    #[arg(long, default_value_t = 0.0)]
    pub ramp_seconds: f64,
    /// Account SID the server was started with (REST basic auth is checked against it).
    #[arg(long, default_value = TEST_ACCOUNT_SID)]
    pub account_sid: String,
    /// Auth token the server was started with (signs webhooks, checks REST basic auth).
    #[arg(long, default_value = TEST_AUTH_TOKEN)]
    pub auth_token: String,
    /// Bearer token for reading call records (`/api/calls/{sid}`); with --url, one of the
    /// server's WARMLINE_API_TOKENS. The in-process server is started with it.
    #[arg(
        long,
        env = "WARMLINE_LOADTEST_API_TOKEN",
        default_value = "loadtest-api-token"
    )]
    pub api_token: String,
    /// Spread the calls over this many in-process instances (a simulated scale-out: one
    /// load balancer, N warmlines; with WARMLINE_DATABASE_URL set they share PostgreSQL).
    /// Reports per-instance and total figures.
    #[arg(long, default_value_t = 1)]
    pub instances: usize,
    /// Whose protocol the callers speak (its webhooks, signatures, media stream and REST
    /// API, all faked on loopback). Other than twilio: in-process server only.
    #[arg(long, value_enum, default_value_t = Provider::Twilio)]
    pub provider: Provider,
    /// With --url: the server's pid, for CPU and memory per call.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Settings for the in-process server (the --config file and the environment).
    /// (Boxed: settings are large, and these options sit in the CLI's command enum.)
    #[arg(skip)]
    pub settings: Box<Settings>,
}

impl LoadtestOptions {
    fn check(&self) -> Result<()> {
        if !(1..=MAX_CALLS).contains(&self.calls) {
            bail!("--calls must be 1..={MAX_CALLS}");
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            bail!("--concurrency must be 1..={MAX_CONCURRENCY}");
        }
        if self.max_seconds == 0 || self.call_timeout == 0 {
            bail!("--max-seconds and --call-timeout must be at least 1");
        }
        if !(self.ramp_seconds.is_finite() && self.ramp_seconds >= 0.0) {
            bail!("--ramp-seconds must be a non-negative number");
        }
        scale::check(self)?;
        if self.provider != Provider::Twilio && self.url.is_some() {
            bail!(
                "--provider {} runs its own server: it cannot be combined with --url",
                self.provider.name()
            );
        }
        match (&self.url, self.fake_port, self.server_pid) {
            (Some(url), Some(_), _) => require_loopback(url),
            (Some(_), None, _) => {
                bail!("--url needs --fake-port: the port its WARMLINE_TWILIO_API_BASE points at")
            }
            (None, _, Some(_)) => bail!("--server-pid only makes sense with --url"),
            (None, _, None) => Ok(()),
        }
    }

    fn ramp_delay(&self, n: usize) -> Duration {
        if n >= self.concurrency {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(self.ramp_seconds * n as f64 / self.concurrency as f64)
    }
}

/// Refuses anything but 127.0.0.1 / localhost: load is only ever put on one's own machine.
fn require_loopback(url: &str) -> Result<()> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("not a URL: {url}"))?;
    match parsed.host_str() {
        Some("127.0.0.1" | "localhost") => Ok(()),
        host => bail!("refusing {url}: loopback only (127.0.0.1 or localhost), not {host:?}"),
    }
}

/// Places the calls, waits for them (or `max_seconds`), and measures.
pub async fn run(opts: LoadtestOptions) -> Result<Report> {
    opts.check()?;
    if opts.instances > 1 {
        return scale::run(opts).await;
    }
    let (fixtures, fixture_note) = load_fixtures(&opts.fixtures)?;
    let (fake, fake_task) = FakeTwilio::start(
        opts.fake_port.unwrap_or(0),
        &opts.account_sid,
        &opts.auth_token,
    )
    .await?;
    let result = match Server::for_run(&opts, &fake).await {
        Ok(server) => run_against(&opts, fixtures, fixture_note, fake, &server).await,
        Err(e) => Err(e),
    };
    fake_task.abort();
    result
}

/// One run's calls against `server` (which may serve several runs: `--find-ceiling`).
async fn run_against(
    opts: &LoadtestOptions,
    fixtures: Vec<Arc<Fixture>>,
    fixture_note: String,
    fake: Arc<FakeTwilio>,
    server: &Server,
) -> Result<Report> {
    let mut auth = reqwest::header::HeaderMap::new();
    auth.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", opts.api_token)
            .parse()
            .context("--api-token is not a valid header value")?,
    );
    let http = reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .default_headers(auth)
        .build()
        .context("building the HTTP client")?;
    wait_ready(&http, server.base()).await?;
    let before = Snapshot::take(&http, server).await?;
    let sampler = server.proc_dir().map(RssSampler::start);
    let (account_sid, auth_token) = opts
        .provider
        .credentials(&opts.account_sid, &opts.auth_token);
    let ctx = Arc::new(Ctx {
        base: server.base().to_string(),
        provider: opts.provider,
        account_sid,
        auth_token,
        http: http.clone(),
        fake: fake.clone(),
        call_timeout: Duration::from_secs(opts.call_timeout),
        deadline: Instant::now() + Duration::from_secs(opts.max_seconds),
        live: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
    });
    let started = Instant::now();
    let calls = place_calls(&ctx, &fixtures, opts).await;
    let wall = started.elapsed();
    let after = Snapshot::take(&http, server).await?;
    let sampled_peak_kb = sampler.map(RssSampler::stop);
    let measured = Measured {
        server: match server {
            Server::InProcess(_) => "in-process".into(),
            Server::Remote { base, .. } => base.clone(),
        },
        fixture_note,
        opts: opts.clone(),
        wall,
        peak_concurrency: ctx.peak.load(Ordering::SeqCst),
        before,
        after,
        sampled_peak_kb,
        in_process: matches!(server, Server::InProcess(_)),
    };
    Ok(Report::build(calls, &measured))
}

/// Fixture files, each loaded once (audio as μ-law via `read_ulaw`) and shared by its calls.
fn load_fixtures(given: &[PathBuf]) -> Result<(Vec<Arc<Fixture>>, String)> {
    let defaulted = given.is_empty();
    let roots = if defaulted {
        vec![PathBuf::from("fixtures/calls")]
    } else {
        given.to_vec()
    };
    let paths = crate::replay::expand_paths(&roots).context("listing fixture calls")?;
    let mut fixtures = Vec::new();
    for path in &paths {
        let fixture = Fixture::load(path)?;
        // The default mix is what the latency target is about: calls that end in a transfer.
        if !defaulted || fixture.expect.transfer {
            fixtures.push(Arc::new(fixture));
        }
    }
    if fixtures.is_empty() {
        bail!("no fixture calls in {roots:?}");
    }
    let note = if defaulted {
        format!(
            "{} transfer calls from fixtures/calls, round-robin",
            fixtures.len()
        )
    } else {
        format!("{} fixture calls, round-robin", fixtures.len())
    };
    Ok((fixtures, note))
}

async fn wait_ready(http: &reqwest::Client, base: &str) -> Result<()> {
    let until = Instant::now() + READY_TIMEOUT;
    loop {
        let status = http.get(format!("{base}/healthz")).send().await;
        if status.as_ref().is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        if Instant::now() > until {
            bail!("{base}/healthz not ready after {READY_TIMEOUT:?}: {status:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// ------------------------------------------------------------------------------ the server

enum Server {
    InProcess(InProcess),
    Remote { base: String, pid: Option<u32> },
}

impl Server {
    /// The `--url` server, or a new one in this process reporting to `fake`.
    async fn for_run(opts: &LoadtestOptions, fake: &FakeTwilio) -> Result<Server> {
        Ok(match &opts.url {
            Some(url) => Server::Remote {
                base: url.trim_end_matches('/').to_string(),
                pid: opts.server_pid,
            },
            None => Server::InProcess(InProcess::start(opts, fake.addr).await?),
        })
    }

    fn base(&self) -> &str {
        match self {
            Server::InProcess(s) => &s.base,
            Server::Remote { base, .. } => base,
        }
    }

    /// Where the server's /proc entry is, when it can be measured.
    fn proc_dir(&self) -> Option<PathBuf> {
        match self {
            Server::InProcess(_) => Some(PathBuf::from("/proc/self")),
            Server::Remote { pid, .. } => pid.map(|p| PathBuf::from(format!("/proc/{p}"))),
        }
    }
}

/// warmline in this process, on its own runtime so its threads (and CPU time) are told apart
/// from the load generator's, as they would be in a separate `warmline serve`.
struct InProcess {
    runtime: Option<tokio::runtime::Runtime>,
    base: String,
    data_dir: PathBuf,
    _stop: watch::Sender<bool>,
}

impl InProcess {
    async fn start(opts: &LoadtestOptions, fake: SocketAddr) -> Result<InProcess> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name(SERVER_THREAD_NAME)
            .build()
            .context("building the server runtime")?;
        let data_dir = std::env::temp_dir().join(format!(
            "warmline-loadtest-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_millis()
        ));
        let mut s = (*opts.settings).clone();
        s.data_dir = data_dir.clone();
        s.twilio_account_sid = Some(opts.account_sid.clone());
        s.twilio_auth_token = Some(opts.auth_token.clone());
        s.twilio_api_base = format!("http://{fake}");
        s.handoff_webhook = Some(format!("http://{fake}/handoff"));
        opts.provider.configure(&mut s, &format!("http://{fake}"));
        s.validate_signatures = true;
        s.api_tokens = vec![opts.api_token.clone()];
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut server = InProcess {
            runtime: None,
            base: String::new(),
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

async fn serve_in_process(mut s: Settings, stop: watch::Receiver<bool>) -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    s.listen = addr;
    s.public_url = format!("http://{addr}");
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
    Ok(format!("http://{addr}"))
}

// ------------------------------------------------------------------------ fake Twilio REST

/// A call update the fake REST API accepted.
#[derive(Debug)]
struct Update {
    at: Instant,
    twiml: String,
}

#[derive(Default)]
struct FakeCall {
    waiter: Option<oneshot::Sender<Update>>,
    card: Option<Value>,
}

/// api.twilio.com's call-update endpoint (basic auth checked) and the handoff webhook.
struct FakeTwilio {
    addr: SocketAddr,
    /// (account, `Authorization` header) pairs accepted: Twilio's and the SignalWire space's.
    accounts: Vec<(String, String)>,
    calls: Mutex<HashMap<String, FakeCall>>,
    rejected: AtomicU64,
}

impl FakeTwilio {
    async fn start(
        port: u16,
        account_sid: &str,
        auth_token: &str,
    ) -> Result<(Arc<FakeTwilio>, JoinHandle<()>)> {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("binding the fake Twilio REST API on 127.0.0.1:{port}"))?;
        let fake = Arc::new(FakeTwilio {
            addr: listener.local_addr()?,
            accounts: [
                (account_sid, auth_token),
                (
                    providers::signalwire::PROJECT,
                    providers::signalwire::API_TOKEN,
                ),
            ]
            .iter()
            .map(|(acct, token)| {
                (
                    acct.to_string(),
                    format!("Basic {}", BASE64.encode(format!("{acct}:{token}"))),
                )
            })
            .collect(),
            calls: Mutex::default(),
            rejected: AtomicU64::new(0),
        });
        let app = Router::new()
            .route(
                "/2010-04-01/Accounts/{acct}/Calls/{call}",
                post(fake_update),
            )
            .route(providers::signalwire::LAML_UPDATE, post(fake_update))
            .route("/handoff", post(fake_card))
            .with_state(fake.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok((fake, task))
    }

    /// The first accepted update for this call arrives on the returned channel.
    fn expect(&self, call_sid: &str) -> oneshot::Receiver<Update> {
        let (tx, rx) = oneshot::channel();
        lock(&self.calls)
            .entry(call_sid.to_string())
            .or_default()
            .waiter = Some(tx);
        rx
    }

    fn card(&self, call_sid: &str) -> Option<Value> {
        lock(&self.calls).get(call_sid).and_then(|c| c.card.clone())
    }
}

async fn fake_update(
    State(f): State<Arc<FakeTwilio>>,
    UrlPath((acct, call)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, Json<Value>) {
    // Stamped before anything else: this is the moment the transfer reached "Twilio".
    let at = Instant::now();
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    let known = f
        .accounts
        .iter()
        .any(|(a, authorization)| *a == acct && auth == Some(authorization.as_str()));
    if !known {
        f.rejected.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::UNAUTHORIZED, Json(json!({"code": 20003})));
    }
    let call = call.trim_end_matches(".json");
    // Twilio's transfer carries TwiML; SignalWire's the URL of warmline's transfer document.
    let twiml = form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "Twiml" || k == "Url")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let waiter = lock(&f.calls).get_mut(call).and_then(|c| c.waiter.take());
    if let Some(w) = waiter {
        let _ = w.send(Update { at, twiml });
    } else if !lock(&f.calls).contains_key(call) {
        f.rejected.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::NOT_FOUND, Json(json!({"code": 20404})));
    }
    (
        StatusCode::OK,
        Json(json!({"sid": call, "status": "in-progress"})),
    )
}

async fn fake_card(State(f): State<Arc<FakeTwilio>>, Json(card): Json<Value>) -> StatusCode {
    let sid = card["call_sid"].as_str().unwrap_or_default().to_string();
    lock(&f.calls).entry(sid).or_default().card = Some(card);
    StatusCode::OK
}

/// A lock that only guards plain data: a panicked holder leaves nothing half-done.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------- the calls

/// What every call needs.
struct Ctx {
    base: String,
    provider: Provider,
    /// The account webhooks carry and the secret that signs them (the provider's).
    account_sid: String,
    auth_token: String,
    http: reqwest::Client,
    fake: Arc<FakeTwilio>,
    call_timeout: Duration,
    deadline: Instant,
    live: AtomicUsize,
    peak: AtomicUsize,
}

/// How a call ended.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "end", rename_all = "snake_case")]
pub enum End {
    /// The REST call update (a `<Dial>`) arrived.
    Transferred,
    /// Sent to a person by TwiML instead: the voice webhook's or `/twilio/stream-ended`'s `<Dial>`.
    FallbackDial,
    /// warmline said goodbye and closed the stream; stream-ended answered `<Hangup/>`.
    Goodbye,
    /// Neither a transfer nor a goodbye: the caller was lost.
    Failed { reason: String },
    /// Still running when `--max-seconds` ran out (not judged).
    CutOff,
}

/// One call's result.
#[derive(Debug, Clone, Serialize)]
pub struct CallOutcome {
    pub n: usize,
    pub call_sid: String,
    pub fixture: String,
    #[serde(flatten)]
    pub end: End,
    /// REST update arrival − end of the trigger turn's audio.
    pub decision_latency_ms: Option<f64>,
    /// The transfer came before the trigger turn had been fully spoken.
    pub early: bool,
    /// warmline handed the caller over because it was at capacity.
    pub overload: bool,
    pub queue: Option<String>,
    /// How the outcome differs from the fixture's expectation, if it does.
    pub unexpected: Option<String>,
    pub frames_sent: u64,
    /// Frames sent more than one frame period behind the real-time clock.
    pub frames_late: u64,
    pub worst_late_ms: f64,
    /// End of the trigger turn's audio → warmline had the transcript that led to the transfer
    /// (endpointing + STT queue + STT; call clocks aligned at `start`, so ±a few ms).
    pub transcript_ms: Option<f64>,
    /// warmline held a routine transfer in case the caller went on.
    pub held: bool,
    #[serde(skip)]
    connected: Option<Instant>,
    #[serde(skip)]
    trigger_end: Option<Instant>,
}

impl CallOutcome {
    fn new(n: usize, fixture: &Fixture) -> CallOutcome {
        let mut id = [0u8; 16];
        rand::fill(&mut id);
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        CallOutcome {
            n,
            call_sid: format!("CA{hex}"),
            fixture: fixture.id.clone(),
            end: End::Failed {
                reason: "not finished".into(),
            },
            decision_latency_ms: None,
            early: false,
            overload: false,
            queue: None,
            unexpected: None,
            frames_sent: 0,
            frames_late: 0,
            worst_late_ms: 0.0,
            transcript_ms: None,
            held: false,
            connected: None,
            trigger_end: None,
        }
    }

    fn caller_number(&self) -> String {
        format!("+1555{:07}", 2_000_000 + self.n)
    }

    fn absorb(&mut self, wire: WireStats) {
        self.frames_sent = wire.frames;
        self.frames_late = wire.late;
        self.worst_late_ms = wire.worst_late.as_secs_f64() * 1000.0;
    }
}

/// Places calls in order, at most `concurrency` at a time (a new one as soon as one ends),
/// until all are placed or the deadline passes.
async fn place_calls(
    ctx: &Arc<Ctx>,
    fixtures: &[Arc<Fixture>],
    opts: &LoadtestOptions,
) -> Vec<CallOutcome> {
    let permits = Arc::new(Semaphore::new(opts.concurrency));
    let deadline = tokio::time::Instant::from_std(ctx.deadline);
    let started = tokio::time::Instant::now();
    let mut tasks = JoinSet::new();
    for n in 0..opts.calls {
        tokio::time::sleep_until((started + opts.ramp_delay(n)).min(deadline)).await;
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.ok(),
            _ = tokio::time::sleep_until(deadline) => None,
        };
        let Some(permit) = permit.filter(|_| Instant::now() < ctx.deadline) else {
            break;
        };
        let ctx = ctx.clone();
        let fixture = fixtures[n % fixtures.len()].clone();
        tasks.spawn(async move {
            let _permit = permit;
            run_call(&ctx, n, &fixture).await
        });
    }
    let mut done = tasks.join_all().await;
    done.sort_by_key(|c| c.n);
    done
}

async fn run_call(ctx: &Ctx, n: usize, fixture: &Fixture) -> CallOutcome {
    let live = ctx.live.fetch_add(1, Ordering::SeqCst) + 1;
    ctx.peak.fetch_max(live, Ordering::SeqCst);
    let mut out = CallOutcome::new(n, fixture);
    if let Err(e) = drive_call(ctx, fixture, &mut out).await {
        out.end = End::Failed {
            reason: format!("{e:#}"),
        };
    }
    ctx.live.fetch_sub(1, Ordering::SeqCst);
    if matches!(out.end, End::Transferred | End::FallbackDial) {
        inspect_handoff(ctx, fixture, &mut out).await;
    }
    out.unexpected = out.unexpected.take().or_else(|| unexpected(fixture, &out));
    out
}

/// Why the end differs from what the fixture expects (the queue is checked with the record).
fn unexpected(fixture: &Fixture, out: &CallOutcome) -> Option<String> {
    let transferred = matches!(out.end, End::Transferred | End::FallbackDial);
    match (&out.end, fixture.expect.transfer) {
        (End::Goodbye, true) => Some("goodbye, but a transfer was expected".into()),
        (_, false) if transferred => Some("transferred, but no transfer was expected".into()),
        _ => None,
    }
}

/// One whole call, webhook to end; `out` is filled in as it goes.
async fn drive_call(ctx: &Ctx, fixture: &Fixture, out: &mut CallOutcome) -> Result<()> {
    let mut transfer = ctx.fake.expect(&out.call_sid);
    let answer = voice_webhook(ctx, out).await?;
    let Some(stream_url) = answer.stream_url.clone() else {
        // Straight to a person from the webhook: warmline was full or not ready.
        if !answer.dial {
            bail!("voice webhook answered neither <Stream> nor <Dial>");
        }
        out.end = End::FallbackDial;
        out.overload = true;
        return Ok(());
    };
    let Stream {
        heard,
        cmds,
        mut wire,
    } = open_stream(ctx, out, &answer, &stream_url).await?;
    let mut turn_ends = vec![None; fixture.turns.len()];
    let connected = Instant::now();
    out.connected = Some(connected);
    let ending = tokio::select! {
        never = script(fixture, &heard, &cmds, &mut turn_ends, connected) => match never {},
        update = &mut transfer => match update {
            Ok(u) => Ending::Rest(u),
            Err(_) => Ending::Timeout,
        },
        stats = &mut wire => Ending::Closed(stats.unwrap_or_default()),
        _ = tokio::time::sleep(ctx.call_timeout) => Ending::Timeout,
        _ = tokio::time::sleep_until(ctx.deadline.into()) => Ending::CutOff,
    };
    let update = match ending {
        Ending::Closed(stats) => {
            out.absorb(stats);
            after_server_close(ctx, out, &answer, transfer).await?
        }
        Ending::Rest(update) => {
            // Twilio answers the REST request before it moves the call off the stream.
            tokio::time::sleep(REDIRECT_DELAY).await;
            stop_stream(&cmds, wire, out).await;
            Some(update)
        }
        Ending::CutOff => {
            stop_stream(&cmds, wire, out).await;
            out.end = End::CutOff;
            None
        }
        Ending::Timeout => {
            stop_stream(&cmds, wire, out).await;
            bail!(
                "neither a transfer nor a goodbye within {} s",
                ctx.call_timeout.as_secs()
            );
        }
    };
    if let Some(update) = update {
        settle_transfer(ctx.provider, fixture, out, &update, &turn_ends)?;
    }
    Ok(())
}

/// A media stream being driven: what the caller hears, its commands, and the wire task.
struct Stream {
    heard: Arc<Mutex<Heard>>,
    cmds: mpsc::Sender<Cmd>,
    wire: JoinHandle<WireStats>,
}

/// Opens the media WebSocket the TwiML named and starts the wire (`connected`, `start`, clock).
async fn open_stream(
    ctx: &Ctx,
    out: &CallOutcome,
    answer: &VoiceAnswer,
    url: &str,
) -> Result<Stream> {
    require_loopback(url)?;
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .context("opening the media WebSocket")?;
    let heard = Arc::new(Mutex::new(Heard::default()));
    let (cmds, cmd_rx) = mpsc::channel(4);
    let stream_sid = format!("MZ{}", &out.call_sid[2..]);
    let start = start_message(&stream_sid, &ctx.account_sid, &out.call_sid, &answer.params);
    let wire = Wire::new(ws, stream_sid, heard.clone());
    let wire = tokio::spawn(wire.run(start, cmd_rx));
    Ok(Stream { heard, cmds, wire })
}

/// The caller's side ends the stream as Twilio does once the call leaves it: `stop`, close.
async fn stop_stream(cmds: &mpsc::Sender<Cmd>, wire: JoinHandle<WireStats>, out: &mut CallOutcome) {
    let _ = cmds.send(Cmd::Stop).await;
    if let Ok(Ok(stats)) = tokio::time::timeout(Duration::from_secs(5), wire).await {
        out.absorb(stats);
    }
}

enum Ending {
    Rest(Update),
    Closed(WireStats),
    Timeout,
    CutOff,
}

/// warmline closed the stream itself: a late REST update still counts, else Twilio runs the
/// `<Connect action>` (goodbye → `<Hangup/>`, anything else → a `<Dial>` to a person).
async fn after_server_close(
    ctx: &Ctx,
    out: &mut CallOutcome,
    answer: &VoiceAnswer,
    mut transfer: oneshot::Receiver<Update>,
) -> Result<Option<Update>> {
    tokio::time::sleep(CLOSE_RACE).await;
    if let Ok(update) = transfer.try_recv() {
        return Ok(Some(update));
    }
    let Some(action) = &answer.action else {
        bail!("warmline closed the stream and the TwiML has no <Connect action>");
    };
    require_loopback(action)?;
    let params = form(&[
        ("AccountSid", &ctx.account_sid),
        ("CallSid", &out.call_sid),
        ("CallStatus", "in-progress"),
        ("Direction", "inbound"),
        ("From", &out.caller_number()),
        ("To", CALLED),
    ]);
    let body = signed_post(ctx, action, &params).await?;
    out.end = if body.contains("<Hangup") {
        End::Goodbye
    } else if body.contains("<Dial") {
        End::FallbackDial
    } else {
        bail!("stream-ended answered neither <Dial> nor <Hangup/>: {body}");
    };
    Ok(None)
}

/// Records a REST transfer and its latency against the fixture's trigger turn.
fn settle_transfer(
    provider: Provider,
    fixture: &Fixture,
    out: &mut CallOutcome,
    update: &Update,
    turn_ends: &[Option<Instant>],
) -> Result<()> {
    if !provider.is_transfer(&update.twiml) {
        bail!("REST call update that is not a transfer: {}", update.twiml);
    }
    out.end = End::Transferred;
    let trigger_end = fixture
        .expect
        .trigger_turn
        .and_then(|t| turn_ends.get(t).copied().flatten());
    match trigger_end {
        Some(end) => {
            out.decision_latency_ms = Some(signed_ms(update.at, end));
            out.trigger_end = Some(end);
        }
        None => out.early = fixture.expect.trigger_turn.is_some(),
    }
    Ok(())
}

/// Reads the stored record (and the card the webhook got) for overload and the queue.
async fn inspect_handoff(ctx: &Ctx, fixture: &Fixture, out: &mut CallOutcome) {
    let url = format!("{}/api/calls/{}", ctx.base, out.call_sid);
    let record: Value = match ctx.http.get(&url).send().await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    let card = ctx.fake.card(&out.call_sid);
    let card = card.as_ref().unwrap_or(&record["handoff"]);
    out.overload |= cites_overload(&record, card);
    out.held = decisions(&record).iter().any(|d| d["decision"] == "hold");
    out.transcript_ms = transcript_delay(&record, out);
    out.queue = card["queue"].as_str().map(str::to_string);
    let wanted = fixture
        .expect
        .queue
        .as_ref()
        .map(|q| q.to_vec())
        .unwrap_or_default();
    if let Some(q) = &out.queue
        && !wanted.is_empty()
        && !wanted.contains(q)
    {
        out.unexpected = Some(format!("queue {q}, expected {}", wanted.join("/")));
    }
}

/// `a − b` in ms, negative when `a` came first.
fn signed_ms(a: Instant, b: Instant) -> f64 {
    if a >= b {
        (a - b).as_secs_f64() * 1000.0
    } else {
        -((b - a).as_secs_f64() * 1000.0)
    }
}

fn decisions(record: &Value) -> &[Value] {
    record["decisions"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
}

/// When warmline had the transcript that led to the transfer (its last caller line before
/// the transfer decision), relative to the end of the trigger turn's audio.
fn transcript_delay(record: &Value, out: &CallOutcome) -> Option<f64> {
    let (connected, trigger_end) = (out.connected?, out.trigger_end?);
    let transfer_ms = decisions(record)
        .iter()
        .find(|d| d["decision"] == "transfer")?["t_ms"]
        .as_u64()?;
    let heard_ms = record["transcript"]
        .as_array()?
        .iter()
        .filter(|l| l["speaker"] == "caller")
        .filter_map(|l| l["t_ms"].as_u64())
        .filter(|&t| t <= transfer_ms)
        .max()?;
    Some(signed_ms(
        connected + Duration::from_millis(heard_ms),
        trigger_end,
    ))
}

/// The call was handed over because warmline was at capacity (its decisions say so).
fn cites_overload(record: &Value, card: &Value) -> bool {
    let decided = decisions(record).iter().any(|d| {
        let detail = d["detail"].as_str().unwrap_or_default();
        d["decision"] == "overload"
            || (d["decision"] == "stt_failure" && detail.contains("capacity"))
    });
    decided
        || card["reason"]
            .as_str()
            .is_some_and(|r| r.contains("overload"))
}

fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn signed_post(ctx: &Ctx, url: &str, params: &[(String, String)]) -> Result<String> {
    let sig = signature::compute(&ctx.auth_token, url, params);
    let response = ctx
        .http
        .post(url)
        .header(ctx.provider.signature_header(), sig)
        .form(params)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("POST {url}: HTTP {status}: {body}");
    }
    Ok(body)
}

/// What the voice webhook answered.
#[derive(Debug, Default, PartialEq)]
struct VoiceAnswer {
    stream_url: Option<String>,
    action: Option<String>,
    params: Vec<(String, String)>,
    dial: bool,
}

impl VoiceAnswer {
    fn parse(xml: &str) -> VoiceAnswer {
        let mut params = Vec::new();
        let mut rest = xml;
        while let Some(i) = rest.find("<Parameter ") {
            rest = &rest[i..];
            if let (Some(k), Some(v)) = (
                attr(rest, "Parameter", "name"),
                attr(rest, "Parameter", "value"),
            ) {
                params.push((k, v));
            }
            rest = &rest[1..];
        }
        VoiceAnswer {
            stream_url: attr(xml, "Stream", "url"),
            action: attr(xml, "Connect", "action"),
            params,
            dial: xml.contains("<Dial"),
        }
    }
}

/// The first `<tag ...>`'s attribute, unescaped.
fn attr(xml: &str, tag: &str, name: &str) -> Option<String> {
    let open = xml.find(&format!("<{tag} "))?;
    let element = &xml[open..open + xml[open..].find('>')?];
    let key = format!(" {name}=\"");
    let start = element.find(&key)? + key.len();
    let len = element[start..].find('"')?;
    Some(unescape(&element[start..start + len]))
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

async fn voice_webhook(ctx: &Ctx, out: &CallOutcome) -> Result<VoiceAnswer> {
    let url = format!("{}/{}/voice", ctx.base, ctx.provider.prefix());
    let from = out.caller_number();
    let params = form(&[
        ("AccountSid", &ctx.account_sid),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", &out.call_sid),
        ("CallStatus", "ringing"),
        ("Called", CALLED),
        ("Caller", &from),
        ("Direction", "inbound"),
        ("From", &from),
        ("To", CALLED),
    ]);
    Ok(VoiceAnswer::parse(&signed_post(ctx, &url, &params).await?))
}

fn start_message(
    stream_sid: &str,
    account_sid: &str,
    call_sid: &str,
    params: &[(String, String)],
) -> Value {
    let custom: serde_json::Map<String, Value> = params
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({
        "event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
        "start": {"streamSid": stream_sid, "accountSid": account_sid, "callSid": call_sid,
                  "tracks": ["inbound"], "customParameters": custom,
                  "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}
    })
}

// --------------------------------------------------------------- the caller's side: script

/// What the caller has heard of warmline so far (the wire updates it, the script reads it).
#[derive(Debug, Default, Clone, Copy)]
struct Heard {
    /// Arrival of the last non-silent outbound media.
    last_voiced_rx: Option<Instant>,
    /// When everything sent so far, pauses included, will have finished playing.
    played_until: Option<Instant>,
}

impl Heard {
    fn spoke_after(&self, t: Instant) -> bool {
        self.last_voiced_rx.is_some_and(|r| r > t)
    }

    /// Warmline's prompt has finished playing and nothing new has come for a moment.
    /// Unlike the simulator (which waits for the end of the last *voiced* audio), the pauses
    /// between a prompt's sentences (up to 340 ms, longer than `PROMPT_IDLE`) must not count
    /// as the end, or the caller talks over the rest of the prompt and triggers a barge-in.
    fn idle(&self, now: Instant) -> bool {
        self.played_until.is_none_or(|e| now >= e)
            && self
                .last_voiced_rx
                .is_none_or(|r| now.duration_since(r) >= PROMPT_IDLE)
    }
}

/// The caller's turns, timed like the Twilio simulator; `ends[i]` is when turn `i`'s last
/// frame (or key) went out. Never returns: after the last turn the line stays open until
/// warmline transfers or hangs up (the select in `drive_call` ends the call).
async fn script(
    fixture: &Fixture,
    heard: &Mutex<Heard>,
    cmds: &mpsc::Sender<Cmd>,
    ends: &mut [Option<Instant>],
    connected: Instant,
) -> Infallible {
    let mut since = connected;
    for (i, turn) in fixture.turns.iter().enumerate() {
        let patience = if i == 0 {
            GREETING_TIMEOUT
        } else {
            REPLY_TIMEOUT
        };
        if turn.during_prompt {
            // Barge-in: start talking a second into warmline's prompt.
            if wait_reply(heard, since, patience, true).await {
                tokio::time::sleep(DURING_PROMPT).await;
            }
        } else if wait_reply(heard, since, patience, false).await || i == 0 {
            tokio::time::sleep(Duration::from_millis(turn.pause_before_ms)).await;
        }
        let Some(end) = act(cmds, &turn.act).await else {
            break; // the wire is gone; `drive_call` sees it end
        };
        ends[i] = Some(end);
        since = end;
    }
    std::future::pending().await
}

/// Waits for warmline to start talking after `after` and, unless `started_only`, to finish.
/// False if it said nothing within `patience` (the caller then goes on anyway).
async fn wait_reply(
    heard: &Mutex<Heard>,
    after: Instant,
    patience: Duration,
    started_only: bool,
) -> bool {
    while !lock(heard).spoke_after(after) {
        if after.elapsed() > patience {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
    let began = Instant::now();
    while !started_only && !lock(heard).idle(Instant::now()) && began.elapsed() < MAX_PROMPT {
        tokio::time::sleep(POLL).await;
    }
    true
}

/// Has the wire speak or press; returns when the last frame or the key went out.
async fn act(cmds: &mpsc::Sender<Cmd>, act: &Act) -> Option<Instant> {
    let (done, finished) = oneshot::channel();
    let cmd = match act {
        Act::Speak { ulaw, .. } => Cmd::Speak(Arc::from(ulaw.as_slice()), done),
        Act::Press(digit) => Cmd::Press(*digit, done),
    };
    cmds.send(cmd).await.ok()?;
    finished.await.ok()
}

// ------------------------------------------------------------------ the caller's side: wire

enum Cmd {
    Speak(Arc<[u8]>, oneshot::Sender<Instant>),
    Press(char, oneshot::Sender<Instant>),
    Stop,
}

/// How well the caller's 20 ms clock kept time (a late clock delays endpointing too).
#[derive(Debug, Default, Clone, Copy)]
struct WireStats {
    frames: u64,
    late: u64,
    worst_late: Duration,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Talk {
    audio: Arc<[u8]>,
    at: usize,
    done: oneshot::Sender<Instant>,
}

/// The media stream as Twilio runs it: a real-time frame clock, and a model of what is
/// playing to the caller so marks come back when their audio has been heard.
struct Wire {
    ws: Ws,
    stream_sid: String,
    seq: u64,
    chunk: u64,
    heard: Arc<Mutex<Heard>>,
    playback_end: Instant,
    marks: VecDeque<(String, Instant)>,
    talk: Option<Talk>,
    stats: WireStats,
}

impl Wire {
    fn new(ws: Ws, stream_sid: String, heard: Arc<Mutex<Heard>>) -> Wire {
        Wire {
            ws,
            stream_sid,
            seq: 1,
            chunk: 0,
            heard,
            playback_end: Instant::now(),
            marks: VecDeque::new(),
            talk: None,
            stats: WireStats::default(),
        }
    }

    /// Runs until warmline closes the stream or the caller's side stops it.
    async fn run(mut self, start: Value, mut cmds: mpsc::Receiver<Cmd>) -> WireStats {
        let hello = json!({"event": "connected", "protocol": "Call", "version": "1.0.0"});
        if !self.send(&hello).await || !self.send(&start).await {
            return self.stats;
        }
        // Burst: a clock that fell behind catches up, as a jittery network would deliver.
        let mut tick = tokio::time::interval(FRAME_TIME);
        loop {
            let alive = tokio::select! {
                due = tick.tick() => self.on_tick(due.into_std()).await,
                msg = self.ws.next() => self.on_message(msg).await,
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::Stop) | None => break,
                    Some(cmd) => self.on_cmd(cmd).await,
                },
            };
            if !alive {
                return self.stats;
            }
        }
        self.seq += 1;
        let stop = json!({"event": "stop", "sequenceNumber": self.seq.to_string(),
                          "streamSid": self.stream_sid, "stop": {}});
        let _ = self.send(&stop).await;
        let _ = self.ws.close(None).await;
        self.stats
    }

    async fn send(&mut self, v: &Value) -> bool {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .is_ok()
    }

    /// One frame of the caller's line, and any marks whose audio has now played.
    async fn on_tick(&mut self, due: Instant) -> bool {
        let late = due.elapsed();
        self.stats.frames += 1;
        if late > FRAME_TIME {
            self.stats.late += 1;
        }
        self.stats.worst_late = self.stats.worst_late.max(late);
        let now = Instant::now();
        while self.marks.front().is_some_and(|(_, at)| *at <= now) {
            if let Some((name, _)) = self.marks.pop_front()
                && !self.echo_mark(&name).await
            {
                return false;
            }
        }
        let (frame, last) = match &mut self.talk {
            Some(t) => {
                let frame = t.audio[t.at..(t.at + FRAME_BYTES).min(t.audio.len())].to_vec();
                t.at += FRAME_BYTES;
                (frame, t.at >= t.audio.len())
            }
            None => (SILENCE.to_vec(), false),
        };
        if !self.send_media(&frame).await {
            return false;
        }
        if last && let Some(t) = self.talk.take() {
            let _ = t.done.send(Instant::now());
        }
        true
    }

    async fn send_media(&mut self, frame: &[u8]) -> bool {
        self.seq += 1;
        self.chunk += 1;
        let msg = json!({"event": "media", "sequenceNumber": self.seq.to_string(),
                         "streamSid": self.stream_sid,
                         "media": {"track": "inbound", "chunk": self.chunk.to_string(),
                                   "timestamp": (self.chunk * 20).to_string(),
                                   "payload": BASE64.encode(frame)}});
        self.send(&msg).await
    }

    async fn echo_mark(&mut self, name: &str) -> bool {
        self.seq += 1;
        let msg = json!({"event": "mark", "sequenceNumber": self.seq.to_string(),
                         "streamSid": self.stream_sid, "mark": {"name": name}});
        self.send(&msg).await
    }

    async fn on_cmd(&mut self, cmd: Cmd) -> bool {
        match cmd {
            Cmd::Speak(audio, done) => self.talk = Some(Talk { audio, at: 0, done }),
            Cmd::Press(digit, done) => {
                self.seq += 1;
                let msg = json!({"event": "dtmf", "sequenceNumber": self.seq.to_string(),
                                 "streamSid": self.stream_sid,
                                 "dtmf": {"track": "inbound_track", "digit": digit.to_string()}});
                if !self.send(&msg).await {
                    return false;
                }
                let _ = done.send(Instant::now());
            }
            Cmd::Stop => {}
        }
        true
    }

    /// False once warmline has closed the stream.
    async fn on_message(
        &mut self,
        msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> bool {
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_)) | Err(_)) | None => return false,
            Some(Ok(_)) => return true,
        };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            return true;
        };
        let now = Instant::now();
        match v["event"].as_str() {
            Some("media") => {
                let payload = v["media"]["payload"].as_str().unwrap_or_default();
                self.on_media(&BASE64.decode(payload).unwrap_or_default(), now);
            }
            Some("mark") => {
                let name = v["mark"]["name"].as_str().unwrap_or_default().to_string();
                self.marks.push_back((name, self.playback_end.max(now)));
            }
            Some("clear") => return self.on_clear(now).await,
            _ => {}
        }
        true
    }

    /// Queues outbound audio behind what is already playing.
    fn on_media(&mut self, payload: &[u8], now: Instant) {
        let start = self.playback_end.max(now);
        self.playback_end = start + Duration::from_micros(payload.len() as u64 * 125);
        let mut h = lock(&self.heard);
        h.played_until = Some(self.playback_end);
        if voiced(payload) {
            h.last_voiced_rx = Some(now);
        }
    }

    /// Twilio drops unplayed audio and returns every pending mark at once.
    async fn on_clear(&mut self, now: Instant) -> bool {
        self.playback_end = now;
        lock(&self.heard).played_until = Some(now);
        while let Some((name, _)) = self.marks.pop_front() {
            if !self.echo_mark(&name).await {
                return false;
            }
        }
        true
    }
}

fn voiced(payload: &[u8]) -> bool {
    if payload.is_empty() {
        return false;
    }
    let total: u32 = payload
        .iter()
        .map(|&b| ulaw::decode(b).unsigned_abs() as u32)
        .sum();
    total / payload.len() as u32 > VOICED_MEAN_ABS
}

// ------------------------------------------------------------------- measuring the server

/// What the server looked like at one moment.
struct Snapshot {
    metrics: String,
    /// CPU seconds of the server process (in-process: the whole process).
    cpu: Option<f64>,
    /// CPU seconds of the load generator's live threads (in-process) or process (--url).
    load_cpu: Option<f64>,
    rss_kb: Option<u64>,
    /// Busy CPU seconds of the whole machine, to see what else competed for the cores.
    machine_busy: Option<f64>,
    /// In-process: the peak-RSS counter was reset here, so VmHWM later is this run's peak.
    hwm_reset: bool,
}

impl Snapshot {
    async fn take(http: &reqwest::Client, server: &Server) -> Result<Snapshot> {
        let url = format!("{}/metrics", server.base());
        let metrics = http
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("GET {url}"))?
            .text()
            .await?;
        let dir = server.proc_dir();
        let in_process = matches!(server, Server::InProcess(_));
        let hwm_reset = in_process && std::fs::write("/proc/self/clear_refs", "5").is_ok();
        Ok(Snapshot {
            metrics,
            cpu: dir.as_deref().and_then(process_cpu),
            load_cpu: if in_process {
                load_generator_cpu()
            } else {
                process_cpu(Path::new("/proc/self"))
            },
            rss_kb: dir.as_deref().and_then(|d| status_kb(d, "VmRSS:")),
            machine_busy: machine_busy_seconds(),
            hwm_reset,
        })
    }
}

/// user + system CPU seconds from a `/proc/.../stat` line.
fn stat_cpu_seconds(stat: &str) -> Option<f64> {
    // The command name may hold spaces and parentheses: fields are counted after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// Busy (not idle, not iowait) CPU seconds of all cores since boot, from `/proc/stat`.
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<f64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal: guest time is already in user.
    let busy: f64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| fields.get(i))
        .sum();
    Some(busy / TICKS_PER_SECOND)
}

fn process_cpu(dir: &Path) -> Option<f64> {
    stat_cpu_seconds(&std::fs::read_to_string(dir.join("stat")).ok()?)
}

/// CPU of this process's live threads that are not the in-process server's. Threads that
/// exited (Whisper's short-lived workers) stay in the process total, i.e. count as server.
fn load_generator_cpu() -> Option<f64> {
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let dir = entry.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !comm.starts_with(SERVER_THREAD_PREFIX) {
            total += process_cpu(&dir).unwrap_or(0.0);
        }
    }
    Some(total)
}

fn status_kb(dir: &Path, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// Peak RSS of another process, sampled (its VmHWM may predate the run).
struct RssSampler {
    peak_kb: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl RssSampler {
    fn start(dir: PathBuf) -> RssSampler {
        let peak_kb = Arc::new(AtomicU64::new(0));
        let peak = peak_kb.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Some(kb) = status_kb(&dir, "VmRSS:") {
                    peak.fetch_max(kb, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        RssSampler { peak_kb, task }
    }

    fn stop(self) -> u64 {
        self.task.abort();
        self.peak_kb.load(Ordering::Relaxed)
    }
}

/// A Prometheus histogram as scraped: cumulative `(le, count)` buckets, sum and count.
#[derive(Debug, Clone, Default, PartialEq)]
struct Histogram {
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

impl Histogram {
    fn scrape(text: &str, name: &str) -> Histogram {
        let bucket = format!("{name}_bucket{{le=\"");
        let mut h = Histogram::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix(&bucket)
                && let Some((le, n)) = rest.split_once("\"} ")
            {
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or(f64::NAN)
                };
                h.buckets.push((le, n.trim().parse().unwrap_or(0.0)));
            }
        }
        h.sum = scrape_value(text, &format!("{name}_sum")).unwrap_or(0.0);
        h.count = scrape_value(text, &format!("{name}_count")).unwrap_or(0.0);
        h
    }

    /// What was observed between `before` and `self` (same bucket layout).
    fn since(&self, before: &Histogram) -> Histogram {
        let buckets = self
            .buckets
            .iter()
            .map(|&(le, n)| {
                let was = before
                    .buckets
                    .iter()
                    .find(|b| b.0 == le)
                    .map_or(0.0, |b| b.1);
                (le, n - was)
            })
            .collect();
        Histogram {
            buckets,
            sum: self.sum - before.sum,
            count: self.count - before.count,
        }
    }

    /// Linear interpolation inside the bucket holding quantile `q`, as `histogram_quantile`
    /// does; `(bound, true)` when it lies beyond the last finite bucket.
    fn quantile(&self, q: f64) -> Option<(f64, bool)> {
        if self.count <= 0.0 {
            return None;
        }
        let rank = q * self.count;
        let (mut lower, mut below) = (0.0, 0.0);
        for &(le, cumulative) in &self.buckets {
            if cumulative >= rank {
                if le.is_infinite() {
                    return Some((lower, true));
                }
                let share = if cumulative > below {
                    (rank - below) / (cumulative - below)
                } else {
                    1.0
                };
                return Some((lower + (le - lower) * share, false));
            }
            if le.is_finite() {
                lower = le;
            }
            below = cumulative;
        }
        None
    }

    fn summary(&self) -> Option<HistSummary> {
        let (p95, beyond) = self.quantile(0.95)?;
        Some(HistSummary {
            n: self.count as u64,
            mean_ms: self.sum / self.count * 1000.0,
            p95_ms: p95 * 1000.0,
            p95_beyond_buckets: beyond,
        })
    }
}

fn scrape_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

// ------------------------------------------------------------------------------- report

/// Mean and approximate p95 of a server histogram over the run.
#[derive(Debug, Clone, Serialize)]
pub struct HistSummary {
    pub n: u64,
    pub mean_ms: f64,
    /// Interpolated within Prometheus buckets: approximate.
    pub p95_ms: f64,
    /// The p95 lies above the last finite bucket bound (`p95_ms` is that bound).
    pub p95_beyond_buckets: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    pub n: usize,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Spread {
    fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.to_vec();
        v.sort_by(f64::total_cmp);
        let max = *v.last()?;
        Some(Spread {
            n: v.len(),
            mean_ms: v.iter().sum::<f64>() / v.len() as f64,
            p50_ms: quantile(&v, 0.50),
            p95_ms: quantile(&v, 0.95),
            p99_ms: quantile(&v, 0.99),
            max_ms: max,
        })
    }
}

/// Linear interpolation between closest ranks of sorted values (the simulator's definition).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = (sorted.len() - 1) as f64 * q;
    let (lo, hi) = (
        i.floor() as usize,
        (i.ceil() as usize).min(sorted.len() - 1),
    );
    sorted[lo] + (sorted[hi] - sorted[lo]) * (i - lo as f64)
}

/// Everything measured outside the per-call outcomes.
struct Measured {
    server: String,
    fixture_note: String,
    opts: LoadtestOptions,
    wall: Duration,
    peak_concurrency: usize,
    before: Snapshot,
    after: Snapshot,
    sampled_peak_kb: Option<u64>,
    in_process: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The CPU the figures come from and the SIMD ggml used on it.
    pub machine: Machine,
    pub provider: Provider,
    pub server: String,
    pub fixtures: String,
    pub calls_requested: usize,
    pub concurrency: usize,
    pub peak_concurrency: usize,
    pub wall_seconds: f64,
    pub started: usize,
    /// Ended in a transfer (REST or fallback `<Dial>`) or a goodbye.
    pub completed: usize,
    pub transferred: usize,
    pub fallback_dials: usize,
    pub self_served: usize,
    pub failed: usize,
    pub failure_reasons: BTreeMap<String, usize>,
    /// Started calls that ended in neither a transfer nor a goodbye.
    pub lost_calls: Vec<String>,
    pub cut_off: usize,
    pub not_started: usize,
    pub unexpected: Vec<String>,
    /// REST request arrival − end of the trigger turn's audio.
    pub decision_latency: Option<Spread>,
    pub transfers_before_trigger_end: usize,
    /// Latency split: end of trigger audio → transcript (endpointing, STT queue, STT) ...
    pub audio_end_to_transcript: Option<Spread>,
    /// ... and transcript → REST request (policy, hold, REST client).
    pub transcript_to_transfer: Option<Spread>,
    pub held_transfers: usize,
    /// warmline's own view: caller speech end → transfer request sent.
    pub server_decision_latency: Option<HistSummary>,
    pub stt_queue_wait: Option<HistSummary>,
    pub stt: Option<HistSummary>,
    pub cpu_seconds_per_call: Option<f64>,
    pub load_generator_cpu_seconds_per_call: Option<f64>,
    /// Share of all cores other processes used during the run: a busy machine skews timings.
    pub other_processes_cpu_percent: Option<f64>,
    pub rss_before_mb: Option<f64>,
    pub peak_rss_mb: Option<f64>,
    pub memory_mb_per_call: Option<f64>,
    pub overload_handoffs_metric: Option<f64>,
    pub transfers_citing_overload: usize,
    pub frames_sent: u64,
    pub frames_late: u64,
    pub worst_frame_late_ms: f64,
    /// With `--instances N`: each instance's share (this report is then their total).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_instance: Vec<InstanceFigures>,
    pub calls: Vec<CallOutcome>,
}

impl Report {
    fn build(calls: Vec<CallOutcome>, m: &Measured) -> Report {
        let count = |f: fn(&End) -> bool| calls.iter().filter(|c| f(&c.end)).count();
        let transferred = count(|e| *e == End::Transferred);
        let fallback_dials = count(|e| *e == End::FallbackDial);
        let self_served = count(|e| *e == End::Goodbye);
        let completed = transferred + fallback_dials + self_served;
        let (failure_reasons, lost_calls) = failures(&calls);
        let per_call = |total: Option<f64>| {
            total
                .filter(|_| completed > 0)
                .map(|t| t / completed as f64)
        };
        let cpu = CpuUse::over(m);
        let (peak_kb, memory_mb_per_call) = memory_use(m);
        let (before, after) = (&m.before.metrics, &m.after.metrics);
        let hist = |name: &str| {
            Histogram::scrape(after, name)
                .since(&Histogram::scrape(before, name))
                .summary()
        };
        let overload = "warmline_overload_handoffs_total";
        let spread = |f: fn(&CallOutcome) -> Option<f64>| {
            Spread::of(&calls.iter().filter_map(f).collect::<Vec<_>>())
        };
        Report {
            machine: Machine::detect(),
            provider: m.opts.provider,
            server: m.server.clone(),
            fixtures: m.fixture_note.clone(),
            calls_requested: m.opts.calls,
            concurrency: m.opts.concurrency,
            peak_concurrency: m.peak_concurrency,
            wall_seconds: m.wall.as_secs_f64(),
            started: calls.len(),
            completed,
            transferred,
            fallback_dials,
            self_served,
            failed: lost_calls.len(),
            failure_reasons,
            lost_calls,
            cut_off: count(|e| *e == End::CutOff),
            not_started: m.opts.calls - calls.len(),
            unexpected: calls
                .iter()
                .filter_map(|c| {
                    Some(format!(
                        "{} {}: {}",
                        c.call_sid,
                        c.fixture,
                        c.unexpected.as_ref()?
                    ))
                })
                .collect(),
            decision_latency: spread(|c| c.decision_latency_ms),
            transfers_before_trigger_end: calls.iter().filter(|c| c.early).count(),
            audio_end_to_transcript: spread(|c| c.transcript_ms),
            transcript_to_transfer: spread(|c| Some(c.decision_latency_ms? - c.transcript_ms?)),
            held_transfers: calls.iter().filter(|c| c.held).count(),
            server_decision_latency: hist("warmline_decision_latency_seconds"),
            stt_queue_wait: hist("warmline_stt_queue_wait_seconds"),
            stt: hist("warmline_stt_seconds"),
            cpu_seconds_per_call: per_call(cpu.server),
            load_generator_cpu_seconds_per_call: per_call(cpu.load_generator),
            other_processes_cpu_percent: cpu.others_percent,
            rss_before_mb: m.before.rss_kb.map(mb),
            peak_rss_mb: peak_kb.map(mb),
            memory_mb_per_call,
            overload_handoffs_metric: delta(
                scrape_value(after, overload),
                scrape_value(before, overload),
            ),
            transfers_citing_overload: calls.iter().filter(|c| c.overload).count(),
            frames_sent: calls.iter().map(|c| c.frames_sent).sum(),
            frames_late: calls.iter().map(|c| c.frames_late).sum(),
            worst_frame_late_ms: calls.iter().map(|c| c.worst_late_ms).fold(0.0, f64::max),
            per_instance: Vec::new(),
            calls,
        }
    }

    /// Started calls that ended in neither a transfer nor a goodbye.
    pub fn lost(&self) -> usize {
        self.lost_calls.len()
    }
}

fn delta(after: Option<f64>, before: Option<f64>) -> Option<f64> {
    Some(after? - before?)
}

/// Failure reasons with their counts, and one line per lost call.
fn failures(calls: &[CallOutcome]) -> (BTreeMap<String, usize>, Vec<String>) {
    let mut reasons = BTreeMap::new();
    let mut lost = Vec::new();
    for c in calls {
        if let End::Failed { reason } = &c.end {
            *reasons.entry(reason.clone()).or_insert(0) += 1;
            lost.push(format!("{} {}: {reason}", c.call_sid, c.fixture));
        }
    }
    (reasons, lost)
}

/// CPU seconds spent during the run.
struct CpuUse {
    server: Option<f64>,
    load_generator: Option<f64>,
    /// Share of all cores that other processes used (they skew every timing).
    others_percent: Option<f64>,
}

impl CpuUse {
    fn over(m: &Measured) -> CpuUse {
        let load_generator = delta(m.after.load_cpu, m.before.load_cpu);
        let measured = delta(m.after.cpu, m.before.cpu);
        // In-process `measured` is the whole process, so the load generator is taken out of it
        // for the server and is already in it for "own"; with --url it is the server alone.
        let (server, own) = if m.in_process {
            (measured.zip(load_generator).map(|(t, l)| t - l), measured)
        } else {
            (measured, measured.zip(load_generator).map(|(s, l)| s + l))
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let others_percent = delta(m.after.machine_busy, m.before.machine_busy)
            .zip(own)
            .map(|(busy, own)| (busy - own).max(0.0) * 100.0 / (cores * m.wall.as_secs_f64()));
        CpuUse {
            server,
            load_generator,
            others_percent,
        }
    }
}

/// Peak RSS over the run (kB), and MB per concurrent call above the RSS before it.
fn memory_use(m: &Measured) -> (Option<u64>, Option<f64>) {
    let peak_kb = if m.before.hwm_reset {
        m.sampled_peak_kb
            .max(status_kb(Path::new("/proc/self"), "VmHWM:"))
    } else {
        m.sampled_peak_kb.filter(|&kb| kb > 0)
    };
    let per_call = match (peak_kb, m.before.rss_kb) {
        (Some(peak), Some(rss)) if m.peak_concurrency > 0 => {
            Some(mb(peak.saturating_sub(rss)) / m.peak_concurrency as f64)
        }
        _ => None,
    };
    (peak_kb, per_call)
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn secs(ms: f64) -> String {
    format!("{:.2} s", ms / 1000.0)
}

fn hist_line(h: &Option<HistSummary>) -> String {
    match h {
        None => "no observations".into(),
        Some(h) => format!(
            "n={:<4} mean {}   p95 {}{}",
            h.n,
            secs(h.mean_ms),
            if h.p95_beyond_buckets { "> " } else { "≈ " },
            secs(h.p95_ms)
        ),
    }
}

fn or_na(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "n/a".into(), f)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_calls(f)?;
        self.fmt_latency(f)?;
        self.fmt_resources(f)?;
        scale::fmt_instances(self, f)
    }
}

impl Report {
    /// What happened to the calls, lost ones by name.
    fn fmt_calls(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "warmline loadtest: {} {} calls, {} at once (peak {}), server {}, {:.1} s",
            self.calls_requested,
            self.provider.name(),
            self.concurrency,
            self.peak_concurrency,
            self.server,
            self.wall_seconds
        )?;
        writeln!(f, "  CPU               {}", self.machine)?;
        writeln!(f, "  fixtures          {}", self.fixtures)?;
        writeln!(
            f,
            "  calls             started {} · completed {} (transferred {}, fallback <Dial> {}, self-served {}) · failed {} · cut off {} · not started {}",
            self.started,
            self.completed,
            self.transferred,
            self.fallback_dials,
            self.self_served,
            self.failed,
            self.cut_off,
            self.not_started
        )?;
        if self.lost_calls.is_empty() && self.cut_off == 0 {
            writeln!(
                f,
                "  lost calls        none: every started call ended in a transfer or a goodbye"
            )?;
        } else if self.lost_calls.is_empty() {
            writeln!(
                f,
                "  lost calls        none, but {} call(s) were cut off by --max-seconds (not judged)",
                self.cut_off
            )?;
        } else {
            writeln!(f, "  lost calls        {}:", self.lost())?;
            for c in &self.lost_calls {
                writeln!(f, "                      {c}")?;
            }
        }
        if !self.unexpected.is_empty() {
            writeln!(f, "  unexpected outcomes {}:", self.unexpected.len())?;
            for u in &self.unexpected {
                writeln!(f, "                      {u}")?;
            }
        }
        Ok(())
    }

    /// What the callers waited for, and where the time went.
    fn fmt_latency(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.decision_latency {
            Some(s) => writeln!(
                f,
                "  decision latency  n={:<4} p50 {}   p95 {}   p99 {}   max {}   (REST request − end of trigger turn audio)",
                s.n,
                secs(s.p50_ms),
                secs(s.p95_ms),
                secs(s.p99_ms),
                secs(s.max_ms)
            )?,
            None => writeln!(f, "  decision latency  no REST transfers measured")?,
        }
        if self.transfers_before_trigger_end > 0 {
            writeln!(
                f,
                "                    {} transfer(s) came before the trigger turn ended (not in the latency)",
                self.transfers_before_trigger_end
            )?;
        }
        if let (Some(a), Some(b)) = (&self.audio_end_to_transcript, &self.transcript_to_transfer) {
            writeln!(
                f,
                "  split             audio end → transcript p50 {} p95 {} · transcript → REST p50 {} p95 {} · {} held",
                secs(a.p50_ms),
                secs(a.p95_ms),
                secs(b.p50_ms),
                secs(b.p95_ms),
                self.held_transfers
            )?;
        }
        writeln!(
            f,
            "  server's view     {}   (warmline_decision_latency_seconds: speech end → transfer sent)",
            hist_line(&self.server_decision_latency)
        )?;
        writeln!(f, "  STT queue wait    {}", hist_line(&self.stt_queue_wait))?;
        writeln!(f, "  STT time          {}", hist_line(&self.stt))?;
        Ok(())
    }

    /// What the calls cost, and anything that skews the numbers.
    fn fmt_resources(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  CPU per call      {} server   ({} load generator, not included)",
            or_na(self.cpu_seconds_per_call, |v| format!("{v:.2} s")),
            or_na(self.load_generator_cpu_seconds_per_call, |v| format!(
                "{v:.2} s"
            ))
        )?;
        writeln!(
            f,
            "  machine           other processes used {} of the cores during the run",
            or_na(self.other_processes_cpu_percent, |v| format!("{v:.0} %"))
        )?;
        writeln!(
            f,
            "  memory per call   {}   (peak RSS {} − {} before, ÷ peak concurrency {})",
            or_na(self.memory_mb_per_call, |v| format!("{v:.1} MB")),
            or_na(self.peak_rss_mb, |v| format!("{v:.0} MB")),
            or_na(self.rss_before_mb, |v| format!("{v:.0} MB")),
            self.peak_concurrency
        )?;
        writeln!(
            f,
            "  overload          warmline_overload_handoffs_total +{} · calls handed over citing overload {}",
            or_na(self.overload_handoffs_metric, |v| format!("{v:.0}")),
            self.transfers_citing_overload
        )?;
        let late_pct = self.frames_late as f64 * 100.0 / self.frames_sent.max(1) as f64;
        writeln!(
            f,
            "  caller pacing     {} frames, {late_pct:.2} % more than 20 ms late, worst {:.0} ms",
            self.frames_sent, self.worst_frame_late_ms
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_accepted() {
        assert!(require_loopback("http://127.0.0.1:8080").is_ok());
        assert!(require_loopback("ws://localhost:9/twilio/media").is_ok());
        assert!(require_loopback("http://10.0.0.5:8080").is_err());
        assert!(require_loopback("https://example.com").is_err());
        assert!(require_loopback("http://127.0.0.1.example.com").is_err());
    }

    #[test]
    fn voice_answer_yields_stream_action_and_parameters() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect action="http://127.0.0.1:1/twilio/stream-ended"><Stream url="ws://127.0.0.1:1/twilio/media"><Parameter name="token" value="a&amp;b"/><Parameter name="From" value="+1555"/></Stream></Connect></Response>"#;
        let a = VoiceAnswer::parse(xml);
        assert_eq!(
            a.stream_url.as_deref(),
            Some("ws://127.0.0.1:1/twilio/media")
        );
        assert_eq!(
            a.action.as_deref(),
            Some("http://127.0.0.1:1/twilio/stream-ended")
        );
        assert_eq!(a.params, form(&[("token", "a&b"), ("From", "+1555")]));
        assert!(!a.dial);
        let dial =
            VoiceAnswer::parse("<Response><Say>x</Say><Dial><Number>+1</Number></Dial></Response>");
        assert!(dial.dial && dial.stream_url.is_none());
    }

    #[test]
    fn histogram_delta_mean_and_p95() {
        let before = "warmline_x_bucket{le=\"0.1\"} 1\nwarmline_x_bucket{le=\"1\"} 1\nwarmline_x_bucket{le=\"+Inf\"} 1\nwarmline_x_sum 0.05\nwarmline_x_count 1\n";
        let after = "warmline_x_bucket{le=\"0.1\"} 1\nwarmline_x_bucket{le=\"1\"} 11\nwarmline_x_bucket{le=\"+Inf\"} 11\nwarmline_x_sum 5.05\nwarmline_x_count 11\n";
        let h =
            Histogram::scrape(after, "warmline_x").since(&Histogram::scrape(before, "warmline_x"));
        let s = h.summary().unwrap();
        assert_eq!(s.n, 10);
        assert!((s.mean_ms - 500.0).abs() < 1e-6);
        // All ten fell in (0.1, 1]: p95 interpolates to 0.1 + 0.9 * 0.95.
        assert!((s.p95_ms - 955.0).abs() < 1e-6, "{}", s.p95_ms);
        let overflow = "warmline_y_bucket{le=\"1\"} 0\nwarmline_y_bucket{le=\"+Inf\"} 2\nwarmline_y_sum 9\nwarmline_y_count 2\n";
        let o = Histogram::scrape(overflow, "warmline_y").summary().unwrap();
        assert!(o.p95_beyond_buckets && o.p95_ms == 1000.0);
    }

    #[test]
    fn cpu_seconds_from_stat_with_awkward_name() {
        let stat = "1234 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        assert_eq!(stat_cpu_seconds(stat), Some(3.0));
    }

    #[test]
    fn spread_quantiles_interpolate() {
        let s = Spread::of(&[400.0, 100.0, 300.0, 200.0, 500.0]).unwrap();
        assert_eq!((s.p50_ms, s.max_ms, s.n), (300.0, 500.0, 5));
        assert!((s.p95_ms - 480.0).abs() < 1e-9);
        assert!(Spread::of(&[]).is_none());
    }

    #[test]
    fn bounds_are_enforced() {
        let mut o = LoadtestOptions {
            calls: 501,
            concurrency: 1,
            url: None,
            fake_port: None,
            fixtures: vec![],
            max_seconds: 600,
            call_timeout: 120,
            ramp_seconds: 0.0,
            account_sid: TEST_ACCOUNT_SID.into(),
            auth_token: TEST_AUTH_TOKEN.into(),
            api_token: "loadtest-api-token".into(),
            server_pid: None,
            provider: Provider::Twilio,
            instances: 1,
            settings: Box::default(),
        };
        assert!(o.check().is_err());
        o.calls = 10;
        o.concurrency = 101;
        assert!(o.check().is_err());
        o.concurrency = 10;
        assert!(o.check().is_ok());
        o.url = Some("http://127.0.0.1:8080".into());
        assert!(o.check().is_err(), "--url without --fake-port");
        o.fake_port = Some(9999);
        assert!(o.check().is_ok());
        o.url = Some("http://192.168.1.2:8080".into());
        assert!(o.check().is_err());
    }

    #[test]
    fn voiced_ignores_digital_silence() {
        assert!(!voiced(&SILENCE));
        assert!(voiced(&[0x10; FRAME_BYTES]));
    }
}
