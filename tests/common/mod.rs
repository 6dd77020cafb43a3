//! Shared setup for integration tests: the real model (pulled on first use), the shipped
//! dialplan and prompts.

#![allow(dead_code)]

pub mod speech;
pub mod telnyx;
pub mod twilio;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use warmline::call::Playbook;
use warmline::config::Settings;
use warmline::setup;
use warmline::stt::engine::SttEngine;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Settings with every path anchored at the repository root, whatever the working directory.
pub fn settings() -> Settings {
    let mut s = Settings::default();
    s.apply_env(|k| std::env::var(k).ok())
        .expect("valid environment");
    s.with_shipped_assets_at(root())
}

/// Sets `env` on `s` as `warmline serve` reads the environment: the documented names (the
/// fakes' `server_env`) are the stable contract, whatever shape the settings take inside.
pub fn apply_env(s: &mut Settings, env: &[(&'static str, String)]) {
    s.apply_env(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
        .expect("valid settings");
}

pub fn playbook() -> Arc<Playbook> {
    setup::load_playbook(&settings()).expect("shipped dialplan and prompts load")
}

/// The server's speech-to-text setup (one thread per transcription, a state per core), loaded
/// once per test binary: loading it per test would waste seconds and memory.
pub fn stt() -> Arc<SttEngine> {
    static STT: OnceLock<Arc<SttEngine>> = OnceLock::new();
    STT.get_or_init(|| {
        setup::load_stt(&settings()).expect("the Whisper model loads (pulled on first use)")
    })
    .clone()
}

/// Replay's setup: one utterance at a time, every core on it.
pub fn stt_sequential() -> Arc<SttEngine> {
    static STT: OnceLock<Arc<SttEngine>> = OnceLock::new();
    STT.get_or_init(|| {
        let mut s = settings();
        s.stt = warmline::stt::engine::SttConfig::sequential();
        setup::load_stt(&s).expect("the Whisper model loads (pulled on first use)")
    })
    .clone()
}

pub fn fixture_paths() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root().join("fixtures/calls"))
        .expect("fixtures/calls exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    paths
}
