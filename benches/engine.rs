//! Cost of the call engine around speech-to-text: one 20 ms audio frame, one decision, and
//! parsing one Twilio media message.
//!
//! `cargo bench --bench engine` (add `-- --quick` for a fast look). Whisper itself is in
//! `benches/stt.rs`; the media path alone (no engine) in `benches/media_path.rs`.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{TimeZone, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use warmline::audio::FRAME_SAMPLES_8K;
use warmline::call::{Action, CallInfo, Engine, Event, Playbook, Transcript};
use warmline::config::Settings;
use warmline::replay::fixture::read_ulaw;
use warmline::setup;
use warmline::telephony::twilio::messages::{Inbound, parse_inbound};

/// A billing turn with an account number: the engine decides on it at once (no waiting for
/// a follow-up sentence), so the decision benchmark covers the whole transfer path.
const BILLING_WAV: &str = "fixtures/audio/billing_refund_joe/0.wav";
/// What Whisper tiny.en makes of that turn.
const BILLING_TEXT: &str = "I'm calling about a refund on my account, the number is 44719.";
/// The server's bound on a media payload (`MAX_PAYLOAD` in src/server/media.rs).
const MAX_PAYLOAD: usize = 8_000;
/// Silence after the turn: long enough for the endpointer to close the utterance.
const TRAILING_SILENCE_FRAMES: usize = 50;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn playbook() -> Arc<Playbook> {
    let s = Settings::default().with_shipped_assets_at(root());
    setup::load_playbook(&s).expect("shipped dialplan and prompts load")
}

fn new_engine(book: &Arc<Playbook>) -> Engine {
    let info = CallInfo {
        call_sid: "CA-bench".into(),
        from: "+15550001234".into(),
        to: "+15550009000".into(),
        started_at: Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap(),
        handoff_id: "bench".into(),
    };
    Engine::new(info, book.clone()).expect("default frontend config")
}

/// The billing turn as 20 ms μ-law frames, followed by silence.
fn billing_frames() -> Vec<Vec<u8>> {
    let ulaw = read_ulaw(&root().join(BILLING_WAV)).expect("fixture audio");
    let silence = vec![0xFFu8; FRAME_SAMPLES_8K];
    ulaw.chunks_exact(FRAME_SAMPLES_8K)
        .map(<[u8]>::to_vec)
        .chain(std::iter::repeat_n(silence, TRAILING_SILENCE_FRAMES))
        .collect()
}

/// Feeds the whole turn and its silence; returns the id of the last transcription asked for
/// (the early one started at the final pause, which the endpoint then adopted), still
/// unanswered, so the transcript fed next is handled as the finished turn.
fn feed_turn(engine: &mut Engine, frames: &[Vec<u8>]) -> u64 {
    let mut last = None;
    for (i, f) in frames.iter().enumerate() {
        for action in engine.feed(Event::Audio(f), i as u64 * 20) {
            if let Action::Transcribe { utterance, .. } = action {
                last = Some(utterance);
            }
        }
    }
    last.expect("the turn never produced an utterance")
}

/// `Engine::feed(Event::Audio)` per frame over the billing turn and its silence, looped:
/// speech start, VAD, endpointing, the utterance cut and its `Transcribe` action. No
/// transcripts are fed back, so the engine stays in the listening state throughout.
fn audio_frame(c: &mut Criterion) {
    let book = playbook();
    let frames = billing_frames();
    let mut engine = new_engine(&book);
    let mut now = 0u64;
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(1));
    g.bench_function("feed_audio_frame", |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                let frame = &frames[(now / 20) as usize % frames.len()];
                black_box(engine.feed(Event::Audio(black_box(frame)), now));
                now += 20;
            }
            t0.elapsed()
        })
    });
    g.finish();
}

/// `Engine::feed(Event::Transcribed)` for the billing sentence: intent, agent-request and
/// sentiment analysis, facts, escalation policy, and the transfer with its context card and
/// summaries. Every iteration starts from a fresh engine that has just heard the turn.
fn decision(c: &mut Criterion) {
    let book = playbook();
    let frames = billing_frames();
    let transcript = Transcript {
        text: BILLING_TEXT.into(),
        confidence: 0.9,
    };
    let prepare = || {
        let mut engine = new_engine(&book);
        let id = feed_turn(&mut engine, &frames);
        (engine, id)
    };
    let (mut engine, id) = prepare();
    let actions = engine.feed(transcribed(id, &transcript), 6_000);
    assert!(
        actions.iter().any(|a| matches!(a, Action::Transfer(_))),
        "the billing sentence should transfer at once: {actions:?}"
    );

    let mut g = c.benchmark_group("engine");
    // Preparing an engine feeds ~6 s of audio (about 2 ms), so keep the sample count modest.
    g.sample_size(30).measurement_time(Duration::from_secs(3));
    g.bench_function("decide_billing_transfer", |b| {
        b.iter_batched(
            prepare,
            |(mut engine, id)| engine.feed(transcribed(id, &transcript), 6_000),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn transcribed(utterance: u64, t: &Transcript) -> Event<'static> {
    Event::Transcribed {
        utterance,
        result: Ok(t.clone()),
    }
}

/// A media message shaped like Twilio's, carrying a real 160-byte speech frame.
fn media_message() -> String {
    let ulaw = read_ulaw(&root().join(BILLING_WAV)).expect("fixture audio");
    let frame = &ulaw[100 * FRAME_SAMPLES_8K..101 * FRAME_SAMPLES_8K];
    format!(
        r#"{{"event":"media","sequenceNumber":"103","media":{{"track":"inbound","chunk":"101","timestamp":"2020","payload":"{}"}},"streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0"}}"#,
        BASE64.encode(frame)
    )
}

fn twilio_parse(c: &mut Criterion) {
    let text = media_message();
    match parse_inbound(&text, MAX_PAYLOAD) {
        Ok(Inbound::Media(m)) => assert_eq!(m.payload.len(), FRAME_SAMPLES_8K),
        other => panic!("not a media frame: {other:?}"),
    }
    let mut g = c.benchmark_group("twilio");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_media_message", |b| {
        b.iter(|| parse_inbound(black_box(&text), MAX_PAYLOAD))
    });
    g.finish();
}

criterion_group!(benches, audio_frame, decision, twilio_parse);
criterion_main!(benches);
