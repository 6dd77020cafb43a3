//! Clip sets: a `manifest.json` listing short μ-law recordings (the hard words, the digit
//! strings), read the same way whatever each clip carries besides its file.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::audio::FRAME_SAMPLES_8K;

/// A clip set that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ClipSetError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// What every clip in a manifest has.
pub trait ClipEntry: DeserializeOwned {
    /// Raw 8 kHz μ-law, relative to the manifest's directory.
    fn file(&self) -> &str;

    /// Why this entry cannot be used, if it cannot.
    fn invalid(&self) -> Option<String> {
        None
    }
}

#[derive(Deserialize)]
#[serde(bound = "C: ClipEntry")]
struct Manifest<C> {
    clips: Vec<C>,
}

/// Reads `dir/manifest.json` and every clip's audio, padded with μ-law silence to whole 20 ms
/// frames.
pub fn load<C: ClipEntry>(dir: &Path) -> Result<Vec<(C, Vec<u8>)>, ClipSetError> {
    let path = dir.join("manifest.json");
    let src = std::fs::read_to_string(&path).map_err(|source| ClipSetError::Read {
        path: path.clone(),
        source,
    })?;
    let manifest: Manifest<C> = serde_json::from_str(&src).map_err(|e| ClipSetError::Invalid {
        path: path.clone(),
        message: e.to_string(),
    })?;
    manifest
        .clips
        .into_iter()
        .map(|clip| {
            if let Some(message) = clip.invalid() {
                return Err(ClipSetError::Invalid {
                    path: path.clone(),
                    message: format!("{}: {message}", clip.file()),
                });
            }
            let audio = dir.join(clip.file());
            let mut ulaw = std::fs::read(&audio).map_err(|source| ClipSetError::Read {
                path: audio.clone(),
                source,
            })?;
            let rem = ulaw.len() % FRAME_SAMPLES_8K;
            if rem != 0 {
                ulaw.resize(ulaw.len() + FRAME_SAMPLES_8K - rem, 0xFF);
            }
            Ok((clip, ulaw))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Entry {
        file: String,
        n: u32,
    }

    impl ClipEntry for Entry {
        fn file(&self) -> &str {
            &self.file
        }
        fn invalid(&self) -> Option<String> {
            (self.n == 0).then(|| "n is 0".into())
        }
    }

    #[test]
    fn reads_clips_pads_frames_and_rejects_bad_entries() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.ulaw"), [0u8; 170]).unwrap();
        std::fs::write(
            dir.path().join("manifest.json"),
            r#"{"clips":[{"file":"a.ulaw","n":1}]}"#,
        )
        .unwrap();
        let clips: Vec<(Entry, Vec<u8>)> = load(dir.path()).unwrap();
        assert_eq!(clips.len(), 1);
        assert_eq!(clips[0].0.n, 1);
        assert_eq!(clips[0].1.len(), 2 * FRAME_SAMPLES_8K);
        assert_eq!(
            clips[0].1[170..],
            vec![0xFF; 2 * FRAME_SAMPLES_8K - 170][..]
        );

        std::fs::write(
            dir.path().join("manifest.json"),
            r#"{"clips":[{"file":"a.ulaw","n":0}]}"#,
        )
        .unwrap();
        let bad = load::<Entry>(dir.path()).unwrap_err();
        assert!(bad.to_string().contains("a.ulaw: n is 0"), "{bad}");
        std::fs::write(
            dir.path().join("manifest.json"),
            r#"{"clips":[{"file":"missing.ulaw","n":1}]}"#,
        )
        .unwrap();
        assert!(matches!(
            load::<Entry>(dir.path()),
            Err(ClipSetError::Read { .. })
        ));
    }
}
