//! The spoken summary and the read-back, joined from fragments, are understood: warmline's own
//! Whisper (tiny.en, the server's model) transcribes the composed audio and gets the facts
//! back. A listener's check that the fragments are intelligible in sequence, not just that
//! the WAV has the right length.

mod common;

use std::path::Path;

use warmline::analysis::numbers;
use warmline::audio::resample::Upsampler;
use warmline::speech::{Audio, Speech};

fn speech() -> Speech {
    Speech::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("voice-prompts/fragments"))
        .expect("the committed fragments load")
}

fn transcribe(audio: &Audio) -> String {
    let mut up = Upsampler::new().unwrap();
    let mut pcm16k = Vec::new();
    up.process(&audio.pcm, &mut pcm16k);
    // Flush the upsampler's delay with silence.
    up.process(&[0i16; 480], &mut pcm16k);
    let out = common::stt().transcribe(&pcm16k, "").expect("transcribed");
    eprintln!(
        "{} ms of audio heard as {:?}",
        audio.duration_ms(),
        out.transcript.text
    );
    out.transcript.text
}

/// Digits in the text, whether Whisper wrote them as numerals or words.
fn digits(text: &str) -> String {
    const WORDS: [&str; 10] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ];
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .flat_map(|w| match WORDS.iter().position(|x| *x == w) {
            Some(d) => vec![char::from(b'0' + d as u8)],
            None if w == "oh" => vec!['0'],
            None => w.chars().filter(char::is_ascii_digit).collect(),
        })
        .collect()
}

#[test]
fn whisper_hears_the_summary_facts_from_joined_fragments() {
    let s = speech();
    let cases = [
        (
            "Billing call, urgent priority. Account 4 4 7 1 9. Caller calm at first, now angry. Has called before.",
            &["billing", "urgent", "angry", "before"][..],
            "44719",
        ),
        (
            "Orders call, high priority. Order 5 1 8 2 6. Caller frustrated throughout.",
            &["order", "high", "frustrated"][..],
            "51826",
        ),
    ];
    for (text, words, number) in cases {
        let heard = transcribe(&s.summary_text_audio(text));
        let lower = heard.to_lowercase();
        for w in words {
            assert!(
                lower.contains(w),
                "{w:?} not heard in {heard:?} (said: {text})"
            );
        }
        assert!(
            digits(&heard).contains(number),
            "{number} not heard in {heard:?}"
        );
        // What the engine itself would extract from hearing it.
        let f = numbers::extract(&heard);
        let got = f.account_number.or(f.order_number).unwrap_or_default();
        assert_eq!(got, number, "{heard:?}");
    }
}

#[test]
fn whisper_hears_the_read_back() {
    let heard = transcribe(&speech().readback("38261").unwrap());
    assert!(digits(&heard).contains("38261"), "{heard:?}");
    assert!(heard.to_lowercase().contains("right"), "{heard:?}");
}
