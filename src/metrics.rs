//! Process metrics in the Prometheus text exposition format (version 0.0.4), hand-rolled
//! because the set is small and fixed.
//!
//! Labels come from a closed set of program strings (outcomes, reasons, error kinds), never
//! from callers, so the label maps stay small.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::call::Outcome;

/// Content-Type for the `/metrics` response.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const PREFIX: &str = "warmline_";

/// The `calls_total` label of a caller the fail-open callback sent to a person.
const FAILED_OPEN_LABEL: &str = "stream_ended_to_human";

/// Seconds; spans a fast escalation (STT of a short utterance) to an overloaded pool.
pub const LATENCY_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0];
/// Seconds, finer where a caller's decision should land: 0.35 is the target for a request
/// for a person one call at a time, 1.5 the ceiling's limit under load.
pub const DECISION_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.75, 1.0, 1.25, 1.5, 2.5, 5.0, 10.0,
];
/// Seconds; waiting for a free Whisper state should be near zero until the pool saturates.
pub const QUEUE_WAIT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A metric lock only guards plain numbers, so a panic elsewhere cannot leave it inconsistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A counter family with one label.
struct LabeledCounter {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    values: Mutex<BTreeMap<String, u64>>,
}

impl LabeledCounter {
    fn new(name: &'static str, help: &'static str, label: &'static str) -> Self {
        Self {
            name,
            help,
            label,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    fn inc(&self, value: &str) {
        *lock(&self.values).entry(value.to_owned()).or_insert(0) += 1;
    }

    fn get(&self, value: &str) -> u64 {
        lock(&self.values).get(value).copied().unwrap_or(0)
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "counter");
        for (value, count) in lock(&self.values).iter() {
            let _ = writeln!(
                out,
                "{PREFIX}{}{{{}=\"{}\"}} {count}",
                self.name,
                self.label,
                escape_label(value)
            );
        }
    }
}

#[derive(Default)]
struct HistogramState {
    /// Per-bucket (non-cumulative) counts; rendering accumulates them.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// Buckets, sum and count sit under one lock so a scrape never sees `count` disagree with
/// the `+Inf` bucket.
struct Histogram {
    name: &'static str,
    help: &'static str,
    bounds: &'static [f64],
    state: Mutex<HistogramState>,
}

impl Histogram {
    fn new(name: &'static str, help: &'static str, bounds: &'static [f64]) -> Self {
        Self {
            name,
            help,
            bounds,
            state: Mutex::new(HistogramState {
                counts: vec![0; bounds.len()],
                ..HistogramState::default()
            }),
        }
    }

    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let mut s = lock(&self.state);
        if let Some(i) = self.bounds.iter().position(|&b| secs <= b) {
            s.counts[i] += 1;
        }
        s.sum += secs;
        s.count += 1;
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "histogram");
        let s = lock(&self.state);
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&s.counts) {
            cumulative += count;
            let _ = writeln!(
                out,
                "{PREFIX}{}_bucket{{le=\"{bound}\"}} {cumulative}",
                self.name
            );
        }
        let _ = writeln!(
            out,
            "{PREFIX}{}_bucket{{le=\"+Inf\"}} {}",
            self.name, s.count
        );
        let _ = writeln!(out, "{PREFIX}{}_sum {}", self.name, s.sum);
        let _ = writeln!(out, "{PREFIX}{}_count {}", self.name, s.count);
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {PREFIX}{name} {help}");
    let _ = writeln!(out, "# TYPE {PREFIX}{name} {kind}");
}

/// Label values escape backslash, double quote and newline (exposition format rules).
fn escape_label(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

pub struct Metrics {
    active_calls: AtomicI64,
    overload_handoffs: AtomicU64,
    calls: LabeledCounter,
    escalations: LabeledCounter,
    wire_errors: LabeledCounter,
    transfer_failures: LabeledCounter,
    connections: LabeledCounter,
    open_connections: AtomicI64,
    auth_failures: AtomicU64,
    store_errors: AtomicU64,
    /// 1 while the last call-record write succeeded; 0 after a failed one (disk full, …).
    store_ok: AtomicI64,
    decision_latency: Histogram,
    stt: Histogram,
    stt_queue_wait: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("active_calls", &self.active_calls())
            .finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            active_calls: AtomicI64::new(0),
            overload_handoffs: AtomicU64::new(0),
            calls: LabeledCounter::new("calls_total", "Finished calls by outcome.", "outcome"),
            escalations: LabeledCounter::new(
                "escalations_total",
                "Calls handed to a human, by reason.",
                "reason",
            ),
            wire_errors: LabeledCounter::new(
                "wire_errors_total",
                "Provider frames that could not be decoded, by kind.",
                "kind",
            ),
            transfer_failures: LabeledCounter::new(
                "transfer_failures_total",
                "Transfers the provider did not accept, by kind.",
                "kind",
            ),
            connections: LabeledCounter::new(
                "connections_total",
                "Inbound TCP connections by what happened to them (accepted, refused at the cap, evicted to make room, closed idle, accept errors).",
                "event",
            ),
            open_connections: AtomicI64::new(0),
            auth_failures: AtomicU64::new(0),
            store_errors: AtomicU64::new(0),
            store_ok: AtomicI64::new(1),
            decision_latency: Histogram::new(
                "decision_latency_seconds",
                "End of caller speech to transfer request sent.",
                DECISION_BUCKETS,
            ),
            stt: Histogram::new(
                "stt_seconds",
                "Speech-to-text time per utterance.",
                LATENCY_BUCKETS,
            ),
            stt_queue_wait: Histogram::new(
                "stt_queue_wait_seconds",
                "Time an utterance waited for a free speech-to-text worker.",
                QUEUE_WAIT_BUCKETS,
            ),
        }
    }

    pub fn inc_active_calls(&self) {
        self.active_calls.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dec_active_calls(&self) {
        self.active_calls.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn active_calls(&self) -> i64 {
        self.active_calls.load(Ordering::Relaxed)
    }

    /// Counts the call as active until the guard drops, so a panicking call task cannot
    /// leave the gauge stuck high.
    pub fn track_active_call(self: &Arc<Self>) -> ActiveCall {
        self.inc_active_calls();
        ActiveCall(Arc::clone(self))
    }

    pub fn inc_calls(&self, outcome: Outcome) {
        self.calls.inc(outcome.as_str());
    }

    pub fn calls(&self, outcome: Outcome) -> u64 {
        self.calls.get(outcome.as_str())
    }

    /// A stream-ended callback sent the caller to a person. Not an [`Outcome`] (the call's
    /// own end, if this process saw it, was counted already), but counted beside them under
    /// the label dashboards have always read.
    pub fn inc_calls_failed_open(&self) {
        self.calls.inc(FAILED_OPEN_LABEL);
    }

    pub fn inc_escalations(&self, reason: &str) {
        self.escalations.inc(reason);
    }

    pub fn inc_wire_errors(&self, kind: &str) {
        self.wire_errors.inc(kind);
    }

    pub fn inc_overload_handoffs(&self) {
        self.overload_handoffs.fetch_add(1, Ordering::Relaxed);
    }

    pub fn inc_transfer_failures(&self, kind: &str) {
        self.transfer_failures.inc(kind);
    }

    pub fn inc_connections(&self, event: &'static str) {
        self.connections.inc(event);
    }

    pub fn connections(&self, event: &str) -> u64 {
        self.connections.get(event)
    }

    pub fn add_open_connections(&self, delta: i64) {
        self.open_connections.fetch_add(delta, Ordering::Relaxed);
    }

    pub fn open_connections(&self) -> i64 {
        self.open_connections.load(Ordering::Relaxed)
    }

    pub fn inc_auth_failures(&self) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the result of one call-record write.
    pub fn store_write(&self, ok: bool) {
        if !ok {
            self.store_errors.fetch_add(1, Ordering::Relaxed);
        }
        self.store_ok.store(i64::from(ok), Ordering::Relaxed);
    }

    pub fn store_ok(&self) -> bool {
        self.store_ok.load(Ordering::Relaxed) == 1
    }

    pub fn store_errors(&self) -> u64 {
        self.store_errors.load(Ordering::Relaxed)
    }

    pub fn observe_decision_latency(&self, d: Duration) {
        self.decision_latency.observe(d);
    }

    pub fn observe_stt(&self, d: Duration) {
        self.stt.observe(d);
    }

    pub fn observe_stt_queue_wait(&self, d: Duration) {
        self.stt_queue_wait.observe(d);
    }

    /// The whole exposition, families in a fixed order.
    pub fn render(&self) -> String {
        let mut out = String::new();
        header(
            &mut out,
            "active_calls",
            "Calls currently connected.",
            "gauge",
        );
        let _ = writeln!(out, "{PREFIX}active_calls {}", self.active_calls());
        self.calls.render(&mut out);
        self.escalations.render(&mut out);
        self.wire_errors.render(&mut out);
        header(
            &mut out,
            "overload_handoffs_total",
            "Calls sent straight to a human because capacity was exhausted.",
            "counter",
        );
        let overload = self.overload_handoffs.load(Ordering::Relaxed);
        let _ = writeln!(out, "{PREFIX}overload_handoffs_total {overload}");
        self.transfer_failures.render(&mut out);
        self.connections.render(&mut out);
        for (name, help, kind, value) in [
            (
                "open_connections",
                "Inbound connections open now (HTTP and media WebSockets).",
                "gauge",
                self.open_connections(),
            ),
            (
                "auth_failures_total",
                "Caller-data requests refused for want of a valid API token.",
                "counter",
                self.auth_failures.load(Ordering::Relaxed) as i64,
            ),
            (
                "store_errors_total",
                "Call-record writes that failed (each is logged; the call goes on).",
                "counter",
                self.store_errors() as i64,
            ),
            (
                "store_ok",
                "1 while the last call-record write succeeded, 0 after a failure.",
                "gauge",
                i64::from(self.store_ok()),
            ),
        ] {
            header(&mut out, name, help, kind);
            let _ = writeln!(out, "{PREFIX}{name} {value}");
        }
        self.decision_latency.render(&mut out);
        self.stt.render(&mut out);
        self.stt_queue_wait.render(&mut out);
        out
    }
}

/// Decrements `active_calls` when dropped.
#[derive(Debug)]
pub struct ActiveCall(Arc<Metrics>);

impl Drop for ActiveCall {
    fn drop(&mut self) {
        self.0.dec_active_calls();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn render_counters_and_gauge() {
        let m = Metrics::new();
        m.inc_active_calls();
        m.inc_active_calls();
        m.dec_active_calls();
        m.inc_calls(Outcome::Transferred);
        m.inc_calls(Outcome::Transferred);
        m.inc_calls(Outcome::SelfServed);
        m.inc_calls_failed_open();
        m.inc_escalations("explicit_request");
        m.inc_wire_errors("bad_base64");
        m.inc_overload_handoffs();
        m.inc_transfer_failures("exhausted");
        let text = m.render();
        let l = lines(&text);
        for expected in [
            "# HELP warmline_active_calls Calls currently connected.",
            "# TYPE warmline_active_calls gauge",
            "warmline_active_calls 1",
            "# TYPE warmline_calls_total counter",
            r#"warmline_calls_total{outcome="self_served"} 1"#,
            r#"warmline_calls_total{outcome="transferred"} 2"#,
            r#"warmline_calls_total{outcome="stream_ended_to_human"} 1"#,
            r#"warmline_escalations_total{reason="explicit_request"} 1"#,
            r#"warmline_wire_errors_total{kind="bad_base64"} 1"#,
            "# TYPE warmline_overload_handoffs_total counter",
            "warmline_overload_handoffs_total 1",
            r#"warmline_transfer_failures_total{kind="exhausted"} 1"#,
        ] {
            assert!(l.contains(&expected), "missing {expected:?} in\n{text}");
        }
        assert_eq!(m.calls(Outcome::Transferred), 2);
    }

    #[test]
    fn render_histogram_is_cumulative() {
        let m = Metrics::new();
        for ms in [40, 100, 300, 1200, 20_000] {
            m.observe_stt(Duration::from_millis(ms));
        }
        let text = m.render();
        let stt: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("warmline_stt_seconds"))
            .collect();
        assert_eq!(
            stt,
            [
                "# HELP warmline_stt_seconds Speech-to-text time per utterance.",
                "# TYPE warmline_stt_seconds histogram",
                r#"warmline_stt_seconds_bucket{le="0.05"} 1"#,
                r#"warmline_stt_seconds_bucket{le="0.1"} 2"#,
                r#"warmline_stt_seconds_bucket{le="0.25"} 2"#,
                r#"warmline_stt_seconds_bucket{le="0.5"} 3"#,
                r#"warmline_stt_seconds_bucket{le="0.75"} 3"#,
                r#"warmline_stt_seconds_bucket{le="1"} 3"#,
                r#"warmline_stt_seconds_bucket{le="1.5"} 4"#,
                r#"warmline_stt_seconds_bucket{le="2.5"} 4"#,
                r#"warmline_stt_seconds_bucket{le="5"} 4"#,
                r#"warmline_stt_seconds_bucket{le="10"} 4"#,
                r#"warmline_stt_seconds_bucket{le="+Inf"} 5"#,
                "warmline_stt_seconds_sum 21.64",
                "warmline_stt_seconds_count 5",
            ]
        );
    }

    #[test]
    fn empty_histogram_renders_zeros() {
        let text = Metrics::new().render();
        let l = lines(&text);
        assert!(l.contains(&r#"warmline_decision_latency_seconds_bucket{le="+Inf"} 0"#));
        assert!(l.contains(&"warmline_decision_latency_seconds_sum 0"));
        assert!(l.contains(&"warmline_stt_queue_wait_seconds_count 0"));
        assert!(l.contains(&"# TYPE warmline_escalations_total counter"));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.inc_wire_errors("a\"b\\c\nd");
        let text = m.render();
        assert!(
            text.contains(r#"warmline_wire_errors_total{kind="a\"b\\c\nd"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn every_sample_line_is_well_formed() {
        let m = Metrics::new();
        m.inc_calls(Outcome::Transferred);
        m.observe_decision_latency(Duration::from_millis(700));
        m.observe_stt_queue_wait(Duration::from_millis(3));
        for line in m.render().lines() {
            if line.starts_with('#') {
                assert!(
                    line.starts_with("# HELP ") || line.starts_with("# TYPE "),
                    "{line}"
                );
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("name and value");
            assert!(series.starts_with(PREFIX), "{line}");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn active_call_guard_decrements_on_drop() {
        let m = Arc::new(Metrics::new());
        let guard = m.track_active_call();
        assert_eq!(m.active_calls(), 1);
        drop(guard);
        assert_eq!(m.active_calls(), 0);
    }

    #[test]
    fn metrics_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Metrics>();
    }
}
