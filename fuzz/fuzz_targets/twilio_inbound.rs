#![no_main]
//! The Twilio Media Streams decoder on arbitrary frames: a value or a typed error, never a
//! panic; a media payload never exceeds the cap it was given.

use libfuzzer_sys::fuzz_target;
use warmline::telephony::twilio::messages::{Inbound, parse_inbound};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Inbound::Media(m)) = parse_inbound(text, 8_000) {
        assert!(m.payload.len() <= 8_000);
    }
});
