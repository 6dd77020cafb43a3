//! Text analysis on arbitrary strings: numbers, requests for a person, tone, topics, language
//! and answer feedback never panic, and stay fast on the longest text Whisper can produce.

mod common;

use std::time::{Duration, Instant};

use proptest::prelude::*;
use warmline::analysis::tone::ToneTracker;
use warmline::analysis::{agent_request, feedback, intent, language, numbers, sentiment, text};

fn analyse(s: &str, specs: &[intent::IntentSpec]) {
    let _ = agent_request::detect(s);
    let _ = agent_request::is_lone_request(s);
    let _ = numbers::extract(s);
    let lexical = sentiment::lexical(s);
    let mut tone = ToneTracker::default();
    let _ = tone.observe(&lexical, None);
    let _ = tone.trend();
    let _ = intent::classify(s, specs);
    let _ = language::detect(s);
    let _ = feedback::rejects_answer(s);
    let _ = feedback::plain_no(s);
    let _ = text::clauses(s);
}

fn specs() -> Vec<intent::IntentSpec> {
    let book = common::playbook();
    let mut specs = book.dialplan.intent_specs();
    specs.extend(book.dialplan.answer_specs());
    specs
}

/// Words the analysers react to, so random text hits their interesting paths.
const VOCAB: &[&str] = &[
    "agent", "a", "gent", "not", "don't", "no", "need", "travel", "person", "human", "being",
    "double", "triple", "oh", "zero", "one", "two", "five", "nine", "hundred", "thousand", "point",
    "dollars", "account", "number", "order", "is", "44719", "4.4.7", "$12.99", "-", ",", ".", "?",
    "furious", "very", "not", "happy", "third", "time", "calling", "refund", "hours", "ours",
    "reppin", "ages", "¿", "dónde", "está", "bonjour", "(", ")", "[", "]", "*", "'", "’", "…",
];

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 400,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_string_is_analysed_without_panic(s in "\\PC{0,300}") {
        analyse(&s, &specs());
    }

    #[test]
    fn any_word_soup_is_analysed_without_panic(
        words in proptest::collection::vec(proptest::sample::select(VOCAB), 0..120)
    ) {
        analyse(&words.join(" "), &specs());
        analyse(&words.concat(), &specs());
    }
}

/// The slowest analysis of `s`, best of three runs (a loaded machine only adds time).
fn time_of(s: &str, specs: &[intent::IntentSpec]) -> Duration {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            analyse(s, specs);
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

#[test]
fn the_longest_transcripts_are_analysed_quickly() {
    // Whisper's token cap allows ~400 tokens for a 30 s utterance; these are 5× that, built to
    // hit every scan that looks back over a clause: repeated terms, negations, digit words.
    let specs = specs();
    let patterns = [
        "agent ",
        "not agent ",
        "double one ",
        "one two three four five ",
        "I don't need an agent but ",
        "furious not happy very ",
        "a gent ",
        "4.4.7.1.9 ",
        "hours open close ",
    ];
    for p in patterns {
        let small = p.repeat(500 / p.split_whitespace().count());
        let big = p.repeat(2000 / p.split_whitespace().count());
        let (ts, tb) = (time_of(&small, &specs), time_of(&big, &specs));
        println!("{p:?}: 500 words {ts:?}, 2000 words {tb:?}");
        // Generous: a linear pass takes well under a millisecond per hundred words; quadratic
        // scans on 2000 words still finish in tens of milliseconds. This catches only the
        // catastrophic (exponential or worse than quadratic) cases, so it cannot flake.
        assert!(
            tb < Duration::from_secs(2),
            "{p:?} × 2000 words took {tb:?}"
        );
    }
}
