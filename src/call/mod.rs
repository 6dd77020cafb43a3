//! The per-call engine: `feed(event, now) -> actions`.
//!
//! Sans-IO: the engine never reads a clock, a socket or a file. The live server and the
//! fixture replay drive the very same code; they differ only in where events come from and
//! what they do with the actions.

mod engine;
mod kinds;
mod policy;
mod readback;
#[cfg(test)]
mod tests;
pub mod turn_end;

pub use crate::stt::{SttFailure, Transcript};
pub use engine::{Engine, Playbook, ShortPass};
pub use kinds::{DecisionKind, Outcome, TransferStatus, UnknownKind};
pub use policy::{Decision, Reason};

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::handoff::Handoff;
pub use crate::handoff::{Millis, Speaker, TranscriptLine};

/// What the engine knows about a call when it starts.
#[derive(Debug, Clone)]
pub struct CallInfo {
    pub call_sid: String,
    pub from: String,
    pub to: String,
    /// Wall-clock start, for the RFC 3339 times on the context card.
    pub started_at: DateTime<Utc>,
    /// Unguessable id for this call's handoff (the agent-whisper URL carries it).
    pub handoff_id: String,
}

/// Something that happened on the call.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// One or more 20 ms frames of caller audio, 8 kHz μ-law.
    Audio(&'a [u8]),
    /// The caller pressed a key.
    Dtmf(char),
    /// The transcription requested by [`Action::Transcribe`] with this id.
    Transcribed {
        utterance: u64,
        result: Result<Transcript, SttFailure>,
    },
    /// The provider echoed a mark: everything queued before it has been played (or cleared).
    Mark(String),
    /// Time passed with nothing else to report.
    Tick,
    /// The stream ended from the caller's side (hang-up or provider stop).
    Hangup,
    /// Something failed around the engine (socket, store, provider): hand the caller over.
    Fault(String),
    /// The line is at capacity: hand the caller over rather than make them wait.
    Overloaded,
}

/// What the driver must do.
#[derive(Debug, Clone)]
pub enum Action {
    /// Stream a prompt's audio, then a mark with this name.
    Play {
        prompt: String,
        text: String,
        audio: Arc<[u8]>,
        mark: String,
    },
    /// Drop all audio still queued for the caller (barge-in).
    Clear,
    /// Transcribe this utterance and feed back [`Event::Transcribed`].
    Transcribe {
        utterance: u64,
        samples: Vec<f32>,
        initial_prompt: Arc<str>,
        /// Free, or held to a small grammar ([`crate::stt::SttMode`]).
        mode: crate::stt::SttMode,
        /// When the caller stopped speaking, on the engine's clock (decision latency starts here).
        speech_ended: Millis,
        /// Started at a pause, before the endpoint: the caller may go on talking and make it
        /// moot. A driver short of capacity may refuse it at once (answer with
        /// [`SttFailure::Overloaded`]); the engine then asks again at the endpoint.
        early: bool,
    },
    /// The early transcription with this id is moot (the caller went on speaking): stop it if
    /// it is still running, and answer it with [`SttFailure::Overloaded`] or not at all. A
    /// driver that cannot stop one may ignore this; the engine ignores its answer.
    CancelTranscription { utterance: u64 },
    /// Hand the caller to a human.
    Transfer(Box<Handoff>),
    /// End the call (after a goodbye has played).
    Hangup,
    /// Persist this before acting on anything else.
    Record(Record),
}

/// What the store keeps, written as the call goes.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Line(TranscriptLine),
    Decision {
        t_ms: Millis,
        decision: DecisionKind,
        detail: String,
    },
    Handoff {
        id: String,
        card: Box<crate::handoff::ContextCard>,
    },
}
