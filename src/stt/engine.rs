//! Whisper through whisper-rs: one shared model, a bounded pool of decoder states.
//!
//! A state holds ~190 MB of buffers, so states are created lazily up to `max_states` and then
//! reused; creating one per utterance would churn memory and add latency to every turn.

use std::ffi::{c_int, c_void};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use serde::Deserialize;
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
    WhisperSysContext, WhisperSysState, WhisperTokenData, WhisperTokenId,
};

use super::constrained::{Constraint, Grammar, PathScore};
use super::model::{self, ModelError, ModelInfo};
use super::{SttMode, Transcript};

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
    #[error("the transcription was called off")]
    Cancelled,
}

/// How one transcription runs: on how many threads, and what may call it off midway.
#[derive(Clone, Copy)]
pub struct RunOpts<'a> {
    pub threads: usize,
    /// Asked after each graph whisper.cpp computes (the encoder's, then one per decoded
    /// token); `true` stops the transcription with [`SttError::Cancelled`]. Speculative work
    /// yields to waiting callers. The encoder itself runs to its end once started.
    pub cancel: Option<&'a (dyn Fn() -> bool + Sync)>,
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

/// The default encoder window, chosen with `bench/stt_vs_faster_whisper.sh` over all 68 spoken
/// fixture turns (72 utterances, 260 s; q8_0 model, 2 threads) and gated by `warmline replay`.
///
/// The encoder is most of Whisper's cost and runs over the whole window whatever the audio
/// length, so a 9 s window (448 positions; utterances longer than ~7.7 s get their length plus
/// 1.3 s) makes a transcription ~4.5× faster than the 30 s one (median 0.17 s against 0.77 s
/// per utterance). Shorter windows make Whisper repeat itself — the [`LoopGuard`] cuts those
/// loops — and turn digits and phrasing fragile:
///
/// | window, prompt | WER | replay |
/// |---|---|---|
/// | full 30 s, vocabulary prompt (the old default) | 5.10 % | 55/55 |
/// | full 30 s, no prompt | 4.84 % | 55/55 |
/// | **448 + 64, no prompt** | **4.97 %** | **55/55** |
/// | 512 + 64, no prompt | 5.10 % | 55/55 |
/// | 384 + 64, no prompt | 6.02 % | 54/55 ("refund on my account" misheard) |
/// | 448 + 64, vocabulary prompt | 5.37 % | 53/55 ("double eight" lost, a sentence merged) |
/// | 384 + 64, vocabulary prompt | 5.10 % | 52/55 |
///
/// With a shortened window the dialplan's vocabulary prompt (a bare comma-separated word list)
/// pulls Whisper towards terse, unpunctuated output that drops "double" before a digit and
/// merges sentences, so the default leaves it out (`use_prompt: false`). On 34 longer clips
/// (two turns joined, 4–12 s) the default scores 6.9 % WER against 8.3 % for the full window.
pub const DEFAULT_AUDIO_CTX: AudioCtx = AudioCtx::Fit {
    min: 448,
    margin: 64,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SttConfig {
    /// Threads per transcription.
    pub threads: usize,
    /// Transcriptions that may run at once (each holds a decoder state).
    pub max_states: usize,
    pub audio_ctx: AudioCtx,
    /// Give Whisper the dialplan's vocabulary as its initial prompt.
    pub use_prompt: bool,
    /// ggml's fused attention kernels for the encoder and decoder.
    pub flash_attn: bool,
    /// Threads for a transcription that starts while every decoder state is free and nothing
    /// waits: it takes all the states (so nothing runs beside it to fight its spinning
    /// threads) and finishes in about half the time. 0 or 1: always `threads`.
    pub solo_threads: usize,
    /// How a turn with a number in it is heard again before it is taken. `careful` (beam
    /// search) is not the default: whisper.cpp's beam search draws its candidates at random
    /// (from fixed seeds), so a hair's difference in the audio or the arithmetic changes what it
    /// writes, and a recorded call's replay did not always hear the number as the live call had.
    pub number_pass: crate::stt::NumberPass,
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
    ///
    /// Encoder window and prompt: see [`DEFAULT_AUDIO_CTX`].
    fn default() -> Self {
        SttConfig {
            threads: 1,
            max_states: cores().clamp(1, 8),
            audio_ctx: DEFAULT_AUDIO_CTX,
            use_prompt: false,
            flash_attn: false,
            solo_threads: cores().clamp(1, 8),
            number_pass: crate::stt::NumberPass::default(),
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
    loop_vocab: LoopVocab,
    /// Bytes of every text token, by id: what a constrained pass matches its grammar against.
    token_texts: Vec<Vec<u8>>,
}

/// Whisper pads everything to 30 s anyway; very short clips decode better with a little
/// silence around them than cut tight.
const MIN_SAMPLES: usize = 16_000;

/// Backstop for a runaway decode the loop guard does not recognise: at most this many tokens
/// per second of audio, plus [`MAX_TOKENS_BASE`]. Telephone speech runs at 3–5 tokens/s.
const MAX_TOKENS_PER_S: f32 = 12.0;
const MAX_TOKENS_BASE: i32 = 16;

/// Whisper's decoder can fall into a loop, transcribing the same clause again and again until it
/// runs out of tokens: rarely over the full 30 s window, often over a shortened one (on the
/// fixture turns, 9 of 72 utterances with a 384-position window, 23 with 50/s + 128). A loop is
/// recognised when the last `LOOP_RUN` text tokens repeat an earlier run…
const LOOP_RUN: usize = 6;
/// …holding at least this many different tokens with letters in them, so that a caller saying
/// "agent, agent, agent" or reading digits twice ("3, 9, 4, 3, 9, 4") is not cut short.
const LOOP_MIN_WORDS: usize = 3;
/// A word or two ("Please.") repeated this many times in a row is a loop as well; seen on
/// 8–12 s utterances with a fitted window.
const STUTTER_COPIES: usize = 6;
const STUTTER_MAX_PERIOD: usize = 2;
/// A slow digit-by-digit reading makes tiny.en repeat a group of digits until the token limit
/// ("…is 3, 0, 1, 0, 1, 5, 0, 1, 5, 0, 1, 5, …"; 9 of the 72 digit-recall clips heard whole,
/// each decoded to the token limit).
/// A group of up to this many tokens (digits and the marks between them)…
const DIGIT_LOOP_MAX_PERIOD: usize = 8;
/// …said this many times in a row…
const DIGIT_LOOP_COPIES: usize = 4;
/// …and making at least this many digits together is a loop. A caller reading a number says a
/// digit twice or three times ("double 7", "triple 4") or a pair twice ("3 9 3 9"), not 8 times.
const DIGIT_LOOP_DIGITS: usize = 8;

impl SttEngine {
    /// Loads a ggml model after checking its header, so a file that would abort the process
    /// inside whisper.cpp is refused with an error instead.
    pub fn load(path: &Path, cfg: SttConfig) -> Result<SttEngine, SttError> {
        let info = model::validate_ggml(path)?;
        whisper_rs::install_logging_hooks();
        let mut params = WhisperContextParameters::default();
        params.flash_attn(cfg.flash_attn);
        let ctx = WhisperContext::new_with_params(path, params).map_err(|e| SttError::Load {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let loop_vocab = LoopVocab::new(&ctx);
        let token_texts = (0..ctx.token_eot())
            .map(|id| ctx.token_to_bytes(id).unwrap_or_default().to_vec())
            .collect();
        let engine = SttEngine {
            ctx,
            idle: Mutex::new(Vec::new()),
            created: Mutex::new(0),
            cfg,
            info,
            loop_vocab,
            token_texts,
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
        let opts = RunOpts {
            threads: self.cfg.threads,
            cancel: None,
        };
        self.transcribe_with(samples, initial_prompt, opts)
    }

    /// [`Self::transcribe`] with this run's threads and a way to call it off.
    pub fn transcribe_with(
        &self,
        samples: &[f32],
        initial_prompt: &str,
        opts: RunOpts<'_>,
    ) -> Result<SttOutput, SttError> {
        self.transcribe_free(samples, initial_prompt, SttMode::Free, opts)
    }

    /// A free decode (no grammar) in a mode without one: greedy, greedy with the number
    /// pass's own prompt in place of `initial_prompt`, or by beam search.
    fn transcribe_free(
        &self,
        samples: &[f32],
        initial_prompt: &str,
        mode: SttMode,
        opts: RunOpts<'_>,
    ) -> Result<SttOutput, SttError> {
        let initial_prompt = match mode {
            SttMode::Numbers => super::NUMBER_PASS_PROMPT,
            _ => initial_prompt,
        };
        let search = Search::of(mode);
        let started = Instant::now();
        let mut state = self.checkout()?;
        let mut opts = opts;
        if search == Search::Beam {
            state = self.renewed(state)?;
            opts.threads = CAREFUL_THREADS;
        }
        let result = self.run(&mut state, samples, initial_prompt, search, opts);
        self.checkin(state);
        let transcript = result?;
        Ok(SttOutput {
            transcript,
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// A new state in place of `old`. whisper.cpp's beam search draws each step's candidates
    /// from the token distribution with a per-decoder random generator, and the first
    /// decoder's is seeded only when its state is made: on a reused state the same audio
    /// decoded twice can come out differently (measured: "1429." then "1-4-2-9-0."), and a
    /// replayed call would not hear what the live one did. A fresh state starts every beam
    /// search from the same seeds.
    fn renewed(&self, old: WhisperState) -> Result<WhisperState, SttError> {
        drop(old);
        self.ctx.create_state().map_err(|e| {
            // The pool is one state short now; `new_state` may make it again later.
            let mut created = self.created.lock().unwrap_or_else(|e| e.into_inner());
            *created = created.saturating_sub(1);
            SttError::Whisper(e.to_string())
        })
    }

    /// Transcribes in a [`SttMode`]: a free pass as [`Self::transcribe`] (by beam search for
    /// [`SttMode::Careful`]), or a pass held to a grammar whose confidence is
    /// [`PathScore::confidence`] of the forced path.
    pub fn transcribe_as(
        &self,
        samples: &[f32],
        initial_prompt: &str,
        mode: SttMode,
        opts: RunOpts<'_>,
    ) -> Result<SttOutput, SttError> {
        let Some(grammar) = Grammar::for_mode(mode) else {
            return self.transcribe_free(samples, initial_prompt, mode, opts);
        };
        let started = Instant::now();
        let mut state = self.checkout()?;
        let result =
            self.run_constrained(&mut state, samples, initial_prompt, grammar, opts.threads);
        self.checkin(state);
        let (transcript, score) = result?;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        tracing::debug!(?mode, text = %transcript.text, ?score, elapsed_ms, "constrained pass");
        Ok(SttOutput {
            transcript,
            elapsed_ms,
        })
    }

    /// As [`Self::transcribe_as`], with the forced path's full score (for measurement).
    pub fn transcribe_scored(
        &self,
        samples: &[f32],
        initial_prompt: &str,
        mode: SttMode,
    ) -> Result<(Transcript, Option<PathScore>), SttError> {
        let Some(grammar) = Grammar::for_mode(mode) else {
            let opts = RunOpts {
                threads: self.cfg.threads,
                cancel: None,
            };
            let out = self.transcribe_free(samples, initial_prompt, mode, opts)?;
            return Ok((out.transcript, None));
        };
        let mut state = self.checkout()?;
        let result = self.run_constrained(
            &mut state,
            samples,
            initial_prompt,
            grammar,
            self.cfg.threads,
        );
        self.checkin(state);
        result.map(|(t, s)| (t, Some(s)))
    }

    fn run_constrained(
        &self,
        state: &mut WhisperState,
        samples: &[f32],
        prompt: &str,
        grammar: Grammar,
        threads: usize,
    ) -> Result<(Transcript, PathScore), SttError> {
        let audio = at_least_min(samples);
        let audio = &audio[..];
        let constraint = Constraint {
            grammar,
            eot: self.ctx.token_eot(),
            n_vocab: self.ctx.n_vocab() as usize,
            texts: &self.token_texts,
            candidates: (0..self.token_texts.len())
                .filter(|&id| grammar.may_use(&self.token_texts[id]))
                .map(|id| id as WhisperTokenId)
                .collect(),
            steps: Mutex::new(Vec::new()),
        };
        let mut p = self.params(
            audio.len() as f32 / 16_000.0,
            prompt,
            threads,
            Search::Greedy,
        );
        if let Grammar::OneWordOf(_) = grammar {
            // One word and a mark: a handful of tokens.
            p.set_max_tokens(8);
        }
        // SAFETY: whisper.cpp calls the filter only from inside `state.full` below, while
        // `constraint` is alive and not moved; the filter only reads it (steps behind a mutex).
        unsafe {
            p.set_filter_logits_callback(Some(constrain));
            p.set_filter_logits_callback_user_data(&constraint as *const Constraint as *mut c_void);
        }
        let running = Running::start();
        state
            .full(p, audio)
            .map_err(|e| SttError::Whisper(e.to_string()))?;
        drop(running);
        let mut bytes = Vec::new();
        for segment in state.as_iter() {
            for i in 0..segment.n_tokens() {
                if let Some(tok) = segment.get_token(i)
                    && tok.token_id() < constraint.eot
                {
                    bytes.extend_from_slice(
                        tok.to_bytes()
                            .map_err(|e| SttError::Whisper(e.to_string()))?,
                    );
                }
            }
        }
        let steps = constraint
            .steps
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        let score = PathScore::of(&steps);
        let text = String::from_utf8_lossy(&bytes).trim().to_string();
        // A forced path that never became an allowed text (the token limit hit first) is no
        // evidence at all.
        let confidence = if grammar.complete(text.as_bytes()) {
            score.confidence()
        } else {
            0.0
        };
        Ok((Transcript { text, confidence }, score))
    }

    fn run(
        &self,
        state: &mut WhisperState,
        samples: &[f32],
        prompt: &str,
        search: Search,
        opts: RunOpts<'_>,
    ) -> Result<Transcript, SttError> {
        let audio = at_least_min(samples);
        let audio = &audio[..];
        let guard = LoopGuard {
            eot: self.ctx.token_eot(),
            n_vocab: self.ctx.n_vocab() as usize,
            vocab: &self.loop_vocab,
        };
        let mut p = self.params(audio.len() as f32 / 16_000.0, prompt, opts.threads, search);
        // SAFETY: whisper.cpp calls the filter only from inside `state.full` below, while
        // `guard` is alive and not moved; the filter only reads it. With a beam search it is
        // called once per beam with that beam's own tokens and logits (each beam's loop is
        // cut on its own), from several threads at once: reading is all the guard allows.
        unsafe {
            p.set_filter_logits_callback(Some(end_loops));
            p.set_filter_logits_callback_user_data(&guard as *const LoopGuard as *mut c_void);
        }
        let call_off_hook = opts.cancel.map(|cancel| CallOff {
            cancel,
            fired: AtomicBool::new(false),
        });
        if let Some(hook) = &call_off_hook {
            // SAFETY: as above: `hook` lives on this stack frame until after `full`, the only
            // place whisper.cpp calls it from, and is not moved meanwhile.
            unsafe {
                p.set_abort_callback(Some(call_off));
                p.set_abort_callback_user_data(hook as *const CallOff as *mut c_void);
            }
        }
        let running = Running::start();
        let ran = state.full(p, audio);
        drop(running);
        if call_off_hook.is_some_and(|h| h.fired.load(Ordering::Relaxed)) {
            return Err(SttError::Cancelled);
        }
        ran.map_err(|e| SttError::Whisper(e.to_string()))?;
        self.read_transcript(state, &guard)
    }

    /// One pass (greedy unless told otherwise), English, no timestamps, no context from
    /// earlier turns.
    fn params<'a>(
        &self,
        secs: f32,
        prompt: &'a str,
        threads: usize,
        search: Search,
    ) -> FullParams<'a, 'a> {
        let mut p = FullParams::new(match search {
            Search::Greedy => SamplingStrategy::Greedy { best_of: 1 },
            // whisper.cpp does not implement patience; -1 is its "unset".
            Search::Beam => SamplingStrategy::BeamSearch {
                beam_size: CAREFUL_BEAM,
                patience: -1.0,
            },
        });
        p.set_n_threads(threads.max(1) as i32);
        p.set_language(Some("en"));
        p.set_translate(false);
        p.set_no_timestamps(true);
        p.set_single_segment(true);
        p.set_no_context(true);
        p.set_temperature_inc(0.0);
        p.set_max_tokens(MAX_TOKENS_BASE + (secs * MAX_TOKENS_PER_S) as i32);
        p.set_print_progress(false);
        p.set_print_realtime(false);
        p.set_print_special(false);
        p.set_print_timestamps(false);
        let own_prompt = prompt == super::SHORT_PASS_PROMPT || prompt == super::NUMBER_PASS_PROMPT;
        if (self.cfg.use_prompt || own_prompt) && !prompt.is_empty() {
            p.set_initial_prompt(prompt);
        }
        if let AudioCtx::Fit { min, margin } = self.cfg.audio_ctx {
            let ctx = ((secs * 50.0) as i32 + margin).clamp(min, self.info.n_audio_ctx);
            p.set_audio_ctx(ctx);
        }
        p
    }

    /// The text tokens up to any repetition loop, and their mean probability as confidence.
    fn read_transcript(
        &self,
        state: &WhisperState,
        guard: &LoopGuard,
    ) -> Result<Transcript, SttError> {
        let whisper_err = |e: whisper_rs::WhisperError| SttError::Whisper(e.to_string());
        let (mut ids, mut bytes, mut probs) = (Vec::new(), Vec::new(), Vec::new());
        for segment in state.as_iter() {
            for i in 0..segment.n_tokens() {
                let Some(tok) = segment.get_token(i) else {
                    continue;
                };
                // Special tokens (timestamps, start/end markers) are neither text nor evidence.
                if tok.token_id() < guard.eot {
                    ids.push(tok.token_id());
                    bytes.push(tok.to_bytes().map_err(whisper_err)?.to_vec());
                    probs.push(tok.token_probability());
                }
            }
        }
        let keep = guard
            .loop_start(&guard.vocab.keys(&ids))
            .unwrap_or(ids.len());
        if keep < ids.len() {
            tracing::debug!(kept = keep, decoded = ids.len(), "cut a repetition loop");
        }
        let text = String::from_utf8_lossy(&bytes[..keep].concat()).into_owned();
        let confidence = if keep == 0 {
            0.0
        } else {
            probs[..keep].iter().sum::<f32>() / keep as f32
        };
        Ok(Transcript {
            text: text.trim().trim_end_matches(',').to_string(),
            confidence,
        })
    }
}

/// The vocabulary as the loop guard compares it. A loop's copies often differ from the first
/// one in case, leading space or punctuation ("…on Saturday? What time…" after "what time…"),
/// so tokens that differ only in those compare equal.
struct LoopVocab {
    /// Per text token id: the id of the first token with the same lowercase, space-trimmed
    /// text, or [`PUNCTUATION`] for tokens of punctuation alone.
    key: Vec<u32>,
    /// Per text token id: whether it holds a letter (as opposed to digits or punctuation).
    /// Looked up by key, which is itself an id of a token with the same letters.
    wordy: Vec<bool>,
    /// Per text token id: how many ASCII digits it holds. Looked up by key, like `wordy`.
    digits: Vec<u8>,
}

/// The one key every punctuation-only token shares.
const PUNCTUATION: u32 = u32::MAX;

impl LoopVocab {
    fn new(ctx: &WhisperContext) -> LoopVocab {
        let texts = (0..ctx.token_eot()).map(|id| ctx.token_to_bytes(id).unwrap_or_default());
        LoopVocab::from_texts(texts)
    }

    fn from_texts<'t>(texts: impl Iterator<Item = &'t [u8]>) -> LoopVocab {
        let mut first = std::collections::HashMap::new();
        let (mut key, mut wordy, mut digits) = (Vec::new(), Vec::new(), Vec::new());
        for (id, text) in texts.enumerate() {
            let norm: Vec<u8> = text.trim_ascii().to_ascii_lowercase();
            let k = if !norm.is_empty() && norm.iter().all(u8::is_ascii_punctuation) {
                PUNCTUATION
            } else {
                *first.entry(norm).or_insert(id as u32)
            };
            key.push(k);
            wordy.push(text.iter().any(u8::is_ascii_alphabetic));
            digits.push(text.iter().filter(|b| b.is_ascii_digit()).count() as u8);
        }
        LoopVocab { key, wordy, digits }
    }

    /// Keys of text token ids (ids beyond the table keep their own value).
    fn keys(&self, ids: &[WhisperTokenId]) -> Vec<u32> {
        ids.iter()
            .map(|&id| self.key.get(id as usize).copied().unwrap_or(id as u32))
            .collect()
    }

    fn is_word(&self, key: u32) -> bool {
        self.wordy.get(key as usize).copied().unwrap_or(false)
    }

    fn digits(&self, key: u32) -> usize {
        self.digits.get(key as usize).copied().unwrap_or(0).into()
    }
}

/// Recognises a decoder stuck repeating itself (see [`LOOP_RUN`]).
struct LoopGuard<'a> {
    eot: WhisperTokenId,
    n_vocab: usize,
    vocab: &'a LoopVocab,
}

impl LoopGuard<'_> {
    /// If the text tokens (as [`LoopVocab`] keys) end in a loop, where its repeat starts.
    fn repeat_at(&self, keys: &[u32]) -> Option<usize> {
        self.repeated_run(keys)
            .or_else(|| self.stutter(keys))
            .or_else(|| self.digit_loop(keys))
    }

    /// The last [`LOOP_RUN`] tokens already occurred: a clause said again.
    fn repeated_run(&self, keys: &[u32]) -> Option<usize> {
        let tail_at = keys.len().checked_sub(LOOP_RUN)?;
        let tail = &keys[tail_at..];
        let seen = keys[..keys.len() - 1].windows(LOOP_RUN).any(|w| w == tail);
        (seen && self.distinct_words(tail) >= LOOP_MIN_WORDS).then_some(tail_at)
    }

    /// The same word or two, [`STUTTER_COPIES`] times in a row ("Please. Please. Please. …"):
    /// too short for [`Self::repeated_run`], too many times for a caller. The first copy stays.
    fn stutter(&self, keys: &[u32]) -> Option<usize> {
        (1..=STUTTER_MAX_PERIOD).find_map(|period| {
            let start = keys.len().checked_sub(period * STUTTER_COPIES)?;
            let run = &keys[start..];
            let periodic = run.iter().zip(&run[period..]).all(|(a, b)| a == b);
            (periodic && self.distinct_words(&run[..period]) > 0).then_some(start + period)
        })
    }

    /// A group of digits repeated [`DIGIT_LOOP_COPIES`] times or more in a row, making
    /// [`DIGIT_LOOP_DIGITS`] digits or more: the number as far as its first copy stays.
    fn digit_loop(&self, keys: &[u32]) -> Option<usize> {
        (1..=DIGIT_LOOP_MAX_PERIOD).find_map(|period| {
            let group = &keys[keys.len().checked_sub(period)?..];
            let per_copy: usize = group.iter().map(|&k| self.vocab.digits(k)).sum();
            if per_copy == 0 || group.iter().any(|&k| self.vocab.is_word(k)) {
                return None;
            }
            let copies = DIGIT_LOOP_COPIES.max(DIGIT_LOOP_DIGITS.div_ceil(per_copy));
            let start = keys.len().checked_sub(period * copies)?;
            let run = &keys[start..];
            let periodic = run.iter().zip(&run[period..]).all(|(a, b)| a == b);
            periodic.then_some(start + period)
        })
    }

    fn distinct_words(&self, keys: &[u32]) -> usize {
        let mut words: Vec<u32> = keys
            .iter()
            .copied()
            .filter(|&k| self.vocab.is_word(k))
            .collect();
        words.sort_unstable();
        words.dedup();
        words.len()
    }

    /// Where the first loop starts: the text before it is the transcript.
    fn loop_start(&self, keys: &[u32]) -> Option<usize> {
        (1..=keys.len()).find_map(|end| self.repeat_at(&keys[..end]))
    }
}

/// Whisper runs under way in this process, whoever started them.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// How many Whisper runs are under way in this process right now: a run that would spread
/// over every core must not start beside one, even one this process's decoder-state
/// accounting does not see (a second in-process server, a replay, a test next door).
pub fn runs_under_way() -> usize {
    RUNNING.load(Ordering::SeqCst)
}

/// Counts one run in [`RUNNING`] until dropped.
struct Running;

impl Running {
    fn start() -> Running {
        RUNNING.fetch_add(1, Ordering::SeqCst);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A run's cancel check, and whether it ever said stop (the condition may have passed by the
/// time `full` returns).
struct CallOff<'a> {
    cancel: &'a (dyn Fn() -> bool + Sync),
    fired: AtomicBool,
}

/// ggml's abort hook: whether the run's `cancel` says stop.
unsafe extern "C" fn call_off(user_data: *mut c_void) -> bool {
    if user_data.is_null() {
        return false;
    }
    // SAFETY: `user_data` is the `CallOff` that `SttEngine::run` keeps alive during `full`,
    // the only time whisper.cpp calls this.
    let hook = unsafe { &*(user_data as *const CallOff) };
    let stop = (hook.cancel)();
    if stop {
        hook.fired.store(true, Ordering::Relaxed);
    }
    stop
}

/// whisper.cpp's logits filter, called before each token is chosen: once the decoder is
/// repeating itself, only end-of-text is left to choose, so a loop costs a few tokens instead
/// of running to the token limit. [`LoopGuard::loop_start`] then cuts the repeat off the text.
unsafe extern "C" fn end_loops(
    _ctx: *mut WhisperSysContext,
    _state: *mut WhisperSysState,
    tokens: *const WhisperTokenData,
    n_tokens: c_int,
    logits: *mut f32,
    user_data: *mut c_void,
) {
    if tokens.is_null() || logits.is_null() || user_data.is_null() || n_tokens <= 0 {
        return;
    }
    // SAFETY: `user_data` is the `LoopGuard` that `SttEngine::run` keeps alive during `full`;
    // `tokens` holds the `n_tokens` decoded so far and `logits` one entry per vocabulary id,
    // both owned by whisper.cpp for the duration of this call.
    let (guard, tokens, logits) = unsafe {
        let guard = &*(user_data as *const LoopGuard);
        let tokens = std::slice::from_raw_parts(tokens, n_tokens as usize);
        let logits = std::slice::from_raw_parts_mut(logits, guard.n_vocab);
        (guard, tokens, logits)
    };
    let ids = text_ids(tokens, guard.eot);
    if guard.repeat_at(&guard.vocab.keys(&ids)).is_some() {
        for (id, logit) in logits.iter_mut().enumerate() {
            if id != guard.eot as usize {
                *logit = f32::NEG_INFINITY;
            }
        }
    }
}

/// whisper.cpp's logits filter for a constrained pass: see [`Constraint::filter`].
unsafe extern "C" fn constrain(
    _ctx: *mut WhisperSysContext,
    _state: *mut WhisperSysState,
    tokens: *const WhisperTokenData,
    n_tokens: c_int,
    logits: *mut f32,
    user_data: *mut c_void,
) {
    if logits.is_null() || user_data.is_null() || n_tokens < 0 {
        return;
    }
    // SAFETY: `user_data` is the `Constraint` that `SttEngine::run_constrained` keeps alive
    // during `full`; `tokens` holds the `n_tokens` decoded so far and `logits` one entry per
    // vocabulary id, both owned by whisper.cpp for the duration of this call.
    let (constraint, tokens, logits) = unsafe {
        let constraint = &*(user_data as *const Constraint);
        let tokens = if tokens.is_null() || n_tokens == 0 {
            &[][..]
        } else {
            std::slice::from_raw_parts(tokens, n_tokens as usize)
        };
        let logits = std::slice::from_raw_parts_mut(logits, constraint.n_vocab);
        (constraint, tokens, logits)
    };
    let ids = text_ids(tokens, constraint.eot);
    constraint.filter(&ids, logits);
}

/// The text tokens decoded so far (the ids below end-of-text; timestamps and specials are not
/// words), as both logits filters judge them.
fn text_ids(tokens: &[WhisperTokenData], eot: WhisperTokenId) -> Vec<WhisperTokenId> {
    tokens.iter().map(|t| t.id).filter(|&id| id < eot).collect()
}

/// How a free decode picks its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Search {
    /// The likeliest token at each step: one decoder, the cheapest.
    Greedy,
    /// [`CAREFUL_BEAM`] candidate texts kept at each step, the likeliest whole one taken.
    Beam,
}

impl Search {
    fn of(mode: SttMode) -> Search {
        match mode {
            SttMode::Careful => Search::Beam,
            _ => Search::Greedy,
        }
    }
}

/// Paths a [`SttMode::Careful`] beam search keeps: whisper.cpp's and OpenAI's default. The
/// probe behind the mode used 5; the encoder (most of a short utterance's cost) runs once
/// whatever the width, the decoder once per path.
pub const CAREFUL_BEAM: i32 = 5;

/// Threads of a [`SttMode::Careful`] pass, whatever the caller offers: the beam search draws
/// its candidates from the token probabilities, and ggml's sums come out a hair different on
/// another thread count, enough to change a draw ("charge" on one thread, "chart" on two).
/// One fixed count makes a live call and its replay hear a number the same way; one thread
/// is what a spare decoder state has under load anyway.
pub const CAREFUL_THREADS: usize = 1;

/// Whisper refuses audio shorter than [`MIN_SAMPLES`]; a short utterance is padded with silence.
fn at_least_min(samples: &[f32]) -> std::borrow::Cow<'_, [f32]> {
    if samples.len() >= MIN_SAMPLES {
        return std::borrow::Cow::Borrowed(samples);
    }
    let mut padded = samples.to_vec();
    padded.resize(MIN_SAMPLES, 0.0);
    std::borrow::Cow::Owned(padded)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy vocabulary: words, their capitalised twins, digits, punctuation.
    const TEXTS: [&str; 12] = [
        " what", " time", " do", " you", " open", " agent", " What", "What", " 3", " 9", "?", ".",
    ];

    fn vocab() -> LoopVocab {
        LoopVocab::from_texts(TEXTS.iter().map(|t| t.as_bytes()))
    }

    fn ids(words: &str) -> Vec<WhisperTokenId> {
        let mut out = Vec::new();
        for w in words.split('|') {
            let id = TEXTS.iter().position(|t| *t == w).expect("toy token");
            out.push(id as WhisperTokenId);
        }
        out
    }

    fn loop_start(v: &LoopVocab, text: &str) -> Option<usize> {
        let guard = LoopGuard {
            eot: TEXTS.len() as WhisperTokenId,
            n_vocab: TEXTS.len() + 1,
            vocab: v,
        };
        guard.loop_start(&v.keys(&ids(text)))
    }

    #[test]
    fn case_space_and_punctuation_do_not_hide_a_loop() {
        let v = vocab();
        assert_eq!(v.keys(&ids(" What|What| what")), vec![0, 0, 0]);
        assert_eq!(v.keys(&ids("?|.")), vec![PUNCTUATION, PUNCTUATION]);
        // "what time do you open? What time do you open."
        let text = " what| time| do| you| open|?| What| time| do| you| open|.";
        assert_eq!(loop_start(&v, text), Some(6));
    }

    #[test]
    fn repeated_words_or_digits_are_speech_not_a_loop() {
        let v = vocab();
        let agent = " agent|.| agent|.| agent|.| agent|.| agent|.";
        assert_eq!(loop_start(&v, agent), None);
        let digits = " 3|.| 9|.| 3|.| 9|.| 3|.| 9|.";
        assert_eq!(loop_start(&v, digits), None);
        assert_eq!(loop_start(&v, " what| time| do| you| open|?"), None);
    }

    #[test]
    fn a_word_said_over_and_over_is_a_loop() {
        let v = vocab();
        let five = " agent|.| agent|.| agent|.| agent|.| agent|.";
        assert_eq!(loop_start(&v, five), None);
        let many = " what| time| agent|.| agent|.| agent|.| agent|.| agent|.| agent|.| agent|.";
        assert_eq!(loop_start(&v, many), Some(4));
    }

    #[test]
    fn a_group_of_digits_said_over_and_over_is_a_loop() {
        let v = vocab();
        // Seven threes could still be a number read out; the eighth is a loop, and one stays.
        assert_eq!(loop_start(&v, " 3| 3| 3| 3| 3| 3| 3"), None);
        assert_eq!(loop_start(&v, " 3| 3| 3| 3| 3| 3| 3| 3"), Some(1));
        // "what time 9 3 9. 3 9. 3 9. 3 9. 3 9.": what follows the first "3 9." goes.
        let pairs = " what| time| 9| 3| 9|.| 3| 9|.| 3| 9|.| 3| 9|.| 3| 9|.";
        assert_eq!(loop_start(&v, pairs), Some(6));
        // A pair read three times is a number; words between the digits are not a loop.
        assert_eq!(loop_start(&v, " 3| 9|.| 3| 9|.| 3| 9|."), None);
        let spoken = " 3| what| 3| time| 3| what| 3| time| 3";
        assert_eq!(loop_start(&v, spoken), None);
    }
}
