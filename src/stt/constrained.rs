//! The constrained pass: Whisper decodes the same audio again, but may only write text a small
//! grammar allows — one escape word, or a string of digits — and the path it is forced along is
//! scored with the model's *unmasked* probabilities, so a caller who said "Agenda." (forced to
//! "Agent.") scores far below one who said "Agent." (which the model nearly chose unforced).
//!
//! tiny.en's free decode is weakest on one short word and on digit strings; its second choice
//! is often the right one. The grammar keeps the decoder inside the vocabulary the call needs at
//! that moment, and the score says whether that vocabulary is what was said.

use std::sync::Mutex;

use super::SttMode;

/// What a constrained pass may write. Matching is on the raw decoded bytes, case-insensitive,
/// with Whisper's leading space allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grammar {
    /// Exactly one of these words, optionally followed by one punctuation mark.
    OneWordOf(&'static [&'static str]),
    /// Digits as words or numerals ("four four seven", "447", "oh", "double 8"), separated by
    /// spaces or punctuation.
    Digits,
}

/// The escape words a caller says alone ([`crate::analysis::agent_request`]'s own words).
pub const ESCAPE_WORDS: &[&str] = &[
    "agent",
    "operator",
    "representative",
    "human",
    "person",
    "someone",
];

/// Spoken digit words a digit string may hold, and the numerals' own characters.
const DIGIT_WORDS: &[&str] = &[
    "zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "double",
    "triple",
];

/// Marks that may follow a word.
const PUNCT: &[u8] = b".,!?-";

impl Grammar {
    pub fn for_mode(mode: SttMode) -> Option<Grammar> {
        match mode {
            SttMode::Free | SttMode::Careful | SttMode::Numbers => None,
            SttMode::EscapeWord => Some(Grammar::OneWordOf(ESCAPE_WORDS)),
            SttMode::Digits => Some(Grammar::Digits),
        }
    }

    /// Whether a token made of these bytes can ever be part of an allowed text: the decoder's
    /// ~50 000 tokens shrink to the few hundred worth testing at each step.
    pub fn may_use(&self, token: &[u8]) -> bool {
        if token.is_empty() {
            return false;
        }
        let words: &[&str] = match self {
            Grammar::OneWordOf(words) => words,
            Grammar::Digits => DIGIT_WORDS,
        };
        token.iter().all(|&b| {
            let c = b.to_ascii_lowercase();
            c == b' '
                || PUNCT.contains(&c)
                || (matches!(self, Grammar::Digits) && c.is_ascii_digit())
                || words.iter().any(|w| w.as_bytes().contains(&c))
        })
    }

    /// Whether `text` can still grow into an allowed text.
    pub fn viable(&self, text: &[u8]) -> bool {
        match self {
            Grammar::OneWordOf(words) => one_word(words, text).is_some(),
            Grammar::Digits => digits(text).is_some(),
        }
    }

    /// Whether `text` is an allowed text as it stands (the decoder may end here).
    pub fn complete(&self, text: &[u8]) -> bool {
        match self {
            Grammar::OneWordOf(words) => one_word(words, text) == Some(true),
            Grammar::Digits => digits(text) == Some(true),
        }
    }
}

/// `None`: not a prefix of an allowed text; `Some(done)`: a prefix, complete when `done`.
fn one_word(words: &[&str], text: &[u8]) -> Option<bool> {
    let s = text.strip_prefix(b" ").unwrap_or(text).to_ascii_lowercase();
    let (body, mark) = match s.last() {
        Some(c) if PUNCT.contains(c) => (&s[..s.len() - 1], true),
        _ => (&s[..], false),
    };
    for w in words {
        let w = w.as_bytes();
        if body == w {
            return Some(true);
        }
        if !mark && w.starts_with(body) {
            return Some(false);
        }
    }
    None
}

/// As [`one_word`], for a digit string.
fn digits(text: &[u8]) -> Option<bool> {
    let s = text.to_ascii_lowercase();
    let mut saw_digit = false;
    let mut last_complete = true;
    let mut pending_multiplier = false;
    let ends_open = s.last().is_some_and(|c| c.is_ascii_alphanumeric());
    let pieces: Vec<&[u8]> = s
        .split(|c| *c == b' ' || PUNCT.contains(c))
        .filter(|p| !p.is_empty())
        .collect();
    for (i, piece) in pieces.iter().enumerate() {
        let is_last_open = ends_open && i + 1 == pieces.len();
        if piece.iter().all(u8::is_ascii_digit) {
            saw_digit = true;
            pending_multiplier = false;
            last_complete = true;
            continue;
        }
        let word = DIGIT_WORDS.iter().find(|w| w.as_bytes() == *piece);
        match word {
            Some(w) => {
                let multiplier = matches!(*w, "double" | "triple");
                if !multiplier {
                    saw_digit = true;
                }
                pending_multiplier = multiplier;
                // "one" could still become a longer word? No digit word extends another, but
                // "o" → "oh" and the like are handled below as an open prefix.
                last_complete = true;
            }
            None if is_last_open && DIGIT_WORDS.iter().any(|w| w.as_bytes().starts_with(piece)) => {
                last_complete = false;
            }
            None => return None,
        }
    }
    Some(saw_digit && last_complete && !pending_multiplier)
}

/// One decoding step of a constrained pass: the chosen token's log-probability and the best
/// log-probability any token had, both before the grammar masked anything.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub chosen: f32,
    pub best: f32,
}

/// How far the forced path strayed from what the model wanted, step by step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathScore {
    /// Σ (best − chosen): 0 when the grammar never had to override the model.
    pub regret: f32,
    /// The largest single-step regret: one overridden token ("Agen|da" → "Agen|t").
    pub worst: f32,
    /// Mean unmasked log-probability of the chosen tokens.
    pub mean_logprob: f32,
    pub steps: usize,
}

impl PathScore {
    pub fn of(steps: &[Step]) -> PathScore {
        let n = steps.len().max(1) as f32;
        PathScore {
            regret: steps.iter().map(|s| s.best - s.chosen).sum(),
            worst: steps.iter().map(|s| s.best - s.chosen).fold(0.0, f32::max),
            mean_logprob: steps.iter().map(|s| s.chosen).sum::<f32>() / n,
            steps: steps.len(),
        }
    }

    /// The score a constrained transcript carries as its confidence, 0..1: the geometric mean,
    /// over its steps, of how likely the forced token was next to the model's favourite. 1 when
    /// the model would have written the same text unforced.
    pub fn confidence(&self) -> f32 {
        if self.steps == 0 {
            return 0.0;
        }
        (-self.regret / self.steps as f32).exp()
    }
}

/// What the logits filter needs during one constrained decode.
pub(crate) struct Constraint<'a> {
    pub grammar: Grammar,
    pub eot: i32,
    /// Logits whisper.cpp hands the filter: one per vocabulary id.
    pub n_vocab: usize,
    /// Bytes of every text token, by id.
    pub texts: &'a [Vec<u8>],
    /// Ids of the tokens [`Grammar::may_use`] admits.
    pub candidates: Vec<i32>,
    pub steps: Mutex<Vec<Step>>,
}

impl Constraint<'_> {
    /// Masks `logits` (one per vocabulary id) down to the tokens that keep `decoded` (the text
    /// token ids so far) inside the grammar, and records the step's unmasked scores.
    pub fn filter(&self, decoded: &[i32], logits: &mut [f32]) {
        let mut text: Vec<u8> = decoded
            .iter()
            .filter_map(|&id| self.texts.get(id as usize))
            .flatten()
            .copied()
            .collect();
        let base = text.len();
        let (max, lse) = log_sum_exp(logits);
        let mut allowed: Vec<usize> = Vec::new();
        for &id in &self.candidates {
            text.truncate(base);
            text.extend_from_slice(&self.texts[id as usize]);
            if logits[id as usize].is_finite() && self.grammar.viable(&text) {
                allowed.push(id as usize);
            }
        }
        text.truncate(base);
        let eot = self.eot as usize;
        if eot < logits.len() && (self.grammar.complete(&text) || allowed.is_empty()) {
            allowed.push(eot);
        }
        let chosen = allowed
            .iter()
            .copied()
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap_or(eot);
        let chosen_logit = logits.get(chosen).copied().unwrap_or(f32::NEG_INFINITY);
        self.steps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Step {
                // Whisper may have suppressed end-of-text at the first step; a forced end
                // there counts as very unlikely rather than impossible.
                chosen: (chosen_logit - lse).max(-30.0),
                best: max - lse,
            });
        let mut keep = vec![false; logits.len()];
        for id in allowed {
            keep[id] = true;
        }
        if !chosen_logit.is_finite() && chosen < logits.len() {
            logits[chosen] = 0.0;
        }
        for (id, logit) in logits.iter_mut().enumerate() {
            if !keep[id] {
                *logit = f32::NEG_INFINITY;
            }
        }
    }
}

/// The largest logit and log Σ exp(logits), over the finite entries.
fn log_sum_exp(logits: &[f32]) -> (f32, f32) {
    let max = logits
        .iter()
        .copied()
        .filter(|l| l.is_finite())
        .fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return (0.0, 0.0);
    }
    let sum: f32 = logits
        .iter()
        .filter(|l| l.is_finite())
        .map(|l| (l - max).exp())
        .sum();
    (max, max + sum.ln())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ESC: Grammar = Grammar::OneWordOf(ESCAPE_WORDS);

    #[test]
    fn one_escape_word_with_space_case_and_a_mark() {
        for t in [
            " Agent.",
            "Agent",
            " operator!",
            " REPRESENTATIVE?",
            " Someone",
        ] {
            assert!(ESC.complete(t.as_bytes()), "{t}");
        }
        for t in [" Ag", " Agen", " Rep", ""] {
            assert!(
                ESC.viable(t.as_bytes()) && !ESC.complete(t.as_bytes()),
                "{t}"
            );
        }
        for t in [
            " Agenda",
            " Agent. Agent",
            " urgent",
            " Agent please",
            " Ag.",
        ] {
            assert!(!ESC.viable(t.as_bytes()), "{t}");
        }
    }

    #[test]
    fn digit_strings_in_words_and_numerals() {
        for t in [
            " 4 4 7 1 9.",
            " Four, four, seven.",
            " 447-19",
            " Oh double eight",
            " 3.8.2.1",
        ] {
            assert!(Grammar::Digits.complete(t.as_bytes()), "{t}");
        }
        // Open words and a multiplier still waiting for its digit.
        for t in [" fo", " 4 4 sev", " double", " 4 triple "] {
            let b = t.as_bytes();
            assert!(
                Grammar::Digits.viable(b) && !Grammar::Digits.complete(b),
                "{t}"
            );
        }
        for t in [" for", " free", " 4 and", " seventy", " Agent"] {
            assert!(!Grammar::Digits.viable(t.as_bytes()), "{t}");
        }
    }

    #[test]
    fn candidate_tokens_are_only_the_grammar_letters() {
        assert!(ESC.may_use(b" Ag"));
        assert!(ESC.may_use(b"ent."));
        assert!(!ESC.may_use(b" 4"));
        assert!(!ESC.may_use(b"z"));
        assert!(Grammar::Digits.may_use(b" 447"));
        assert!(!Grammar::Digits.may_use(b" agent"));
    }

    /// A toy vocabulary: the grammar forces " Agent" over the model's favourite " Agenda".
    #[test]
    fn the_filter_forces_the_grammar_and_scores_the_unmasked_path() {
        let texts: Vec<Vec<u8>> = [" Agen", "da", "t", ".", " urgent", "EOT"]
            .iter()
            .map(|t| t.as_bytes().to_vec())
            .collect();
        let c = Constraint {
            grammar: ESC,
            eot: 5,
            n_vocab: 6,
            texts: &texts,
            candidates: (0..5)
                .filter(|&i| ESC.may_use(&texts[i]))
                .map(|i| i as i32)
                .collect(),
            steps: Mutex::new(Vec::new()),
        };
        // Step 1: " urgent" is the model's favourite; only " Agen" fits.
        let mut logits = vec![1.0, -5.0, -5.0, -5.0, 3.0, -5.0];
        c.filter(&[], &mut logits);
        assert!(logits[0].is_finite() && logits[4] == f32::NEG_INFINITY);
        // Step 2: "da" is preferred by 2 nats; "t" is forced.
        let mut logits = vec![-5.0, 2.0, 0.0, -5.0, -5.0, -5.0];
        c.filter(&[0], &mut logits);
        assert!(logits[2].is_finite() && logits[1] == f32::NEG_INFINITY);
        // Step 3: complete; end-of-text and "." both allowed.
        let mut logits = vec![-5.0, -5.0, -5.0, 1.0, -5.0, 2.0];
        c.filter(&[0, 2], &mut logits);
        assert!(logits[3].is_finite() && logits[5].is_finite());
        let steps = c.steps.lock().unwrap().clone();
        assert_eq!(steps.len(), 3);
        let score = PathScore::of(&steps);
        assert!((score.worst - 2.0).abs() < 1e-4, "{score:?}");
        assert!((score.regret - 4.0).abs() < 1e-4, "{score:?}");
        // A path the model agreed with all along scores 1.
        let agreed = PathScore::of(&[Step {
            chosen: -0.1,
            best: -0.1,
        }]);
        assert_eq!(agreed.confidence(), 1.0);
        assert!(score.confidence() < 0.3);
    }
}
