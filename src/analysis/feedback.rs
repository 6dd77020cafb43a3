//! What a caller says about the answer they were just given: "no, that's not what I asked"
//! takes the answer back (the call made no progress), a plain "no" to "anything else?" is
//! them being done.

use super::text;

/// Phrases that say an answer missed. Checked on whole words, anywhere in the utterance.
const REJECTIONS: &[&str] = &[
    "not what i asked",
    "not what i said",
    "not what i meant",
    "not what i wanted",
    "not what i need",
    "not what i'm asking",
    "not what im asking",
    "i didn't ask",
    "i didnt ask",
    "i did not ask",
    "that's not it",
    "thats not it",
    "that's not right",
    "thats not right",
    "that's wrong",
    "thats wrong",
    "wrong answer",
    "you misunderstood",
    "you didn't understand",
    "you don't understand",
    "that doesn't help",
    "that does not help",
    "not helpful",
    "that's not my question",
    "not my question",
];

/// Whether `text` rejects the answer just given.
pub fn rejects_answer(text: &str) -> bool {
    let words = text::words(text);
    REJECTIONS.iter().any(|p| text::find(&words, p).is_some())
}

/// Words that, with nothing else, say "no": the caller's reply to "anything else?".
const NO: &[&str] = &[
    "no",
    "nope",
    "nah",
    "no no",
    "no that's fine",
    "no it's fine",
];

/// Whether `text` is only a "no" (with filler), as an answer to "is there anything else?".
pub fn plain_no(text: &str) -> bool {
    let words: Vec<String> = text::words(text)
        .into_iter()
        .filter(|w| !matches!(w.as_str(), "um" | "uh" | "oh" | "well" | "ok" | "okay"))
        .collect();
    let joined = words.join(" ");
    NO.contains(&joined.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_heard() {
        for t in [
            "No, that's not what I asked.",
            "That's not it.",
            "I didn't ask about the hours.",
            "No, you misunderstood me.",
            "That's wrong.",
        ] {
            assert!(rejects_answer(t), "{t:?}");
        }
        for t in [
            "No thanks, that's all.",
            "What are your hours?",
            "That's it, thanks.",
            "Is that right?",
            "",
        ] {
            assert!(!rejects_answer(t), "{t:?}");
        }
    }

    #[test]
    fn a_plain_no_is_only_a_no() {
        for t in ["No.", "Nope.", "Uh, no.", "No, no."] {
            assert!(plain_no(t), "{t:?}");
        }
        for t in ["No, I want an agent.", "Know what I mean", "", "no way"] {
            assert!(!plain_no(t), "{t:?}");
        }
    }
}
