//! Cost of saying a spoken summary from fragments: planning the text, joining the fragments
//! and writing the WAV `/audio/summary/{id}` serves; and a read-back.
//!
//! `cargo bench --bench speech` (add `-- --quick` for a fast look).

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use warmline::speech::Speech;

/// A long summary the engine writes: queue and priority, two numbers, an amount, a date, the
/// mood, repeated requests, a repeat caller.
const SUMMARY: &str = "Billing call, urgent priority. Account 4 4 7 1 9. Order 5 1 8 2 6 3 0. \
Amount 1299.99 dollars. Date March 21. Caller calm at first, now angry. \
Asked for a person 3 times. Has called before.";

fn speech(c: &mut Criterion) {
    let s = Speech::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("voice-prompts/fragments"))
        .expect("the committed fragments load");
    let audio = s.summary_text_audio(SUMMARY);
    eprintln!(
        "summary: {} ms of audio, {} bytes of WAV",
        audio.duration_ms(),
        audio.to_wav().len()
    );
    c.bench_function("summary_text_to_wav", |b| {
        b.iter(|| black_box(s.summary_text_audio(black_box(SUMMARY)).to_wav()))
    });
    c.bench_function("readback_8_digits", |b| {
        b.iter(|| black_box(s.readback(black_box("38261447")).unwrap()))
    });
}

criterion_group!(benches, speech);
criterion_main!(benches);
