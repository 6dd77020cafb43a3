//! `warmline loadtest`: many callers at once against a real warmline, each driven exactly as
//! its provider drives a call, to see what a caller feels when the line is busy.
//!
//! Per call: the provider's first request (a signed webhook, or AudioSocket's connection),
//! the media connection it is told to open, then a caller that behaves like the Twilio
//! simulator (`shared/tools/twilio-sim`): 20 ms media frames on a real-time clock (silence
//! when not talking), marks returned once their audio would have finished playing, clears
//! honoured, a pause of `pause_before_ms` after each prompt ends, keypresses as DTMF. Fakes
//! of the providers' clouds on loopback (`fakes/`, shared with the end-to-end tests) record
//! each transfer request with its arrival time; decision latency is that arrival (for
//! Asterisk, the hand-back frame's) minus the end of the fixture's trigger turn, i.e. what
//! the caller waits for.
//!
//! Modules: `calls` drives one call and places them all, `caller` is the simulated caller
//! (script and real-time wire), `providers` is what differs per carrier, `fakes` are the
//! carriers themselves, `server` the warmline under test, `measure` and `report` the figures.
//!
//! Only loopback is ever contacted: this measures a developer's or a CI box's own server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::config::Settings;
use crate::replay::fixture::Fixture;

mod caller;
mod calls;
pub mod ceiling;
pub mod fakes;
mod machine;
mod measure;
pub mod providers;
mod report;
mod scale;
mod server;

pub use calls::{CallOutcome, End};
pub use ceiling::{Ceiling, CeilingOptions, Search, Step};
pub use machine::Machine;
pub use providers::Provider;
pub use report::{HistSummary, Report, Spread};
pub use scale::InstanceFigures;

use calls::{Ctx, is_loopback, place_calls};
use measure::{RssSampler, Snapshot};
use providers::Cloud;
use report::Measured;
use server::{Server, wait_ready};

/// Twilio credentials of the in-process server; start a `--url` server with these (or pass
/// yours).
pub const TEST_ACCOUNT_SID: &str = fakes::twilio::ACCOUNT_SID;
pub const TEST_AUTH_TOKEN: &str = fakes::twilio::AUTH_TOKEN;
pub const MAX_CALLS: usize = 500;
pub const MAX_CONCURRENCY: usize = 100;

const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// over it) and started with the environment that points it at the fakes on
    /// --fake-port: WARMLINE_TWILIO_API_BASE=http://127.0.0.1:<fake-port> and
    /// WARMLINE_HANDOFF_WEBHOOK=http://127.0.0.1:<fake-port>/handoff, plus the chosen
    /// provider's credentials and API base as the README's load-test section lists them.
    /// Without it the server runs in this process.
    #[arg(long)]
    pub url: Option<String>,
    /// Port of the fake provider APIs (required with --url, except for asterisk; default:
    /// any free port).
    #[arg(long)]
    pub fake_port: Option<u16>,
    /// With --url and --provider asterisk: the server's AudioSocket listener (its
    /// WARMLINE_AUDIOSOCKET_LISTEN), on loopback.
    #[arg(long)]
    pub audiosocket: Option<SocketAddr>,
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
    /// Twilio account SID the server was started with (REST basic auth is checked against it).
    #[arg(long, default_value = TEST_ACCOUNT_SID)]
    pub account_sid: String,
    /// Twilio auth token the server was started with (signs webhooks, checks REST basic auth).
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
    /// Whose protocol the callers speak, all faked on loopback: twilio, signalwire, plivo
    /// and telnyx (webhooks or Call Control events signed as each signs them, its media
    /// stream, its transfer API), or asterisk (AudioSocket over TCP — not chan_websocket —
    /// with the hand-back and the dialplan's route lookup).
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
        let Some(url) = &self.url else {
            if self.server_pid.is_some() {
                bail!("--server-pid only makes sense with --url");
            }
            if self.audiosocket.is_some() {
                bail!(
                    "--audiosocket only makes sense with --url (the in-process server opens its own)"
                );
            }
            return Ok(());
        };
        require_loopback(url)?;
        if self.fake_port.is_none() && self.provider.has_rest_api() {
            bail!("--url needs --fake-port: the port its provider API base points at");
        }
        match (self.provider, self.audiosocket) {
            (Provider::Asterisk, None) => bail!(
                "--provider asterisk with --url needs --audiosocket: the server's WARMLINE_AUDIOSOCKET_LISTEN"
            ),
            (Provider::Asterisk, Some(a)) if !a.ip().is_loopback() => {
                bail!("refusing --audiosocket {a}: loopback only")
            }
            (Provider::Asterisk, Some(_)) => Ok(()),
            (p, Some(_)) => bail!("--audiosocket is for --provider asterisk, not {}", p.name()),
            (_, None) => Ok(()),
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
    if is_loopback(url) {
        return Ok(());
    }
    bail!("refusing {url}: loopback only (127.0.0.1 or localhost)")
}

/// Places the calls, waits for them (or `max_seconds`), and measures.
pub async fn run(opts: LoadtestOptions) -> Result<Report> {
    opts.check()?;
    if opts.instances > 1 {
        return scale::run(opts).await;
    }
    let (fixtures, fixture_note) = load_fixtures(&opts.fixtures)?;
    let cloud = Arc::new(start_cloud(&opts).await?);
    let server = Server::for_run(&opts, &cloud.base()).await?;
    run_against(&opts, fixtures, fixture_note, cloud, &server).await
}

/// The fake provider APIs of a run, on `--fake-port` or any free port.
async fn start_cloud(opts: &LoadtestOptions) -> Result<Cloud> {
    let port = opts.fake_port.unwrap_or(0);
    Cloud::start(port, &opts.account_sid, &opts.auth_token)
        .await
        .with_context(|| format!("binding the fake provider APIs on 127.0.0.1:{port}"))
}

/// One run's calls against `server` (which may serve several runs: `--find-ceiling`).
async fn run_against(
    opts: &LoadtestOptions,
    fixtures: Vec<Arc<Fixture>>,
    fixture_note: String,
    cloud: Arc<Cloud>,
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
    wait_ready(&http, server).await?;
    let before = Snapshot::take(&http, server).await?;
    let sampler = server.proc_dir().map(RssSampler::start);
    let ctx = Arc::new(Ctx {
        base: server.base().to_string(),
        provider: opts.provider,
        account_sid: opts.account_sid.clone(),
        auth_token: opts.auth_token.clone(),
        http: http.clone(),
        cloud,
        audiosocket: server.audiosocket(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> LoadtestOptions {
        LoadtestOptions {
            calls: 10,
            concurrency: 10,
            url: None,
            fake_port: None,
            audiosocket: None,
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
        }
    }

    #[test]
    fn bounds_are_enforced() {
        let mut o = options();
        o.calls = 501;
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
    fn every_provider_can_run_against_a_url_and_asterisk_needs_its_listener() {
        for p in [Provider::Signalwire, Provider::Plivo, Provider::Telnyx] {
            let mut o = options();
            o.provider = p;
            o.url = Some("http://127.0.0.1:8080".into());
            assert!(o.check().is_err(), "{p:?} needs --fake-port");
            o.fake_port = Some(9999);
            assert!(o.check().is_ok(), "{p:?}");
            o.audiosocket = Some("127.0.0.1:9092".parse().unwrap());
            assert!(o.check().is_err(), "{p:?} has no AudioSocket");
        }
        let mut o = options();
        o.provider = Provider::Asterisk;
        o.url = Some("http://127.0.0.1:8080".into());
        let e = o.check().unwrap_err().to_string();
        assert!(e.contains("--audiosocket"), "{e}");
        o.audiosocket = Some("127.0.0.1:9092".parse().unwrap());
        assert!(o.check().is_ok(), "no REST API, so no --fake-port needed");
        o.audiosocket = Some("10.0.0.2:9092".parse().unwrap());
        assert!(o.check().is_err());
        let mut o = options();
        o.provider = Provider::Asterisk;
        o.audiosocket = Some("127.0.0.1:9092".parse().unwrap());
        assert!(o.check().is_err(), "the in-process server opens its own");
    }
}
