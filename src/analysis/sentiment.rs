//! How upset one utterance sounds from its words alone.
//!
//! A support line hears bad news all day; "the box arrived damaged" is the reason for the
//! call, not anger. So the lexicon keeps two kinds of negative words apart: emotion words
//! ("furious", "ridiculous") that say how the caller feels, and issue words ("damaged",
//! "broken") whose total is capped so a calm report of a problem stays mildly negative.

use std::sync::LazyLock;

use super::text;

/// The lexical reading of one utterance.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Lexical {
    /// -1 (very negative) ..= 1 (very positive); 0 when no sentiment word was heard.
    pub score: f32,
    /// A phrase that on its own means "get this caller to a human" ("I'm furious").
    pub strong_negative: bool,
    /// The caller says they have been in touch about this before.
    pub repeat_contact: bool,
    /// The phrases that moved the score, as heard ("not happy", "third time").
    pub cues: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// How the caller feels.
    Emotion,
    /// Emotion that on its own warrants a human (seed list in VOICE.md).
    Strong,
    /// A problem being reported; capped in total.
    Issue,
    /// Courtesy ("thanks"); means little when said through anger.
    Polite,
}

use Kind::{Emotion, Issue, Polite, Strong};

const LEXICON: &[Entry] = &[
    // Strong negatives: the seed phrases.
    ("furious", -1.0, Strong),
    ("livid", -1.0, Strong),
    ("fuming", -0.9, Strong),
    ("outraged", -0.9, Strong),
    ("outrageous", -0.85, Strong),
    ("disgraceful", -0.85, Strong),
    ("disgrace", -0.85, Strong),
    ("disgusting", -0.9, Strong),
    ("unacceptable", -0.85, Strong),
    ("ridiculous", -0.8, Strong),
    ("fed up", -0.8, Strong),
    ("sick and tired", -0.9, Strong),
    ("had enough", -0.8, Strong),
    ("enough is enough", -0.8, Strong),
    ("worst service", -0.9, Strong),
    ("worst customer service", -0.9, Strong),
    ("worst company", -0.9, Strong),
    ("third time", -0.5, Strong),
    ("3rd time", -0.5, Strong),
    ("fourth time", -0.6, Strong),
    ("4th time", -0.6, Strong),
    ("fifth time", -0.6, Strong),
    ("5th time", -0.6, Strong),
    ("tenth time", -0.7, Strong),
    ("hundredth time", -0.7, Strong),
    ("millionth time", -0.7, Strong),
    // Emotion.
    ("angry", -0.7, Emotion),
    ("annoyed", -0.5, Emotion),
    ("annoying", -0.5, Emotion),
    ("frustrated", -0.6, Emotion),
    ("frustrating", -0.6, Emotion),
    ("terrible", -0.8, Emotion),
    ("awful", -0.8, Emotion),
    ("horrible", -0.8, Emotion),
    ("appalling", -0.85, Emotion),
    ("useless", -0.7, Emotion),
    ("disgusted", -0.8, Emotion),
    ("sick of", -0.7, Emotion),
    ("joke", -0.5, Emotion),
    ("worst", -0.8, Emotion),
    ("incompetent", -0.85, Emotion),
    ("pathetic", -0.8, Emotion),
    ("hate", -0.8, Emotion),
    ("upset", -0.6, Emotion),
    ("disappointed", -0.5, Emotion),
    ("disappointing", -0.5, Emotion),
    ("unhappy", -0.5, Emotion),
    ("mad", -0.6, Emotion),
    ("pissed", -0.8, Emotion),
    ("pissed off", -0.9, Emotion),
    ("stupid", -0.6, Emotion),
    ("crap", -0.6, Emotion),
    ("rubbish", -0.6, Emotion),
    ("garbage", -0.7, Emotion),
    ("shocking", -0.6, Emotion),
    ("unbelievable", -0.5, Emotion),
    ("scam", -0.7, Emotion),
    ("rip off", -0.7, Emotion),
    ("nightmare", -0.7, Emotion),
    ("waste of time", -0.6, Emotion),
    ("wasting my time", -0.6, Emotion),
    ("hopeless", -0.6, Emotion),
    ("sucks", -0.6, Emotion),
    ("bad", -0.5, Emotion),
    ("poor", -0.4, Emotion),
    ("lousy", -0.6, Emotion),
    ("absurd", -0.7, Emotion),
    ("insane", -0.6, Emotion),
    ("rude", -0.6, Emotion),
    ("unhelpful", -0.6, Emotion),
    ("lied", -0.6, Emotion),
    ("thanks for nothing", -0.7, Emotion),
    // Nobody helping and waiting on hold: how callers who are done with a line put it.
    ("no one will help", -0.7, Emotion),
    ("nobody will help", -0.7, Emotion),
    ("no one helps", -0.7, Emotion),
    ("nobody helps", -0.7, Emotion),
    ("no one ever helps", -0.75, Emotion),
    ("nobody ever helps", -0.75, Emotion),
    ("no one is helping", -0.7, Emotion),
    ("nobody is helping", -0.7, Emotion),
    ("been on hold", -0.5, Emotion),
    ("on hold for", -0.5, Emotion),
    ("waiting for ages", -0.5, Emotion),
    // Sarcasm: praise that opens with "oh" or lands on the line itself reads as its opposite.
    ("oh great", -0.6, Emotion),
    ("oh wonderful", -0.6, Emotion),
    ("oh fantastic", -0.6, Emotion),
    ("oh perfect", -0.6, Emotion),
    ("oh brilliant", -0.6, Emotion),
    ("just great", -0.5, Emotion),
    ("just what i needed", -0.5, Emotion),
    ("exactly what i need", -0.5, Emotion),
    ("exactly what i needed", -0.5, Emotion),
    ("absolutely useless", -0.9, Strong),
    ("completely useless", -0.9, Strong),
    ("totally useless", -0.9, Strong),
    ("damn", -0.4, Emotion),
    ("stressed", -0.4, Emotion),
    ("worried", -0.3, Emotion),
    ("confused", -0.2, Emotion),
    // Issues: what went wrong, said calmly or not.
    ("broken", -0.25, Issue),
    ("damaged", -0.25, Issue),
    ("problem", -0.15, Issue),
    ("issue", -0.1, Issue),
    ("wrong", -0.2, Issue),
    ("late", -0.15, Issue),
    ("missing", -0.2, Issue),
    ("error", -0.15, Issue),
    ("mistake", -0.2, Issue),
    ("not working", -0.2, Issue),
    ("doesn't work", -0.2, Issue),
    ("stopped working", -0.2, Issue),
    ("failed", -0.2, Issue),
    ("delayed", -0.15, Issue),
    ("lost", -0.2, Issue),
    ("overcharged", -0.2, Issue),
    ("second time", -0.2, Issue),
    ("2nd time", -0.2, Issue),
    ("still waiting", -0.25, Issue),
    ("complaint", -0.2, Issue),
    // Positive.
    ("thanks", 0.5, Polite),
    ("thank you", 0.5, Polite),
    ("thank you so much", 0.7, Polite),
    ("cheers", 0.3, Polite),
    ("appreciate", 0.5, Polite),
    ("appreciate it", 0.5, Polite),
    ("great", 0.6, Emotion),
    ("perfect", 0.6, Emotion),
    ("happy", 0.6, Emotion),
    ("glad", 0.5, Emotion),
    ("pleased", 0.5, Emotion),
    ("awesome", 0.7, Emotion),
    ("excellent", 0.7, Emotion),
    ("wonderful", 0.7, Emotion),
    ("fantastic", 0.7, Emotion),
    ("brilliant", 0.6, Emotion),
    ("amazing", 0.7, Emotion),
    ("lovely", 0.5, Emotion),
    ("nice", 0.4, Emotion),
    ("good", 0.4, Emotion),
    ("helpful", 0.5, Emotion),
    ("love", 0.6, Emotion),
    ("satisfied", 0.5, Emotion),
    ("relieved", 0.4, Emotion),
    ("fair", 0.3, Emotion),
    ("fine", 0.15, Emotion),
    // Set phrases that would otherwise read as something else.
    ("no problem", 0.3, Emotion),
    ("no worries", 0.3, Emotion),
    ("no thanks", 0.0, Polite),
    ("no thank you", 0.0, Polite),
    ("good morning", 0.1, Polite),
    ("good afternoon", 0.1, Polite),
    ("good evening", 0.1, Polite),
    ("good luck", 0.0, Polite),
];

type Entry = (&'static str, f32, Kind);

/// The lexicon, longest phrase first, so "worst service" wins over "worst".
static BY_LENGTH: LazyLock<Vec<&'static Entry>> = LazyLock::new(|| {
    let mut entries: Vec<_> = LEXICON.iter().collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
    entries
});

/// Said of contact with us, these mean the caller has been through this before.
const REPEAT_PHRASES: &[&str] = &[
    "second time",
    "2nd time",
    "third time",
    "3rd time",
    "fourth time",
    "4th time",
    "fifth time",
    "tenth time",
    "hundredth time",
    "millionth time",
    "again and again",
    "over and over",
    "keep calling",
    "keep having to call",
    "kept calling",
    "keep ringing",
    "second call",
    "third call",
    "already called",
    "already rang",
    "called before",
    "called yesterday",
    "called earlier",
    "called last week",
    "called twice",
    "still not fixed",
];
/// Verbs of contacting us, and words near them that make the contact a repeat.
const CONTACT_VERBS: &[&str] = &[
    "called",
    "rang",
    "phoned",
    "spoke",
    "talked",
    "contacted",
    "call",
];
const REPEAT_MARKERS: &[&str] = &[
    "before",
    "yesterday",
    "earlier",
    "already",
    "twice",
    "last",
    "previously",
    "again",
    "times",
];
/// "still not fixed": a fix was expected, so someone was told before. "Still not here" is
/// only a late parcel.
const STILL_NEGATIONS: &[&str] = &[
    "not", "isn't", "isnt", "hasn't", "hasnt", "haven't", "havent", "doesn't", "doesnt", "no",
];
const STILL_FIX_WORDS: &[&str] = &[
    "fixed", "resolved", "sorted", "solved", "repaired", "working", "work", "works", "done",
];

/// Boost the next sentiment word.
const INTENSIFIERS: &[&str] = &[
    "really",
    "so",
    "very",
    "extremely",
    "absolutely",
    "totally",
    "completely",
    "incredibly",
    "super",
    "utterly",
    "truly",
    "seriously",
    "beyond",
    "deeply",
    "bloody",
    "too",
];
/// Soften the next sentiment word.
const DAMPENERS: &[&str] = &[
    "slightly", "somewhat", "kinda", "mildly", "fairly", "bit", "little",
];
/// After a negator these undo the negation: "not only", "can't believe", "not just".
const NEGATION_UNDO: &[&str] = &["only", "just", "believe", "wait", "even"];
/// After "no", these start a new statement rather than being negated.
const NO_ANSWERS: &[&str] = &[
    "i",
    "i'm",
    "im",
    "it's",
    "its",
    "it",
    "that's",
    "thats",
    "that",
    "this",
    "we",
    "we're",
    "you",
    "you're",
    "thanks",
    "thank",
    "everything",
    "all",
];
/// Words that let the clause after them dominate.
const CONTRAST: &[&str] = &["but", "however"];

const INTENSIFY: f32 = 1.4;
const DAMPEN: f32 = 0.5;
/// "not happy" is nearly as negative as "unhappy" ...
const NEGATE_POSITIVE: f32 = -0.75;
/// ... but "not bad" is only faintly positive,
const NEGATE_NEGATIVE: f32 = -0.5;
/// and "not furious" no more so.
const NEGATED_NEGATIVE_MAX: f32 = 0.15;
/// A calm list of problems never adds up to more than this before scaling (about -0.33).
const ISSUE_CAP: f32 = -0.35;
/// Below this, the utterance counts as strongly negative even without a seed phrase.
const STRONG_SCORE: f32 = -0.75;

struct Hit {
    value: f32,
    kind: Kind,
    negated: bool,
    /// Index of the clause-independent word position, for contrast.
    pos: usize,
}

/// Scores one utterance.
pub fn lexical(text: &str) -> Lexical {
    let mut out = Lexical::default();
    let mut hits = Vec::new();
    let mut contrast_at = None;
    let mut pos = 0;
    for clause in text::clauses(text) {
        let words = &clause.words;
        if repeats(words) {
            out.repeat_contact = true;
        }
        let mut i = 0;
        while i < words.len() {
            if CONTRAST.contains(&words[i].as_str()) {
                contrast_at = Some(pos + i);
            }
            let Some((end, &(phrase, valence, kind))) = BY_LENGTH
                .iter()
                .find_map(|entry| text::match_at(words, i, entry.0).map(|end| (end, *entry)))
            else {
                i += 1;
                continue;
            };
            let negated = negated(words, i);
            let mut value = valence * modifier(words, i);
            if negated && valence > 0.0 {
                value *= NEGATE_POSITIVE;
            } else if negated {
                // "not furious" means calm, not pleased.
                value = (value * NEGATE_NEGATIVE).min(NEGATED_NEGATIVE_MAX);
            }
            if value != 0.0 {
                out.cues.push(if negated {
                    format!("not {phrase}")
                } else {
                    phrase.to_owned()
                });
            }
            hits.push(Hit {
                value,
                kind,
                negated,
                pos: pos + i,
            });
            i = end;
        }
        pos += words.len();
    }

    // "Fine, but this is useless": what follows the last contrast dominates.
    if let Some(at) = contrast_at.filter(|&at| hits.iter().any(|h| h.pos < at)) {
        for h in &mut hits {
            h.value *= if h.pos < at { 0.5 } else { 1.5 };
        }
    }
    let angry = hits
        .iter()
        .any(|h| matches!(h.kind, Emotion | Strong) && h.value < 0.0);
    let mut issues = 0.0;
    let mut rest = 0.0;
    for h in &hits {
        match h.kind {
            Issue => issues += h.value,
            Polite if angry => rest += h.value * 0.25,
            _ => rest += h.value,
        }
    }
    let sum = rest + issues.max(ISSUE_CAP);
    out.score = (sum / (sum * sum + 1.0).sqrt()).clamp(-1.0, 1.0);
    out.strong_negative =
        hits.iter().any(|h| h.kind == Strong && !h.negated) || out.score <= STRONG_SCORE;
    out
}

/// Whether a negator in the three words before `at` flips the word there.
fn negated(words: &[String], at: usize) -> bool {
    (at.saturating_sub(3)..at).any(|n| {
        let next = words.get(n + 1).map_or("", String::as_str);
        let between = &words[n + 1..at];
        // "never been so angry" intensifies instead.
        let emphatic = words[n] == "never"
            && between
                .iter()
                .any(|w| w == "so" || w == "this" || w == "more");
        // "no, I'm good" answers a question; it does not negate "good".
        let interjection = words[n] == "no" && NO_ANSWERS.contains(&next);
        text::is_negator(&words[n]) && !NEGATION_UNDO.contains(&next) && !emphatic && !interjection
    })
}

/// Intensity from the (up to) two words before `at`.
fn modifier(words: &[String], at: usize) -> f32 {
    let mut m = 1.0;
    for w in &words[at.saturating_sub(2)..at] {
        if INTENSIFIERS.contains(&w.as_str()) {
            m *= INTENSIFY;
        } else if DAMPENERS.contains(&w.as_str()) {
            m *= DAMPEN;
        }
    }
    let before = |k: usize| at.checked_sub(k).map_or("", |i| words[i].as_str());
    // "kind of annoyed", "sort of annoying"
    if before(1) == "of" && matches!(before(2), "kind" | "sort") {
        m *= DAMPEN;
    }
    m.min(2.0)
}

/// Whether this clause says the caller has contacted us about it before.
fn repeats(words: &[String]) -> bool {
    if REPEAT_PHRASES
        .iter()
        .any(|p| text::find(words, p).is_some())
    {
        return true;
    }
    words.iter().enumerate().any(|(i, w)| {
        let near = |from: usize, to: usize, set: &[&str]| {
            words[from.min(words.len())..to.min(words.len())]
                .iter()
                .any(|x| set.contains(&x.as_str()))
        };
        (CONTACT_VERBS.contains(&w.as_str())
            && (near(i.saturating_sub(2), i, REPEAT_MARKERS) || near(i + 1, i + 5, REPEAT_MARKERS)))
            || (w == "keep" && near(i + 1, i + 2, &["calling", "ringing", "phoning"]))
            || (w == "still"
                && (near(i + 1, i + 2, &["broken"])
                    || (near(i + 1, i + 3, STILL_NEGATIONS)
                        && near(i + 2, i + 5, STILL_FIX_WORDS))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strong_negative_seed_phrases() {
        let cases = [
            "I'm furious",
            "this is unacceptable",
            "This is the third time I'm calling about this!",
            "this is ridiculous",
            "honestly I'm fed up",
            "I'm fed-up with this",
            "I am sick and tired of waiting",
            "worst service ever",
            "I've had enough",
            "absolutely livid",
            "this is the worst customer service I've ever had",
        ];
        for text in cases {
            let l = lexical(text);
            assert!(l.strong_negative, "{text:?} → {l:?}");
            assert!(l.score < -0.3, "{text:?} → {l:?}");
        }
    }

    #[test]
    fn routine_issues_are_mild() {
        let cases = [
            "the box arrived damaged",
            "my internet is down",
            "I was charged twice",
            "my package is late",
            "there's a problem with my bill",
            "the app shows an error",
            "my order is missing an item",
            "I think there's a mistake on my invoice",
            "the router is broken and the wifi is not working and the app has an error",
            "the box arrived damaged and the item inside was broken and the wrong color",
        ];
        for text in cases {
            let l = lexical(text);
            assert!(l.score > -0.4 && l.score <= 0.0, "{text:?} → {l:?}");
            assert!(!l.strong_negative, "{text:?} → {l:?}");
        }
    }

    #[test]
    fn score_ranges_table() {
        // (text, min, max)
        let cases: &[(&str, f32, f32)] = &[
            ("", 0.0, 0.0),
            ("I want to check my order", 0.0, 0.0),
            ("thanks, that's great", 0.5, 1.0),
            ("perfect, I appreciate it", 0.5, 1.0),
            ("I'm happy with that", 0.3, 1.0),
            ("not bad", 0.05, 0.4),
            ("not happy", -0.6, -0.2),
            ("I'm not happy at all", -0.6, -0.2),
            ("I'm annoyed", -0.6, -0.3),
            ("I'm really frustrated", -1.0, -0.55),
            ("I'm so angry", -1.0, -0.6),
            ("this is useless", -0.7, -0.4),
            ("what a joke", -0.6, -0.3),
            ("it's fine, but this is useless", -1.0, -0.5),
            ("it was terrible but you've been great", 0.2, 1.0),
            ("I've never been so angry", -1.0, -0.6),
            ("no problem", 0.1, 0.5),
            ("no thanks", -0.05, 0.05),
            ("yeah no I'm good I don't need anyone", 0.2, 0.6),
            ("no good", -0.5, -0.1),
            ("this is ridiculous, thanks", -1.0, -0.5),
            ("thanks for nothing", -1.0, -0.5),
            ("I can't believe how bad this is", -0.7, -0.3),
            (
                "no one will help me and frankly this is a bit brave",
                -1.0,
                -0.5,
            ),
            ("I have been on hold for forty minutes", -0.8, -0.4),
            ("frankly this is a disgrace", -1.0, -0.5),
            (
                "Oh great, another automated line, this is exactly what I need today, absolutely useless.",
                -1.0,
                -0.5,
            ),
            ("oh great, thanks, that's perfect", -0.3, 1.0),
        ];
        for &(text, lo, hi) in cases {
            let s = lexical(text).score;
            assert!((lo..=hi).contains(&s), "{text:?} → {s} not in {lo}..={hi}");
        }
    }

    #[test]
    fn intensifiers_and_dampeners_order_the_same_word() {
        let a = lexical("I'm a bit annoyed").score;
        let b = lexical("I'm annoyed").score;
        let c = lexical("I'm extremely annoyed").score;
        let d = lexical("I'm slightly annoyed").score;
        let e = lexical("I'm kind of annoyed").score;
        assert!(a > b && b > c, "{a} {b} {c}");
        assert!(d > b && e > b, "{d} {e} {b}");
    }

    #[test]
    fn negation_turns_off_strong() {
        let l = lexical("I'm not furious, just confused");
        assert!(!l.strong_negative, "{l:?}");
        assert!(l.score > -0.4, "{l:?}");
        assert_eq!(l.cues, ["not furious", "confused"]);
    }

    #[test]
    fn repeat_contact_table() {
        let yes = [
            "this is the third time I've called",
            "second time I'm calling about this",
            "I called before about this",
            "I called yesterday",
            "I called you guys last week",
            "I've called again and again",
            "I keep calling and nobody helps",
            "I already called",
            "it's still not fixed",
            "it still isn't working",
            "it's still broken",
            "my refund still hasn't been sorted",
            "I spoke to someone yesterday",
        ];
        for text in yes {
            assert!(lexical(text).repeat_contact, "{text:?}");
        }
        let no = [
            "my internet is down",
            "can you call me back",
            "I was charged twice",
            "is the store still open",
            "my package is still not here",
            "I'm still waiting for my package",
            "the third of March",
            "",
        ];
        for text in no {
            assert!(!lexical(text).repeat_contact, "{text:?}");
        }
    }

    #[test]
    fn cues_name_what_moved_the_score() {
        let l = lexical("This is the third time, I'm really not happy");
        assert_eq!(l.cues, ["third time", "not happy"]);
        assert!(l.strong_negative && l.repeat_contact);
    }
}
