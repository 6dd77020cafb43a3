//! The media path: G.711 μ-law, 8→16 kHz resampling, voice activity, endpointing, prosody.
//!
//! Everything here is pure computation on samples; nothing reads a clock. Time is counted in
//! 20 ms frames of inbound audio.

/// Samples in one 20 ms frame of 8 kHz telephone audio (one μ-law byte each).
pub const FRAME_SAMPLES_8K: usize = 160;
/// Duration of one inbound frame.
pub const FRAME_MS: u64 = 20;
/// Sample rate Whisper wants.
pub const STT_RATE: u32 = 16_000;

/// How an utterance sounded, measured from its audio. Compared against the caller's own first
/// turn, never against an absolute norm: people and phone lines differ.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Prosody {
    /// Mean loudness of the voiced frames, dBFS.
    pub loudness_db: f32,
    /// Median fundamental frequency of the voiced frames, Hz (None when no pitch was found).
    pub pitch_hz: Option<f32>,
    /// Estimated syllable nuclei per second of voiced speech.
    pub syllables_per_s: f32,
    /// Voiced time in the utterance, ms.
    pub voiced_ms: u64,
}

pub mod endpoint;
pub mod error;
pub mod frontend;
pub mod prosody;
pub mod resample;
pub mod ulaw;
pub mod vad;

pub use error::AudioError;
pub use frontend::{Frontend, FrontendConfig, FrontendEvent, Utterance};
