//! What a recorded call's timeline holds: one JSON object a line, each stamped with the
//! media time (caller audio received so far, ms) and the engine's clock when it happened.

use serde::{Deserialize, Serialize};

use crate::call::{Action, DecisionKind, Millis, Outcome, Record, TranscriptLine};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Caller audio the engine had been fed when this happened: a position in `caller.ulaw`
    /// (8 bytes a millisecond).
    pub media_ms: Millis,
    /// The engine's clock (ms since the stream started).
    pub t_ms: Millis,
    #[serde(flatten)]
    pub what: What,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum What {
    /// A prompt was queued for the caller.
    Play {
        prompt: String,
        text: String,
        mark: String,
        audio_ms: Millis,
    },
    /// The provider (or the driver's playout clock) said a prompt finished.
    Mark {
        name: String,
    },
    /// Queued audio was dropped (barge-in).
    Clear,
    Dtmf {
        digit: char,
    },
    /// The engine cut an utterance and asked for it to be transcribed; `audio_ms` is how much
    /// audio it sent (pre-roll and a little trailing silence included).
    Utterance {
        utterance: u64,
        audio_ms: Millis,
        early: bool,
    },
    Transcribed {
        utterance: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        confidence: Option<f32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    Line {
        line: TranscriptLine,
    },
    Decision {
        decision: DecisionKind,
        detail: String,
    },
    Handoff {
        card: serde_json::Value,
    },
    /// warmline ended the call (after a goodbye).
    Hangup,
    End {
        outcome: Outcome,
    },
}

/// The timeline entries an engine action stands for (none for most of them).
pub fn from_action(a: &Action) -> Option<What> {
    Some(match a {
        Action::Play {
            prompt,
            text,
            audio,
            mark,
        } => What::Play {
            prompt: prompt.clone(),
            text: text.clone(),
            mark: mark.clone(),
            audio_ms: audio.len() as Millis / 8,
        },
        Action::Clear => What::Clear,
        Action::Transcribe {
            utterance,
            samples,
            early,
            ..
        } => What::Utterance {
            utterance: *utterance,
            // The model's input is 16 kHz.
            audio_ms: samples.len() as Millis / 16,
            early: *early,
        },
        Action::Record(Record::Line(line)) => What::Line { line: line.clone() },
        Action::Record(Record::Decision {
            decision, detail, ..
        }) => What::Decision {
            decision: *decision,
            detail: detail.clone(),
        },
        Action::Record(Record::Handoff { card, .. }) => What::Handoff {
            card: serde_json::to_value(card).unwrap_or_default(),
        },
        Action::Hangup => What::Hangup,
        Action::Transfer(_) | Action::CancelTranscription { .. } => return None,
    })
}

/// Reads a timeline, skipping lines that do not parse: a crash can leave half a line, and a
/// decision kind or outcome from a newer build is left out rather than guessed at (the export
/// only lists decisions; a replay makes its own).
pub fn parse(text: &str) -> Vec<Entry> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_as_flat_json_lines() {
        let e = Entry {
            media_ms: 1200,
            t_ms: 1234,
            what: What::Dtmf { digit: '0' },
        };
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(
            line,
            r#"{"media_ms":1200,"t_ms":1234,"kind":"dtmf","digit":"0"}"#
        );
        let text = format!("{line}\n{{\"media_ms\":5,\"t_ms\"");
        assert_eq!(parse(&text), vec![e]);
    }
}
