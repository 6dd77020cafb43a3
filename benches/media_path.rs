//! Cost of the inbound media path per 20 ms frame, whole and by stage.
//!
//! The budget is 20 µs per frame on one core for decode + resample + VAD + features: a frame
//! arrives every 20 ms per call, so that is 0.1 % of a core per call.
//!
//! `cargo bench --bench media_path -- --quick` for a fast run. Before the benchmarks, the
//! binary also counts heap allocations on the per-frame path (it installs a counting global
//! allocator; the count is printed, and the run fails if frames without an event allocate).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warmline::audio::prosody::{self, FrameAnalyzer};
use warmline::audio::resample::Upsampler;
use warmline::audio::vad::{self, Vad};
use warmline::audio::{FRAME_SAMPLES_8K, Frontend, FrontendConfig, FrontendEvent, ulaw};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The telephone-speech fixture (0.5 s silence, ~4.5 s of speech, 1 s silence) as frames.
fn speech_stream() -> Vec<[u8; FRAME_SAMPLES_8K]> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/audio/billing.ulaw");
    let bytes = std::fs::read(path).expect("run scripts/make_audio_test_data.sh");
    bytes
        .chunks_exact(FRAME_SAMPLES_8K)
        .map(|c| c.try_into().expect("exact chunk"))
        .collect()
}

/// The loudest frame of the stream: the per-stage benchmarks use it as "speech".
fn loud_frame(stream: &[[u8; FRAME_SAMPLES_8K]]) -> [i16; FRAME_SAMPLES_8K] {
    let decode = |f: &[u8; FRAME_SAMPLES_8K]| f.map(ulaw::decode);
    stream
        .iter()
        .map(decode)
        .max_by(|a, b| prosody::energy_db_i16(a).total_cmp(&prosody::energy_db_i16(b)))
        .expect("non-empty stream")
}

fn check_allocations(stream: &[[u8; FRAME_SAMPLES_8K]]) {
    let mut fe = Frontend::new(FrontendConfig::default()).expect("default config");
    // One pass to warm up anything lazily sized.
    for f in stream {
        black_box(fe.push_ulaw(f));
    }
    let (mut quiet_frames, mut quiet_allocs, mut utterances, mut event_allocs) = (0, 0, 0, 0);
    for f in stream.iter().cycle().take(stream.len() * 3) {
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        let event = fe.push_ulaw(f);
        let allocs = ALLOCATIONS.load(Ordering::Relaxed) - before;
        match event {
            Some(FrontendEvent::Utterance(u)) => {
                utterances += 1;
                event_allocs += allocs;
                drop(u);
            }
            Some(
                FrontendEvent::SpeechStart { .. }
                | FrontendEvent::Pause(_)
                | FrontendEvent::QuickPause(_)
                | FrontendEvent::Resumed,
            ) => event_allocs += allocs,
            None => {
                quiet_frames += 1;
                quiet_allocs += allocs;
            }
        }
    }
    println!(
        "allocations: {quiet_allocs} over {quiet_frames} frames without an event; \
         {event_allocs} for {utterances} utterances (their sample buffers)"
    );
    assert_eq!(quiet_allocs, 0, "the per-frame path allocated");
}

fn stages(c: &mut Criterion) {
    let stream = speech_stream();
    let loud = loud_frame(&stream);
    let loud_ulaw = ulaw::encode_samples(&loud);
    let silence = [0i16; FRAME_SAMPLES_8K];

    let mut g = c.benchmark_group("stage");
    g.throughput(Throughput::Elements(1));

    let mut pcm = Vec::with_capacity(FRAME_SAMPLES_8K);
    g.bench_function("ulaw_decode_frame", |b| {
        b.iter(|| {
            ulaw::decode_frame(black_box(&loud_ulaw), &mut pcm);
            black_box(&pcm);
        })
    });

    let mut up = Upsampler::new().expect("upsampler");
    let mut out = Vec::with_capacity(2 * FRAME_SAMPLES_8K);
    g.bench_function("upsample_8k_to_16k", |b| {
        b.iter(|| {
            out.clear();
            up.process(black_box(&loud), &mut out);
            black_box(&out);
        })
    });

    let mut v = Vad::new(vad::DEFAULT_MODE).expect("vad");
    g.bench_function("vad_speech_frame", |b| {
        b.iter(|| black_box(v.is_speech(black_box(&loud))))
    });
    g.bench_function("vad_silent_frame", |b| {
        b.iter(|| black_box(v.is_speech(black_box(&silence))))
    });

    g.bench_function("energy_db", |b| {
        b.iter(|| black_box(prosody::energy_db_i16(black_box(&loud))))
    });

    let mut fa = FrameAnalyzer::new();
    for _ in 0..3 {
        fa.push(&loud);
    }
    g.bench_function("pitch_voiced_frame", |b| b.iter(|| black_box(fa.pitch())));
    g.finish();
}

fn frontend(c: &mut Criterion) {
    let stream = speech_stream();
    check_allocations(&stream);

    let mut g = c.benchmark_group("frontend_push_ulaw");
    g.throughput(Throughput::Elements(1));

    // The fixture on a loop: silence, speech start, speech, end of speech, utterance cut.
    let mut fe = Frontend::new(FrontendConfig::default()).expect("default config");
    let mut i = 0;
    g.bench_function("speech_and_silence_stream", |b| {
        b.iter(|| {
            let ev = fe.push_ulaw(black_box(&stream[i % stream.len()]));
            i += 1;
            black_box(ev)
        })
    });

    let silent = [0xFFu8; FRAME_SAMPLES_8K];
    let mut fe = Frontend::new(FrontendConfig::default()).expect("default config");
    g.bench_function("silence_only", |b| {
        b.iter(|| black_box(fe.push_ulaw(black_box(&silent))))
    });

    // Speech frames only (the loud middle of the fixture, looped): VAD, pitch and the ring on
    // every frame, and a capped utterance every 15 s.
    let speech: Vec<_> = stream[40..stream.len() - 60].to_vec();
    let mut fe = Frontend::new(FrontendConfig::default()).expect("default config");
    let mut i = 0;
    g.bench_function("speech_only", |b| {
        b.iter(|| {
            let ev = fe.push_ulaw(black_box(&speech[i % speech.len()]));
            i += 1;
            black_box(ev)
        })
    });
    g.finish();
}

criterion_group!(benches, stages, frontend);
criterion_main!(benches);
