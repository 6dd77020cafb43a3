//! The fixed things warmline says: text (for the call record) and pre-rendered telephone audio.
//!
//! Prompts are rendered ahead of time with a natural voice (scripts/render_prompts.sh) so the
//! server needs no TTS at run time. They are held as μ-law, ready to stream.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use crate::audio::ulaw;

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}: expected 8000 Hz mono 16-bit PCM, found {found}")]
    Format { path: String, found: String },
}

/// One prompt, ready to play.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub id: String,
    pub text: String,
    /// 8 kHz μ-law, no header.
    pub ulaw: Arc<[u8]>,
}

impl Prompt {
    pub fn duration_ms(&self) -> u64 {
        self.ulaw.len() as u64 / 8
    }
}

#[derive(Debug, Clone, Default)]
pub struct PromptLibrary {
    prompts: BTreeMap<String, Prompt>,
}

#[derive(Deserialize)]
struct Entry {
    text: String,
}

impl PromptLibrary {
    /// Loads `dir/prompts.toml` and `dir/<id>.wav` for every id in it.
    pub fn load(dir: &Path) -> Result<PromptLibrary, PromptError> {
        let toml_path = dir.join("prompts.toml");
        let read_err = |path: &Path, message: String| PromptError::Read {
            path: path.display().to_string(),
            message,
        };
        let src =
            std::fs::read_to_string(&toml_path).map_err(|e| read_err(&toml_path, e.to_string()))?;
        let entries: BTreeMap<String, Entry> =
            toml::from_str(&src).map_err(|e| read_err(&toml_path, e.to_string()))?;
        let mut prompts = BTreeMap::new();
        for (id, entry) in entries {
            let wav = dir.join(format!("{id}.wav"));
            let ulaw = read_wav_8k(&wav)?;
            prompts.insert(
                id.clone(),
                Prompt {
                    id,
                    text: entry.text,
                    ulaw: ulaw.into(),
                },
            );
        }
        Ok(PromptLibrary { prompts })
    }

    /// A library without audio files: each prompt is silence as long as its text would take to
    /// say (about 15 characters a second). For tests of logic that only needs text and timing.
    pub fn from_texts(texts: &[(&str, &str)]) -> PromptLibrary {
        let prompts = texts
            .iter()
            .map(|(id, text)| {
                let ms = 400 + text.len() as u64 * 1000 / 15;
                let ulaw = vec![0xFFu8; (ms * 8) as usize];
                (
                    id.to_string(),
                    Prompt {
                        id: id.to_string(),
                        text: text.to_string(),
                        ulaw: ulaw.into(),
                    },
                )
            })
            .collect();
        PromptLibrary { prompts }
    }

    pub fn get(&self, id: &str) -> Option<&Prompt> {
        self.prompts.get(id)
    }

    /// The prompt `id` in the variant for an upset caller (`<id>_frustrated`) when there is one.
    pub fn variant(&self, id: &str, frustrated: bool) -> Option<&Prompt> {
        if frustrated && let Some(p) = self.prompts.get(&format!("{id}_frustrated")) {
            return Some(p);
        }
        self.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Prompt> {
        self.prompts.values()
    }
}

fn read_wav_8k(path: &Path) -> Result<Vec<u8>, PromptError> {
    let mut reader = hound::WavReader::open(path).map_err(|e| PromptError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let spec = reader.spec();
    if spec.sample_rate != 8000
        || spec.channels != 1
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Err(PromptError::Format {
            path: path.display().to_string(),
            found: format!(
                "{} Hz, {} channel(s), {}-bit {:?}",
                spec.sample_rate, spec.channels, spec.bits_per_sample, spec.sample_format
            ),
        });
    }
    let samples: Result<Vec<i16>, _> = reader.samples::<i16>().collect();
    let samples = samples.map_err(|e| PromptError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    Ok(ulaw::encode_samples(&samples))
}
