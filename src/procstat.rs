//! CPU time from Linux's `/proc`: this process's, the whole machine's, and what other
//! processes are using right now. The load test reports with it; the server asks it whether
//! a lone transcription may spread over every core.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// /proc reports CPU time in USER_HZ ticks, fixed at 100 by the Linux ABI.
const TICKS_PER_SECOND: f64 = 100.0;

/// user + system CPU seconds from a `/proc/.../stat` line.
pub fn stat_cpu_seconds(stat: &str) -> Option<f64> {
    // The command name may hold spaces and parentheses: fields are counted after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// user + system CPU seconds of the process (or thread) whose `/proc` directory is `dir`.
pub fn process_cpu(dir: &Path) -> Option<f64> {
    stat_cpu_seconds(&std::fs::read_to_string(dir.join("stat")).ok()?)
}

/// Busy (not idle, not iowait) CPU seconds of all cores since boot, from `/proc/stat`.
pub fn machine_busy_seconds() -> Option<f64> {
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

/// Readings closer together than this say little: /proc counts in 10 ms ticks.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// A figure older than this is no longer what the machine is doing.
const STALE_AFTER: Duration = Duration::from_secs(2);

/// Cores kept busy by processes other than this one, measured between readings at least
/// [`SAMPLE_EVERY`] apart. The load average cannot tell this: on a machine doing nothing
/// but this server's own transcriptions it rises past half a core by itself, and then a
/// caller alone on the line is transcribed on one thread instead of two.
#[derive(Debug, Default)]
pub struct OthersCpu {
    last: Mutex<Option<Reading>>,
}

#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    machine: f64,
    own: f64,
    /// Other processes' cores between the reading before and this one.
    others: Option<f64>,
}

impl OthersCpu {
    pub const fn new() -> OthersCpu {
        OthersCpu {
            last: Mutex::new(None),
        }
    }

    /// Takes a reading if the last is at least [`SAMPLE_EVERY`] old. Cheap to call often:
    /// most calls only compare two instants.
    pub fn sample(&self) {
        let now = Instant::now();
        let Ok(mut last) = self.last.try_lock() else {
            return;
        };
        if last.is_some_and(|r| now.duration_since(r.at) < SAMPLE_EVERY) {
            return;
        }
        let (Some(machine), Some(own)) =
            (machine_busy_seconds(), process_cpu(Path::new("/proc/self")))
        else {
            return;
        };
        *last = Some(fold(*last, now, machine, own));
    }

    /// Cores other processes used lately; `None` if unknown or stale.
    pub fn cores(&self) -> Option<f64> {
        let last = (*self.last.lock().ok()?)?;
        (last.at.elapsed() < STALE_AFTER)
            .then_some(last.others)
            .flatten()
    }
}

fn fold(prev: Option<Reading>, at: Instant, machine: f64, own: f64) -> Reading {
    let others = prev.and_then(|p| {
        let secs = at.duration_since(p.at).as_secs_f64();
        // Ticks land unevenly between the two counters: a small negative is zero.
        (secs > 0.0).then(|| (((machine - p.machine) - (own - p.own)) / secs).max(0.0))
    });
    Reading {
        at,
        machine,
        own,
        others,
    }
}

/// The server's reading of the machine (see [`OthersCpu`]).
pub static OTHERS: OthersCpu = OthersCpu::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_processes_are_what_the_machine_used_beyond_this_one() {
        let t0 = Instant::now();
        let first = fold(None, t0, 100.0, 10.0);
        assert_eq!(first.others, None, "one reading has no interval");
        // In half a second the machine used 0.9 CPU seconds, this process 0.5 of them.
        let second = fold(Some(first), t0 + Duration::from_millis(500), 100.9, 10.5);
        let others = second.others.expect("an interval");
        assert!((others - 0.8).abs() < 1e-9, "{others}");
        // This process's own work alone leaves the others at zero, never below.
        let third = fold(Some(second), t0 + Duration::from_secs(1), 101.3, 11.0);
        assert_eq!(third.others, Some(0.0));
    }

    #[test]
    fn a_reading_of_this_machine_is_a_plausible_number_of_cores() {
        let cpu = OthersCpu::new();
        cpu.sample();
        std::thread::sleep(SAMPLE_EVERY + Duration::from_millis(20));
        cpu.sample();
        let cores = cpu.cores().expect("Linux has /proc");
        let n = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        assert!((0.0..=n + 0.5).contains(&cores), "{cores} of {n}");
    }
}
