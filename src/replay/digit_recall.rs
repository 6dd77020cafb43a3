//! Digit recall: account and order numbers read out by several voices in several pause
//! patterns (fast run-on, slow digit by digit, in chunks), each played as a one-turn call
//! through the real model and engine, and the number read off the context card.
//!
//! A topic before the number ("a question about my bill") routes the call to a queue, so the
//! engine hands off with whatever number it gathered on the card; a number is recalled only
//! when every digit is right and there are none extra. Each clip is also transcribed whole, as
//! one utterance, and read by [`numbers::extract`]: a number the whole-clip pass gets and the
//! call misses was lost to segmentation (the endpointer cut the turn between digits), one both
//! miss was lost to recognition or parsing. The whole-clip pass is the playbook's number pass
//! (`[stt] number_pass`), as the call engine hears a turn with a number in it again; the plain
//! whole-clip pass is reported beside it, with what each cost. Clips and their manifest are
//! made by `scripts/make_digits.py`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;

use super::clips::{self, ClipEntry, ClipSetError};
use super::fixture::{Act, Expect, Fixture, Turn};
use super::sim::{self, Ending};
use crate::analysis::numbers::{self, Facts};
use crate::audio::resample::Upsampler;
use crate::audio::{FRAME_SAMPLES_8K, ulaw};
use crate::call::{Playbook, Speaker};
use crate::stt::{SttMode, Transcriber};

/// Which card field a clip's number belongs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Account,
    Order,
}

impl Field {
    /// This field of `facts`.
    pub fn of(self, facts: &Facts) -> Option<String> {
        match self {
            Field::Account => facts.account_number.clone(),
            Field::Order => facts.order_number.clone(),
        }
    }
}

/// One clip as `manifest.json` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Clip {
    /// Raw 8 kHz μ-law, relative to the manifest's directory.
    pub file: String,
    pub voice: String,
    /// `fast`, `slow` or `chunked`.
    pub pattern: String,
    pub field: Field,
    /// The number as digits.
    pub digits: String,
    /// `plain`, `oh` (zero said "oh"), `double` or `triple`.
    pub style: String,
    /// What the voice said, one piece per breath.
    pub pieces: Vec<String>,
}

impl Clip {
    fn text(&self) -> String {
        self.pieces.join(" … ")
    }
}

impl ClipEntry for Clip {
    fn file(&self) -> &str {
        &self.file
    }

    fn invalid(&self) -> Option<String> {
        (self.digits.is_empty() || !self.digits.chars().all(|c| c.is_ascii_digit()))
            .then(|| format!("digits {:?} are not a number", self.digits))
    }
}

/// What happened to one clip.
#[derive(Debug, Clone)]
pub struct ClipResult {
    pub clip: Clip,
    /// What the caller was heard as saying, turn by turn (joined with " / ").
    pub heard: String,
    /// The number in the clip's field on the card or, when the call was not transferred, in
    /// the facts gathered from the caller's lines.
    pub card_number: Option<String>,
    /// The card's reason, when the call was transferred.
    pub transfer_reason: Option<String>,
    /// The whole clip transcribed by the number pass as one utterance, and the number read from it.
    pub whole_heard: String,
    pub whole_number: Option<String>,
    /// The same by a greedy pass, and what each of the two took (wall time).
    pub greedy_heard: String,
    pub greedy_number: Option<String>,
    pub greedy_ms: u64,
    pub second_ms: u64,
    /// The engine, the audio or the whole-clip transcription failed.
    pub error: Option<String>,
    pub stt_calls: u32,
    pub stt_ms: u64,
}

impl ClipResult {
    /// Every digit right on the card, none extra.
    pub fn recalled(&self) -> bool {
        self.card_number.as_deref() == Some(self.clip.digits.as_str())
    }

    /// The whole clip, heard by the number pass as one turn, gives the number exactly.
    pub fn whole_recalled(&self) -> bool {
        self.whole_number.as_deref() == Some(self.clip.digits.as_str())
    }

    /// The whole clip, heard greedily as one turn, gives the number exactly.
    pub fn greedy_recalled(&self) -> bool {
        self.greedy_number.as_deref() == Some(self.clip.digits.as_str())
    }
}

/// Reads the manifest and every clip's audio.
pub fn load(dir: &Path) -> Result<Vec<(Clip, Vec<u8>)>, ClipSetError> {
    clips::load(dir)
}

/// The clip at 16 kHz, as the model takes it, without the resampler's start-up delay.
pub fn whole_clip_16k(ulaw_bytes: &[u8]) -> Result<Vec<f32>, String> {
    let mut up = Upsampler::new().map_err(|e| e.to_string())?;
    let (mut pcm, mut out) = (Vec::new(), Vec::new());
    for frame in ulaw_bytes.chunks(FRAME_SAMPLES_8K) {
        pcm.clear();
        ulaw::decode_frame(frame, &mut pcm);
        up.process(&pcm, &mut out);
    }
    // Flush the filter's tail with one frame of silence.
    up.process(&[0; FRAME_SAMPLES_8K], &mut out);
    Ok(out.split_off(Upsampler::DELAY_16K.min(out.len())))
}

/// Plays one clip as the only turn of a call, exactly as a fixture call is replayed, then
/// transcribes it whole.
pub fn run_clip(
    clip: &Clip,
    ulaw: Vec<u8>,
    book: Arc<Playbook>,
    stt: &dyn Transcriber,
) -> ClipResult {
    let mut result = ClipResult {
        clip: clip.clone(),
        heard: String::new(),
        card_number: None,
        transfer_reason: None,
        whole_heard: String::new(),
        whole_number: None,
        greedy_heard: String::new(),
        greedy_number: None,
        greedy_ms: 0,
        second_ms: 0,
        error: None,
        stt_calls: 0,
        stt_ms: 0,
    };
    let whole = whole_clip_16k(&ulaw).and_then(|samples| {
        let pass = |mode| {
            let t0 = Instant::now();
            let t = stt
                .transcribe_as(&samples, "", mode)
                .map_err(|e| format!("{e:?}"));
            (t, t0.elapsed().as_millis() as u64)
        };
        let (greedy, greedy_ms) = pass(SttMode::Free);
        let (second, second_ms) = pass(book.number_pass.mode().unwrap_or(SttMode::Free));
        Ok((greedy?, greedy_ms, second?, second_ms))
    });
    match whole {
        Ok((greedy, greedy_ms, second, second_ms)) => {
            result.greedy_number = clip.field.of(&numbers::extract(&greedy.text));
            result.greedy_heard = greedy.text;
            result.whole_number = clip.field.of(&numbers::extract(&second.text));
            result.whole_heard = second.text;
            (result.greedy_ms, result.second_ms) = (greedy_ms, second_ms);
            // Measurement, not the call: kept out of the call's own speech-to-text count.
        }
        Err(e) => result.error = Some(format!("whole-clip transcription: {e}")),
    }
    let fixture = Fixture {
        id: format!("digits-{}", clip.file.replace(['/', '.'], "-")),
        path: PathBuf::from(&clip.file),
        description: clip.text(),
        category: "digits".into(),
        voice: clip.voice.clone(),
        turns: vec![Turn {
            act: Act::Speak {
                ulaw,
                text: Some(clip.text()),
            },
            pause_before_ms: super::fixture::DEFAULT_PAUSE_MS,
            during_prompt: false,
            agent_request: false,
            at_ms: None,
        }],
        expect: Expect::no_transfer(),
        greeting: None,
    };
    let outcome = match sim::run(&fixture, book, stt) {
        Ok(o) => o,
        Err(e) => {
            result.error = Some(e);
            return result;
        }
    };
    result.stt_calls += outcome.stt_calls;
    result.stt_ms += outcome.stt_wall_ms;
    result.heard = outcome
        .transcript
        .iter()
        .filter(|l| l.speaker == Speaker::Caller)
        .map(|l| l.text.as_str())
        .collect::<Vec<_>>()
        .join(" / ");
    result.card_number = match &outcome.ending {
        Ending::Transferred(h) => {
            result.transfer_reason = Some(h.card.reason.clone());
            clip.field.of(&h.card.facts)
        }
        // A topic misheard leaves no card; the number is still what the engine gathered,
        // which is every caller line's facts merged in order, each read after the field the line
        // before left open (as `Engine::absorb` does).
        _ => {
            let mut facts = Facts::default();
            let mut open = None;
            for l in outcome
                .transcript
                .iter()
                .filter(|l| l.speaker == Speaker::Caller)
            {
                facts.merge(&numbers::extract_after(&l.text, open));
                open = numbers::open_field(&l.text);
            }
            clip.field.of(&facts)
        }
    };
    result
}

/// Recalled of all, as (hits, clips).
fn tally<'a>(
    rs: impl Iterator<Item = &'a ClipResult>,
    ok: fn(&ClipResult) -> bool,
) -> (usize, usize) {
    rs.fold((0, 0), |(h, n), r| (h + usize::from(ok(r)), n + 1))
}

fn ratio((hits, n): (usize, usize)) -> f64 {
    if n == 0 { 1.0 } else { hits as f64 / n as f64 }
}

/// How the report groups clips: by pattern, voice or style.
type GroupKey = fn(&ClipResult) -> &str;

/// Every clip of a set, and what the set measures.
#[derive(Debug, Clone, Default)]
pub struct DigitRecall {
    pub results: Vec<ClipResult>,
}

impl DigitRecall {
    pub fn run(clips: Vec<(Clip, Vec<u8>)>, book: Arc<Playbook>, stt: &dyn Transcriber) -> Self {
        let results = clips
            .into_iter()
            .map(|(clip, ulaw)| run_clip(&clip, ulaw, book.clone(), stt))
            .collect();
        DigitRecall { results }
    }

    /// Numbers exactly right on the card, of all numbers.
    pub fn recall(&self) -> f64 {
        ratio(tally(self.results.iter(), ClipResult::recalled))
    }

    /// Numbers exactly right when each clip is heard by the number pass as one turn.
    pub fn whole_recall(&self) -> f64 {
        ratio(tally(self.results.iter(), ClipResult::whole_recalled))
    }

    /// Numbers exactly right when each clip is heard greedily as one turn.
    pub fn greedy_recall(&self) -> f64 {
        ratio(tally(self.results.iter(), ClipResult::greedy_recalled))
    }

    /// Card recall of the clips said in one pattern.
    pub fn recall_of_pattern(&self, pattern: &str) -> f64 {
        ratio(tally(
            self.results.iter().filter(|r| r.clip.pattern == pattern),
            ClipResult::recalled,
        ))
    }

    /// Whole-clip recall of the clips said in one pattern.
    pub fn whole_recall_of_pattern(&self, pattern: &str) -> f64 {
        ratio(tally(
            self.results.iter().filter(|r| r.clip.pattern == pattern),
            ClipResult::whole_recalled,
        ))
    }

    pub fn voices(&self) -> usize {
        let mut v: Vec<&str> = self.results.iter().map(|r| r.clip.voice.as_str()).collect();
        v.sort();
        v.dedup();
        v.len()
    }

    /// Distinct numbers in the set.
    pub fn numbers(&self) -> usize {
        let mut v: Vec<&str> = self
            .results
            .iter()
            .map(|r| r.clip.digits.as_str())
            .collect();
        v.sort();
        v.dedup();
        v.len()
    }

    /// Clips whose number was not exactly on the card.
    pub fn misses(&self) -> Vec<&ClipResult> {
        self.results.iter().filter(|r| !r.recalled()).collect()
    }

    fn rows<'a>(
        &'a self,
        key: impl Fn(&'a ClipResult) -> &'a str,
    ) -> BTreeMap<&'a str, Vec<&'a ClipResult>> {
        let mut out: BTreeMap<&str, Vec<&ClipResult>> = BTreeMap::new();
        for r in &self.results {
            out.entry(key(r)).or_default().push(r);
        }
        out
    }
}

impl fmt::Display for DigitRecall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let card = tally(self.results.iter(), ClipResult::recalled);
        let whole = tally(self.results.iter(), ClipResult::whole_recalled);
        writeln!(
            f,
            "digit strings, card     {:>6.3}   ({}/{} exact on the context card; {} numbers, {} voices)",
            ratio(card),
            card.0,
            card.1,
            self.numbers(),
            self.voices()
        )?;
        let greedy = tally(self.results.iter(), ClipResult::greedy_recalled);
        writeln!(
            f,
            "digit strings, one turn {:>6.3}   ({}/{} exact when the clip is heard as one utterance by the number pass; plainly {}/{})",
            ratio(whole),
            whole.0,
            whole.1,
            greedy.0,
            greedy.1
        )?;
        let calls: u32 = self.results.iter().map(|r| r.stt_calls).sum();
        let ms: u64 = self.results.iter().map(|r| r.stt_ms).sum();
        writeln!(
            f,
            "speech-to-text          {calls} transcriptions for {} calls, {ms} ms in all",
            self.results.len()
        )?;
        let n = self.results.len().max(1) as u64;
        let (g, c): (u64, u64) = self
            .results
            .iter()
            .fold((0, 0), |(g, c), r| (g + r.greedy_ms, c + r.second_ms));
        writeln!(
            f,
            "whole-clip pass         plain {} ms, number pass {} ms on average ({:.2}×)",
            g / n,
            c / n,
            c as f64 / g.max(1) as f64
        )?;
        let groups: [(&str, GroupKey); 3] = [
            ("pattern", |r| r.clip.pattern.as_str()),
            ("voice", |r| r.clip.voice.as_str()),
            ("style", |r| r.clip.style.as_str()),
        ];
        for (name, key) in &groups {
            for (k, rs) in self.rows(*key) {
                let c = tally(rs.iter().copied(), ClipResult::recalled);
                let w = tally(rs.iter().copied(), ClipResult::whole_recalled);
                let g = tally(rs.iter().copied(), ClipResult::greedy_recalled);
                writeln!(
                    f,
                    "  {name:<7} {k:<16} card {:>2}/{:<2} ({:>5.1} %)   one turn {:>2}/{:<2} ({:>5.1} %, greedy {:>2})",
                    c.0,
                    c.1,
                    100.0 * ratio(c),
                    w.0,
                    w.1,
                    100.0 * ratio(w),
                    g.0
                )?;
            }
        }
        for r in &self.results {
            if r.recalled() && r.whole_recalled() {
                continue;
            }
            let cause = match (r.recalled(), r.whole_recalled()) {
                (false, true) => "segmentation",
                (false, false) => "recognition",
                _ => "one-turn only",
            };
            writeln!(
                f,
                "  miss ({cause}): {:<30} want {:<10} card {:<12} heard {:?} | one turn {:<12} heard {:?} | greedy {:?}{}",
                r.clip.file,
                r.clip.digits,
                r.card_number.as_deref().unwrap_or("-"),
                r.heard,
                r.whole_number.as_deref().unwrap_or("-"),
                r.whole_heard,
                r.greedy_heard,
                r.error
                    .as_deref()
                    .map(|e| format!(" error: {e}"))
                    .unwrap_or_default()
            )?;
        }
        Ok(())
    }
}
