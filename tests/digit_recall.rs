//! Digit recall through the real model and engine: account and order numbers read out fast,
//! slowly digit by digit and in chunks, by six voices over a telephone line, must land on the
//! context card exactly (every digit, nothing extra).

mod common;

use warmline::replay::digit_recall::{self, DigitRecall};

/// Numbers exactly right on the card, over all clips. Measured 30/72 (0.417) once a routine
/// transfer waits up to 15 s for a caller still reading a number (28/72 at 8 s, which cut two
/// slow ten-digit numbers short); 28/72 with the number pass (a turn with a number heard again
/// with a digit prompt), a bare number taking the field the turn before named, and "1429O"
/// read as 14290; 24/72 with the pass off, 22/72 before these, 16/72 before the digit-loop
/// guard, 11/72 before the parser learnt tiny.en's forms. The target is 0.95: the
/// gate holds what is reached (two clips of slack) so a regression fails; raise it as recall
/// improves.
const CARD_FLOOR: f64 = 0.385;
/// Numbers exactly right when each clip is heard as one turn by the number pass: the
/// recognition and parsing share, without the endpointer's cuts. Measured 34/72 (0.472) with
/// "double" and "triple" in the pass's prompt, 30/72 with plain digits only; the plain pass
/// 21/72.
const ONE_TURN_FLOOR: f64 = 0.44;
/// The fast run-on pattern is one turn even today. Measured 11/24 on the card.
const FAST_CARD_FLOOR: f64 = 0.375;

#[test]
fn spoken_numbers_reach_the_card() {
    let clips = digit_recall::load(&common::root().join("fixtures/digits"))
        .expect("fixtures/digits (scripts/make_digits.py)");
    let stt = common::stt_sequential();
    let dr = DigitRecall::run(clips, common::playbook(), stt.as_ref());
    println!("{dr}");
    assert!(
        dr.numbers() >= 60 && dr.voices() >= 5,
        "the set needs ≥ 60 numbers in ≥ 5 voices, has {} numbers, {} voices",
        dr.numbers(),
        dr.voices()
    );
    let errors: Vec<_> = dr.results.iter().filter_map(|r| r.error.as_ref()).collect();
    assert!(errors.is_empty(), "clips failed to run: {errors:?}");
    assert!(
        dr.whole_recall() >= ONE_TURN_FLOOR,
        "one-turn digit recall {:.3} < {ONE_TURN_FLOOR}\n{dr}",
        dr.whole_recall()
    );
    assert!(
        dr.recall_of_pattern("fast") >= FAST_CARD_FLOOR,
        "fast numbers on the card {:.3} < {FAST_CARD_FLOOR}\n{dr}",
        dr.recall_of_pattern("fast")
    );
    assert!(
        dr.recall() >= CARD_FLOOR,
        "digit recall on the card {:.3} < {CARD_FLOOR}\n{dr}",
        dr.recall()
    );
}

/// The same set with another `[stt] number_pass` (`DIGITS_NUMBER_PASS=off|careful`, default
/// both): what the default's second hearing is worth, and what beam search would be (a probe,
/// not a gate).
#[test]
#[ignore]
fn other_number_pass_for_comparison() {
    use warmline::stt::NumberPass;
    let clips = digit_recall::load(&common::root().join("fixtures/digits")).unwrap();
    let stt = common::stt_sequential();
    let only = std::env::var("DIGITS_NUMBER_PASS").unwrap_or_default();
    for (name, pass) in [("off", NumberPass::Off), ("careful", NumberPass::Careful)] {
        if !(only.is_empty() || only == name) {
            continue;
        }
        let mut book = common::playbook();
        std::sync::Arc::get_mut(&mut book)
            .expect("a fresh playbook has one owner")
            .number_pass = pass;
        let dr = DigitRecall::run(clips.clone(), book, stt.as_ref());
        println!("number pass: {name}\n{dr}");
    }
}

/// What a digit-biased initial prompt does to the one-turn pass, next to the plain pass (a
/// probe, not a gate): `PROBE_PROMPT` overrides the prompt.
#[test]
#[ignore]
fn probe_prompted_pass() {
    use warmline::replay::digit_recall::whole_clip_16k;
    let clips = digit_recall::load(&common::root().join("fixtures/digits")).unwrap();
    let mut s = common::settings();
    s.stt = warmline::stt::engine::SttConfig::sequential();
    s.stt.use_prompt = true;
    let stt = warmline::setup::load_stt(&s).unwrap();
    let prompt = std::env::var("PROBE_PROMPT").unwrap_or_else(|_| {
        "My account number is 4 4 7 1 9. The order number is 5 1 8 2 6 0.".into()
    });
    let (mut plain_ok, mut biased_ok) = (0, 0);
    for (clip, ulaw) in &clips {
        let samples = whole_clip_16k(ulaw).unwrap();
        let read = |t: &str| clip.field.of(&warmline::analysis::numbers::extract(t));
        let plain = stt.transcribe(&samples, "").unwrap().transcript.text;
        let biased = stt.transcribe(&samples, &prompt).unwrap().transcript.text;
        let (p, b) = (read(&plain), read(&biased));
        plain_ok += usize::from(p.as_deref() == Some(clip.digits.as_str()));
        biased_ok += usize::from(b.as_deref() == Some(clip.digits.as_str()));
        println!(
            "{:<30} want {:<10} plain {:<12} {:?} | prompted {:<12} {:?}",
            clip.file,
            clip.digits,
            p.unwrap_or_default(),
            plain,
            b.unwrap_or_default(),
            biased
        );
    }
    println!(
        "plain {plain_ok}/{n}, prompted {biased_ok}/{n}",
        n = clips.len()
    );
}

/// What a digit-constrained pass ([`SttMode::Digits`]) hears in each piece of a number the
/// endpointer cuts out, next to the free pass (a probe, not a gate): only utterances whose free
/// transcript is nothing but digits are tried, as the pieces after "my account number is…".
#[test]
#[ignore]
fn probe_digit_constrained_pass() {
    use warmline::analysis::numbers::{digit_word, spoken_digits};
    use warmline::audio::frontend::Frontend;
    use warmline::stt::SttMode;
    let clips = digit_recall::load(&common::root().join("fixtures/digits")).unwrap();
    let stt = common::stt_sequential();
    for (clip, ulaw) in &clips {
        let mut fe = Frontend::new(common::playbook().frontend.clone()).unwrap();
        for u in fe.utterances(ulaw) {
            let free = stt.transcribe(&u.samples, "").unwrap().transcript;
            let words = warmline::analysis::text::words(&free.text);
            let digits_only = !words.is_empty()
                && words
                    .iter()
                    .all(|w| digit_word(w).is_some() || w.chars().all(|c| c.is_ascii_digit()));
            if !digits_only {
                continue;
            }
            let (forced, score) = stt
                .transcribe_scored(&u.samples, "", SttMode::Digits)
                .unwrap();
            println!(
                "DIGITS\t{}\t{}\t{:?}\t{}\t{:?}\t{}\t{:.3}\t{:?}",
                clip.file,
                clip.digits,
                free.text,
                spoken_digits(&free.text),
                forced.text,
                spoken_digits(&forced.text),
                forced.confidence,
                score.map(|s| s.worst)
            );
        }
    }
}
