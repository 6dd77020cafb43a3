//! Retention: recordings older than the age limit go, then the oldest until all of them fit
//! the size limit. Calls still being recorded are never touched.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::{META_FILE, Meta, RecordingError, RecordingSettings, io_err};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_age: chrono::Duration,
    pub max_total_bytes: u64,
}

impl From<&RecordingSettings> for Limits {
    fn from(s: &RecordingSettings) -> Limits {
        Limits {
            max_age: chrono::Duration::days(i64::try_from(s.max_age_days).unwrap_or(i64::MAX / 2)),
            max_total_bytes: s.max_total_mb.saturating_mul(1024 * 1024),
        }
    }
}

/// What one sweep removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    pub too_old: Vec<String>,
    pub over_size: Vec<String>,
    pub kept: usize,
    pub kept_bytes: u64,
}

struct Found {
    sid: String,
    dir: PathBuf,
    started: DateTime<Utc>,
    bytes: u64,
}

pub fn sweep(
    root: &Path,
    limits: &Limits,
    now: DateTime<Utc>,
    live: &HashSet<String>,
) -> Result<Swept, RecordingError> {
    let mut out = Swept::default();
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(root)(e)),
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let sid = entry.file_name().to_string_lossy().into_owned();
        if live.contains(&sid) || !entry.path().is_dir() {
            continue;
        }
        let dir = entry.path();
        found.push(Found {
            started: started_at(&dir),
            bytes: dir_bytes(&dir),
            sid,
            dir,
        });
    }
    // Oldest first: they go first when space runs out.
    found.sort_by(|a, b| a.started.cmp(&b.started).then(a.sid.cmp(&b.sid)));
    let mut keep = Vec::new();
    for f in found {
        if now - f.started > limits.max_age {
            remove(&f.dir)?;
            out.too_old.push(f.sid);
        } else {
            keep.push(f);
        }
    }
    let mut total: u64 = keep.iter().map(|f| f.bytes).sum();
    let mut keep = keep.into_iter();
    for f in keep.by_ref() {
        if total <= limits.max_total_bytes {
            out.kept += 1;
            out.kept_bytes += f.bytes;
            continue;
        }
        remove(&f.dir)?;
        total -= f.bytes;
        out.over_size.push(f.sid);
    }
    Ok(out)
}

/// The start in `meta.json`, or the directory's modification time when that is unreadable
/// (a half-written recording still ages out).
fn started_at(dir: &Path) -> DateTime<Utc> {
    let from_meta = std::fs::read(dir.join(META_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<Meta>(&b).ok())
        .and_then(|m| DateTime::parse_from_rfc3339(&m.started_at).ok())
        .map(|t| t.with_timezone(&Utc));
    from_meta.unwrap_or_else(|| {
        std::fs::metadata(dir)
            .and_then(|m| m.modified())
            .map(DateTime::<Utc>::from)
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    })
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|es| {
            es.flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn remove(dir: &Path) -> Result<(), RecordingError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(dir)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plant(root: &Path, sid: &str, started: DateTime<Utc>, bytes: usize) {
        let dir = root.join(sid);
        std::fs::create_dir_all(&dir).unwrap();
        let meta = Meta {
            call_sid: sid.into(),
            started_at: started.to_rfc3339(),
            codec: "mulaw".into(),
            sample_rate: 8000,
            greeting: "greeting_recorded".into(),
            complete: true,
            outcome: None,
        };
        std::fs::write(dir.join(META_FILE), serde_json::to_vec(&meta).unwrap()).unwrap();
        std::fs::write(dir.join(super::super::AUDIO_FILE), vec![0xFFu8; bytes]).unwrap();
    }

    fn left(root: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(root)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn old_recordings_go_then_the_oldest_until_the_rest_fit() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let now = Utc::now();
        let day = chrono::Duration::days(1);
        plant(root, "CAancient", now - day * 40, 10);
        plant(root, "CAold", now - day * 3, 50_000);
        plant(root, "CAmid", now - day * 2, 50_000);
        plant(root, "CAnew", now - day, 50_000);
        plant(root, "CAlive", now - day * 90, 50_000);
        let live: HashSet<String> = ["CAlive".to_string()].into();
        let limits = Limits {
            max_age: day * 30,
            max_total_bytes: 120_000,
        };
        let swept = sweep(root, &limits, now, &live).unwrap();
        assert_eq!(swept.too_old, ["CAancient"]);
        // 150 kB of recordings over a 120 kB budget: the oldest one makes room.
        assert_eq!(swept.over_size, ["CAold"]);
        assert_eq!(left(root), ["CAlive", "CAmid", "CAnew"]);
        assert_eq!(swept.kept, 2);
        assert!(swept.kept_bytes <= limits.max_total_bytes);
        // Nothing more to do the second time.
        let again = sweep(root, &limits, now, &live).unwrap();
        assert!(again.too_old.is_empty() && again.over_size.is_empty());
    }

    #[test]
    fn a_missing_root_is_an_empty_sweep() {
        let tmp = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_age: chrono::Duration::days(1),
            max_total_bytes: 0,
        };
        let swept = sweep(
            &tmp.path().join("none"),
            &limits,
            Utc::now(),
            &HashSet::new(),
        );
        assert_eq!(swept.unwrap(), Swept::default());
    }
}
