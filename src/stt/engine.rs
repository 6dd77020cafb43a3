//! Whisper through whisper-rs: one shared model, a bounded pool of decoder states.
//!
//! A state holds ~190 MB of buffers, so states are created lazily up to `max_states` and then
//! reused; creating one per utterance would churn memory and add latency to every turn.

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde::Deserialize;
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

use super::Transcript;
use super::model::{self, ModelError, ModelInfo};

#[derive(Debug, thiserror::Error)]
pub enum SttError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("whisper could not load {path}: {message}")]
    Load { path: String, message: String },
    #[error("every speech-to-text state is busy")]
    Busy,
    #[error("whisper failed: {0}")]
    Whisper(String),
}

/// How much of Whisper's 30 s encoder window to run.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum AudioCtx {
    /// The full 30 s window the model was trained on (slowest, most faithful).
    Full,
    /// A window fitted to the utterance: 50 positions per second of audio, plus `margin`,
    /// at least `min`. Much faster on short IVR turns; gated by word error rate on fixtures.
    Fit { min: i32, margin: i32 },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SttConfig {
    /// Threads per transcription.
    pub threads: usize,
    /// Transcriptions that may run at once (each holds a decoder state).
    pub max_states: usize,
    pub audio_ctx: AudioCtx,
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl Default for SttConfig {
    /// For the server: one thread per transcription and one state per core. ggml's worker
    /// threads spin at every barrier, so two 2-thread jobs on 2 cores (or one next to a busy
    /// neighbour) slow each other down many times over; single-threaded jobs never wait on a
    /// descheduled partner. Measured with the Twilio simulator at 4 concurrent calls on 2 cores
    /// with other load on the machine: 2 threads × 2 states made transcriptions take 5–11 s and
    /// callers failed open to a person.
    fn default() -> Self {
        SttConfig {
            threads: 1,
            max_states: cores().clamp(1, 8),
            audio_ctx: AudioCtx::Full,
        }
    }
}

impl SttConfig {
    /// For one transcription at a time (replay, evaluation): all cores on each utterance.
    pub fn sequential() -> Self {
        SttConfig {
            threads: cores().min(8),
            max_states: 1,
            ..SttConfig::default()
        }
    }
}

/// A transcription and what it cost.
#[derive(Debug, Clone)]
pub struct SttOutput {
    pub transcript: Transcript,
    pub elapsed_ms: u64,
}

pub struct SttEngine {
    ctx: WhisperContext,
    idle: Mutex<Vec<WhisperState>>,
    created: Mutex<usize>,
    cfg: SttConfig,
    info: ModelInfo,
}

/// Whisper pads everything to 30 s anyway; very short clips decode better with a little
/// silence around them than cut tight.
const MIN_SAMPLES: usize = 16_000;

impl SttEngine {
    /// Loads a ggml model after checking its header, so a file that would abort the process
    /// inside whisper.cpp is refused with an error instead.
    pub fn load(path: &Path, cfg: SttConfig) -> Result<SttEngine, SttError> {
        let info = model::validate_ggml(path)?;
        whisper_rs::install_logging_hooks();
        let params = WhisperContextParameters::default();
        let ctx = WhisperContext::new_with_params(path, params).map_err(|e| SttError::Load {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let engine = SttEngine {
            ctx,
            idle: Mutex::new(Vec::new()),
            created: Mutex::new(0),
            cfg,
            info,
        };
        // One warm state up front: the first caller should not pay for allocating it.
        let state = engine.new_state()?;
        engine
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(state);
        Ok(engine)
    }

    pub fn config(&self) -> &SttConfig {
        &self.cfg
    }

    pub fn model_info(&self) -> &ModelInfo {
        &self.info
    }

    fn new_state(&self) -> Result<WhisperState, SttError> {
        let mut created = self.created.lock().unwrap_or_else(|e| e.into_inner());
        if *created >= self.cfg.max_states {
            return Err(SttError::Busy);
        }
        let state = self
            .ctx
            .create_state()
            .map_err(|e| SttError::Whisper(e.to_string()))?;
        *created += 1;
        Ok(state)
    }

    fn checkout(&self) -> Result<WhisperState, SttError> {
        if let Some(s) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(s);
        }
        self.new_state()
    }

    fn checkin(&self, state: WhisperState) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(state);
    }

    /// Transcribes 16 kHz mono samples. Blocking (run it on a blocking thread); fails with
    /// [`SttError::Busy`] instead of waiting when every state is in use.
    pub fn transcribe(&self, samples: &[f32], initial_prompt: &str) -> Result<SttOutput, SttError> {
        let started = Instant::now();
        let mut state = self.checkout()?;
        let result = self.run(&mut state, samples, initial_prompt);
        self.checkin(state);
        let transcript = result?;
        Ok(SttOutput {
            transcript,
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
    }

    fn run(
        &self,
        state: &mut WhisperState,
        samples: &[f32],
        prompt: &str,
    ) -> Result<Transcript, SttError> {
        let mut padded;
        let audio = if samples.len() < MIN_SAMPLES {
            padded = samples.to_vec();
            padded.resize(MIN_SAMPLES, 0.0);
            &padded[..]
        } else {
            samples
        };
        let mut p = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        p.set_n_threads(self.cfg.threads as i32);
        p.set_language(Some("en"));
        p.set_translate(false);
        p.set_no_timestamps(true);
        p.set_single_segment(true);
        p.set_no_context(true);
        p.set_temperature_inc(0.0);
        p.set_print_progress(false);
        p.set_print_realtime(false);
        p.set_print_special(false);
        p.set_print_timestamps(false);
        if !prompt.is_empty() {
            p.set_initial_prompt(prompt);
        }
        if let AudioCtx::Fit { min, margin } = self.cfg.audio_ctx {
            let secs = audio.len() as f32 / 16_000.0;
            let ctx = ((secs * 50.0) as i32 + margin).clamp(min, self.info.n_audio_ctx);
            p.set_audio_ctx(ctx);
        }
        state
            .full(p, audio)
            .map_err(|e| SttError::Whisper(e.to_string()))?;

        let eot = self.ctx.token_eot();
        let mut text = String::new();
        let (mut prob_sum, mut n) = (0.0f32, 0u32);
        for segment in state.as_iter() {
            text.push_str(
                &segment
                    .to_str_lossy()
                    .map_err(|e| SttError::Whisper(e.to_string()))?,
            );
            for i in 0..segment.n_tokens() {
                if let Some(tok) = segment.get_token(i) {
                    // Special tokens (timestamps, start/end markers) say nothing about the words.
                    if tok.token_id() < eot {
                        prob_sum += tok.token_probability();
                        n += 1;
                    }
                }
            }
        }
        let confidence = if n == 0 { 0.0 } else { prob_sum / n as f32 };
        Ok(Transcript {
            text: text.trim().to_string(),
            confidence,
        })
    }
}
