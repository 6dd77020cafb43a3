//! Transcribes every spoken fixture turn with warmline's Whisper engine, for
//! `bench/stt_vs_faster_whisper.sh`.
//!
//! `dump` cuts each turn into the utterances warmline would hand Whisper (μ-law through the
//! live frontend: decode, upsampler, VAD, endpointing) and writes them as raw f32 files plus a
//! manifest, so that faster-whisper transcribes exactly the same samples. `run` transcribes a
//! dump with one engine configuration and writes one JSON line per utterance.
//!
//! ```text
//! cargo run --release --example stt_fixture_run -- dump --out /tmp/stt-dump
//! cargo run --release --example stt_fixture_run -- run --dump /tmp/stt-dump --out wl.jsonl
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};

use warmline::audio::FRAME_SAMPLES_8K;
use warmline::audio::frontend::{Frontend, FrontendConfig};
use warmline::config::Settings;
use warmline::replay::fixture::{Act, Fixture};
use warmline::setup;
use warmline::stt::SttMode;
use warmline::stt::engine::{AudioCtx, RunOpts, SttConfig, SttEngine};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Switch {
    On,
    Off,
}

#[derive(Subcommand)]
enum Command {
    /// Cut every spoken fixture turn into utterances and write them to `out`.
    Dump {
        #[arg(long)]
        out: PathBuf,
    },
    /// Transcribe a dump with warmline's engine.
    Run {
        #[arg(long)]
        dump: PathBuf,
        /// Where the JSON lines go.
        #[arg(long)]
        out: PathBuf,
        /// Name of this configuration in the report.
        #[arg(long, default_value = "warmline")]
        label: String,
        #[arg(long, default_value = "models/ggml-tiny.en-q8_0.bin")]
        model: PathBuf,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// `full` or `fit:MIN:MARGIN`; unset means `SttConfig::default()`.
        #[arg(long)]
        audio_ctx: Option<String>,
        /// Pass the dialplan's vocabulary as the initial prompt (`on` / `off`); unset means
        /// `SttConfig::default()`.
        #[arg(long)]
        prompt: Option<Switch>,
        /// Passes over all utterances; each utterance's time is its median over the passes.
        #[arg(long, default_value_t = 3)]
        passes: usize,
        /// ggml flash attention (`on` / `off`); unset means `SttConfig::default()`.
        #[arg(long)]
        flash_attn: Option<Switch>,
        /// Decode by beam search, as the call engine's number pass does (`SttMode::Careful`),
        /// instead of greedily.
        #[arg(long, default_value = "off")]
        careful: Switch,
    },
}

/// The dump's index: the dialplan's prompt, whether warmline uses it by default (so that
/// bench/fw_transcribe.py can do the same), and each turn's reference and utterances.
#[derive(Serialize, Deserialize)]
struct Manifest {
    prompt: String,
    default_uses_prompt: bool,
    turns: Vec<TurnEntry>,
}

#[derive(Serialize, Deserialize)]
struct TurnEntry {
    /// `<fixture id>/<turn index>`.
    turn: String,
    /// What the caller said (the fixture's `text`).
    reference: String,
    /// Raw little-endian f32 files, 16 kHz mono, relative to the dump directory.
    utterances: Vec<String>,
}

/// One line of `run` output; `bench/score.py` reads the same shape from every engine.
#[derive(Serialize)]
struct ResultLine<'a> {
    engine: &'a str,
    turn: &'a str,
    file: &'a str,
    audio_s: f64,
    secs: f64,
    hyp: String,
}

/// The caller's pause before speaking, and the quiet after, that every turn is wrapped in:
/// the frontend needs silence around speech to find its start (pre-roll) and its end.
const LEAD_SILENCE_MS: usize = 500;
const TAIL_SILENCE_MS: usize = 1_500;

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Dump { out } => dump(&out),
        Command::Run {
            dump,
            out,
            label,
            model,
            threads,
            audio_ctx,
            prompt,
            passes,
            flash_attn,
            careful,
        } => {
            let mut cfg = SttConfig {
                threads,
                max_states: 1,
                ..SttConfig::default()
            };
            if let Some(spec) = audio_ctx {
                cfg.audio_ctx = parse_audio_ctx(&spec)?;
            }
            if let Some(p) = prompt {
                cfg.use_prompt = matches!(p, Switch::On);
            }
            if let Some(f) = flash_attn {
                cfg.flash_attn = matches!(f, Switch::On);
            }
            let mode = match careful {
                Switch::On => SttMode::Careful,
                Switch::Off => SttMode::Free,
            };
            run(&dump, &out, &label, &model, cfg, mode, passes.max(1))
        }
    }
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn parse_audio_ctx(spec: &str) -> Result<AudioCtx> {
    if spec == "full" {
        return Ok(AudioCtx::Full);
    }
    let parts: Vec<&str> = spec.split(':').collect();
    match parts.as_slice() {
        ["fit", min, margin] => Ok(AudioCtx::Fit {
            min: min.parse().context("fit MIN")?,
            margin: margin.parse().context("fit MARGIN")?,
        }),
        _ => bail!("--audio-ctx must be `full` or `fit:MIN:MARGIN`, not {spec:?}"),
    }
}

fn dump(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let settings = Settings::default().with_shipped_assets_at(repo_root());
    let book = setup::load_playbook(&settings)?;

    let mut turns = Vec::new();
    let (mut n_utts, mut audio_s) = (0usize, 0.0f64);
    for path in fixture_paths()? {
        let fixture = Fixture::load(&path)?;
        for (i, turn) in fixture.turns.iter().enumerate() {
            let Act::Speak {
                ulaw,
                text: Some(text),
            } = &turn.act
            else {
                continue;
            };
            let mut files = Vec::new();
            for (u, samples) in cut_utterances(ulaw, &book.frontend)?.iter().enumerate() {
                let name = format!("{}-{i}-{u}.f32", fixture.id);
                write_f32(&out.join(&name), samples)?;
                audio_s += samples.len() as f64 / 16_000.0;
                files.push(name);
            }
            n_utts += files.len();
            turns.push(TurnEntry {
                turn: format!("{}/{i}", fixture.id),
                reference: text.clone(),
                utterances: files,
            });
        }
    }
    let manifest = Manifest {
        prompt: book.dialplan.stt_prompt(),
        default_uses_prompt: SttConfig::default().use_prompt,
        turns,
    };
    let file = File::create(out.join("manifest.json"))?;
    serde_json::to_writer_pretty(BufWriter::new(file), &manifest)?;
    eprintln!(
        "{} turns, {n_utts} utterances, {audio_s:.1} s of 16 kHz audio in {}",
        manifest.turns.len(),
        out.display()
    );
    Ok(())
}

fn fixture_paths() -> Result<Vec<PathBuf>> {
    let dir = repo_root().join("fixtures/calls");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    Ok(paths)
}

/// The utterances the live frontend cuts from one turn, with the dialplan's endpointing.
fn cut_utterances(ulaw: &[u8], cfg: &FrontendConfig) -> Result<Vec<Vec<f32>>> {
    let silence = |ms: usize| vec![0xFFu8; ms / 20 * FRAME_SAMPLES_8K];
    let audio = [
        silence(LEAD_SILENCE_MS),
        ulaw.to_vec(),
        silence(TAIL_SILENCE_MS),
    ]
    .concat();
    let utterances = Frontend::new(cfg.clone())?.utterances(&audio);
    Ok(utterances.into_iter().map(|u| u.samples).collect())
}

fn write_f32(path: &Path, samples: &[f32]) -> Result<()> {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn read_f32(path: &Path) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// One utterance to transcribe, with its turn.
struct Clip {
    turn: String,
    file: String,
    samples: Vec<f32>,
}

fn load_clips(dir: &Path, manifest: &Manifest) -> Result<Vec<Clip>> {
    let mut clips = Vec::new();
    for t in &manifest.turns {
        for f in &t.utterances {
            clips.push(Clip {
                turn: t.turn.clone(),
                file: f.clone(),
                samples: read_f32(&dir.join(f))?,
            });
        }
    }
    Ok(clips)
}

fn run(
    dir: &Path,
    out: &Path,
    label: &str,
    model: &Path,
    cfg: SttConfig,
    mode: SttMode,
    passes: usize,
) -> Result<()> {
    let manifest: Manifest = serde_json::from_reader(File::open(dir.join("manifest.json"))?)?;
    let clips = load_clips(dir, &manifest)?;
    // The engine itself leaves the prompt out when `cfg.use_prompt` is off, as in the server.
    let prompt = manifest.prompt.as_str();
    eprintln!("{label}: {cfg:?}, {mode:?}, model {}", model.display());
    let opts = RunOpts {
        threads: cfg.threads,
        cancel: None,
    };
    let engine = SttEngine::load(model, cfg)?;
    // Not timed: the first call pays for page faults in the freshly allocated state.
    if let Some(c) = clips.first() {
        engine.transcribe(&c.samples, prompt)?;
    }

    let mut times = vec![Vec::with_capacity(passes); clips.len()];
    let mut hyps = vec![String::new(); clips.len()];
    for pass in 0..passes {
        for (i, clip) in clips.iter().enumerate() {
            let t0 = Instant::now();
            let text = engine
                .transcribe_as(&clip.samples, prompt, mode, opts)?
                .transcript
                .text;
            times[i].push(t0.elapsed().as_secs_f64());
            if pass == 0 {
                hyps[i] = text;
            } else if hyps[i] != text {
                eprintln!("warning: {} changed between passes: {text:?}", clip.file);
            }
        }
    }

    let mut w = BufWriter::new(File::create(out)?);
    for ((clip, t), hyp) in clips.iter().zip(&mut times).zip(hyps) {
        let line = ResultLine {
            engine: label,
            turn: &clip.turn,
            file: &clip.file,
            audio_s: clip.samples.len() as f64 / 16_000.0,
            secs: median(t),
            hyp,
        };
        serde_json::to_writer(&mut w, &line)?;
        writeln!(w)?;
    }
    w.flush()?;
    Ok(())
}

/// The lower median, as Python's `statistics.median_low` (bench/fw_transcribe.py) takes it.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) / 2]
}
