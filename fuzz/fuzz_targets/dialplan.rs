#![no_main]
//! The dialplan parser on arbitrary text: a dialplan or a line-numbered error.

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use warmline::dialplan::Dialplan;
use warmline::prompts::PromptLibrary;

fn prompts() -> &'static PromptLibrary {
    static P: OnceLock<PromptLibrary> = OnceLock::new();
    P.get_or_init(|| {
        PromptLibrary::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../voice-prompts"
        )))
        .expect("shipped prompts")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = Dialplan::parse(&text, "fuzz.toml", prompts());
});
