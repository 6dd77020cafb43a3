//! `warmline loadtest --instances N`: a simulated scale-out on one machine. N warmlines run
//! in this process, each on its own port as a separate `warmline serve` would, and the calls
//! are spread evenly over them as a provider's load-balanced webhook would spread them
//! (instance `i` gets every N-th call and its share of the concurrency). With
//! `WARMLINE_DATABASE_URL` set they all keep their records in that one PostgreSQL.
//!
//! The report is the total over all calls, plus one row per instance. On one machine the
//! instances share its cores, so this shows that the spread works and what each instance
//! carries, not what N machines would hold.

use std::fmt;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::measure::{RssSampler, Snapshot};
use super::providers::Cloud;
use super::report::{HistSummary, Measured, Report, Spread};
use super::server::{InProcess, Server, wait_ready};
use super::{HTTP_TIMEOUT, LoadtestOptions, load_fixtures, run_against, start_cloud};

/// Each instance loads its own model and runtime; more than this on one box measures
/// nothing but contention.
pub const MAX_INSTANCES: usize = 8;

/// One instance's share of a spread run.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceFigures {
    pub instance: usize,
    pub base: String,
    pub calls: usize,
    pub concurrency: usize,
    pub peak_concurrency: usize,
    pub started: usize,
    pub completed: usize,
    pub lost: usize,
    /// What its callers waited for (REST request arrival − end of the trigger turn).
    pub decision_latency: Option<Spread>,
    /// Its own histogram: caller speech end → transfer request sent.
    pub server_decision_latency: Option<HistSummary>,
    pub stt: Option<HistSummary>,
}

pub(super) fn check(opts: &LoadtestOptions) -> Result<()> {
    if !(1..=MAX_INSTANCES).contains(&opts.instances) {
        bail!("--instances must be 1..={MAX_INSTANCES}");
    }
    if opts.instances > 1 {
        if opts.url.is_some() {
            bail!("--instances starts its own servers; it cannot be combined with --url");
        }
        if opts.concurrency < opts.instances || opts.calls < opts.instances {
            bail!("--calls and --concurrency must each be at least --instances");
        }
    }
    Ok(())
}

/// Instance `i`'s share of `total` spread over `n`.
fn share(total: usize, n: usize, i: usize) -> usize {
    total / n + usize::from(i < total % n)
}

pub(super) async fn run(opts: LoadtestOptions) -> Result<Report> {
    let cloud = std::sync::Arc::new(start_cloud(&opts).await?);
    spread(&opts, cloud).await
}

async fn spread(opts: &LoadtestOptions, cloud: std::sync::Arc<Cloud>) -> Result<Report> {
    let n = opts.instances;
    let (fixtures, fixture_note) = load_fixtures(&opts.fixtures)?;
    let mut servers = Vec::with_capacity(n);
    for i in 0..n {
        let server = InProcess::start(opts, &cloud.base())
            .await
            .with_context(|| format!("starting instance {i}"))?;
        servers.push(Server::InProcess(server));
    }
    let http = reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .build()
        .context("building the HTTP client")?;
    for s in &servers {
        wait_ready(&http, s).await?;
    }
    // The instances share this process: its CPU and memory are theirs together.
    let before = Snapshot::take(&http, &servers[0]).await?;
    let sampler = servers[0].proc_dir().map(RssSampler::start);
    let started = Instant::now();
    let runs = servers.iter().enumerate().map(|(i, s)| {
        let mut o = opts.clone();
        o.instances = 1;
        o.url = Some(s.base().to_string());
        o.calls = share(opts.calls, n, i);
        o.concurrency = share(opts.concurrency, n, i);
        let (fixtures, note, cloud) = (fixtures.clone(), fixture_note.clone(), cloud.clone());
        // Seen from outside, as a --url server: the process-wide CPU and memory are taken
        // once for all instances below.
        let server = s.remote_view();
        o.audiosocket = server.audiosocket();
        async move { run_against(&o, fixtures, note, cloud, &server).await }
    });
    let mut reports = futures_util::future::try_join_all(runs).await?;
    let wall = started.elapsed();
    let after = Snapshot::take(&http, &servers[0]).await?;
    let sampled_peak_kb = sampler.map(RssSampler::stop);

    let per_instance: Vec<InstanceFigures> = reports
        .iter()
        .enumerate()
        .map(|(i, r)| InstanceFigures {
            instance: i,
            base: servers[i].base().to_string(),
            calls: r.calls_requested,
            concurrency: r.concurrency,
            peak_concurrency: r.peak_concurrency,
            started: r.started,
            completed: r.completed,
            lost: r.lost(),
            decision_latency: r.decision_latency.clone(),
            server_decision_latency: r.server_decision_latency.clone(),
            stt: r.stt.clone(),
        })
        .collect();
    let overload = reports
        .iter()
        .map(|r| r.overload_handoffs_metric)
        .sum::<Option<f64>>();
    let mut calls: Vec<_> = reports
        .iter_mut()
        .flat_map(|r| std::mem::take(&mut r.calls))
        .collect();
    calls.sort_by_key(|c| c.call_sid.clone());
    let store = if opts.settings.database_url.is_some() {
        "one shared PostgreSQL"
    } else {
        "SQLite per instance"
    };
    let measured = Measured {
        server: format!("{n} in-process instances, records in {store}"),
        fixture_note,
        opts: opts.clone(),
        wall,
        peak_concurrency: per_instance.iter().map(|p| p.peak_concurrency).sum(),
        before,
        after,
        sampled_peak_kb,
        in_process: true,
    };
    let mut total = Report::build(calls, &measured);
    // The process-wide snapshots carry instance 0's histograms only; the total keeps the
    // callers' own view, and each row below has its instance's histograms.
    total.server_decision_latency = None;
    total.stt_queue_wait = None;
    total.stt = None;
    total.overload_handoffs_metric = overload;
    total.per_instance = per_instance;
    Ok(total)
}

/// One row per instance, after the total.
pub(super) fn fmt_instances(r: &Report, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if r.per_instance.is_empty() {
        return Ok(());
    }
    writeln!(
        f,
        "  per instance      (the rows above are the total over all {} instances)",
        r.per_instance.len()
    )?;
    writeln!(
        f,
        "    #  calls  at once  peak  completed  lost   caller p50/p95 ms   server p95 ms   stt p95 ms  base"
    )?;
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    for p in &r.per_instance {
        let d = p.decision_latency.as_ref();
        writeln!(
            f,
            "    {:<2} {:>5}  {:>7}  {:>4}  {:>9}  {:>4}   {:>8} / {:<8}  {:>13}   {:>10}  {}",
            p.instance,
            p.calls,
            p.concurrency,
            p.peak_concurrency,
            p.completed,
            p.lost,
            ms(d.map(|d| d.p50_ms)),
            ms(d.map(|d| d.p95_ms)),
            ms(p.server_decision_latency.as_ref().map(|h| h.p95_ms)),
            ms(p.stt.as_ref().map(|h| h.p95_ms)),
            p.base
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_add_up_and_differ_by_at_most_one() {
        for (total, n) in [(20, 3), (7, 7), (100, 8), (9, 2)] {
            let parts: Vec<usize> = (0..n).map(|i| share(total, n, i)).collect();
            assert_eq!(parts.iter().sum::<usize>(), total);
            assert!(parts.iter().max().unwrap() - parts.iter().min().unwrap() <= 1);
        }
    }
}
