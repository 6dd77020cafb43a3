//! Fuzzing every parser that reads what the network or an operator writes — the Twilio
//! wire decoder, webhook signatures, TwiML escaping, the dialplan and the settings file —
//! on stable Rust: proptest drives random bytes and mutations of the seed corpus in
//! `fuzz/corpus/<target>/` (the same corpus the coverage-guided `cargo fuzz` targets in
//! `fuzz/` start from). Each must return a value or a typed error, never panic, and keep
//! its round-trip promises. `PROPTEST_CASES=100000 cargo test --release --test fuzz_parsers`
//! runs a longer campaign.

mod common;

use std::path::PathBuf;

use proptest::prelude::*;

use warmline::config::Settings;
use warmline::dialplan::Dialplan;
use warmline::prompts::PromptLibrary;
use warmline::telephony::twilio::messages::{self, Inbound};
use warmline::telephony::twilio::{signature, twiml};

const MAX_PAYLOAD: usize = 8_000;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = common::root().join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| Some(e.ok()?.path()))
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(!seeds.is_empty(), "empty corpus {}", dir.display());
    seeds
}

/// A seed from the corpus with a few random edits: overwrites, insertions, deletions,
/// truncation — the kind of input a coverage-guided fuzzer starts from.
fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let n = seeds.len();
    (
        0..n,
        prop::collection::vec((any::<u8>(), any::<u16>(), 0u8..4), 0..8),
    )
        .prop_map(move |(i, edits)| {
            let mut b = seeds[i].clone();
            for (byte, at, op) in edits {
                let at = if b.is_empty() {
                    0
                } else {
                    at as usize % b.len()
                };
                match op {
                    0 if !b.is_empty() => b[at] = byte,
                    1 => b.insert(at, byte),
                    2 if !b.is_empty() => {
                        b.remove(at);
                    }
                    _ => b.truncate(at),
                }
            }
            b
        })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn prompts() -> PromptLibrary {
    PromptLibrary::load(&common::root().join("voice-prompts")).expect("shipped prompts")
}

#[test]
fn every_corpus_file_decodes_or_errs_cleanly() {
    for seed in corpus("twilio_inbound") {
        let _ = messages::parse_inbound(&text(&seed), MAX_PAYLOAD);
    }
    let lib = prompts();
    for seed in corpus("dialplan") {
        Dialplan::parse(&text(&seed), "corpus", &lib).expect("the seed dialplan is valid");
    }
    for seed in corpus("settings") {
        toml::from_str::<Settings>(&text(&seed)).expect("the seed settings are valid");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, .. ProptestConfig::default() })]

    #[test]
    fn twilio_inbound_never_panics_on_mutated_frames(b in mutated(corpus("twilio_inbound"))) {
        let _ = messages::parse_inbound(&text(&b), MAX_PAYLOAD);
    }

    #[test]
    fn twilio_inbound_never_panics_on_arbitrary_text(s in "\\PC{0,300}") {
        let _ = messages::parse_inbound(&s, MAX_PAYLOAD);
    }

    #[test]
    fn media_payloads_round_trip_and_oversize_is_refused(
        audio in prop::collection::vec(any::<u8>(), 1..10_000),
        sid in "[A-Za-z0-9]{1,40}",
    ) {
        let parsed = messages::parse_inbound(&messages::media_out(&sid, &audio), MAX_PAYLOAD);
        if audio.len() <= MAX_PAYLOAD {
            match parsed {
                Ok(Inbound::Media(m)) => prop_assert_eq!(m.payload, audio),
                other => prop_assert!(false, "{:?}", other.map(|_| ())),
            }
        } else {
            prop_assert!(parsed.is_err());
        }
    }

    #[test]
    fn signatures_verify_only_what_was_signed(
        url in "https://[a-z]{1,12}\\.example/[a-z/]{0,20}",
        params in prop::collection::vec(("[A-Za-z]{1,10}", "\\PC{0,30}"), 0..6),
        header in "\\PC{0,60}",
        tamper in "\\PC{1,10}",
    ) {
        let params: Vec<(String, String)> = params;
        let good = signature::compute("token", &url, &params);
        prop_assert!(signature::validate("token", &url, &params, &good));
        prop_assert!(!signature::validate("other", &url, &params, &good));
        let _ = signature::validate("token", &url, &params, &header);
        let mut changed = params.clone();
        changed.push(("Extra".into(), tamper));
        prop_assert!(!signature::validate("token", &url, &changed, &good));
    }

    #[test]
    fn twiml_never_lets_caller_text_become_markup(s in "\\PC{0,200}") {
        let doc = twiml::say(&s);
        let body = doc
            .split_once("<Say>").map(|x| x.1).unwrap_or_default()
            .rsplit_once("</Say>").map(|x| x.0).unwrap_or_default();
        prop_assert!(!body.contains('<') && !body.contains('>') && !body.contains('"'));
        let unescaped = body
            .replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"")
            .replace("&apos;", "'").replace("&amp;", "&");
        prop_assert_eq!(unescaped, s);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn dialplan_errors_are_typed_and_point_inside_the_file(b in mutated(corpus("dialplan"))) {
        let src = text(&b);
        if let Err(e) = Dialplan::parse(&src, "fuzz.toml", &prompts()) {
            let msg = e.to_string();
            prop_assert!(msg.contains("fuzz.toml"), "{}", msg);
            if let warmline::dialplan::DialplanError::Invalid { line, .. } = e {
                prop_assert!(line >= 1 && line <= src.lines().count().max(1) + 1, "line {} in {}", line, msg);
            }
        }
    }

    #[test]
    fn settings_files_parse_or_err_never_panic(b in mutated(corpus("settings"))) {
        if let Ok(mut s) = toml::from_str::<Settings>(&text(&b)) {
            // The environment layer validates what the file left.
            let _ = s.apply_env(|_| None);
        }
    }
}
