//! What the server cost: CPU from /proc (the server's threads told apart from the load
//! generator's), memory, the machine's other load, and the server's own histograms scraped
//! from `/metrics` before and after a run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::task::JoinHandle;

use super::report::HistSummary;
use super::server::{SERVER_THREAD_PREFIX, Server};
use crate::procstat::{machine_busy_seconds, process_cpu};

/// What the server looked like at one moment.
pub(super) struct Snapshot {
    pub(super) metrics: String,
    /// CPU seconds of the server process (in-process: the whole process).
    pub(super) cpu: Option<f64>,
    /// CPU seconds of the load generator's live threads (in-process) or process (--url).
    pub(super) load_cpu: Option<f64>,
    pub(super) rss_kb: Option<u64>,
    /// Busy CPU seconds of the whole machine, to see what else competed for the cores.
    pub(super) machine_busy: Option<f64>,
    /// In-process: the peak-RSS counter was reset here, so VmHWM later is this run's peak.
    pub(super) hwm_reset: bool,
}

impl Snapshot {
    pub(super) async fn take(http: &reqwest::Client, server: &Server) -> Result<Snapshot> {
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

pub(super) fn status_kb(dir: &Path, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// Peak RSS of another process, sampled (its VmHWM may predate the run).
pub(super) struct RssSampler {
    peak_kb: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl RssSampler {
    pub(super) fn start(dir: PathBuf) -> RssSampler {
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

    pub(super) fn stop(self) -> u64 {
        self.task.abort();
        self.peak_kb.load(Ordering::Relaxed)
    }
}

/// A Prometheus histogram as scraped: cumulative `(le, count)` buckets, sum and count.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Histogram {
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

impl Histogram {
    pub(super) fn scrape(text: &str, name: &str) -> Histogram {
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
    pub(super) fn since(&self, before: &Histogram) -> Histogram {
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

    pub(super) fn summary(&self) -> Option<HistSummary> {
        let (p95, beyond) = self.quantile(0.95)?;
        let (p50, _) = self.quantile(0.5)?;
        Some(HistSummary {
            n: self.count as u64,
            mean_ms: self.sum / self.count * 1000.0,
            p50_ms: p50 * 1000.0,
            p95_ms: p95 * 1000.0,
            p95_beyond_buckets: beyond,
        })
    }
}

pub(super) fn scrape_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!((s.p50_ms - 550.0).abs() < 1e-6, "{}", s.p50_ms);
        let overflow = "warmline_y_bucket{le=\"1\"} 0\nwarmline_y_bucket{le=\"+Inf\"} 2\nwarmline_y_sum 9\nwarmline_y_count 2\n";
        let o = Histogram::scrape(overflow, "warmline_y").summary().unwrap();
        assert!(o.p95_beyond_buckets && o.p95_ms == 1000.0);
    }
}
