//! Speech-to-text: the Whisper model (pull + CTranslate2→ggml conversion) and the engine.

pub mod engine;

/// A finished transcription of one utterance.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    pub text: String,
    /// Mean token probability, 0..1.
    pub confidence: f32,
}

/// Why a transcription did not come back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SttFailure {
    /// Every speech-to-text worker was busy: the caller must not wait.
    Overloaded,
    /// The model failed on this utterance.
    Failed(String),
}

/// Anything that can turn an utterance into text: the Whisper engine, live or in replay.
pub trait Transcriber: Send + Sync {
    fn transcribe(&self, samples: &[f32], initial_prompt: &str) -> Result<Transcript, SttFailure>;
}

impl Transcriber for engine::SttEngine {
    fn transcribe(&self, samples: &[f32], initial_prompt: &str) -> Result<Transcript, SttFailure> {
        match engine::SttEngine::transcribe(self, samples, initial_prompt) {
            Ok(out) => Ok(out.transcript),
            Err(engine::SttError::Busy) => Err(SttFailure::Overloaded),
            Err(e) => Err(SttFailure::Failed(e.to_string())),
        }
    }
}

pub mod model;
