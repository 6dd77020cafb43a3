//! Loading what every command needs: the model (pulled on first run), prompts and dialplan.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use crate::call::Playbook;
use crate::config::Settings;
use crate::dialplan::Dialplan;
use crate::prompts::PromptLibrary;
use crate::speech::Speech;
use crate::stt::engine::SttEngine;
use crate::stt::model;

/// The model file to use: `WARMLINE_MODEL` / `model` when set, else the default model,
/// pulled and converted on first use.
pub fn model_path(settings: &Settings) -> Result<PathBuf> {
    if let Some(path) = &settings.model {
        if !path.exists() {
            bail!(
                "WARMLINE_MODEL points at {}, which does not exist",
                path.display()
            );
        }
        return Ok(path.clone());
    }
    let path = model::pull(&settings.models_dir).with_context(|| {
        format!(
            "pulling the default Whisper model into {}",
            settings.models_dir.display()
        )
    })?;
    Ok(path)
}

pub fn load_stt(settings: &Settings) -> Result<Arc<SttEngine>> {
    let path = model_path(settings)?;
    let engine = SttEngine::load(&path, settings.stt.clone())
        .with_context(|| format!("loading Whisper model {}", path.display()))?;
    tracing::info!(model = %path.display(), threads = settings.stt.threads, states = settings.stt.max_states, "model loaded");
    Ok(Arc::new(engine))
}

pub fn load_playbook(settings: &Settings) -> Result<Arc<Playbook>> {
    let prompts = PromptLibrary::load(&settings.prompts_dir).with_context(|| {
        format!(
            "loading voice prompts from {}",
            settings.prompts_dir.display()
        )
    })?;
    let dialplan = Dialplan::load(&settings.dialplan, &prompts).context("loading the dialplan")?;
    // Sentences with a number in them (the read-back) are said from these fragments; a
    // missing one stops startup rather than a call.
    let fragments = settings.prompts_dir.join("fragments");
    let speech = Speech::load(&fragments)
        .with_context(|| format!("loading speech fragments from {}", fragments.display()))?;
    let mut book =
        Playbook::new(dialplan, prompts, settings.audio.clone()).with_speech(Arc::new(speech));
    book.number_pass = settings.stt.number_pass;
    Ok(Arc::new(book))
}
