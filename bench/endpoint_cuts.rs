//! How often the endpointer cuts a caller mid-turn, and how fast it notices the end, for a
//! range of minimum hangovers, over every spoken fixture turn (each turn is one continuous
//! piece of speech, so more than one utterance from it is a cut).
//!
//!     cargo run --release --example endpoint_cuts

use std::path::Path;

use warmline::audio::FRAME_SAMPLES_8K;
use warmline::audio::frontend::{Frontend, FrontendConfig, FrontendEvent};
use warmline::replay::fixture::{Act, Fixture};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut turns = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(root.join("fixtures/calls"))
        .expect("fixtures/calls")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    for p in paths {
        let f = Fixture::load(&p).expect("fixture loads");
        for (i, t) in f.turns.iter().enumerate() {
            if let Act::Speak { ulaw, .. } = &t.act {
                turns.push((format!("{}/{i}", f.id), ulaw.clone()));
            }
        }
    }
    println!("{} spoken turns", turns.len());
    println!(
        "{:>8} {:>8} {:>6} {:>12} {:>12}",
        "min_ms", "max_ms", "cuts", "cut_turns_%", "mean_lag_ms"
    );
    for (min, max) in [(300, 700), (400, 700), (500, 700), (600, 700), (700, 700)] {
        let cfg = FrontendConfig {
            min_hangover_ms: min,
            max_hangover_ms: max,
            ..FrontendConfig::default()
        };
        let (mut cuts, mut cut_turns, mut lag_sum, mut lag_n) = (0, 0, 0u64, 0u64);
        let mut cut_ids = Vec::new();
        for (id, ulaw) in &turns {
            let mut fe = Frontend::new(cfg.clone()).expect("frontend");
            let mut events = Vec::new();
            // 2 s of line silence after the turn, as a caller waiting for an answer.
            let silence = vec![0xFFu8; FRAME_SAMPLES_8K * 100];
            fe.push_ulaw_bytes(ulaw, &mut events);
            fe.push_ulaw_bytes(&silence, &mut events);
            let utts: Vec<_> = events
                .iter()
                .filter_map(|e| match e {
                    FrontendEvent::Utterance(u) => Some(u),
                    _ => None,
                })
                .collect();
            if utts.len() > 1 {
                cuts += utts.len() - 1;
                cut_turns += 1;
                cut_ids.push(id.clone());
            }
            if let Some(last) = utts.last() {
                lag_sum += last.detected_ms - last.end_ms;
                lag_n += 1;
            }
        }
        println!(
            "{min:>8} {max:>8} {cuts:>6} {:>12.1} {:>12.0}",
            100.0 * cut_turns as f64 / turns.len() as f64,
            lag_sum as f64 / lag_n.max(1) as f64
        );
        if min == 400 {
            println!("         cut at 400 ms: {}", cut_ids.join(", "));
        }
    }
}
