//! The writer thread: owns every open recording file, so call tasks never touch the disk.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{
    ARRIVALS_FILE, AUDIO_FILE, META_FILE, Meta, Msg, RecordingError, Stats, TIMELINE_FILE, io_err,
};
use crate::call::Outcome;

/// How often abandoned recordings are looked for when no message arrives.
const CHECK_EVERY: Duration = Duration::from_millis(250);

struct Open {
    dir: PathBuf,
    meta: Meta,
    audio: BufWriter<File>,
    arrivals: BufWriter<File>,
    timeline: BufWriter<File>,
    failed: Arc<AtomicBool>,
}

pub(super) fn spawn(
    root: PathBuf,
    queue: usize,
    live: Arc<Mutex<HashSet<String>>>,
    stats: Arc<Stats>,
) -> SyncSender<Msg> {
    let (tx, rx) = sync_channel(queue);
    let spawned = std::thread::Builder::new()
        .name("warmline-recorder".into())
        .spawn(move || run(&root, rx, &live, &stats));
    if let Err(e) = spawned {
        // Without a writer every send fails: calls go on unrecorded, each drop counted.
        tracing::error!(error = %e, "cannot start the recording writer");
    }
    tx
}

fn run(root: &Path, rx: Receiver<Msg>, live: &Mutex<HashSet<String>>, stats: &Stats) {
    let mut open: HashMap<Arc<str>, Open> = HashMap::new();
    loop {
        match rx.recv_timeout(CHECK_EVERY) {
            Ok(msg) => handle(root, msg, &mut open, live, stats),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        // A call whose tap could not queue a message has a hole in it: not worth keeping.
        let abandoned: Vec<Arc<str>> = open
            .iter()
            .filter(|(_, o)| o.failed.load(Ordering::Relaxed))
            .map(|(sid, _)| sid.clone())
            .collect();
        for sid in abandoned {
            if let Some(o) = open.remove(&sid) {
                discard(o, &sid, "the recording queue was full", live);
            }
        }
    }
    for (sid, o) in open.drain() {
        discard(o, &sid, "the server stopped mid-call", live);
    }
}

fn handle(
    root: &Path,
    msg: Msg,
    open: &mut HashMap<Arc<str>, Open>,
    live: &Mutex<HashSet<String>>,
    stats: &Stats,
) {
    let (sid, result) = match msg {
        Msg::Begin { sid, meta, failed } => {
            let r = create(root, &sid, meta, failed).map(|o| {
                open.insert(sid.clone(), o);
            });
            (sid, r)
        }
        // Messages of a call already discarded are dropped with it.
        Msg::Audio { sid, ulaw, t_ms } => match open.get_mut(&sid) {
            Some(o) => {
                let stamp = u32::try_from(t_ms).unwrap_or(u32::MAX).to_le_bytes();
                let frames = ulaw.len().div_ceil(crate::audio::FRAME_SAMPLES_8K);
                let r = o
                    .audio
                    .write_all(&ulaw)
                    .and_then(|()| (0..frames).try_for_each(|_| o.arrivals.write_all(&stamp)))
                    .map_err(io_err(&o.dir));
                (sid, r)
            }
            None => return,
        },
        Msg::Entry { sid, entry } => match open.get_mut(&sid) {
            Some(o) => {
                let r = serde_json::to_string(&entry)
                    .map_err(|e| std::io::Error::other(e.to_string()))
                    .and_then(|line| writeln!(o.timeline, "{line}"))
                    .map_err(io_err(&o.dir));
                (sid, r)
            }
            None => return,
        },
        Msg::End { sid, outcome } => match open.get_mut(&sid) {
            Some(o) => {
                let r = finish(o, outcome);
                if r.is_ok() {
                    open.remove(&sid);
                    stats.completed.fetch_add(1, Ordering::Relaxed);
                    super::lock(live).remove(&*sid);
                    return;
                }
                (sid, r)
            }
            None => return,
        },
    };
    if let Err(e) = result {
        stats.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(call_sid = %sid, error = %e, "recording write failed: recording dropped");
        match open.remove(&sid) {
            Some(o) => discard(o, &sid, "a write failed", live),
            None => {
                super::lock(live).remove(&*sid);
            }
        }
    }
}

fn create(
    root: &Path,
    sid: &str,
    meta: Meta,
    failed: Arc<AtomicBool>,
) -> Result<Open, RecordingError> {
    let dir = root.join(sid);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    write_meta(&dir, &meta)?;
    let file = |name: &str| {
        let p = dir.join(name);
        File::create(&p).map(BufWriter::new).map_err(io_err(&p))
    };
    Ok(Open {
        audio: file(AUDIO_FILE)?,
        arrivals: file(ARRIVALS_FILE)?,
        timeline: file(TIMELINE_FILE)?,
        dir,
        meta,
        failed,
    })
}

fn finish(o: &mut Open, outcome: Outcome) -> Result<(), RecordingError> {
    o.audio
        .flush()
        .and_then(|()| o.arrivals.flush())
        .and_then(|()| o.timeline.flush())
        .map_err(io_err(&o.dir))?;
    o.meta.complete = true;
    o.meta.outcome = Some(outcome);
    write_meta(&o.dir, &o.meta)
}

/// Written whole to a temporary name and renamed, so a reader never sees half of it.
fn write_meta(dir: &Path, meta: &Meta) -> Result<(), RecordingError> {
    let tmp = dir.join("meta.json.tmp");
    let text = serde_json::to_vec_pretty(meta).map_err(|e| RecordingError::Invalid {
        path: dir.to_owned(),
        message: e.to_string(),
    })?;
    std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
    let path = dir.join(META_FILE);
    std::fs::rename(&tmp, &path).map_err(io_err(&path))
}

fn discard(o: Open, sid: &str, why: &str, live: &Mutex<HashSet<String>>) {
    let Open { dir, .. } = o;
    if let Err(e) = std::fs::remove_dir_all(&dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(call_sid = sid, error = %e, "cannot remove a dropped recording");
    }
    tracing::warn!(call_sid = sid, why, "call recording dropped");
    super::lock(live).remove(sid);
}
