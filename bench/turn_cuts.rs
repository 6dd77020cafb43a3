//! When does the line decide a caller has finished? Every spoken fixture turn (each one a
//! single thought, some with the pauses people leave inside digit strings and after a
//! greeting) is played into a fresh call through the real frontend, the real Whisper model and
//! the real engine, once judging turns by silence alone (the 400 ms adaptive endpoint), once
//! by words and silence together (`[turns] semantic`), and once with the quick look at short
//! utterances on top (`[frontend] quick_transcripts`). Transcriptions come back after the time
//! they really took on this machine, at the server's one thread per transcription, so the
//! figures include the model's latency on this CPU.
//!
//! Reported per rule: turns cut too early (the line answered, asked or transferred while the
//! caller still had speech to come), the mean time from the end of a finished turn to the
//! line's response, and the same for requests for a person alone (the instant escape).
//!
//!     cargo run --release --example turn_cuts [-- --only SUBSTRING]

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use warmline::audio::{FRAME_MS, FRAME_SAMPLES_8K, ulaw};
use warmline::call::{Action, CallInfo, Engine, Event, Millis, Playbook};
use warmline::config::Settings;
use warmline::replay::fixture::{Act, Fixture};
use warmline::setup;
use warmline::stt::{SttFailure, Transcriber, Transcript};

/// One spoken turn, as the caller says it.
struct Turn {
    id: String,
    category: String,
    ulaw: Vec<u8>,
    /// End of its last clearly audible sample, ms from the start of its audio.
    speech_end_ms: Millis,
}

/// What one rule did with one turn.
struct Played {
    /// The line's first response (a prompt, a transfer or a hang-up), ms from the turn's start.
    response_ms: Option<Millis>,
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let only = std::env::args()
        .skip_while(|a| a != "--only")
        .nth(1)
        .unwrap_or_default();
    let turns: Vec<Turn> = load_turns(root)
        .into_iter()
        .filter(|t| t.id.contains(&only))
        .collect();
    let settings = Settings::default().with_shipped_assets_at(root);
    let stt = setup::load_stt(&settings).expect("the Whisper model loads (models pull)");
    let base = setup::load_playbook(&settings).expect("shipped dialplan and prompts");
    println!(
        "{} spoken turns; Whisper at {} thread(s) per transcription",
        turns.len(),
        stt.config().threads
    );
    println!(
        "{:<28} {:>10} {:>12} {:>14} {:>14} {:>10}",
        "rule", "cut_turns", "cut_turns_%", "mean_lag_ms", "escape_lag_ms", "escape_n"
    );
    let rules = [
        (false, false, "silence only (400 ms)"),
        (true, false, "words + silence (semantic)"),
        (true, true, "words + silence + quick look"),
    ];
    for (semantic, quick, name) in rules {
        let mut dialplan = base.dialplan.clone();
        dialplan.turns.semantic = semantic;
        let mut frontend = base.frontend.clone();
        frontend.quick_transcripts = quick;
        let book = Arc::new(Playbook::new(dialplan, base.prompts.clone(), frontend));
        let (mut cut, mut lags, mut escape) = (Vec::new(), Vec::new(), Vec::new());
        for t in &turns {
            let p = play(t, book.clone(), stt.as_ref());
            match p.response_ms {
                Some(at) if at < t.speech_end_ms => cut.push(t.id.clone()),
                Some(at) => {
                    let lag = at - t.speech_end_ms;
                    lags.push(lag);
                    if is_lone_request(t) {
                        escape.push(lag);
                    }
                }
                None => {}
            }
        }
        println!(
            "{name:<28} {:>10} {:>12.1} {:>14.0} {:>14.0} {:>10}",
            cut.len(),
            100.0 * cut.len() as f64 / turns.len().max(1) as f64,
            mean(&lags),
            median(&mut escape),
            escape.len()
        );
        if !cut.is_empty() {
            println!("    cut: {}", cut.join(", "));
        }
    }
}

/// Requests for a person said as the whole turn: where the instant escape applies.
fn is_lone_request(t: &Turn) -> bool {
    matches!(t.category.as_str(), "explicit_request" | "single_word")
}

fn mean(v: &[Millis]) -> f64 {
    v.iter().sum::<Millis>() as f64 / v.len().max(1) as f64
}

fn median(v: &mut [Millis]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    v[v.len() / 2] as f64
}

fn load_turns(root: &Path) -> Vec<Turn> {
    let mut paths: Vec<_> = std::fs::read_dir(root.join("fixtures/calls"))
        .expect("fixtures/calls")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut turns = Vec::new();
    for p in paths {
        let f = Fixture::load(&p).expect("fixture loads");
        // Turns said over a prompt start mid-playback; they measure barge-in, not turn ends.
        for (i, t) in f.turns.iter().enumerate() {
            if let Act::Speak { ulaw, .. } = &t.act
                && !t.during_prompt
            {
                let loud = |b: &u8| ulaw::decode(*b).unsigned_abs() > 300;
                let end = ulaw.iter().rposition(loud).unwrap_or(0);
                turns.push(Turn {
                    id: format!("{}/{i}", f.id),
                    category: f.category.clone(),
                    ulaw: ulaw.clone(),
                    speech_end_ms: (end / 8) as Millis,
                });
            }
        }
    }
    turns
}

/// A transcription on its way back: delivered once the time it took has passed.
struct InFlight {
    due: Millis,
    utterance: u64,
    result: Result<Transcript, SttFailure>,
}

fn play(turn: &Turn, book: Arc<Playbook>, stt: &dyn Transcriber) -> Played {
    let info = CallInfo {
        call_sid: format!("CA-turn-{}", turn.id),
        from: "+15550001234".into(),
        to: "+15550009000".into(),
        started_at: Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap(),
        handoff_id: "turn".into(),
    };
    let mut engine = Engine::new(info, book).expect("engine");
    // The greeting has played: its mark is back before the caller speaks.
    for a in engine.start(0) {
        if let Action::Play { mark, .. } = a {
            engine.feed(Event::Mark(mark), 0);
        }
    }
    let mut audio = turn.ulaw.clone();
    audio.extend(std::iter::repeat_n(0xFF, FRAME_SAMPLES_8K * 150));
    let mut flight: Vec<InFlight> = Vec::new();
    let mut response = None;
    let mut now: Millis = 0;
    for frame in audio.chunks(FRAME_SAMPLES_8K) {
        let mut actions = engine.feed(Event::Audio(frame), now);
        now += FRAME_MS;
        actions.extend(engine.feed(Event::Tick, now));
        let (ready, later): (Vec<_>, Vec<_>) = flight.drain(..).partition(|f| f.due <= now);
        flight = later;
        for f in ready {
            actions.extend(engine.feed(
                Event::Transcribed {
                    utterance: f.utterance,
                    result: f.result,
                },
                now,
            ));
        }
        let mut i = 0;
        while i < actions.len() {
            match &actions[i] {
                Action::Transcribe {
                    utterance,
                    samples,
                    initial_prompt,
                    ..
                } => {
                    let t0 = Instant::now();
                    let result = stt.transcribe(samples, initial_prompt);
                    let took = t0.elapsed().as_millis() as Millis;
                    flight.push(InFlight {
                        due: now + took.div_ceil(FRAME_MS) * FRAME_MS,
                        utterance: *utterance,
                        result,
                    });
                }
                Action::Play { .. } | Action::Transfer(_) | Action::Hangup => {
                    response.get_or_insert(now);
                }
                _ => {}
            }
            i += 1;
        }
        if response.is_some() || engine.is_done() {
            break;
        }
    }
    Played {
        response_ms: response,
    }
}
