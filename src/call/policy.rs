//! The escalation policy: given what one caller turn meant and what the call has seen so far,
//! what warmline does next. Pure; the engine gathers the signals and carries out the decision.

use serde::{Deserialize, Serialize};

use crate::analysis::tone::Trend;
use crate::dialplan::Escalation;
use crate::handoff::Priority;

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

/// What warmline does after a caller turn.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Transfer {
        reason: Reason,
        priority: Priority,
    },
    /// Answer a self-serve question with this answer's prompt.
    Answer {
        answer: String,
        prompt: String,
    },
    Goodbye,
    /// Ask the one clarifying question.
    Clarify,
    /// The words were not trusted: ask the caller to say it again.
    RepeatPlease,
    /// Nothing to act on (noise, a filler word).
    Ignore,
}

/// What one caller turn meant.
#[derive(Debug, Clone, Default)]
pub struct TurnSignals {
    pub agent_requests: u32,
    pub declined_agent: bool,
    pub strong_negative: bool,
    pub repeat_contact: bool,
    /// Combined frustration score of this turn, -1..1 (negative = upset).
    pub tone_score: f32,
    pub trend: Option<Trend>,
    /// Fall of the tone score since the caller's first turn.
    pub tone_drop: f32,
    pub intent: Option<(String, f32)>,
    pub answer: Option<(String, String, f32)>,
    pub goodbye: bool,
    pub confidence: f32,
    pub empty: bool,
    /// The caller speaks, or asked for, a language this line does not serve.
    pub foreign_language: bool,
}

/// What the call has seen so far (before this turn).
#[derive(Debug, Clone, Default)]
pub struct CallCounters {
    pub agent_requests: u32,
    pub not_understood: u32,
    pub low_confidence: u32,
    pub known_intent: bool,
    pub repeat_contact: bool,
    pub dtmf_zero: u32,
}

fn anger_priority(repeat_contact: bool, requests: u32) -> Priority {
    if repeat_contact || requests >= 2 {
        Priority::Urgent
    } else {
        Priority::High
    }
}

/// Decides the next step. Order matters: anything that means "a human, now" is checked
/// before anything that would keep the caller in automation.
pub fn decide(esc: &Escalation, seen: &CallCounters, turn: &TurnSignals) -> Decision {
    // Before everything else: no question warmline could ask would be understood.
    if turn.foreign_language {
        return Decision::Transfer {
            reason: Reason::UnsupportedLanguage,
            priority: Priority::Normal,
        };
    }
    if turn.empty {
        return Decision::Ignore;
    }
    let requests = seen.agent_requests + turn.agent_requests;
    let repeat_contact = seen.repeat_contact || turn.repeat_contact;
    let angry = turn.strong_negative
        || turn.tone_score <= esc.negative_threshold
        || (turn.trend == Some(Trend::Worsening)
            && turn.tone_drop >= esc.worsening_delta
            // Going from cheerful to neutral is not frustration: the caller must be upset now.
            && turn.tone_score <= esc.negative_threshold / 2.0);

    if turn.agent_requests > 0 && requests >= esc.repeated_request_after {
        let priority = if angry {
            Priority::Urgent
        } else {
            Priority::High
        };
        return Decision::Transfer {
            reason: Reason::RepeatedRequest,
            priority,
        };
    }
    if turn.agent_requests > 0 {
        let priority = if angry {
            anger_priority(repeat_contact, requests)
        } else {
            Priority::Normal
        };
        return Decision::Transfer {
            reason: Reason::ExplicitRequest,
            priority,
        };
    }
    if angry {
        return Decision::Transfer {
            reason: Reason::NegativeSentiment,
            priority: anger_priority(repeat_contact, requests),
        };
    }

    let understood = turn.intent.is_some() || turn.answer.is_some() || turn.goodbye;
    if turn.confidence < esc.min_confidence && !understood {
        return if seen.low_confidence + 1 >= esc.low_confidence_limit {
            Decision::Transfer {
                reason: Reason::LowConfidence,
                priority: Priority::Normal,
            }
        } else {
            Decision::RepeatPlease
        };
    }

    // A self-serve question wins over a topic only when it matched more strongly: "what's the
    // address for returns" is a question, "change my address" is an account change.
    let intent_score = turn.intent.as_ref().map_or(0.0, |i| i.1);
    if let Some((answer, prompt, score)) = &turn.answer
        && *score > intent_score
    {
        return Decision::Answer {
            answer: answer.clone(),
            prompt: prompt.clone(),
        };
    }
    if turn.intent.is_some() {
        let priority = if repeat_contact && turn.tone_score < 0.0 {
            Priority::High
        } else {
            Priority::Normal
        };
        return Decision::Transfer {
            reason: Reason::Dialplan,
            priority,
        };
    }
    if turn.goodbye {
        return Decision::Goodbye;
    }
    if turn.declined_agent {
        // "I don't need an agent" with nothing else: they want something self-serve.
        return Decision::Clarify;
    }
    if seen.not_understood + 1 >= esc.not_understood_limit {
        return Decision::Transfer {
            reason: Reason::NotUnderstood,
            priority: Priority::Normal,
        };
    }
    Decision::Clarify
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc() -> Escalation {
        Escalation::default()
    }

    fn calm() -> TurnSignals {
        TurnSignals {
            confidence: 0.9,
            ..Default::default()
        }
    }

    #[test]
    fn another_language_goes_to_a_person_before_any_question() {
        // Even with no words left (Whisper's annotation) and low confidence.
        let t = TurnSignals {
            foreign_language: true,
            empty: true,
            confidence: 0.3,
            ..Default::default()
        };
        let seen = CallCounters::default();
        assert_eq!(
            decide(&esc(), &seen, &t),
            Decision::Transfer {
                reason: Reason::UnsupportedLanguage,
                priority: Priority::Normal
            }
        );
        let english = TurnSignals { empty: true, ..t };
        assert_eq!(
            decide(
                &esc(),
                &seen,
                &TurnSignals {
                    foreign_language: false,
                    ..english
                }
            ),
            Decision::Ignore
        );
    }

    #[test]
    fn first_request_transfers_at_once() {
        let t = TurnSignals {
            agent_requests: 1,
            ..calm()
        };
        assert_eq!(
            decide(&esc(), &CallCounters::default(), &t),
            Decision::Transfer {
                reason: Reason::ExplicitRequest,
                priority: Priority::Normal
            }
        );
    }

    #[test]
    fn second_request_is_repeated_and_high() {
        let seen = CallCounters {
            agent_requests: 1,
            ..Default::default()
        };
        let t = TurnSignals {
            agent_requests: 1,
            ..calm()
        };
        assert_eq!(
            decide(&esc(), &seen, &t),
            Decision::Transfer {
                reason: Reason::RepeatedRequest,
                priority: Priority::High
            }
        );
    }

    #[test]
    fn anger_beats_a_topic_and_repeat_contact_is_urgent() {
        let t = TurnSignals {
            strong_negative: true,
            repeat_contact: true,
            tone_score: -0.8,
            intent: Some(("billing".into(), 1.0)),
            ..calm()
        };
        assert_eq!(
            decide(&esc(), &CallCounters::default(), &t),
            Decision::Transfer {
                reason: Reason::NegativeSentiment,
                priority: Priority::Urgent
            }
        );
    }

    #[test]
    fn worsening_trend_escalates_before_threshold() {
        let t = TurnSignals {
            tone_score: -0.3,
            tone_drop: 0.5,
            trend: Some(Trend::Worsening),
            ..calm()
        };
        assert!(matches!(
            decide(&esc(), &CallCounters::default(), &t),
            Decision::Transfer {
                reason: Reason::NegativeSentiment,
                ..
            }
        ));
    }

    #[test]
    fn cheerful_to_neutral_is_not_worsening_enough() {
        let t = TurnSignals {
            tone_score: -0.05,
            tone_drop: 0.5,
            trend: Some(Trend::Worsening),
            ..calm()
        };
        assert_eq!(
            decide(&esc(), &CallCounters::default(), &t),
            Decision::Clarify
        );
    }

    #[test]
    fn declined_agent_with_question_is_answered() {
        let t = TurnSignals {
            declined_agent: true,
            answer: Some(("hours".into(), "answer_hours".into(), 1.0)),
            ..calm()
        };
        assert!(matches!(
            decide(&esc(), &CallCounters::default(), &t),
            Decision::Answer { .. }
        ));
    }

    #[test]
    fn second_not_understood_transfers() {
        let t = calm();
        assert_eq!(
            decide(&esc(), &CallCounters::default(), &t),
            Decision::Clarify
        );
        let seen = CallCounters {
            not_understood: 1,
            ..Default::default()
        };
        assert_eq!(
            decide(&esc(), &seen, &t),
            Decision::Transfer {
                reason: Reason::NotUnderstood,
                priority: Priority::Normal
            }
        );
    }

    #[test]
    fn low_confidence_asks_once_then_transfers() {
        let t = TurnSignals {
            confidence: 0.2,
            ..Default::default()
        };
        assert_eq!(
            decide(&esc(), &CallCounters::default(), &t),
            Decision::RepeatPlease
        );
        let seen = CallCounters {
            low_confidence: 1,
            ..Default::default()
        };
        assert!(matches!(
            decide(&esc(), &seen, &t),
            Decision::Transfer {
                reason: Reason::LowConfidence,
                ..
            }
        ));
    }

    #[test]
    fn topic_with_low_confidence_still_routes() {
        let t = TurnSignals {
            confidence: 0.2,
            intent: Some(("orders".into(), 1.0)),
            ..Default::default()
        };
        assert!(matches!(
            decide(&esc(), &CallCounters::default(), &t),
            Decision::Transfer {
                reason: Reason::Dialplan,
                ..
            }
        ));
    }
}
