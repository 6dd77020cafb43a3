//! Whisper tiny.en through warmline's engine on 1 s, 3 s and 8 s utterances of fixture speech:
//! the server's configuration (`SttConfig::default()`, one thread), the same on two threads
//! (`SttConfig::sequential()`, as replay runs), and the full 30 s encoder window on two threads
//! for reference.
//!
//! `cargo bench --bench stt` (about a minute on 2 idle cores). `WARMLINE_MODEL` picks another
//! ggml model; the default is the q8_0 file `warmline models pull` writes.
//!
//! Each sample is one transcription (flat sampling, 10 samples): a transcription takes tens
//! to hundreds of milliseconds, so criterion's usual hundreds of iterations would take minutes.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use warmline::audio::FRAME_SAMPLES_8K;
use warmline::audio::frontend::{Frontend, FrontendConfig, FrontendEvent};
use warmline::config::Settings;
use warmline::replay::fixture::read_ulaw;
use warmline::setup;
use warmline::stt::engine::{AudioCtx, SttConfig, SttEngine};

/// Turns by one voice (piper "joe"), spoken back to back to give enough speech for 8 s.
const TURNS: [&str; 3] = [
    "fixtures/audio/billing_refund_joe/0.wav",
    "fixtures/audio/account_change_address_joe/0.wav",
    "fixtures/audio/facts_billing_amount_date_joe/0.wav",
];
const LENGTHS_S: [usize; 3] = [1, 3, 8];
const RATE: usize = 16_000;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The initial prompt warmline passes: the shipped dialplan's vocabulary.
fn prompt() -> String {
    let s = Settings::default().with_shipped_assets_at(root());
    let book = setup::load_playbook(&s).expect("shipped dialplan and prompts load");
    book.dialplan.stt_prompt()
}

fn model_path() -> PathBuf {
    std::env::var_os("WARMLINE_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models/ggml-tiny.en-q8_0.bin"))
}

/// The fixture turns as the frontend hands them to Whisper (16 kHz, VAD-trimmed), joined.
fn speech_16k() -> Vec<f32> {
    let mut fe = Frontend::new(FrontendConfig::default()).expect("default config");
    let silence = [0xFFu8; FRAME_SAMPLES_8K];
    let mut out = Vec::new();
    for path in TURNS {
        let ulaw = read_ulaw(&root().join(path)).expect("fixture audio");
        let tail = std::iter::repeat_n(&silence[..], 60);
        for frame in ulaw.chunks(FRAME_SAMPLES_8K).chain(tail) {
            if let Some(FrontendEvent::Utterance(u)) = fe.push_ulaw(frame) {
                out.extend(u.samples);
            }
        }
    }
    assert!(out.len() >= 8 * RATE, "not enough fixture speech");
    out
}

fn bench_config(c: &mut Criterion, name: &str, cfg: SttConfig, speech: &[f32], prompt: &str) {
    let engine = SttEngine::load(&model_path(), cfg).expect("model loads");
    let mut g = c.benchmark_group(format!("stt_{name}"));
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500));
    for secs in LENGTHS_S {
        let clip = &speech[..secs * RATE];
        let t0 = Instant::now();
        let text = engine.transcribe(clip, prompt).expect("transcribes");
        // Room for the 10 samples and no more: criterion's default would take minutes here.
        g.measurement_time(t0.elapsed().mul_f32(12.0).max(Duration::from_secs(2)));
        println!("{name} {secs} s: {:?}", text.transcript.text);
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("{secs}s")),
            clip,
            |b, clip| {
                b.iter(|| {
                    engine
                        .transcribe(black_box(clip), prompt)
                        .expect("transcribes")
                })
            },
        );
    }
    g.finish();
}

fn stt(c: &mut Criterion) {
    let speech = speech_16k();
    let prompt = prompt();
    let full = SttConfig {
        audio_ctx: AudioCtx::Full,
        ..SttConfig::sequential()
    };
    let configs = [
        ("default_1_thread", SttConfig::default()),
        ("default_2_threads", SttConfig::sequential()),
        ("full_window_2_threads", full),
    ];
    for (name, cfg) in configs {
        println!("{name}: {cfg:?}");
        bench_config(c, name, cfg, &speech, &prompt);
    }
}

criterion_group!(benches, stt);
criterion_main!(benches);
