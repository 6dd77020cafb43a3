//! A recorded call as a fixture: turn audio cut from the recording, each turn at the time it
//! started in the live call, and the expectation filled in from what happened.
//!
//! Turns tile the recording: every byte the engine was fed is in exactly one turn, in order,
//! so a replay feeds the engine the same audio at the same media times as the live call.
//! Utterance boundaries come from running the engine's own media path over the recording
//! (the same code and settings cut the live call), so they match what the engine saw.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::timeline::{self, Entry, What};
use super::{
    ARRIVALS_FILE, AUDIO_FILE, META_FILE, Meta, RecordingError, TIMELINE_FILE, call_dir, io_err,
    redact,
};
use crate::audio::frontend::{Frontend, FrontendConfig};
use crate::audio::{FRAME_MS, FRAME_SAMPLES_8K};
use crate::call::{Outcome, Speaker};
use crate::handoff::Priority;
use crate::replay::fixture::{ExpectFile, FixtureFile, TurnFile, ulaw_wav};

/// Audio kept before an utterance's first voiced frame in its turn (the media path's
/// pre-roll is 200 ms by default).
const LEAD_MS: u64 = 400;

/// A fixture ready to be written: the TOML and its audio files.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The fixture id: the TOML is `calls/<name>.toml`, the audio under `audio/<name>/`.
    pub name: String,
    pub toml: String,
    /// Paths relative to the fixtures' `audio/` directory, and WAV bytes.
    pub audio: Vec<(String, Vec<u8>)>,
    pub redacted: bool,
    /// Milliseconds of caller audio silenced by redaction.
    pub masked_ms: u64,
    pub audio_ms: u64,
}

/// A fixture name made from a call id: what `--out` defaults to.
pub fn default_name(call_sid: &str) -> String {
    let s: String = call_sid
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("recorded_{s}")
}

/// One piece of the call a turn is made of, in time order.
enum Item {
    Speech(usize),
    Key { at: u64, t_ms: u64, digit: char },
}

/// A turn: a span of the recording (media time), or a key press.
struct Cut {
    start: u64,
    end: u64,
    utterance: Option<usize>,
    dtmf: Option<char>,
    /// For a key press: when the engine got it, on its clock.
    key_t_ms: Option<u64>,
}

/// Media time to engine time, from when each frame arrived.
struct Clock(Vec<u32>);

impl Clock {
    fn read(path: &Path) -> Clock {
        let bytes = std::fs::read(path).unwrap_or_default();
        Clock(
            bytes
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        )
    }

    /// When the frame at `media_ms` reached the engine (media time where not known).
    fn at(&self, media_ms: u64) -> u64 {
        let i = (media_ms / FRAME_MS) as usize;
        match (self.0.get(i), self.0.last()) {
            (Some(t), _) => u64::from(*t),
            // Past the last frame: as long again after it.
            (None, Some(last)) => {
                u64::from(*last) + media_ms.saturating_sub(self.0.len() as u64 * FRAME_MS)
            }
            (None, None) => media_ms,
        }
    }
}

/// Builds the fixture for `call_sid` from its recording under `data_dir`. `frontend` must be
/// the media-path settings the server ran with (it finds the utterances again).
pub fn export(
    data_dir: &Path,
    call_sid: &str,
    name: &str,
    frontend: &FrontendConfig,
    redact_numbers: bool,
) -> Result<Exported, RecordingError> {
    let dir = call_dir(data_dir, call_sid)?;
    let meta_path = dir.join(META_FILE);
    let meta: Meta = match std::fs::read(&meta_path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| RecordingError::Invalid {
            path: meta_path.clone(),
            message: e.to_string(),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RecordingError::NotFound(call_sid.to_string()));
        }
        Err(e) => return Err(io_err(&meta_path)(e)),
    };
    let audio_path = dir.join(AUDIO_FILE);
    let mut ulaw = std::fs::read(&audio_path).map_err(io_err(&audio_path))?;
    ulaw.truncate(ulaw.len() / FRAME_SAMPLES_8K * FRAME_SAMPLES_8K);
    let tl_path = dir.join(TIMELINE_FILE);
    let entries = timeline::parse(&std::fs::read_to_string(&tl_path).map_err(io_err(&tl_path))?);
    let invalid = |message: String| RecordingError::Invalid {
        path: dir.clone(),
        message,
    };
    let utterances = Frontend::new(frontend.clone())
        .map_err(|e| invalid(e.to_string()))?
        .utterances(&ulaw);
    let spans: Vec<(u64, u64)> = utterances
        .iter()
        .map(|u| (u.start_ms, u.detected_ms.max(u.end_ms)))
        .collect();
    let audio_ms = ulaw.len() as u64 / 8;

    let cuts = cut_turns(&spans, &entries, audio_ms);
    let texts = utterance_texts(&spans, &entries);
    // Turns start when they reached the engine in the live call: prompts play on its clock.
    let clock = Clock::read(&dir.join(ARRIVALS_FILE));
    let timing: Vec<(u64, Option<u64>)> = cuts
        .iter()
        .map(|c| match (c.key_t_ms, c.utterance) {
            (Some(t), _) => (t, Some(t)),
            (None, Some(u)) => (clock.at(c.start), Some(clock.at(spans[u].1))),
            (None, None) => (clock.at(c.start), None),
        })
        .collect();

    let mut masked_ms = 0;
    if redact_numbers {
        for (s, e) in numeric_spans(&spans, &entries) {
            redact::silence(&mut ulaw, s, e);
            masked_ms += (e + redact::PAD_MS).min(audio_ms) - s.saturating_sub(redact::PAD_MS);
        }
    }
    let mask = |t: &str| {
        if redact_numbers {
            redact::mask_text(t)
        } else {
            t.to_string()
        }
    };

    let plays: Vec<(u64, u64)> = entries
        .iter()
        .filter_map(|e| match &e.what {
            What::Play { audio_ms, .. } => Some((e.t_ms, e.t_ms + audio_ms)),
            _ => None,
        })
        .collect();
    let mut turns = Vec::new();
    let mut audio = Vec::new();
    for (i, c) in cuts.iter().enumerate() {
        let mut t = TurnFile {
            at_ms: Some(timing[i].0),
            ..TurnFile::default()
        };
        if let Some(d) = c.dtmf {
            t.dtmf = Some(d.to_string());
        } else {
            let file = format!("{name}/turn_{i}.wav");
            let bytes = &ulaw[(c.start * 8) as usize..(c.end * 8) as usize];
            let wav = ulaw_wav(bytes).map_err(|e| invalid(e.to_string()))?;
            audio.push((file.clone(), wav));
            t.audio = Some(file);
            if let Some(u) = c.utterance {
                t.text = texts[u].as_deref().map(mask);
                let start = clock.at(spans[u].0);
                t.during_prompt = plays.iter().any(|(s, e)| *s <= start && start < *e);
            }
        }
        turns.push(t);
    }

    let expect = expectation(&entries, &timing, redact_numbers);
    let file = FixtureFile {
        description: format!(
            "Recorded call {call_sid} ({}), ended {}. The expectation is what happened, \
             not necessarily what should have: correct it.",
            meta.started_at,
            meta.outcome
                .map_or("without a recorded end", Outcome::as_str),
        ),
        category: "recorded".into(),
        greeting: Some(meta.greeting.clone()),
        turns,
        expect,
    };
    let mut header = format!(
        "Exported by `warmline fixture from-call {call_sid}`{}.\n\
         Turns carry `at_ms`: each starts when it did in the live call, so the replay feeds the\n\
         engine the same audio at the same times. What the live call heard and said:\n",
        if redact_numbers {
            " with spoken numbers masked"
        } else {
            ""
        }
    );
    for e in &entries {
        if let What::Line { line } = &e.what {
            let who = match line.speaker {
                Speaker::Caller => "caller",
                Speaker::System => "system",
            };
            header.push_str(&format!(
                "  {:>6} ms {who}: {}\n",
                line.t_ms,
                mask(&line.text)
            ));
        }
        if let What::Decision { decision, .. } = &e.what {
            header.push_str(&format!("  {:>6} ms decision: {decision}\n", e.t_ms));
        }
    }
    if !meta.complete {
        header.push_str("The recording is incomplete (the server stopped during the call).\n");
    }
    let toml = file.to_toml(&header).map_err(|e| invalid(e.to_string()))?;
    Ok(Exported {
        name: name.to_string(),
        toml,
        audio,
        redacted: redact_numbers,
        masked_ms,
        audio_ms,
    })
}

fn frame_floor(ms: u64) -> u64 {
    ms / FRAME_MS * FRAME_MS
}

/// Cuts the recording into turns: one per utterance (from a little before it to the next
/// one's turn) and one per key pressed; quiet that follows no utterance (the start of the
/// call, after a key press) is a turn of its own, so each utterance's turn starts close to
/// its speech and the replay can start it on time.
fn cut_turns(spans: &[(u64, u64)], entries: &[Entry], audio_ms: u64) -> Vec<Cut> {
    let mut items: Vec<(u64, Item)> = spans
        .iter()
        .enumerate()
        .map(|(i, (s, _))| (*s, Item::Speech(i)))
        .collect();
    for e in entries {
        if let What::Dtmf { digit } = e.what {
            items.push((
                e.media_ms,
                Item::Key {
                    at: e.media_ms,
                    t_ms: e.t_ms,
                    digit,
                },
            ));
        }
    }
    items.sort_by_key(|(t, _)| *t);
    let mut cuts = Vec::new();
    let mut start = 0u64;
    let mut current: Option<usize> = None;
    for (_, item) in items {
        match item {
            Item::Speech(u) => {
                let floor = current.map_or(0, |prev| frame_floor(spans[prev].1));
                let cut = frame_floor(spans[u].0.saturating_sub(LEAD_MS))
                    .max(floor)
                    .max(start);
                if current.is_some() || cut > start {
                    cuts.push(Cut {
                        start,
                        end: cut,
                        utterance: current,
                        dtmf: None,
                        key_t_ms: None,
                    });
                    start = cut;
                }
                current = Some(u);
            }
            Item::Key { at, t_ms, digit } => {
                let cut = frame_floor(at).clamp(start, audio_ms);
                if current.is_some() || cut > start {
                    cuts.push(Cut {
                        start,
                        end: cut,
                        utterance: current.take(),
                        dtmf: None,
                        key_t_ms: None,
                    });
                    start = cut;
                }
                cuts.push(Cut {
                    start,
                    end: start,
                    utterance: None,
                    dtmf: Some(digit),
                    key_t_ms: Some(t_ms),
                });
            }
        }
    }
    if current.is_some() || audio_ms > start || cuts.is_empty() {
        cuts.push(Cut {
            start,
            end: audio_ms.max(start),
            utterance: current,
            dtmf: None,
            key_t_ms: None,
        });
    }
    cuts
}

/// The first transcription the engine asked for, per utterance id: where (media time) and
/// how much audio.
fn requests(entries: &[Entry]) -> Vec<(u64, u64, u64)> {
    let mut seen = std::collections::BTreeMap::new();
    for e in entries {
        if let What::Utterance {
            utterance,
            audio_ms,
            ..
        } = e.what
        {
            seen.entry(utterance).or_insert((e.media_ms, audio_ms));
        }
    }
    seen.into_iter().map(|(id, (m, a))| (id, m, a)).collect()
}

/// The utterance (by span) a transcription request made at media time `at` was for.
fn span_of(spans: &[(u64, u64)], at: u64) -> Option<usize> {
    // Requested between the start of speech and a frame or two after the end was detected.
    spans
        .iter()
        .position(|(s, e)| *s <= at && at <= e + 2 * FRAME_MS)
}

fn first_text(entries: &[Entry], id: u64) -> Option<(String, bool)> {
    entries.iter().find_map(|e| match &e.what {
        What::Transcribed {
            utterance,
            text: Some(t),
            ..
        } if *utterance == id => Some((t.trim().to_string(), true)),
        _ => None,
    })
}

/// What the model heard in each utterance (the last transcription that covered it).
fn utterance_texts(spans: &[(u64, u64)], entries: &[Entry]) -> Vec<Option<String>> {
    let mut out = vec![None; spans.len()];
    for (id, at, _) in requests(entries) {
        if let (Some(u), Some((t, _))) = (span_of(spans, at), first_text(entries, id)) {
            out[u] = Some(t);
        }
    }
    out
}

/// Spans of audio whose transcription held a number: the whole utterance, pre-roll included.
fn numeric_spans(spans: &[(u64, u64)], entries: &[Entry]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for (id, at, audio_ms) in requests(entries) {
        let numeric = entries.iter().any(|e| {
            matches!(&e.what, What::Transcribed { utterance, text: Some(t), .. }
                if *utterance == id && redact::has_number(t))
        });
        if !numeric {
            continue;
        }
        match span_of(spans, at) {
            Some(u) => out.push((spans[u].0.saturating_sub(LEAD_MS), spans[u].1)),
            // Never leave a number audible for want of a match: mask generously.
            None => out.push((at.saturating_sub(audio_ms + 1_000), at)),
        }
    }
    out
}

/// What happened, as an expectation. `timing` is per turn, on the engine's clock: when it
/// started and when the caller was done with it (an utterance's end, a key press).
fn expectation(
    entries: &[Entry],
    timing: &[(u64, Option<u64>)],
    redact_numbers: bool,
) -> ExpectFile {
    let clears = entries.iter().filter(|e| e.what == What::Clear).count();
    let mut x = ExpectFile {
        barge_in: Some(clears > 0),
        ..ExpectFile::default()
    };
    let handoff = entries.iter().rev().find_map(|e| match &e.what {
        What::Handoff { card } => Some((e.t_ms, card)),
        _ => None,
    });
    let Some((at, card)) = handoff else {
        // Self-served: which answer it gave, if any.
        x.answer = entries.iter().rev().find_map(|e| match &e.what {
            What::Play { prompt, .. } if prompt.starts_with("answer_hours") => {
                Some("hours".to_string())
            }
            What::Play { prompt, .. } if prompt.starts_with("answer_address") => {
                Some("address".to_string())
            }
            _ => None,
        });
        return x;
    };
    x.transfer = true;
    let s = |k: &str| card.get(k).and_then(Value::as_str).map(str::to_string);
    x.queue = s("queue").map(|q| vec![q]);
    x.reason = s("reason").map(|r| vec![r]);
    let priority: Option<Priority> = card
        .get("priority")
        .and_then(|p| serde_json::from_value(p.clone()).ok());
    x.priority_at_least = priority;
    x.priority_at_most = priority;
    if let Some(facts) = card.get("facts").and_then(Value::as_object) {
        x.facts = facts
            .values()
            .filter_map(Value::as_str)
            .filter(|f| !(redact_numbers && redact::has_number(f)))
            .map(str::to_string)
            .collect();
    }
    // The turn that led to the transfer: the last key press or finished utterance before
    // it; and no turn that started after it may have been needed.
    let trigger = timing
        .iter()
        .enumerate()
        .filter(|(_, (_, done))| done.is_some_and(|d| d <= at))
        .map(|(i, _)| i)
        .next_back()
        .unwrap_or(0);
    let latest = timing
        .iter()
        .enumerate()
        .filter(|(_, (start, _))| *start <= at)
        .map(|(i, _)| i)
        .next_back()
        .unwrap_or(0)
        .max(trigger);
    x.trigger_turn = Some(trigger);
    x.latest_turn = (latest != trigger).then_some(latest);
    x
}

impl Exported {
    /// Writes the TOML to `toml_path` and the audio under `<its dir>/../audio/`, where
    /// [`crate::replay::Fixture::load`] looks for it.
    pub fn write(&self, toml_path: &Path) -> Result<Vec<PathBuf>, RecordingError> {
        let audio_root = toml_path
            .parent()
            .and_then(Path::parent)
            .map(|p| p.join("audio"))
            .unwrap_or_else(|| PathBuf::from("audio"));
        let mut written = Vec::new();
        for (rel, bytes) in &self.audio {
            let path = audio_root.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
            std::fs::write(&path, bytes).map_err(io_err(&path))?;
            written.push(path);
        }
        if let Some(parent) = toml_path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        std::fs::write(toml_path, &self.toml).map_err(io_err(toml_path))?;
        written.push(toml_path.to_owned());
        Ok(written)
    }

    /// A zip laid out like `fixtures/`: `calls/<name>.toml` and `audio/<name>/turn_<i>.wav`.
    pub fn zip(&self) -> Result<Vec<u8>, zip::result::ZipError> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        w.start_file(format!("calls/{}.toml", self.name), opts)?;
        w.write_all(self.toml.as_bytes())?;
        for (rel, bytes) in &self.audio {
            w.start_file(format!("audio/{rel}"), opts)?;
            w.write_all(bytes)?;
        }
        Ok(w.finish()?.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(media_ms: u64, what: What) -> Entry {
        Entry {
            media_ms,
            t_ms: media_ms,
            what,
        }
    }

    #[test]
    fn turns_tile_the_recording_around_utterances_and_keys() {
        let spans = [(1_000, 2_500), (6_000, 7_200)];
        let entries = [entry(4_010, What::Dtmf { digit: '5' })];
        let cuts = cut_turns(&spans, &entries, 9_000);
        let shape: Vec<(u64, u64, Option<usize>, Option<char>)> = cuts
            .iter()
            .map(|c| (c.start, c.end, c.utterance, c.dtmf))
            .collect();
        assert_eq!(
            shape,
            [
                (0, 600, None, None),
                (600, 4_000, Some(0), None),
                (4_000, 4_000, None, Some('5')),
                (4_000, 5_600, None, None),
                (5_600, 9_000, Some(1), None),
            ]
        );
        assert_eq!(cuts[2].key_t_ms, Some(4_010));
        // Two utterances: each turn starts a little before its speech.
        let cuts = cut_turns(&spans, &[], 9_000);
        assert_eq!(cuts.len(), 3);
        assert_eq!(
            (cuts[1].start, cuts[1].end, cuts[2].start),
            (600, 5_600, 5_600)
        );
        assert_eq!(cuts[2].end, 9_000);
        // Nothing said, nothing pressed: one turn of the whole recording.
        let cuts = cut_turns(&[], &[], 3_000);
        assert_eq!((cuts.len(), cuts[0].start, cuts[0].end), (1, 0, 3_000));
    }

    #[test]
    fn a_transfer_is_expected_after_the_turn_that_led_to_it() {
        let card = serde_json::json!({
            "queue": "billing", "reason": "dialplan", "priority": "high",
            "facts": {"account_number": "44719", "order_number": null, "amount": null}
        });
        let entries = [
            entry(3_300, What::Handoff { card: card.clone() }),
            entry(3_300, What::Clear),
        ];
        // Quiet, the first utterance (done at 2.5 s), the second (6.0–7.2 s).
        let timing = [(0, None), (600, Some(2_500)), (5_600, Some(7_200))];
        let x = expectation(&entries, &timing, false);
        assert!(x.transfer);
        assert_eq!(x.queue, Some(vec!["billing".to_string()]));
        assert_eq!(
            (x.priority_at_least, x.priority_at_most),
            (Some(Priority::High), Some(Priority::High))
        );
        assert_eq!(x.facts, ["44719"]);
        assert_eq!((x.trigger_turn, x.latest_turn), (Some(1), None));
        assert_eq!(x.barge_in, Some(true));
        // Redacted: the account number is not written down either.
        assert!(expectation(&entries, &timing, true).facts.is_empty());
    }
}
