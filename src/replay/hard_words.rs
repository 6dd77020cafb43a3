//! The hard words: one escape word ("Agent.", "Operator.", …) or one short non-request word
//! ("Agenda.", "Urgent.", "Hours.") said alone, by many voices over a telephone line, each
//! played as a one-turn call through the real model and engine.
//!
//! Short utterances are where tiny.en is weakest, and a single word is what a caller in a hurry
//! says. An escape word must reach a person on that very turn, for the reason the caller gave;
//! a word that only sounds like one must not. Clips and their manifest are made by
//! `scripts/make_hard_words.py`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::clips::{self, ClipEntry, ClipSetError};
use super::fixture::{Act, Expect, Fixture, Turn};
use super::sim::{self, Ending};
use crate::call::{Playbook, Speaker};
use crate::stt::Transcriber;

/// One clip as `manifest.json` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Clip {
    /// Raw 8 kHz μ-law, relative to the manifest's directory.
    pub file: String,
    pub voice: String,
    pub text: String,
    /// An escape word (must transfer) rather than a non-request word (must not).
    pub request: bool,
}

impl ClipEntry for Clip {
    fn file(&self) -> &str {
        &self.file
    }
}

/// What happened to one clip.
#[derive(Debug, Clone)]
pub struct ClipResult {
    pub clip: Clip,
    /// What the caller was heard as saying (all caller lines, joined).
    pub heard: String,
    /// The card's reason, when the call was transferred.
    pub transfer_reason: Option<String>,
    /// The transfer came before warmline said anything more to the caller: on that turn.
    pub on_the_turn: bool,
    /// The engine or the audio failed.
    pub error: Option<String>,
    /// Transcriptions the call needed (a second pass makes two for one utterance) and their
    /// wall-clock time.
    pub stt_calls: u32,
    pub stt_ms: u64,
}

impl ClipResult {
    /// An escape word that went to a person at once, as an explicit request.
    pub fn recognized(&self) -> bool {
        self.on_the_turn && self.transfer_reason.as_deref() == Some("explicit_request")
    }
}

/// Reads the manifest and every clip's audio.
pub fn load(dir: &Path) -> Result<Vec<(Clip, Vec<u8>)>, ClipSetError> {
    clips::load(dir)
}

/// Plays one clip as the only turn of a call, exactly as a fixture call is replayed.
pub fn run_clip(
    clip: &Clip,
    ulaw: Vec<u8>,
    book: Arc<Playbook>,
    stt: &dyn Transcriber,
) -> ClipResult {
    let fixture = Fixture {
        id: format!("hard-{}", clip.file.replace(['/', '.'], "-")),
        path: PathBuf::from(&clip.file),
        description: clip.text.clone(),
        category: if clip.request {
            "single_word".into()
        } else {
            "short_non_request".into()
        },
        voice: clip.voice.clone(),
        turns: vec![Turn {
            act: Act::Speak {
                ulaw,
                text: Some(clip.text.clone()),
            },
            pause_before_ms: super::fixture::DEFAULT_PAUSE_MS,
            during_prompt: false,
            agent_request: clip.request,
            at_ms: None,
        }],
        expect: Expect::no_transfer(),
        greeting: None,
    };
    let mut result = ClipResult {
        clip: clip.clone(),
        heard: String::new(),
        transfer_reason: None,
        on_the_turn: false,
        error: None,
        stt_calls: 0,
        stt_ms: 0,
    };
    let outcome = match sim::run(&fixture, book, stt) {
        Ok(o) => o,
        Err(e) => {
            result.error = Some(e);
            return result;
        }
    };
    result.stt_calls = outcome.stt_calls;
    result.stt_ms = outcome.stt_wall_ms;
    let spoke_at = outcome
        .transcript
        .iter()
        .find(|l| l.speaker == Speaker::Caller)
        .map(|l| l.t_ms);
    result.heard = outcome
        .transcript
        .iter()
        .filter(|l| l.speaker == Speaker::Caller)
        .map(|l| l.text.as_str())
        .collect::<Vec<_>>()
        .join(" / ");
    if let Ending::Transferred(h) = &outcome.ending {
        result.transfer_reason = Some(h.card.reason.clone());
        // Nothing warmline said after the caller's word: no reprompt, no question first.
        result.on_the_turn = outcome
            .transcript
            .iter()
            .filter(|l| l.speaker == Speaker::System)
            .all(|l| spoke_at.is_none_or(|at| l.t_ms < at));
    }
    result
}

/// Every clip of a set, and what the set measures.
#[derive(Debug, Clone, Default)]
pub struct HardWords {
    pub results: Vec<ClipResult>,
}

impl HardWords {
    pub fn run(clips: Vec<(Clip, Vec<u8>)>, book: Arc<Playbook>, stt: &dyn Transcriber) -> Self {
        let results = clips
            .into_iter()
            .map(|(clip, ulaw)| run_clip(&clip, ulaw, book.clone(), stt))
            .collect();
        HardWords { results }
    }

    fn requests(&self) -> impl Iterator<Item = &ClipResult> {
        self.results.iter().filter(|r| r.clip.request)
    }

    fn non_requests(&self) -> impl Iterator<Item = &ClipResult> {
        self.results.iter().filter(|r| !r.clip.request)
    }

    /// Escape words transferred on their turn as an explicit request, of all escape words.
    pub fn recognition(&self) -> f64 {
        let n = self.requests().count();
        if n == 0 {
            return 1.0;
        }
        self.requests().filter(|r| r.recognized()).count() as f64 / n as f64
    }

    /// Non-request words that sent the caller to a person.
    pub fn false_transfers(&self) -> Vec<&ClipResult> {
        self.non_requests()
            .filter(|r| r.transfer_reason.is_some())
            .collect()
    }

    /// Escape words that did not reach a person on their turn as an explicit request.
    pub fn misses(&self) -> Vec<&ClipResult> {
        self.requests().filter(|r| !r.recognized()).collect()
    }

    pub fn voices(&self) -> usize {
        let mut v: Vec<&str> = self.results.iter().map(|r| r.clip.voice.as_str()).collect();
        v.sort();
        v.dedup();
        v.len()
    }
}

impl fmt::Display for HardWords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let requests = self.requests().count();
        let hit = self.requests().filter(|r| r.recognized()).count();
        let others = self.non_requests().count();
        writeln!(
            f,
            "single escape words   {:>6.3}   ({hit}/{requests} transferred on the turn as explicit_request; {} voices)",
            self.recognition(),
            self.voices()
        )?;
        writeln!(
            f,
            "short non-request     {:>6}   false transfers of {others}",
            self.false_transfers().len()
        )?;
        let calls: u32 = self.results.iter().map(|r| r.stt_calls).sum();
        let ms: u64 = self.results.iter().map(|r| r.stt_ms).sum();
        writeln!(
            f,
            "speech-to-text        {calls} transcriptions for {} clips, {ms} ms in all",
            self.results.len()
        )?;
        let mut by_engine: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for r in self.requests() {
            let engine = r.clip.voice.split('_').next().unwrap_or("");
            let e = by_engine.entry(engine).or_default();
            e.1 += 1;
            if r.recognized() {
                e.0 += 1;
            }
        }
        for (engine, (ok, n)) in &by_engine {
            writeln!(
                f,
                "  escape words, {engine:<8} {ok:>3}/{n} ({:.1} %)",
                100.0 * *ok as f64 / *n as f64
            )?;
        }
        let mut by_word: BTreeMap<(bool, &str), (usize, usize)> = BTreeMap::new();
        for r in &self.results {
            let e = by_word
                .entry((!r.clip.request, r.clip.text.as_str()))
                .or_default();
            e.1 += 1;
            let ok = if r.clip.request {
                r.recognized()
            } else {
                r.transfer_reason.is_none()
            };
            if ok {
                e.0 += 1;
            }
        }
        for ((_, word), (ok, n)) in &by_word {
            writeln!(f, "  {word:<18} {ok:>3}/{n}")?;
        }
        for r in self.misses().into_iter().chain(self.false_transfers()) {
            writeln!(
                f,
                "  miss: {:<22} {:<18} heard {:?} → {}",
                r.clip.voice,
                r.clip.text,
                r.heard,
                r.error
                    .clone()
                    .or_else(|| r.transfer_reason.clone())
                    .unwrap_or_else(|| "no transfer".into())
            )?;
        }
        Ok(())
    }
}
