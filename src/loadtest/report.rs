//! The report of a run: what happened to the calls, what the callers waited for, what the
//! calls cost; as JSON and as the table `warmline loadtest` prints.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::calls::{CallOutcome, End};
use super::measure::{Histogram, Snapshot, scrape_value, status_kb};
use super::{InstanceFigures, LoadtestOptions, Machine, Provider, scale};

/// Mean and approximate p95 of a server histogram over the run.
#[derive(Debug, Clone, Serialize)]
pub struct HistSummary {
    pub n: u64,
    pub mean_ms: f64,
    /// Interpolated within Prometheus buckets: approximate.
    pub p50_ms: f64,
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
    pub(super) fn of(values: &[f64]) -> Option<Spread> {
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
pub(super) struct Measured {
    pub(super) server: String,
    pub(super) fixture_note: String,
    pub(super) opts: LoadtestOptions,
    pub(super) wall: Duration,
    pub(super) peak_concurrency: usize,
    pub(super) before: Snapshot,
    pub(super) after: Snapshot,
    pub(super) sampled_peak_kb: Option<u64>,
    pub(super) in_process: bool,
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
    pub(super) fn build(calls: Vec<CallOutcome>, m: &Measured) -> Report {
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
            "n={:<4} mean {}   p50 ≈ {}   p95 {}{}",
            h.n,
            secs(h.mean_ms),
            secs(h.p50_ms),
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
    fn spread_quantiles_interpolate() {
        let s = Spread::of(&[400.0, 100.0, 300.0, 200.0, 500.0]).unwrap();
        assert_eq!((s.p50_ms, s.max_ms, s.n), (300.0, 500.0, 5));
        assert!((s.p95_ms - 480.0).abs() < 1e-9);
        assert!(Spread::of(&[]).is_none());
    }
}
