//! The escalation policy: given what one caller turn meant and what the call has seen so far,
//! what warmline does next. Pure; the engine gathers the signals and carries out the decision.

use super::kinds::DecisionKind;
use crate::analysis::tone::Trend;
use crate::dialplan::Escalation;
use crate::handoff::Priority;
pub use crate::handoff::Reason;

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

impl Decision {
    /// How the decision is recorded.
    pub fn kind(&self) -> DecisionKind {
        match self {
            Decision::Transfer { .. } => DecisionKind::Escalate,
            Decision::Answer { .. } => DecisionKind::Answer,
            Decision::Goodbye => DecisionKind::Goodbye,
            Decision::Clarify => DecisionKind::Clarify,
            Decision::RepeatPlease => DecisionKind::RepeatPlease,
            Decision::Ignore => DecisionKind::Ignore,
        }
    }
}

/// What one caller turn meant.
#[derive(Debug, Clone, Default)]
pub struct TurnSignals {
    pub agent_requests: u32,
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
    /// Words in the transcript.
    pub words: usize,
    /// The transcript is nothing but a request for a person ("Agent.", or a known mishearing
    /// of one said alone).
    pub lone_request: bool,
    /// The caller says the answer they were just given is not what they asked.
    pub rejects_answer: bool,
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
    /// Turns that did not move the caller forward, of any kind: one budget per call.
    pub no_progress: u32,
    /// Time in automation since the caller last got somewhere (filled in by the engine).
    pub stalled_ms: u64,
}

impl CallCounters {
    /// Whether the no-progress budget is spent: the next turn that goes nowhere is a person.
    pub fn budget_spent(&self, esc: &Escalation) -> bool {
        self.no_progress >= esc.no_progress_limit || self.stalled_ms >= esc.no_progress_ms
    }

    /// The reason a person takes over when the budget runs out: what mostly went wrong.
    pub fn stall_reason(&self) -> Reason {
        if self.low_confidence > self.not_understood {
            Reason::LowConfidence
        } else {
            Reason::NotUnderstood
        }
    }
}

/// Utterances this short are trusted for a request or a goodbye whatever their confidence:
/// tiny.en gives single words low token probabilities even when it hears them right, and a
/// word heard alone cannot be a keyword hallucinated inside a garbled sentence.
pub const SHORT_UTTERANCE_WORDS: usize = 3;

fn anger_priority(repeat_contact: bool, requests: u32) -> Priority {
    if repeat_contact || requests >= 2 {
        Priority::Urgent
    } else {
        Priority::High
    }
}

/// Decides the next step. Order matters: anything that means "a human, now" is checked
/// before anything that would keep the caller in automation, and every way of staying in
/// automation without progress draws on the same budget.
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
    let confident = turn.confidence >= esc.min_confidence;
    let trusted = confident || turn.words <= SHORT_UTTERANCE_WORDS;
    // "…the main operator…" inside a low-confidence sentence of nonsense is a hallucinated
    // keyword, not a request: that turn is unclear, and the budget still gets them a person.
    let asked = if trusted || turn.lone_request {
        turn.agent_requests
    } else {
        0
    };
    let requests = seen.agent_requests + asked;
    let repeat_contact = seen.repeat_contact || turn.repeat_contact;
    let angry = turn.strong_negative
        || turn.tone_score <= esc.negative_threshold
        || (turn.trend == Some(Trend::Worsening)
            && turn.tone_drop >= esc.worsening_delta
            // Going from cheerful to neutral is not frustration: the caller must be upset now.
            && turn.tone_score <= esc.negative_threshold / 2.0);

    if asked > 0 && requests >= esc.repeated_request_after {
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
    if asked > 0 {
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

    // A self-serve question wins over a topic only when it matched more strongly: "what's the
    // address for returns" is a question, "change my address" is an account change. It needs
    // a confident transcript: a mumbling caller gets asked again, not the opening hours.
    let intent_score = turn.intent.as_ref().map_or(0.0, |i| i.1);
    // One word ("Hours.") is answered at any confidence: tiny.en is never sure of a lone word,
    // and a wrong answer to one word costs the caller a "no" that the budget counts.
    let answerable = (turn.confidence >= esc.answer_min_confidence
        || (confident && turn.words <= SHORT_UTTERANCE_WORDS)
        || turn.words == 1)
        && !turn.rejects_answer;
    if let Some((answer, prompt, score)) = &turn.answer
        && answerable
        && *score > intent_score
    {
        return Decision::Answer {
            answer: answer.clone(),
            prompt: prompt.clone(),
        };
    }
    // A topic routes even on a shaky transcript: it reaches a person either way.
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
    if turn.goodbye && trusted {
        return Decision::Goodbye;
    }

    // Nothing this turn moves the caller forward.
    let unclear = !confident || (turn.answer.is_some() && !turn.rejects_answer);
    let (reason, kind_seen, kind_limit) = if unclear {
        (
            Reason::LowConfidence,
            seen.low_confidence,
            esc.low_confidence_limit,
        )
    } else {
        (
            Reason::NotUnderstood,
            seen.not_understood,
            esc.not_understood_limit,
        )
    };
    if seen.budget_spent(esc) || kind_seen + 1 >= kind_limit {
        return Decision::Transfer {
            reason,
            priority: Priority::Normal,
        };
    }
    if unclear {
        Decision::RepeatPlease
    } else {
        Decision::Clarify
    }
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

    fn hours(score: f32) -> Option<(String, String, f32)> {
        Some(("hours".into(), "answer_hours".into(), score))
    }

    /// Folds a decision into the counters the way the engine does.
    fn after(mut seen: CallCounters, d: &Decision) -> CallCounters {
        match d {
            Decision::Clarify => {
                seen.not_understood += 1;
                seen.no_progress += 1;
            }
            Decision::RepeatPlease => {
                seen.low_confidence += 1;
                seen.no_progress += 1;
            }
            _ => {}
        }
        seen
    }

    #[test]
    fn the_mumbling_caller_gets_a_person_not_the_opening_hours() {
        // "mm, the thing, you know" three times, heard as below; "open" matches the hours.
        let turns = [
            TurnSignals {
                confidence: 0.38,
                words: 3,
                answer: hours(1.0),
                ..Default::default()
            },
            TurnSignals {
                confidence: 0.31,
                words: 5,
                ..Default::default()
            },
        ];
        let mut seen = CallCounters::default();
        let first = decide(&esc(), &seen, &turns[0]);
        assert_eq!(first, Decision::RepeatPlease, "no answer on a mumble");
        seen = after(seen, &first);
        assert_eq!(
            decide(&esc(), &seen, &turns[1]),
            Decision::Transfer {
                reason: Reason::LowConfidence,
                priority: Priority::Normal
            }
        );
    }

    #[test]
    fn an_answer_needs_a_confident_match() {
        let shaky = TurnSignals {
            confidence: 0.5,
            words: 6,
            answer: hours(1.0),
            ..Default::default()
        };
        assert_eq!(
            decide(&esc(), &CallCounters::default(), &shaky),
            Decision::RepeatPlease
        );
        let clear = TurnSignals {
            confidence: 0.8,
            ..shaky
        };
        assert!(matches!(
            decide(&esc(), &CallCounters::default(), &clear),
            Decision::Answer { .. }
        ));
    }

    #[test]
    fn a_short_question_is_answered_at_ordinary_confidence() {
        // "Hours." on its own: tiny.en is never sure of one word.
        let t = TurnSignals {
            confidence: 0.45,
            words: 1,
            answer: hours(1.0),
            ..Default::default()
        };
        assert!(matches!(
            decide(&esc(), &CallCounters::default(), &t),
            Decision::Answer { .. }
        ));
    }

    #[test]
    fn mixed_failures_share_one_budget() {
        // A repeat-please, then a clarifying question, then any turn that goes nowhere is a
        // person: the separate counters never reach their own limits.
        let mut seen = CallCounters::default();
        let unclear = TurnSignals {
            confidence: 0.3,
            words: 9,
            ..Default::default()
        };
        let d = decide(&esc(), &seen, &unclear);
        assert_eq!(d, Decision::RepeatPlease);
        seen = after(seen, &d);
        let d = decide(&esc(), &seen, &calm());
        assert_eq!(d, Decision::Clarify);
        seen = after(seen, &d);
        assert_eq!(seen.no_progress, 2);
        let rejected = TurnSignals {
            rejects_answer: true,
            answer: hours(1.0),
            ..calm()
        };
        assert_eq!(
            decide(&esc(), &seen, &rejected),
            Decision::Transfer {
                reason: Reason::NotUnderstood,
                priority: Priority::Normal
            }
        );
    }

    #[test]
    fn a_rejected_answer_is_not_answered_again_and_counts() {
        let t = TurnSignals {
            rejects_answer: true,
            answer: hours(1.0),
            ..calm()
        };
        let d = decide(&esc(), &CallCounters::default(), &t);
        assert_eq!(d, Decision::Clarify);
        assert_eq!(after(CallCounters::default(), &d).no_progress, 1);
    }

    #[test]
    fn too_long_without_progress_is_a_person() {
        let seen = CallCounters {
            stalled_ms: 45_000,
            ..Default::default()
        };
        assert_eq!(
            decide(&esc(), &seen, &calm()),
            Decision::Transfer {
                reason: Reason::NotUnderstood,
                priority: Priority::Normal
            }
        );
    }

    #[test]
    fn a_keyword_inside_low_confidence_nonsense_is_not_a_request() {
        // Nonsense heard as "…you can go to the main operator for the view…".
        let t = TurnSignals {
            agent_requests: 1,
            confidence: 0.28,
            words: 10,
            ..Default::default()
        };
        assert_eq!(
            decide(&esc(), &CallCounters::default(), &t),
            Decision::RepeatPlease
        );
        let seen = CallCounters {
            low_confidence: 1,
            no_progress: 1,
            ..Default::default()
        };
        assert_eq!(
            decide(&esc(), &seen, &t),
            Decision::Transfer {
                reason: Reason::LowConfidence,
                priority: Priority::Normal
            }
        );
    }

    #[test]
    fn a_request_heard_on_the_second_try_is_a_request() {
        // The first "Agent." was heard as nonsense; the second, alone and unsure, is heard.
        let seen = CallCounters {
            low_confidence: 1,
            no_progress: 1,
            ..Default::default()
        };
        let t = TurnSignals {
            agent_requests: 1,
            confidence: 0.25,
            words: 1,
            ..Default::default()
        };
        assert_eq!(
            decide(&esc(), &seen, &t),
            Decision::Transfer {
                reason: Reason::ExplicitRequest,
                priority: Priority::Normal
            }
        );
        // Asked for twice, both heard: repeated.
        let seen = CallCounters {
            agent_requests: 1,
            ..seen
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
    fn a_goodbye_inside_nonsense_does_not_end_the_call() {
        let t = TurnSignals {
            goodbye: true,
            confidence: 0.2,
            words: 12,
            ..Default::default()
        };
        assert_eq!(
            decide(&esc(), &CallCounters::default(), &t),
            Decision::RepeatPlease
        );
    }
}
