//! The pre-rendered fragments: `fragments.toml` (id → text) and one 8 kHz WAV per id.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::plan;

#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}: expected 8000 Hz mono 16-bit PCM, found {found}")]
    Format { path: String, found: String },
    #[error("{path}: no audio in the fragment")]
    Empty { path: String },
    #[error(
        "{list} lacks fragments warmline needs: {ids:?} (add them and run scripts/render_fragments.sh)"
    )]
    Missing { list: String, ids: Vec<String> },
    #[error("not a number to read back: {0:?} (digits only)")]
    NotDigits(String),
    #[error("{len} digits is more than a read-back says (at most {max})")]
    TooLong { len: usize, max: usize },
}

/// Longest fragment accepted: the longest sentence in the list is under 3 s.
const MAX_FRAGMENT_SAMPLES: usize = 10 * 8000;

/// One fragment, ready to join.
#[derive(Debug, Clone)]
pub struct Fragment {
    pub text: String,
    /// 8 kHz mono samples, trimmed to the voice.
    pub pcm: Arc<[i16]>,
}

#[derive(Debug, Clone, Default)]
pub struct FragmentLibrary {
    fragments: BTreeMap<String, Fragment>,
    /// Where the list came from, for error messages.
    source: String,
}

#[derive(Deserialize)]
struct Entry {
    text: String,
}

impl FragmentLibrary {
    /// Loads `dir/fragments.toml` and `dir/<id>.wav` for every id, then checks that every
    /// fragment the planner may ask for is there.
    pub fn load(dir: &Path) -> Result<FragmentLibrary, SpeechError> {
        let list = dir.join("fragments.toml");
        let read_err = |path: &Path, message: String| SpeechError::Read {
            path: path.display().to_string(),
            message,
        };
        let src = std::fs::read_to_string(&list).map_err(|e| read_err(&list, e.to_string()))?;
        let entries: BTreeMap<String, Entry> =
            toml::from_str(&src).map_err(|e| read_err(&list, e.to_string()))?;
        let mut fragments = BTreeMap::new();
        for (id, entry) in entries {
            let pcm = read_wav_8k(&dir.join(format!("{id}.wav")))?;
            fragments.insert(
                id,
                Fragment {
                    text: entry.text,
                    pcm: pcm.into(),
                },
            );
        }
        let lib = FragmentLibrary {
            fragments,
            source: list.display().to_string(),
        };
        lib.check_required()?;
        Ok(lib)
    }

    /// A library from samples in memory (tests, tools).
    pub fn from_pcm<I, S>(fragments: I) -> FragmentLibrary
    where
        I: IntoIterator<Item = (S, String, Vec<i16>)>,
        S: Into<String>,
    {
        FragmentLibrary {
            fragments: fragments
                .into_iter()
                .map(|(id, text, pcm)| {
                    (
                        id.into(),
                        Fragment {
                            text,
                            pcm: pcm.into(),
                        },
                    )
                })
                .collect(),
            source: "(in memory)".into(),
        }
    }

    /// Every fragment the planner can name is present.
    pub fn check_required(&self) -> Result<(), SpeechError> {
        let ids: Vec<String> = plan::REQUIRED
            .iter()
            .filter(|id| !self.fragments.contains_key(**id))
            .map(|id| id.to_string())
            .collect();
        if ids.is_empty() {
            Ok(())
        } else {
            Err(SpeechError::Missing {
                list: self.source.clone(),
                ids,
            })
        }
    }

    pub fn get(&self, id: &str) -> Option<&Fragment> {
        self.fragments.get(id)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.fragments.contains_key(id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.fragments.keys().map(String::as_str)
    }
}

fn read_wav_8k(path: &Path) -> Result<Vec<i16>, SpeechError> {
    let p = || path.display().to_string();
    let mut reader = hound::WavReader::open(path).map_err(|e| SpeechError::Read {
        path: p(),
        message: e.to_string(),
    })?;
    let spec = reader.spec();
    if spec.sample_rate != 8000
        || spec.channels != 1
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Err(SpeechError::Format {
            path: p(),
            found: format!(
                "{} Hz, {} channel(s), {}-bit {:?}",
                spec.sample_rate, spec.channels, spec.bits_per_sample, spec.sample_format
            ),
        });
    }
    if reader.len() as usize > MAX_FRAGMENT_SAMPLES {
        return Err(SpeechError::Format {
            path: p(),
            found: format!(
                "{} ms of audio (a fragment is under 10 s)",
                reader.len() / 8
            ),
        });
    }
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .collect::<Result<_, _>>()
        .map_err(|e| SpeechError::Read {
            path: p(),
            message: e.to_string(),
        })?;
    if samples.is_empty() {
        return Err(SpeechError::Empty { path: p() });
    }
    Ok(samples)
}
