//! The one error type of the media path.

/// Why the media path refused a configuration or a frame.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum AudioError {
    /// The VAD only understands 10, 20 or 30 ms of 8 kHz audio.
    #[error("VAD frame must be 80, 160 or 240 samples of 8 kHz audio, got {got}")]
    BadFrameLength { got: usize },
    /// webrtc-vad has four modes, 0 (least) to 3 (most aggressive).
    #[error("VAD mode must be 0..=3, got {0}")]
    InvalidVadMode(u8),
    /// A configuration value that cannot work, with the reason.
    #[error("invalid audio config: {0}")]
    InvalidConfig(String),
    /// rubato refused to build a resampler (unusable rate pair).
    #[error("resampler: {0}")]
    Resampler(String),
}
