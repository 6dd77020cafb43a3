//! The call's transcript as the agent receives it: who said what, when. It lives with the
//! handoff because the card carries it; the call engine writes it.

use serde::{Deserialize, Serialize};

use crate::audio::Prosody;

/// Milliseconds since the call started, on whatever clock the driver uses (wall or virtual).
pub type Millis = u64;

/// Who spoke a transcript line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    Caller,
    System,
}

/// One line of the call transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptLine {
    pub t_ms: Millis,
    pub speaker: Speaker,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub confidence: Option<f32>,
    /// Prompt id for system lines.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub prosody: Option<Prosody>,
}
