//! Opt-in recording of callers' audio and of what the engine saw, so a call that went wrong
//! can become a fixture (`warmline fixture from-call`).
//!
//! Off by default (`WARMLINE_RECORD_CALLS` / `[recording] enabled`). When on, each call gets
//! `<data_dir>/recordings/<call_sid>/` with `caller.ulaw` (the inbound audio exactly as the
//! engine was fed it), `timeline.jsonl` ([`timeline`]) and `meta.json`. The call task only
//! hands messages to a bounded channel ([`CallTap`]); one writer thread does the file I/O.
//! A full channel or a disk error drops that call's recording (counted and logged), never
//! the call. Retention (age, total size) is a periodic sweep ([`retention`]).

pub mod export;
pub mod redact;
pub mod retention;
pub mod timeline;
mod writer;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::call::{Action, Millis, Outcome, Playbook, SttFailure, Transcript};
use timeline::{Entry, What};

/// The greeting played instead of the dialplan's when recording is on.
pub const RECORDED_GREETING: &str = "greeting_recorded";
pub const AUDIO_FILE: &str = "caller.ulaw";
pub const TIMELINE_FILE: &str = "timeline.jsonl";
pub const META_FILE: &str = "meta.json";
/// When each 20 ms frame of `caller.ulaw` reached the engine: one little-endian `u32` per
/// frame, the engine's clock in ms. A carrier's media clock and the engine's drift apart
/// (network bunching, a slow sender); prompts play on the engine's, so replay needs both.
pub const ARRIVALS_FILE: &str = "arrivals.u32le";

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordingSettings {
    /// Record callers' audio and the call's timeline (`WARMLINE_RECORD_CALLS`).
    pub enabled: bool,
    /// Recordings older than this are deleted by the sweep.
    pub max_age_days: u64,
    /// All recordings together stay under this; the oldest go first.
    pub max_total_mb: u64,
    /// How often the server enforces the two limits above.
    pub sweep_seconds: u64,
    /// Exports mask spoken numbers (account, card numbers) in audio and text
    /// (`WARMLINE_REDACT_NUMBERS`).
    pub redact_numbers: bool,
    /// Messages (20 ms frames, timeline entries) waiting for the writer, all calls together;
    /// beyond this the calls that cannot queue lose their recording.
    pub queue: usize,
}

impl Default for RecordingSettings {
    fn default() -> Self {
        RecordingSettings {
            enabled: false,
            max_age_days: 30,
            max_total_mb: 2048,
            sweep_seconds: 600,
            redact_numbers: false,
            queue: 8192,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("not a call id warmline records: {0:?}")]
    BadCallSid(String),
    #[error("call {0} is still in progress")]
    Live(String),
    #[error("no recording of call {0}")]
    NotFound(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("recording {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RecordingError + '_ {
    move |source| RecordingError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `meta.json`: what the audio file is and how the call went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub call_sid: String,
    /// RFC 3339.
    pub started_at: String,
    /// Always `mulaw`: every carrier's audio reaches the engine as 8 kHz μ-law (linear PCM
    /// carriers are converted at the protocol edge), and this is exactly what it was fed.
    pub codec: String,
    pub sample_rate: u32,
    /// The prompt the call opened with.
    pub greeting: String,
    /// False while recording, or if the server stopped mid-call.
    pub complete: bool,
    /// An outcome this build cannot name (the file came from a newer build) makes the
    /// whole file unreadable, an error the export reports; never a guess.
    #[serde(default)]
    pub outcome: Option<Outcome>,
}

/// Call ids come from the network and name a directory: only plain ids are recorded.
pub fn valid_call_sid(sid: &str) -> bool {
    (1..=64).contains(&sid.len())
        && sid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Where recordings live under a data dir.
pub fn root(data_dir: &Path) -> PathBuf {
    data_dir.join("recordings")
}

/// One call's recording directory, if the id is one warmline would have recorded.
pub fn call_dir(data_dir: &Path, call_sid: &str) -> Result<PathBuf, RecordingError> {
    if !valid_call_sid(call_sid) {
        return Err(RecordingError::BadCallSid(
            call_sid.chars().take(80).collect(),
        ));
    }
    Ok(root(data_dir).join(call_sid))
}

/// Deletes one call's recording; `Ok(false)` when there was none. Nothing checks whether the
/// call is live: the server goes through [`Recorder::delete`], which does.
pub fn delete(data_dir: &Path, call_sid: &str) -> Result<bool, RecordingError> {
    let dir = call_dir(data_dir, call_sid)?;
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(&dir)(e)),
    }
}

/// The playbook to serve with: the recorded-call greeting when recording is on (callers are
/// told before they say anything), else `book` itself.
pub fn playbook_for(book: Arc<Playbook>, settings: &RecordingSettings) -> Arc<Playbook> {
    if !settings.enabled {
        return book;
    }
    match with_greeting(&book, RECORDED_GREETING) {
        Some(b) => b,
        None => {
            tracing::warn!(
                prompt = RECORDED_GREETING,
                "recording is on but its greeting prompt is missing: callers hear the usual greeting"
            );
            book
        }
    }
}

/// `book` opening with the prompt `greeting` instead; `None` if there is no such prompt.
pub fn with_greeting(book: &Playbook, greeting: &str) -> Option<Arc<Playbook>> {
    book.prompts.get(greeting)?;
    let mut dialplan = book.dialplan.clone();
    dialplan.greeting = greeting.to_string();
    Some(Arc::new(Playbook::new(
        dialplan,
        book.prompts.clone(),
        book.frontend.clone(),
    )))
}

#[derive(Debug, Default)]
pub struct Stats {
    /// Recordings finished and kept.
    pub completed: AtomicU64,
    /// Recordings dropped because the writer could not keep up.
    pub dropped: AtomicU64,
    /// Recordings dropped because a write failed.
    pub failed: AtomicU64,
}

pub(crate) enum Msg {
    Begin {
        sid: Arc<str>,
        meta: Meta,
        failed: Arc<AtomicBool>,
    },
    Audio {
        sid: Arc<str>,
        ulaw: Vec<u8>,
        t_ms: Millis,
    },
    Entry {
        sid: Arc<str>,
        entry: Entry,
    },
    End {
        sid: Arc<str>,
        outcome: Outcome,
    },
}

/// The server's recorder: hands out a [`CallTap`] per call when recording is on.
pub struct Recorder {
    data_dir: PathBuf,
    settings: RecordingSettings,
    tx: Option<SyncSender<Msg>>,
    /// Calls being recorded (or still being written): not swept, not deletable.
    live: Arc<Mutex<HashSet<String>>>,
    pub stats: Arc<Stats>,
}

impl Recorder {
    /// A recorder for `data_dir`; with recording on, starts its writer thread.
    pub fn new(data_dir: &Path, settings: RecordingSettings) -> Recorder {
        let live = Arc::new(Mutex::new(HashSet::new()));
        let stats = Arc::new(Stats::default());
        let tx = settings.enabled.then(|| {
            writer::spawn(
                root(data_dir),
                settings.queue.max(16),
                live.clone(),
                stats.clone(),
            )
        });
        Recorder {
            data_dir: data_dir.to_owned(),
            settings,
            tx,
            live,
            stats,
        }
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub fn settings(&self) -> &RecordingSettings {
        &self.settings
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Starts recording a call; `None` when recording is off, the id is not one that can
    /// name a directory, or the writer is too far behind to take another call.
    pub fn begin(&self, call_sid: &str, greeting: &str) -> Option<CallTap> {
        let tx = self.tx.as_ref()?;
        if !valid_call_sid(call_sid) {
            tracing::warn!("call id cannot name a recording: not recorded");
            return None;
        }
        if !lock(&self.live).insert(call_sid.to_string()) {
            // A second stream for a call already being recorded: keep the first recording whole.
            return None;
        }
        let sid: Arc<str> = call_sid.into();
        let failed = Arc::new(AtomicBool::new(false));
        let meta = Meta {
            call_sid: call_sid.to_string(),
            started_at: chrono::Utc::now().to_rfc3339(),
            codec: "mulaw".into(),
            sample_rate: 8000,
            greeting: greeting.to_string(),
            complete: false,
            outcome: None,
        };
        let begin = Msg::Begin {
            sid: sid.clone(),
            meta,
            failed: failed.clone(),
        };
        if tx.try_send(begin).is_err() {
            lock(&self.live).remove(call_sid);
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("recording queue full: this call is not recorded");
            return None;
        }
        Some(CallTap {
            sid,
            tx: tx.clone(),
            failed,
            stats: self.stats.clone(),
            media_ms: 0,
            audio_open: true,
            ended: false,
        })
    }

    /// Whether a call is being recorded (or its recording is still being written).
    pub fn is_live(&self, call_sid: &str) -> bool {
        lock(&self.live).contains(call_sid)
    }

    /// Deletes a finished call's recording; refuses a live one (its writer would recreate it).
    pub fn delete(&self, call_sid: &str) -> Result<bool, RecordingError> {
        if self.is_live(call_sid) {
            return Err(RecordingError::Live(call_sid.to_string()));
        }
        delete(&self.data_dir, call_sid)
    }

    /// Enforces the age and size limits now, leaving live calls alone.
    pub fn sweep(&self) -> Result<retention::Swept, RecordingError> {
        let live = lock(&self.live).clone();
        retention::sweep(
            &root(&self.data_dir),
            &retention::Limits::from(&self.settings),
            chrono::Utc::now(),
            &live,
        )
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One call's side of the recorder. Every method only queues a message (never waits); once a
/// message cannot be queued the recording is abandoned and the writer deletes what it had.
pub struct CallTap {
    sid: Arc<str>,
    tx: SyncSender<Msg>,
    failed: Arc<AtomicBool>,
    stats: Arc<Stats>,
    media_ms: Millis,
    /// Closed once the engine has decided how the call ends: audio after that never reached
    /// a decision, and the caller may be talking to a person by then.
    audio_open: bool,
    ended: bool,
}

impl CallTap {
    fn send(&mut self, msg: Msg) {
        if self.failed.load(Ordering::Relaxed) {
            return;
        }
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.failed.store(true, Ordering::Relaxed);
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("recording queue full: this call's recording is dropped");
            }
        }
    }

    fn entry(&mut self, t_ms: Millis, what: What) {
        let entry = Entry {
            media_ms: self.media_ms,
            t_ms,
            what,
        };
        let sid = self.sid.clone();
        self.send(Msg::Entry { sid, entry });
    }

    /// Caller audio the engine is about to be fed, at `t_ms` on its clock.
    pub fn audio(&mut self, ulaw: &[u8], t_ms: Millis) {
        if !self.audio_open {
            return;
        }
        self.media_ms += ulaw.len() as Millis / 8;
        let sid = self.sid.clone();
        self.send(Msg::Audio {
            sid,
            ulaw: ulaw.to_vec(),
            t_ms,
        });
    }

    pub fn dtmf(&mut self, digit: char, t_ms: Millis) {
        self.entry(t_ms, What::Dtmf { digit });
    }

    pub fn mark(&mut self, name: &str, t_ms: Millis) {
        self.entry(
            t_ms,
            What::Mark {
                name: name.to_string(),
            },
        );
    }

    pub fn transcribed(
        &mut self,
        utterance: u64,
        result: &Result<Transcript, SttFailure>,
        t_ms: Millis,
    ) {
        let (text, confidence, error) = match result {
            Ok(t) => (Some(t.text.clone()), Some(t.confidence), None),
            Err(e) => (None, None, Some(format!("{e:?}"))),
        };
        self.entry(
            t_ms,
            What::Transcribed {
                utterance,
                text,
                confidence,
                error,
            },
        );
    }

    /// The engine's actions, before the driver carries them out.
    pub fn actions(&mut self, actions: &[Action], t_ms: Millis) {
        for a in actions {
            if matches!(a, Action::Transfer(_) | Action::Hangup) {
                self.audio_open = false;
            }
            if let Some(what) = timeline::from_action(a) {
                self.entry(t_ms, what);
            }
        }
    }

    /// The call is over; the writer closes the files.
    pub fn end(&mut self, outcome: Outcome, t_ms: Millis) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.entry(t_ms, What::End { outcome });
        let sid = self.sid.clone();
        self.send(Msg::End { sid, outcome });
    }
}

impl Drop for CallTap {
    fn drop(&mut self) {
        // A call task that ends without `end` (a panic) still lets the writer close up.
        self.end(Outcome::StreamDropped, 0);
    }
}
