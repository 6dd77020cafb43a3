//! Fixture calls: a caller's turns (audio, timing, keypresses) and the outcome they expect.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::audio::{FRAME_SAMPLES_8K, ulaw};
use crate::handoff::Priority;

#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("cannot read fixture {path}: {message}")]
    Read { path: String, message: String },
    #[error("fixture {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("fixture audio {path}: {message}")]
    Audio { path: String, message: String },
}

/// A value that may be written as one string or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTurn {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub audio: Option<String>,
    #[serde(default)]
    pub dtmf: Option<String>,
    #[serde(default)]
    pub pause_before_ms: Option<u64>,
    #[serde(default)]
    pub during_prompt: bool,
    #[serde(default)]
    pub agent_request: bool,
    /// The turn starts at this time of the call (ms of caller audio since the stream began),
    /// whatever warmline is doing: a recorded call replays on its own clock.
    #[serde(default)]
    pub at_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub transfer: bool,
    #[serde(default)]
    pub queue: Option<OneOrMany>,
    #[serde(default)]
    pub reason: Option<OneOrMany>,
    #[serde(default)]
    pub priority_at_least: Option<Priority>,
    #[serde(default)]
    pub priority_at_most: Option<Priority>,
    #[serde(default)]
    pub facts: Vec<String>,
    #[serde(default)]
    pub trigger_turn: Option<usize>,
    #[serde(default)]
    pub latest_turn: Option<usize>,
    #[serde(default)]
    pub answer: Option<String>,
    #[serde(default)]
    pub barge_in: Option<bool>,
    /// `false`: the line never asked the caller to repeat or clarify (it waited for the rest
    /// of a turn instead of cutting in).
    #[serde(default)]
    pub clarify: Option<bool>,
}

impl Expect {
    /// A call that must stay self-serve and names nothing else to check.
    pub fn no_transfer() -> Expect {
        Expect {
            transfer: false,
            queue: None,
            reason: None,
            priority_at_least: None,
            priority_at_most: None,
            facts: Vec::new(),
            trigger_turn: None,
            latest_turn: None,
            answer: None,
            barge_in: None,
            clarify: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
struct RawFixture {
    #[serde(default)]
    description: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    voice: Option<toml::Value>,
    #[serde(default)]
    #[allow(dead_code)]
    line: Option<toml::Value>,
    #[serde(default)]
    greeting: Option<String>,
    turns: Vec<RawTurn>,
    expect: Expect,
}

/// What the caller does in one turn.
#[derive(Debug, Clone)]
pub enum Act {
    /// 8 kHz μ-law audio, a whole number of 20 ms frames.
    Speak {
        ulaw: Vec<u8>,
        text: Option<String>,
    },
    Press(char),
}

#[derive(Debug, Clone)]
pub struct Turn {
    pub act: Act,
    pub pause_before_ms: u64,
    pub during_prompt: bool,
    pub agent_request: bool,
    /// See [`RawTurn::at_ms`].
    pub at_ms: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Fixture {
    pub id: String,
    pub path: PathBuf,
    pub description: String,
    pub category: String,
    pub voice: String,
    pub turns: Vec<Turn>,
    pub expect: Expect,
    /// The prompt the call opens with, when not the dialplan's greeting (a recorded call
    /// heard the recording notice).
    pub greeting: Option<String>,
}

/// The caller's default pause after warmline's prompt ends (as the Twilio simulator does).
pub const DEFAULT_PAUSE_MS: u64 = 700;

impl Fixture {
    /// Reads a fixture and its audio. Audio paths are relative to `<fixture dir>/../audio/`.
    pub fn load(path: &Path) -> Result<Fixture, FixtureError> {
        let display = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|e| FixtureError::Read {
            path: display.clone(),
            message: e.to_string(),
        })?;
        let raw: RawFixture = toml::from_str(&src).map_err(|e| FixtureError::Invalid {
            path: display.clone(),
            message: e.to_string(),
        })?;
        let invalid = |message: String| FixtureError::Invalid {
            path: display.clone(),
            message,
        };
        let audio_dir = path
            .parent()
            .and_then(Path::parent)
            .map(|p| p.join("audio"))
            .unwrap_or_else(|| PathBuf::from("audio"));
        let mut turns = Vec::new();
        for (i, t) in raw.turns.iter().enumerate() {
            let act = match (&t.audio, &t.dtmf) {
                (Some(a), None) => Act::Speak {
                    ulaw: read_ulaw(&audio_dir.join(a))?,
                    text: t.text.clone(),
                },
                (None, Some(d)) if d.chars().count() == 1 => {
                    Act::Press(d.chars().next().unwrap_or('0'))
                }
                _ => {
                    return Err(invalid(format!(
                        "turn {i} needs exactly one of `audio` or a one-key `dtmf`"
                    )));
                }
            };
            turns.push(Turn {
                act,
                pause_before_ms: t.pause_before_ms.unwrap_or(DEFAULT_PAUSE_MS),
                during_prompt: t.during_prompt,
                agent_request: t.agent_request,
                at_ms: t.at_ms,
            });
        }
        if turns.is_empty() {
            return Err(invalid("a fixture needs at least one turn".into()));
        }
        let e = &raw.expect;
        if e.transfer && e.trigger_turn.is_none() {
            return Err(invalid(
                "expect.trigger_turn is required when transfer = true".into(),
            ));
        }
        if let Some(t) = e.trigger_turn.max(e.latest_turn)
            && t >= turns.len()
        {
            return Err(invalid(format!(
                "expect names turn {t}, but there are {} turns",
                turns.len()
            )));
        }
        let voice = raw.voice.as_ref().map(voice_label).unwrap_or_default();
        Ok(Fixture {
            id: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: path.to_path_buf(),
            description: raw.description,
            category: raw.category,
            voice,
            turns,
            expect: raw.expect,
            greeting: raw.greeting,
        })
    }

    /// Total caller audio, ms.
    pub fn audio_ms(&self) -> u64 {
        self.turns
            .iter()
            .map(|t| match &t.act {
                Act::Speak { ulaw, .. } => ulaw.len() as u64 / 8,
                Act::Press(_) => 0,
            })
            .sum()
    }
}

fn voice_label(v: &toml::Value) -> String {
    let get = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("");
    let (engine, name) = (get("engine"), get("voice"));
    if name.is_empty() {
        engine.to_string()
    } else {
        format!("{engine}:{name}")
    }
}

/// Reads an 8 kHz mono 16-bit WAV as μ-law, padded with silence to whole 20 ms frames.
pub fn read_ulaw(path: &Path) -> Result<Vec<u8>, FixtureError> {
    let err = |message: String| FixtureError::Audio {
        path: path.display().to_string(),
        message,
    };
    let mut reader = hound::WavReader::open(path).map_err(|e| err(e.to_string()))?;
    let spec = reader.spec();
    if spec.sample_rate != 8000 || spec.channels != 1 || spec.bits_per_sample != 16 {
        return Err(err(format!(
            "expected 8000 Hz mono 16-bit, found {} Hz, {} channel(s), {}-bit",
            spec.sample_rate, spec.channels, spec.bits_per_sample
        )));
    }
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    let mut bytes = ulaw::encode_samples(&samples);
    let rem = bytes.len() % FRAME_SAMPLES_8K;
    if rem != 0 {
        bytes.resize(bytes.len() + FRAME_SAMPLES_8K - rem, 0xFF);
    }
    Ok(bytes)
}

/// A fixture file as written by `warmline fixture from-call`: the same format [`Fixture::load`]
/// reads, every optional field left out when unset.
#[derive(Debug, Clone, Serialize)]
pub struct FixtureFile {
    pub description: String,
    pub category: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub greeting: Option<String>,
    pub turns: Vec<TurnFile>,
    pub expect: ExpectFile,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TurnFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dtmf: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub during_prompt: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ExpectFile {
    pub transfer: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority_at_least: Option<Priority>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority_at_most: Option<Priority>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub facts: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_turn: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_turn: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub barge_in: Option<bool>,
}

impl FixtureFile {
    /// The TOML text, after `header` (each line becomes a comment).
    pub fn to_toml(&self, header: &str) -> Result<String, toml::ser::Error> {
        let body = toml::to_string(self)?;
        let mut out = String::new();
        for line in header.lines() {
            out.push_str("# ");
            out.push_str(line);
            out.push('\n');
        }
        if !header.is_empty() {
            out.push('\n');
        }
        out.push_str(&body);
        Ok(out)
    }
}

/// 8 kHz μ-law as an 8 kHz mono 16-bit WAV, the fixture audio format ([`read_ulaw`] reads
/// it back to the same μ-law, except that the two codes for zero become one).
pub fn ulaw_wav(ulaw_bytes: &[u8]) -> Result<Vec<u8>, hound::Error> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cursor = std::io::Cursor::new(Vec::with_capacity(44 + ulaw_bytes.len() * 2));
    {
        let mut w = hound::WavWriter::new(&mut cursor, spec)?;
        for &b in ulaw_bytes {
            w.write_sample(ulaw::decode(b))?;
        }
        w.finalize()?;
    }
    Ok(cursor.into_inner())
}

#[cfg(test)]
mod write_tests {
    use super::*;

    #[test]
    fn a_written_fixture_loads_back_with_its_timing_and_greeting() {
        let tmp = tempfile::tempdir().unwrap();
        let (calls, audio) = (tmp.path().join("calls"), tmp.path().join("audio/rec"));
        std::fs::create_dir_all(&calls).unwrap();
        std::fs::create_dir_all(&audio).unwrap();
        let ulaw_in: Vec<u8> = (0..320u32).map(|i| (i * 7 % 256) as u8).collect();
        std::fs::write(audio.join("turn_0.wav"), ulaw_wav(&ulaw_in).unwrap()).unwrap();
        let file = FixtureFile {
            description: "a \"quoted\" call".into(),
            category: "recorded".into(),
            greeting: Some("greeting_recorded".into()),
            turns: vec![
                TurnFile {
                    text: Some("hello".into()),
                    audio: Some("rec/turn_0.wav".into()),
                    at_ms: Some(0),
                    ..TurnFile::default()
                },
                TurnFile {
                    dtmf: Some("0".into()),
                    at_ms: Some(40),
                    ..TurnFile::default()
                },
            ],
            expect: ExpectFile {
                transfer: true,
                queue: Some(vec!["general".into()]),
                priority_at_least: Some(Priority::Normal),
                trigger_turn: Some(1),
                ..ExpectFile::default()
            },
        };
        let path = calls.join("rec.toml");
        std::fs::write(&path, file.to_toml("line one\nline two").unwrap()).unwrap();
        let f = Fixture::load(&path).unwrap();
        assert_eq!(f.greeting.as_deref(), Some("greeting_recorded"));
        assert_eq!(f.turns[0].at_ms, Some(0));
        assert_eq!(f.turns[1].at_ms, Some(40));
        let Act::Speak { ulaw: back, .. } = &f.turns[0].act else {
            panic!("turn 0 speaks")
        };
        let norm = |b: &u8| if *b == 0x7F { 0xFF } else { *b };
        assert_eq!(
            back.iter().map(norm).collect::<Vec<_>>(),
            ulaw_in.iter().map(norm).collect::<Vec<_>>()
        );
        assert!(matches!(f.turns[1].act, Act::Press('0')));
        assert_eq!(f.expect.trigger_turn, Some(1));
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .starts_with("# line one\n# line two\n")
        );
    }
}
