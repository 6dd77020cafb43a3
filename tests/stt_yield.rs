//! A transcription can be called off midway (a pause transcript giving way to a caller who has
//! finished speaking): it stops with `Cancelled` at the next check, before decoding, and the
//! decoder state it ran on transcribes the next utterance as if nothing had happened.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use warmline::audio::frontend::{Frontend, FrontendConfig, FrontendEvent};
use warmline::replay::fixture::read_ulaw;
use warmline::stt::engine::{RunOpts, SttError};

/// "I need a refund." as the frontend hands it to Whisper.
fn utterance() -> Vec<f32> {
    let ulaw = read_ulaw(&common::root().join("fixtures/audio/billing_refund_joe/0.wav"))
        .expect("fixture audio");
    let mut fe = Frontend::new(FrontendConfig::default()).expect("default config");
    let silence = [0xFFu8; warmline::audio::FRAME_SAMPLES_8K];
    let tail = std::iter::repeat_n(&silence[..], 60);
    ulaw.chunks(warmline::audio::FRAME_SAMPLES_8K)
        .chain(tail)
        .find_map(|frame| match fe.push_ulaw(frame) {
            Some(FrontendEvent::Utterance(u)) => Some(u.samples),
            _ => None,
        })
        .expect("one utterance")
}

#[test]
fn a_called_off_transcription_stops_and_leaves_its_state_usable() {
    let stt = common::stt();
    let samples = utterance();
    let whole = stt.transcribe(&samples, "").expect("transcribes");
    assert!(
        whole.transcript.text.to_lowercase().contains("refund"),
        "{:?}",
        whole.transcript.text
    );

    // A check that never says stop changes nothing. whisper.cpp asks it after each graph it
    // computes: the encoder's, then one per decoded token.
    let checks = AtomicUsize::new(0);
    let never = || {
        checks.fetch_add(1, Ordering::Relaxed);
        false
    };
    let opts = RunOpts {
        threads: 1,
        cancel: Some(&never),
    };
    let unhurried = stt
        .transcribe_with(&samples, "", opts)
        .expect("transcribes");
    assert_eq!(unhurried.transcript.text, whole.transcript.text);
    let checks = checks.load(Ordering::Relaxed);
    assert!(checks > 5, "asked only {checks} times in a whole run");

    // Called off at the second check (after the encoder, then the prompt): it stops there.
    let asked = AtomicUsize::new(0);
    let stop = || asked.fetch_add(1, Ordering::Relaxed) >= 1;
    let opts = RunOpts {
        threads: 1,
        cancel: Some(&stop),
    };
    let called_off = stt.transcribe_with(&samples, "", opts);
    assert!(
        matches!(called_off, Err(SttError::Cancelled)),
        "{called_off:?}"
    );
    let asked = asked.load(Ordering::Relaxed);
    assert_eq!(asked, 2, "asked {asked} times of {checks}");

    // The state it ran on is fine.
    let again = stt.transcribe(&samples, "").expect("transcribes");
    assert_eq!(again.transcript.text, whole.transcript.text);
}

/// A careful (beam search) pass is optional work too: the server calls it off whenever a
/// caller waits for a state, at any point of its run, and the first hearing stands.
#[test]
fn a_careful_pass_can_be_called_off_midway() {
    use warmline::stt::SttMode;
    let stt = common::stt();
    let samples = utterance();
    let asked = AtomicUsize::new(0);
    // Past the encoder and several decoding steps of every beam.
    let stop = || asked.fetch_add(1, Ordering::Relaxed) >= 6;
    let opts = RunOpts {
        threads: 1,
        cancel: Some(&stop),
    };
    let called_off = stt.transcribe_as(&samples, "", SttMode::Careful, opts);
    assert!(
        matches!(called_off, Err(SttError::Cancelled)),
        "{called_off:?}"
    );
    let careful = stt
        .transcribe_as(
            &samples,
            "",
            SttMode::Careful,
            RunOpts {
                threads: 1,
                cancel: None,
            },
        )
        .expect("transcribes");
    assert!(
        careful.transcript.text.to_lowercase().contains("refund"),
        "{:?}",
        careful.transcript.text
    );
}
