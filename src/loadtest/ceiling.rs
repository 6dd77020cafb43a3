//! `warmline loadtest --find-ceiling`: the most concurrent calls one warmline holds with the
//! callers' p95 (end of the caller's turn → transfer request) under a limit and nobody lost.
//!
//! Each step is a whole load test at one concurrency (calls = a multiple of it, so every call
//! starts at once and the step measures that many callers talking over each other). The
//! concurrency doubles from `--ceiling-start` until a step fails or `--max-concurrency` is
//! reached, then bisects between the highest pass and the lowest failure. One in-process
//! server (or the `--url` one) serves every step, so the model is loaded once and each step's
//! figures are deltas of the server's metrics over that step.
//!
//! A step passes only when every call was handled by the line itself: no call lost or cut
//! off, and none handed to a person *because the line was full* (an overloaded line that
//! turns callers away answers fast, so its p95 alone would hide the overload).

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use anyhow::{Result, bail};
use serde::Serialize;

use super::machine::Machine;
use super::server::Server;
use super::{
    LoadtestOptions, MAX_CALLS, MAX_CONCURRENCY, Report, load_fixtures, run_against, start_cloud,
};

/// The `--find-ceiling` part of the `warmline loadtest` command line.
#[derive(Debug, Clone, clap::Args)]
pub struct CeilingOptions {
    /// Instead of one run, search for the most concurrent calls with p95 (end of the caller's
    /// turn → transfer request) below --p95-limit and nothing lost. --calls and
    /// --concurrency are then set per step.
    #[arg(long)]
    pub find_ceiling: bool,
    /// The p95 a step must stay below, in seconds.
    #[arg(long, default_value_t = 1.5)]
    pub p95_limit: f64,
    /// The highest concurrency tried (bounds the run time).
    #[arg(long, default_value_t = 64)]
    pub max_concurrency: usize,
    /// The first concurrency tried; it doubles from there until a step fails.
    #[arg(long, default_value_t = 4)]
    pub ceiling_start: usize,
    /// Calls per step = this × the step's concurrency (more calls, steadier percentiles).
    #[arg(long, default_value_t = 1)]
    pub calls_per_slot: usize,
    /// Stop bisecting once the highest pass and lowest failure are this close.
    #[arg(long, default_value_t = 1)]
    pub ceiling_resolution: usize,
}

impl Default for CeilingOptions {
    fn default() -> Self {
        CeilingOptions {
            find_ceiling: false,
            p95_limit: 1.5,
            max_concurrency: 64,
            ceiling_start: 4,
            calls_per_slot: 1,
            ceiling_resolution: 1,
        }
    }
}

impl CeilingOptions {
    fn check(&self) -> Result<()> {
        if !(1..=MAX_CONCURRENCY).contains(&self.max_concurrency) {
            bail!("--max-concurrency must be 1..={MAX_CONCURRENCY}");
        }
        if !(1..=self.max_concurrency).contains(&self.ceiling_start) {
            bail!("--ceiling-start must be 1..=--max-concurrency");
        }
        if self.calls_per_slot == 0 || self.calls_per_slot * self.max_concurrency > MAX_CALLS {
            bail!("--calls-per-slot × --max-concurrency must be 1..={MAX_CALLS}");
        }
        if !(self.p95_limit.is_finite() && self.p95_limit > 0.0) {
            bail!("--p95-limit must be a positive number of seconds");
        }
        if self.ceiling_resolution == 0 {
            bail!("--ceiling-resolution must be at least 1");
        }
        Ok(())
    }
}

/// The search itself, without IO: which concurrency to try next given the verdicts so far.
/// Assumes that holding `n` calls implies holding fewer (noise can break that; the rows show it).
#[derive(Debug, Clone)]
pub struct Search {
    start: usize,
    max: usize,
    resolution: usize,
    /// Highest concurrency that passed (0: none yet).
    passed: usize,
    /// Lowest concurrency that failed.
    failed: Option<usize>,
}

impl Search {
    pub fn new(start: usize, max: usize, resolution: usize) -> Search {
        Search {
            start: start.clamp(1, max.max(1)),
            max: max.max(1),
            resolution: resolution.max(1),
            passed: 0,
            failed: None,
        }
    }

    /// The next concurrency to measure, or `None` when the ceiling is known.
    pub fn next(&self) -> Option<usize> {
        match self.failed {
            None if self.passed >= self.max => None,
            None if self.passed == 0 => Some(self.start),
            None => Some((self.passed * 2).min(self.max)),
            Some(failed) if failed - self.passed <= self.resolution => None,
            Some(failed) => Some(self.passed + (failed - self.passed) / 2),
        }
    }

    pub fn record(&mut self, concurrency: usize, passed: bool) {
        if passed {
            self.passed = self.passed.max(concurrency);
        } else {
            self.failed = Some(self.failed.map_or(concurrency, |f| f.min(concurrency)));
        }
    }

    /// The most concurrent calls that passed (0: not even the lowest step tried).
    pub fn ceiling(&self) -> usize {
        self.passed
    }

    /// The lowest concurrency that failed, if any did.
    pub fn first_failure(&self) -> Option<usize> {
        self.failed
    }
}

/// One step's figures, as printed in its row.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub concurrency: usize,
    pub calls: usize,
    pub completed: usize,
    /// Lost (neither a transfer nor a goodbye) plus cut off plus never started.
    pub lost: usize,
    /// Handed to a person because the line was full (webhook `<Dial>` or overload handoff).
    pub overload: usize,
    /// Outcomes other than the fixture expects (wrong queue, goodbye instead of transfer).
    pub unexpected: usize,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub stt_p95_ms: Option<f64>,
    pub stt_queue_mean_ms: Option<f64>,
    pub cpu_seconds_per_call: Option<f64>,
    pub other_processes_cpu_percent: Option<f64>,
    pub wall_seconds: f64,
    pub passed: bool,
    /// Why it failed, in words (empty when it passed).
    pub why: String,
    /// The lost calls' lines, for diagnosis.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lost_calls: Vec<String>,
}

impl Step {
    pub fn judge(report: &Report, p95_limit_ms: f64) -> Step {
        let d = report.decision_latency.as_ref();
        let lost = report.lost() + report.cut_off + report.not_started;
        let overload = report.transfers_citing_overload;
        let p95 = d.map(|d| d.p95_ms);
        let mut why = Vec::new();
        if lost > 0 {
            why.push(format!("{lost} lost"));
        }
        if overload > 0 {
            why.push(format!("{overload} handed over for overload"));
        }
        match p95 {
            None => why.push("no transfer measured".into()),
            Some(p) if p >= p95_limit_ms => why.push(format!(
                "p95 {:.2} s ≥ {:.2} s",
                p / 1000.0,
                p95_limit_ms / 1000.0
            )),
            Some(_) => {}
        }
        Step {
            concurrency: report.concurrency,
            calls: report.calls_requested,
            completed: report.completed,
            lost,
            overload,
            unexpected: report.unexpected.len(),
            p50_ms: d.map(|d| d.p50_ms),
            p95_ms: p95,
            p99_ms: d.map(|d| d.p99_ms),
            stt_p95_ms: report.stt.as_ref().map(|h| h.p95_ms),
            stt_queue_mean_ms: report.stt_queue_wait.as_ref().map(|h| h.mean_ms),
            cpu_seconds_per_call: report.cpu_seconds_per_call,
            other_processes_cpu_percent: report.other_processes_cpu_percent,
            wall_seconds: report.wall_seconds,
            passed: why.is_empty(),
            why: why.join(", "),
            lost_calls: report.lost_calls.clone(),
        }
    }

    pub const HEADER: &'static str = "  at once  calls  done  lost  overload  unexpected  p50 s  p95 s  p99 s  stt p95 s  queue s  cpu/call s  others %  wall s  verdict";

    /// One line under [`Step::HEADER`], plus one per lost call.
    pub fn row(&self) -> String {
        let s = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}", v / 1000.0));
        let n = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |v| format!("{v:.p$}"));
        let mut line = format!(
            "  {:>7}  {:>5}  {:>4}  {:>4}  {:>8}  {:>10}  {:>5}  {:>5}  {:>5}  {:>9}  {:>7}  {:>10}  {:>8}  {:>6.0}  {}",
            self.concurrency,
            self.calls,
            self.completed,
            self.lost,
            self.overload,
            self.unexpected,
            s(self.p50_ms),
            s(self.p95_ms),
            s(self.p99_ms),
            s(self.stt_p95_ms),
            s(self.stt_queue_mean_ms),
            n(self.cpu_seconds_per_call, 2),
            n(self.other_processes_cpu_percent, 0),
            self.wall_seconds,
            if self.passed {
                "pass".to_string()
            } else {
                format!("FAIL: {}", self.why)
            }
        );
        for c in &self.lost_calls {
            line.push_str(&format!("\n           lost: {c}"));
        }
        line
    }
}

/// The search's result: every step in the order run, and the ceiling.
#[derive(Debug, Clone, Serialize)]
pub struct Ceiling {
    pub machine: Machine,
    pub server: String,
    pub fixtures: String,
    pub p95_limit_seconds: f64,
    pub calls_per_slot: usize,
    pub max_concurrency: usize,
    pub steps: Vec<Step>,
    /// The most concurrent calls that passed (0: not even the lowest step).
    pub ceiling: usize,
    /// The lowest concurrency that failed (`None`: every step up to --max-concurrency passed).
    pub first_failure: Option<usize>,
}

impl Ceiling {
    fn header(&self) -> String {
        format!(
            "warmline loadtest --find-ceiling: most concurrent calls with p95 (end of the caller's turn → transfer request) < {:.2} s, none lost or handed over for overload\n  CPU               {}\n  server            {}\n  fixtures          {}\n  steps             calls = {} × concurrency; doubling from the start, then bisecting; at most {} at once\n{}",
            self.p95_limit_seconds,
            self.machine,
            self.server,
            self.fixtures,
            self.calls_per_slot,
            self.max_concurrency,
            Step::HEADER
        )
    }

    /// What the search found, in one line.
    pub fn verdict(&self) -> String {
        let at = |c: usize| self.steps.iter().rev().find(|s| s.concurrency == c);
        let p95 = |c: usize| {
            at(c)
                .and_then(|s| s.p95_ms)
                .map_or("-".into(), |p| format!("{:.2} s", p / 1000.0))
        };
        match (self.ceiling, self.first_failure) {
            (0, _) => "ceiling: none — even the lowest step failed".to_string(),
            (c, None) => format!(
                "ceiling: ≥ {c} concurrent calls (p95 {} at {c}; every step up to --max-concurrency {} passed)",
                p95(c),
                self.max_concurrency
            ),
            (c, Some(f)) => format!(
                "ceiling: {c} concurrent calls (p95 {} at {c}; {f} failed: {})",
                p95(c),
                at(f).map_or("", |s| s.why.as_str())
            ),
        }
    }
}

impl fmt::Display for Ceiling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.header())?;
        for s in &self.steps {
            writeln!(f, "{}", s.row())?;
        }
        writeln!(f, "{}", self.verdict())
    }
}

/// Drives a search: `measure(concurrency, calls)` runs one step; `progress` sees each step as
/// it is judged (the whole search takes minutes, so rows are printed as they come).
pub async fn search<M, F>(
    copts: &CeilingOptions,
    mut measure: M,
    mut progress: impl FnMut(&Step),
) -> Result<(Vec<Step>, Search)>
where
    M: FnMut(usize, usize) -> F,
    F: Future<Output = Result<Report>>,
{
    let mut search = Search::new(
        copts.ceiling_start,
        copts.max_concurrency,
        copts.ceiling_resolution,
    );
    let mut steps = Vec::new();
    while let Some(concurrency) = search.next() {
        let report = measure(concurrency, concurrency * copts.calls_per_slot).await?;
        let step = Step::judge(&report, copts.p95_limit * 1000.0);
        search.record(concurrency, step.passed);
        progress(&step);
        steps.push(step);
    }
    Ok((steps, search))
}

/// `warmline loadtest --find-ceiling`: the header, each step's row as it is judged, and the
/// verdict go to `print` (the search takes minutes; `Ceiling`'s Display is the same table).
pub async fn run(opts: LoadtestOptions, copts: CeilingOptions, print: fn(&str)) -> Result<Ceiling> {
    copts.check()?;
    let mut opts = opts;
    // The in-process server must not turn callers away below the concurrency being measured:
    // that would be the configured limit, not the ceiling.
    if opts.settings.max_calls < copts.max_concurrency {
        opts.settings.max_calls = copts.max_concurrency;
    }
    // Each step is checked as a plain run would be (bounds, --url, --instances).
    let step_opts = |concurrency: usize, calls: usize| {
        let mut o = opts.clone();
        o.concurrency = concurrency;
        o.calls = calls;
        o
    };
    step_opts(
        copts.max_concurrency,
        copts.max_concurrency * copts.calls_per_slot,
    )
    .check()?;
    let (fixtures, fixture_note) = load_fixtures(&opts.fixtures)?;
    let mut ceiling = Ceiling {
        machine: Machine::detect(),
        server: String::new(),
        fixtures: fixture_note.clone(),
        p95_limit_seconds: copts.p95_limit,
        calls_per_slot: copts.calls_per_slot,
        max_concurrency: copts.max_concurrency,
        steps: Vec::new(),
        ceiling: 0,
        first_failure: None,
    };
    let print_row = |s: &Step| print(&s.row());
    let (steps, found) = if opts.instances > 1 {
        // A spread run starts its own instances; each step gets fresh ones.
        ceiling.server = format!("{} in-process instances per step", opts.instances);
        print(&ceiling.header());
        search(&copts, |c, n| super::run(step_opts(c, n)), print_row).await?
    } else {
        let cloud = Arc::new(start_cloud(&opts).await?);
        let server = Server::for_run(&opts, &cloud.base()).await?;
        ceiling.server = match &server {
            Server::InProcess(_) => format!(
                "in-process, one for every step (max_calls {}, stt threads {}, {} decoder states)",
                opts.settings.max_calls, opts.settings.stt.threads, opts.settings.stt.max_states
            ),
            Server::Remote { base, .. } => format!("{base}, one for every step"),
        };
        print(&ceiling.header());
        let (server, fixtures) = (&server, Arc::new(fixtures));
        search(
            &copts,
            |c, n| {
                let (o, fixtures, note, cloud) = (
                    step_opts(c, n),
                    fixtures.clone(),
                    fixture_note.clone(),
                    cloud.clone(),
                );
                async move { run_against(&o, fixtures.to_vec(), note, cloud, server).await }
            },
            print_row,
        )
        .await?
    };
    ceiling.steps = steps;
    ceiling.ceiling = found.ceiling();
    ceiling.first_failure = found.first_failure();
    print(&ceiling.verdict());
    Ok(ceiling)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the search against a line that holds exactly `holds` calls.
    fn find(start: usize, max: usize, resolution: usize, holds: usize) -> (Vec<usize>, Search) {
        let mut s = Search::new(start, max, resolution);
        let mut tried = Vec::new();
        while let Some(c) = s.next() {
            assert!(
                !tried.contains(&c),
                "{c} measured twice: {tried:?}, holds {holds}"
            );
            tried.push(c);
            s.record(c, c <= holds);
            assert!(tried.len() <= 20, "search does not end: {tried:?}");
        }
        (tried, s)
    }

    #[test]
    fn search_finds_the_exact_ceiling_with_few_steps() {
        for holds in 0..=70 {
            let (tried, s) = find(4, 64, 1, holds);
            assert_eq!(s.ceiling(), holds.min(64), "holds {holds}, tried {tried:?}");
            if holds < 64 {
                assert_eq!(s.first_failure(), Some(holds + 1), "holds {holds}");
            } else {
                assert_eq!(s.first_failure(), None);
            }
            // Doubling 4→64 is 5 steps, bisecting a gap of 32 is 5 more.
            assert!(tried.len() <= 10, "holds {holds}: {tried:?}");
            assert!(tried.iter().all(|&c| (1..=64).contains(&c)));
        }
    }

    #[test]
    fn search_doubles_then_bisects() {
        let (tried, s) = find(4, 64, 1, 21);
        assert_eq!(tried, [4, 8, 16, 32, 24, 20, 22, 21]);
        assert_eq!((s.ceiling(), s.first_failure()), (21, Some(22)));
        // Below the start it bisects down towards 1.
        let (tried, s) = find(4, 64, 1, 2);
        assert_eq!(tried, [4, 2, 3]);
        assert_eq!(s.ceiling(), 2);
        // A line that holds nothing: the ceiling is 0 after trying 1.
        let (tried, s) = find(4, 64, 1, 0);
        assert_eq!(tried, [4, 2, 1]);
        assert_eq!((s.ceiling(), s.first_failure()), (0, Some(1)));
    }

    #[test]
    fn coarser_resolution_stops_earlier_but_never_overstates() {
        for holds in 1..64 {
            let (tried, s) = find(4, 64, 4, holds);
            let f = s.first_failure().unwrap();
            assert!(s.ceiling() <= holds && holds < f && f - s.ceiling() <= 4);
            assert!(tried.len() <= 8, "{tried:?}");
        }
    }

    #[test]
    fn max_concurrency_bounds_the_search() {
        let (tried, s) = find(4, 10, 1, 100);
        assert_eq!(tried, [4, 8, 10]);
        assert_eq!((s.ceiling(), s.first_failure()), (10, None));
        let (tried, _) = find(64, 8, 1, 100);
        assert_eq!(tried, [8], "a start above the maximum is clamped");
    }

    fn report(concurrency: usize, p95_ms: Option<f64>, lost: usize, overload: usize) -> Report {
        Report {
            concurrency,
            calls_requested: concurrency,
            completed: concurrency - lost,
            lost_calls: (0..lost).map(|i| format!("CA{i} f: reset")).collect(),
            transfers_citing_overload: overload,
            decision_latency: p95_ms.map(|p| crate::loadtest::Spread {
                n: concurrency,
                mean_ms: p / 2.0,
                p50_ms: p / 2.0,
                p95_ms: p,
                p99_ms: p,
                max_ms: p,
            }),
            ..Report::default()
        }
    }

    #[test]
    fn a_step_passes_only_under_the_limit_with_nobody_lost_or_turned_away() {
        assert!(Step::judge(&report(8, Some(1499.0), 0, 0), 1500.0).passed);
        let slow = Step::judge(&report(8, Some(1500.0), 0, 0), 1500.0);
        assert!(
            !slow.passed && slow.why.contains("p95 1.50 s"),
            "{}",
            slow.why
        );
        let lost = Step::judge(&report(8, Some(300.0), 1, 0), 1500.0);
        assert!(!lost.passed && lost.why == "1 lost", "{}", lost.why);
        assert!(lost.row().contains("lost: CA0 f: reset"));
        let turned_away = Step::judge(&report(8, Some(300.0), 0, 3), 1500.0);
        assert!(!turned_away.passed && turned_away.why.contains("3 handed over for overload"));
        let nothing = Step::judge(&report(8, None, 0, 0), 1500.0);
        assert!(!nothing.passed && nothing.why == "no transfer measured");
    }

    #[tokio::test]
    async fn search_drives_measure_and_reports_each_step() {
        let copts = CeilingOptions {
            find_ceiling: true,
            max_concurrency: 16,
            ..CeilingOptions::default()
        };
        let mut seen = Vec::new();
        // A fake line: p95 grows 100 ms per concurrent call; 11 and up exceed 1.5 s.
        let (steps, s) = search(
            &copts,
            |c, calls| {
                assert_eq!(calls, c * copts.calls_per_slot);
                async move { Ok(report(c, Some(400.0 + 100.0 * c as f64), 0, 0)) }
            },
            |step| seen.push((step.concurrency, step.passed)),
        )
        .await
        .unwrap();
        assert_eq!(s.ceiling(), 10);
        assert_eq!(
            seen,
            [
                (4, true),
                (8, true),
                (16, false),
                (12, false),
                (10, true),
                (11, false)
            ]
        );
        assert_eq!(steps.len(), seen.len());
        // A failed measurement (e.g. the server did not start) ends the search with its error.
        let err = search(
            &copts,
            |_, _| async { bail!("server did not start") },
            |_| {},
        )
        .await;
        assert!(err.is_err());
    }
}
