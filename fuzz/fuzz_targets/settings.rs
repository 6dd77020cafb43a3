#![no_main]
//! The settings file parser on arbitrary text: settings or an error, never a panic.

use libfuzzer_sys::fuzz_target;
use warmline::config::Settings;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(mut s) = toml::from_str::<Settings>(&text) {
        let _ = s.apply_env(|_| None);
    }
});
