//! What travels with a caller to a human: the context card (CONTRACT.md), the two-sentence
//! written summary, the spoken summary the agent hears, and the line the caller hears.

mod reason;
mod summary;
mod transcript;

pub use reason::Reason;
pub use summary::{SummaryInput, caller_line, spoken_summary, written_summary};
pub use transcript::{Millis, Speaker, TranscriptLine};

use serde::{Deserialize, Serialize};

use crate::analysis::numbers::Facts;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Normal,
    High,
    Urgent,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }
}

/// The caller's feelings as the agent sees them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentimentSummary {
    pub score: f32,
    pub trend: String,
    pub label: String,
}

/// The written context card, exactly the JSON shape of CONTRACT.md.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContextCard {
    pub call_sid: String,
    pub from: String,
    pub to: String,
    pub queue: String,
    pub target: String,
    pub reason: String,
    pub priority: Priority,
    pub intent: Option<String>,
    pub facts: Facts,
    /// Facts read back to the caller and not confirmed (`account_number`, `order_number`):
    /// the agent should check them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unconfirmed: Vec<String>,
    pub sentiment: SentimentSummary,
    pub agent_requests: u32,
    pub summary: String,
    pub spoken_summary: String,
    pub transcript: Vec<TranscriptLine>,
    pub started_at: String,
    pub handoff_at: String,
}

/// A decided transfer: the card, and what the caller hears while being connected.
#[derive(Debug, Clone, PartialEq)]
pub struct Handoff {
    /// Id in the agent-whisper URL.
    pub id: String,
    pub card: ContextCard,
    pub caller_say: String,
    /// Where the caller is dialled: a number (`<Number>`) or a SIP URI (`<Sip>`/`<User>`).
    pub target: crate::dialplan::Target,
}
