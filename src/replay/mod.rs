//! Fixture replay: recorded calls through the same engine that serves live calls, on a
//! virtual clock, with the real speech-to-text model.

pub mod check;
pub mod clips;
pub mod digit_recall;
pub mod eval;
pub mod fixture;
pub mod hard_words;
pub mod sim;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

pub use check::{Miss, check};
pub use eval::{Evaluation, evaluate};
pub use fixture::Fixture;
pub use sim::{Ending, Outcome};

use crate::call::Playbook;
use crate::call::Speaker;
use crate::stt::Transcriber;

/// One replayed fixture and its score.
#[derive(Debug)]
pub struct Replayed {
    pub fixture: Fixture,
    pub outcome: Result<Outcome, String>,
    pub misses: Vec<Miss>,
}

impl Replayed {
    pub fn passed(&self) -> bool {
        self.outcome.is_ok() && self.misses.is_empty()
    }
}

/// Fixture files named directly, plus every `*.toml` in directories named, sorted.
pub fn expand_paths(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "toml"))
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Replays every fixture in `paths`; a fixture that cannot be read is reported as a failure
/// of that fixture, never a reason to stop the others.
pub fn replay_all(
    paths: &[PathBuf],
    book: Arc<Playbook>,
    stt: &dyn Transcriber,
) -> Vec<Result<Replayed, (PathBuf, String)>> {
    paths
        .iter()
        .map(|p| {
            let fixture = Fixture::load(p).map_err(|e| (p.clone(), e.to_string()))?;
            let _span = tracing::info_span!("replay", call = %fixture.id).entered();
            let outcome = sim::run(&fixture, book.clone(), stt);
            let misses = match &outcome {
                Ok(o) => check(&fixture, o),
                Err(_) => Vec::new(),
            };
            Ok(Replayed {
                fixture,
                outcome,
                misses,
            })
        })
        .collect()
}

/// The per-call report: transcript, decision, reason, queue, facts, pass/fail.
pub fn report(r: &Replayed) -> String {
    let mut s = String::new();
    let f = &r.fixture;
    let _ = writeln!(
        s,
        "── {} [{}] {}",
        f.id,
        f.category,
        if r.passed() { "PASS" } else { "FAIL" }
    );
    let o = match &r.outcome {
        Ok(o) => o,
        Err(e) => {
            let _ = writeln!(s, "   error: {e}");
            return s;
        }
    };
    for l in &o.transcript {
        let who = match l.speaker {
            Speaker::Caller => "caller",
            Speaker::System => "system",
        };
        let conf = l
            .confidence
            .map(|c| format!(" ({c:.2})"))
            .unwrap_or_default();
        let _ = writeln!(s, "   {:>6} ms {who}: {}{conf}", l.t_ms, l.text);
    }
    match &o.ending {
        Ending::Transferred(h) => {
            let c = &h.card;
            let facts = serde_json::to_string(&c.facts).unwrap_or_default();
            let _ = writeln!(
                s,
                "   decision: transfer after turn {:?} at {} ms → queue {} ({}) reason {} priority {}",
                o.after_turn(),
                o.ended_at,
                c.queue,
                c.target,
                c.reason,
                c.priority.as_str()
            );
            let _ = writeln!(s, "   facts: {facts}");
            let _ = writeln!(s, "   summary: {}", c.summary);
            let _ = writeln!(s, "   agent hears: {}", c.spoken_summary);
            let _ = writeln!(s, "   caller hears: {}", h.caller_say);
        }
        Ending::HungUp => {
            let _ = writeln!(
                s,
                "   decision: self-serve, warmline said goodbye at {} ms",
                o.ended_at
            );
        }
        Ending::CallerHungUp => {
            let _ = writeln!(
                s,
                "   decision: no transfer, caller hung up at {} ms",
                o.ended_at
            );
        }
    }
    for m in &r.misses {
        let _ = writeln!(s, "   ✗ {}: {}", m.check, m.detail);
    }
    s
}
