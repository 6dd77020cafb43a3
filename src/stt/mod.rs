//! Speech-to-text: the Whisper model (pull + CTranslate2→ggml conversion) and the engine.

pub mod constrained;
pub mod engine;

/// The initial prompt of the call engine's second pass over a short, unclear utterance: the
/// words callers say on their own, escape words first. Applied whatever `[stt] use_prompt`
/// says (that setting is about the dialplan's vocabulary on every utterance); Whisper hears a
/// lone "Agent." as "Hey, then." without it and as "Agent." with it.
pub const SHORT_PASS_PROMPT: &str = "Agent. Operator. Representative. Human. Person. Someone. \
    Yes. No. Thanks. Bye. Hours. Address. Billing. Order.";

/// The initial prompt of [`SttMode::Numbers`]: numbers read out digit by digit, with "double"
/// and "triple", which primes Whisper to write the digits it hears instead of near-miss words
/// ("free", "for", "3/8") and to keep "double". Heard as one turn, the digit-recall clips came
/// out 34/72 exact with this prompt, 30/72 with plain digits only, 21/72 without a prompt.
pub const NUMBER_PASS_PROMPT: &str =
    "My account number is 4 4 7 1 9. The order number is 5 1 double 8 0 triple 6.";

/// How a turn with a number in it is heard a second time before it is taken (`[stt]
/// number_pass`), see `Engine::number_pass`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NumberPass {
    /// Not at all: the first transcript stands.
    Off,
    /// Greedily with [`NUMBER_PASS_PROMPT`] ([`SttMode::Numbers`]).
    #[default]
    Prompted,
    /// By beam search ([`SttMode::Careful`]).
    Careful,
}

impl NumberPass {
    pub fn mode(self) -> Option<SttMode> {
        match self {
            NumberPass::Off => None,
            NumberPass::Prompted => Some(SttMode::Numbers),
            NumberPass::Careful => Some(SttMode::Careful),
        }
    }
}

/// How Whisper may decode an utterance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SttMode {
    /// Whatever the model hears.
    #[default]
    Free,
    /// Only one escape word ("Agent.", "Operator.", …): see [`constrained`]. The transcript's
    /// confidence is how close the forced path came to the model's own choices.
    EscapeWord,
    /// Only a digit string ("4 4 7 1 9", "four four seven"), scored the same way.
    Digits,
    /// Whatever the model hears, found by a beam search ([`engine::CAREFUL_BEAM`] paths kept)
    /// instead of one greedy path: tiny.en's first guess for a digit read out ("free", "for",
    /// "3/8") is often a near miss that another path gets right. whisper.cpp draws each
    /// step's candidates at random from fixed seeds, so a fresh decoder state and a fixed
    /// thread count ([`engine::CAREFUL_THREADS`]) make it repeatable. Costs more decoder work.
    Careful,
    /// Whatever the model hears, greedily, with [`NUMBER_PASS_PROMPT`] as the initial prompt
    /// (whatever the caller's prompt and `[stt] use_prompt` say).
    Numbers,
}

impl SttMode {
    /// A pass that refines a transcript the call already has: the call does without it, so
    /// the server runs it only on a spare decoder state and calls it off for a waiting caller.
    pub fn is_refinement(self) -> bool {
        matches!(self, SttMode::Careful | SttMode::Numbers)
    }
}

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

    /// A transcription in a given [`SttMode`]. Transcribers without a constrained decoder
    /// (scripted ones in tests) hear every mode as a free one.
    fn transcribe_as(
        &self,
        samples: &[f32],
        initial_prompt: &str,
        mode: SttMode,
    ) -> Result<Transcript, SttFailure> {
        let _ = mode;
        self.transcribe(samples, initial_prompt)
    }
}

impl Transcriber for engine::SttEngine {
    fn transcribe(&self, samples: &[f32], initial_prompt: &str) -> Result<Transcript, SttFailure> {
        failure_of(engine::SttEngine::transcribe(self, samples, initial_prompt))
    }

    fn transcribe_as(
        &self,
        samples: &[f32],
        initial_prompt: &str,
        mode: SttMode,
    ) -> Result<Transcript, SttFailure> {
        let opts = engine::RunOpts {
            threads: self.config().threads,
            cancel: None,
        };
        failure_of(engine::SttEngine::transcribe_as(
            self,
            samples,
            initial_prompt,
            mode,
            opts,
        ))
    }
}

/// The engine's outcome as a call sees it: busy is overload (a person, soon), anything else a
/// failure.
fn failure_of(r: Result<engine::SttOutput, engine::SttError>) -> Result<Transcript, SttFailure> {
    match r {
        Ok(out) => Ok(out.transcript),
        Err(engine::SttError::Busy) => Err(SttFailure::Overloaded),
        Err(e) => Err(SttFailure::Failed(e.to_string())),
    }
}

pub mod model;
