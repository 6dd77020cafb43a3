//! The closed vocabularies a call is recorded in: how it ended ([`Outcome`]), what became of
//! its transfer request ([`TransferStatus`]) and what the engine decided along the way
//! ([`DecisionKind`]).
//!
//! Their strings are a contract, not a rendering: they sit in database rows (SQLite and the
//! PostgreSQL that instances of different versions share), in recordings on disk, in the
//! JSON API and console feed, and in metric labels that dashboards query. So each string is
//! written once, next to its variant, and `as_str`, `Display`, `FromStr` and serde all go
//! through it. Add variants; never rename or remove one.
//!
//! Reading a string this build does not know (a newer instance wrote it) is an
//! [`UnknownKind`] error, never a panic and never a guess: guessing an outcome could hang up
//! on a caller who should reach a person, whereas "not known" fails open.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A stored or received string that names none of a vocabulary's variants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`")]
pub struct UnknownKind {
    /// Which vocabulary, for the message ("call outcome", …).
    pub what: &'static str,
    /// What was read, cut short: it may come from a database row or a file.
    pub value: String,
}

impl UnknownKind {
    fn new(what: &'static str, value: &str) -> UnknownKind {
        UnknownKind {
            what,
            value: value.chars().take(80).collect(),
        }
    }
}

/// One enum with the exact string each variant is stored, sent and counted as.
macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownKind;

            fn from_str(s: &str) -> Result<Self, UnknownKind> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    _ => Err(UnknownKind::new($what, s)),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}

vocabulary! {
    /// How a call ended: `calls.outcome`, the API's `outcome`, the `calls_total` label.
    pub enum Outcome ("call outcome") {
        /// The provider accepted the transfer to a person.
        Transferred = "transferred",
        /// The caller had what they needed and their goodbye.
        SelfServed = "self_served",
        CallerHangup = "caller_hangup",
        /// The transfer request failed or never answered; the provider's fallback dials.
        TransferFailed = "transfer_failed",
        /// The media stream ended with nothing decided (socket lost, shutdown, fault).
        StreamDropped = "stream_dropped",
    }
}

vocabulary! {
    /// What the provider made of a transfer request: `handoffs.transfer_status`, the API's
    /// `transfer.status`. No row means no transfer was attempted yet.
    pub enum TransferStatus ("transfer status") {
        Accepted = "accepted",
        Failed = "failed",
    }
}

vocabulary! {
    /// What the engine decided at a moment of the call: `decisions.decision`, the API's and
    /// the console feed's `decision`, a recording timeline's `decision`.
    pub enum DecisionKind ("decision") {
        /// The policy chose a transfer for a caller turn.
        Escalate = "escalate",
        /// The policy answered a self-serve question.
        Answer = "answer",
        Goodbye = "goodbye",
        Clarify = "clarify",
        RepeatPlease = "repeat_please",
        Ignore = "ignore",
        /// The handoff is under way (queue, target and reason in the detail).
        Transfer = "transfer",
        /// warmline hung up after the goodbye played.
        Hangup = "hangup",
        CallerHangup = "caller_hangup",
        Fault = "fault",
        Overload = "overload",
        BargeIn = "barge_in",
        NoProgress = "no_progress",
        Silence = "silence",
        SecondPass = "second_pass",
        SttFailure = "stt_failure",
        /// The turn looked unfinished: waiting for the rest.
        Wait = "wait",
        /// The caller said no more after a wait.
        Waited = "waited",
        TurnDecided = "turn_decided",
        HoldPause = "hold_pause",
        Hold = "hold",
        Readback = "readback",
        ReadbackReply = "readback_reply",
        ReadbackUnanswered = "readback_unanswered",
        /// A turn with a number in it was heard again by beam search (what each pass heard
        /// and which was taken, in the detail).
        NumberPass = "number_pass",
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Debug;
    use std::str::FromStr;

    use serde::de::DeserializeOwned;

    use super::*;

    /// The strings as they were when these were plain literals: a rename fails here.
    const OUTCOMES: [(Outcome, &str); 5] = [
        (Outcome::Transferred, "transferred"),
        (Outcome::SelfServed, "self_served"),
        (Outcome::CallerHangup, "caller_hangup"),
        (Outcome::TransferFailed, "transfer_failed"),
        (Outcome::StreamDropped, "stream_dropped"),
    ];
    const STATUSES: [(TransferStatus, &str); 2] = [
        (TransferStatus::Accepted, "accepted"),
        (TransferStatus::Failed, "failed"),
    ];
    const DECISIONS: [(DecisionKind, &str); 25] = [
        (DecisionKind::Escalate, "escalate"),
        (DecisionKind::Answer, "answer"),
        (DecisionKind::Goodbye, "goodbye"),
        (DecisionKind::Clarify, "clarify"),
        (DecisionKind::RepeatPlease, "repeat_please"),
        (DecisionKind::Ignore, "ignore"),
        (DecisionKind::Transfer, "transfer"),
        (DecisionKind::Hangup, "hangup"),
        (DecisionKind::CallerHangup, "caller_hangup"),
        (DecisionKind::Fault, "fault"),
        (DecisionKind::Overload, "overload"),
        (DecisionKind::BargeIn, "barge_in"),
        (DecisionKind::NoProgress, "no_progress"),
        (DecisionKind::Silence, "silence"),
        (DecisionKind::SecondPass, "second_pass"),
        (DecisionKind::SttFailure, "stt_failure"),
        (DecisionKind::Wait, "wait"),
        (DecisionKind::Waited, "waited"),
        (DecisionKind::TurnDecided, "turn_decided"),
        (DecisionKind::HoldPause, "hold_pause"),
        (DecisionKind::Hold, "hold"),
        (DecisionKind::Readback, "readback"),
        (DecisionKind::ReadbackReply, "readback_reply"),
        (DecisionKind::ReadbackUnanswered, "readback_unanswered"),
        (DecisionKind::NumberPass, "number_pass"),
    ];

    fn round_trips<T>(table: &[(T, &str)], all: &[T])
    where
        T: Copy + PartialEq + Debug + std::fmt::Display + FromStr<Err = UnknownKind>,
        T: Serialize + DeserializeOwned,
    {
        // Every variant is in the table, so none escapes the literal check.
        assert_eq!(table.len(), all.len());
        for v in all {
            assert!(table.iter().any(|(t, _)| t == v), "{v:?} not in the table");
        }
        for &(v, text) in table {
            assert_eq!(v.to_string(), text);
            assert_eq!(text.parse::<T>(), Ok(v));
            let json = serde_json::to_string(&v).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<T>(&json).unwrap(), v);
        }
    }

    #[test]
    fn outcomes_keep_their_strings() {
        round_trips(&OUTCOMES, Outcome::ALL);
        for (v, text) in OUTCOMES {
            assert_eq!(v.as_str(), text);
        }
    }

    #[test]
    fn transfer_statuses_keep_their_strings() {
        round_trips(&STATUSES, TransferStatus::ALL);
        for (v, text) in STATUSES {
            assert_eq!(v.as_str(), text);
        }
    }

    #[test]
    fn decision_kinds_keep_their_strings() {
        round_trips(&DECISIONS, DecisionKind::ALL);
        for (v, text) in DECISIONS {
            assert_eq!(v.as_str(), text);
        }
    }

    #[test]
    fn an_unknown_string_is_a_typed_error_naming_it() {
        let e = "escalated_to_mars".parse::<Outcome>().unwrap_err();
        assert_eq!(
            e,
            UnknownKind {
                what: "call outcome",
                value: "escalated_to_mars".into()
            }
        );
        assert_eq!(e.to_string(), "unknown call outcome `escalated_to_mars`");
        // Exact spelling only: these are stored values, not user input to be forgiving about.
        assert!("Transferred".parse::<Outcome>().is_err());
        assert!(" transferred".parse::<Outcome>().is_err());
        assert!("".parse::<TransferStatus>().is_err());
        let long = "x".repeat(10_000);
        assert_eq!(long.parse::<DecisionKind>().unwrap_err().value.len(), 80);
        let err = serde_json::from_str::<DecisionKind>("\"think_harder\"").unwrap_err();
        assert!(
            err.to_string().contains("unknown decision `think_harder`"),
            "{err}"
        );
    }

    #[test]
    fn display_honours_padding_like_a_str() {
        assert_eq!(format!("{:<14}|", Outcome::SelfServed), "self_served   |");
    }
}
