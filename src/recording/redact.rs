//! Masking spoken numbers (account, card, order numbers) in exported fixtures.
//!
//! Audio: the whole utterance whose transcript held a number becomes silence (from its
//! pre-roll to the detected end, plus [`PAD_MS`] each side). The speech-to-text engine here
//! returns text without word timing, and a whole utterance cannot leave a digit audible at
//! the edges of a span; the cost is the rest of that sentence (in `tests/recording.rs`,
//! 5.3 s of a 13.2 s recording for one sentence ending in an account number).
//! Text: each run of digits or number words becomes `#`.

use std::sync::OnceLock;

use regex::Regex;

use crate::audio::FRAME_SAMPLES_8K;

/// Silence pad on each side of a masked utterance, ms.
pub const PAD_MS: u64 = 100;

fn number_run() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let word = r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand|double|triple)";
        let sep = r"(?:[\s,.\-]+(?:and\s+)?)";
        // Digits (with separators inside), or two or more number words in a row: "a number"
        // in a sentence is one word at most ("the one I ordered"), a spoken number is more.
        let pattern = format!(
            r"(?i)\d(?:[\s,.\-]*\d)*|\b{word}(?:{sep}{word})+\b"
        );
        Regex::new(&pattern).expect("the number pattern compiles")
    })
}

/// `text` with every spoken or written number replaced by `#`.
pub fn mask_text(text: &str) -> String {
    number_run().replace_all(text, "#").into_owned()
}

/// Whether `text` holds a number worth masking.
pub fn has_number(text: &str) -> bool {
    number_run().is_match(text)
}

/// Silences `ulaw[start_ms - PAD_MS .. end_ms + PAD_MS]` (clamped, whole 20 ms frames).
pub fn silence(ulaw: &mut [u8], start_ms: u64, end_ms: u64) {
    let frame_ms = 20;
    let from = start_ms.saturating_sub(PAD_MS) / frame_ms * FRAME_SAMPLES_8K as u64;
    let to = (end_ms + PAD_MS).div_ceil(frame_ms) * FRAME_SAMPLES_8K as u64;
    let len = ulaw.len() as u64;
    let (from, to) = (from.min(len) as usize, to.min(len) as usize);
    ulaw[from..to].fill(0xFF);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spoken_and_written_numbers_are_masked_and_words_are_not() {
        assert_eq!(
            mask_text("My account number is four four seven one nine."),
            "My account number is #."
        );
        assert_eq!(
            mask_text("Card 4111 1111-1111 1111, thanks"),
            "Card #, thanks"
        );
        assert_eq!(
            mask_text("It's order number double eight three one five."),
            "It's order number #."
        );
        assert!(has_number("twelve dollars ninety nine"));
        assert!(!has_number(
            "I'd like to talk to someone, the one who called."
        ));
        assert!(!has_number("Can I speak to an agent, please?"));
    }

    #[test]
    fn silence_covers_the_span_and_its_pad_in_whole_frames() {
        let mut audio = vec![0x10u8; 8 * 2000];
        silence(&mut audio, 500, 1000);
        // 400 ms .. 1100 ms.
        assert!(audio[..400 * 8].iter().all(|&b| b == 0x10));
        assert!(audio[400 * 8..1100 * 8].iter().all(|&b| b == 0xFF));
        assert!(audio[1100 * 8..].iter().all(|&b| b == 0x10));
        // Past the end is clamped, not a panic.
        silence(&mut audio, 1900, 5000);
        assert!(audio[1800 * 8..].iter().all(|&b| b == 0xFF));
    }
}
