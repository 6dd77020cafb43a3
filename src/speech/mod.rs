//! Sentences with numbers in them, said in the prompts' voice without a run-time TTS engine.
//!
//! The fixed prompts are rendered whole (`src/prompts.rs`); a sentence that carries a caller's
//! number cannot be. So short pieces of the same Piper voice — digits, numbers, queue names,
//! priorities, moods, fact labels, linking words — are rendered ahead of time
//! (`voice-prompts/fragments/`, `scripts/render_fragments.sh`) and joined here with short
//! gaps and tiny fades. Sans-IO: the files are read once at startup ([`Speech::load`]); after
//! that everything is a pure function of its input, with no clock.
//!
//! - [`plan`] turns what must be said (the spoken summary's text, a number to read back) into
//!   an [`Utterance`]: fragment ids and pauses;
//! - [`compose`] turns an utterance into 8 kHz PCM;
//! - [`library`] holds the fragments and refuses to start without one the planner needs.

pub mod compose;
pub mod library;
pub mod plan;

use std::path::Path;

pub use compose::{Audio, Pause, Piece, Utterance};
pub use library::{FragmentLibrary, SpeechError};

use crate::handoff::{self, SummaryInput};

/// The most digits [`Speech::readback`] reads: longer strings are not a number a caller said.
pub const MAX_READBACK_DIGITS: usize = 24;

/// The fragments, loaded and checked, and what can be said with them.
#[derive(Debug, Clone)]
pub struct Speech {
    lib: FragmentLibrary,
}

impl Speech {
    /// Loads `dir/fragments.toml` and its WAVs; fails if any fragment the planner may ask
    /// for is missing, so a gap shows at startup rather than in a call.
    pub fn load(dir: &Path) -> Result<Speech, SpeechError> {
        Ok(Speech {
            lib: FragmentLibrary::load(dir)?,
        })
    }

    pub fn from_library(lib: FragmentLibrary) -> Result<Speech, SpeechError> {
        lib.check_required()?;
        Ok(Speech { lib })
    }

    pub fn library(&self) -> &FragmentLibrary {
        &self.lib
    }

    /// Dialplan queues that have no `q_<name>` fragment: their calls are announced as
    /// "Incoming call" (worth a warning at startup).
    pub fn queues_without_fragment<'a>(
        &self,
        queues: impl IntoIterator<Item = &'a str>,
    ) -> Vec<String> {
        queues
            .into_iter()
            .filter(|q| plan::queue_fragment(&self.lib, q).is_none())
            .map(str::to_string)
            .collect()
    }

    pub fn compose(&self, u: &Utterance) -> Audio {
        compose::compose(&self.lib, u)
    }

    /// The agent's spoken summary as audio: the same sentence [`handoff::spoken_summary`]
    /// writes, said from fragments.
    pub fn spoken_summary_audio(&self, input: &SummaryInput) -> Audio {
        self.summary_text_audio(&handoff::spoken_summary(input))
    }

    /// A stored spoken summary (the card's `spoken_summary` text) as audio. Sentences the
    /// fragments cannot say (free text in a recovered card) are left out and the agent is
    /// pointed to the written card; an empty result says a caller is being connected.
    pub fn summary_text_audio(&self, text: &str) -> Audio {
        self.compose(&plan::summary(&self.lib, text).utterance)
    }

    /// "I have 3 8 2 6 1 — is that right?"
    pub fn readback(&self, digits: &str) -> Result<Audio, SpeechError> {
        Ok(self.compose(&plan::readback(digits)?))
    }

    /// "Sorry — please say the number again."
    pub fn ask_again(&self) -> Audio {
        self.compose(&Utterance::new().say("r_say_again"))
    }
}

#[cfg(test)]
mod tests;
