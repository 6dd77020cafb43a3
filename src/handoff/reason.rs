//! Why a caller was handed to a person: the card's `reason`, chosen by the call's policy and
//! read by everything that reports a handoff.

use serde::{Deserialize, Serialize};

/// Why a caller was handed to a human (the context card's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    ExplicitRequest,
    RepeatedRequest,
    Dtmf,
    NegativeSentiment,
    NotUnderstood,
    LowConfidence,
    UnsupportedLanguage,
    Dialplan,
    /// Something inside warmline failed mid-call (speech recognition, the media socket, a
    /// shutdown): the caller did nothing wrong, and the agent should know that.
    SystemFault,
    /// The line was at capacity when the caller arrived or spoke.
    Overload,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ExplicitRequest => "explicit_request",
            Reason::RepeatedRequest => "repeated_request",
            Reason::Dtmf => "dtmf",
            Reason::NegativeSentiment => "negative_sentiment",
            Reason::NotUnderstood => "not_understood",
            Reason::LowConfidence => "low_confidence",
            Reason::UnsupportedLanguage => "unsupported_language",
            Reason::Dialplan => "dialplan",
            Reason::SystemFault => "system_fault",
            Reason::Overload => "overload",
        }
    }
}
