//! Is the caller speaking, or asking for, a language this line does not serve?
//!
//! The model is English-only (tiny.en), so it cannot name the language it hears. It does
//! leave three kinds of trace, each measured on fixture audio:
//! - an annotation instead of words: Spanish, French, German, Italian and Portuguese speech
//!   (espeak-ng, telephone band) all came back as "(speaking in foreign language)";
//! - foreign words written down as heard ("Hola, necesito ayuda");
//! - a caller asking in English: "do you have someone who speaks Spanish?", "no English".
//!
//! Any of them sends the caller to a person at once: a line that cannot understand them must
//! not make them sit through a clarifying question first.

use super::text;

/// Why the caller was taken to speak another language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    /// Whisper marked the speech as a foreign language rather than transcribing it.
    Annotated,
    /// The transcript holds words of another language.
    ForeignWords,
    /// The caller asked for another language, or said they do not speak English.
    Asked,
}

/// Words in Whisper's non-speech annotations ("(speaking in foreign language)",
/// "[SPEAKING SPANISH]") that say the speech was not English.
const ANNOTATION_WORDS: &[&str] = &[
    "foreign",
    "non english",
    "spanish",
    "french",
    "german",
    "italian",
    "portuguese",
    "chinese",
    "mandarin",
    "japanese",
    "korean",
    "russian",
    "arabic",
    "vietnamese",
    "hindi",
];

/// Languages a caller may name.
const LANGUAGES: &[&str] = &[
    "spanish",
    "español",
    "espanol",
    "french",
    "français",
    "francais",
    "german",
    "deutsch",
    "italian",
    "italiano",
    "portuguese",
    "português",
    "portugues",
    "chinese",
    "mandarin",
    "cantonese",
    "vietnamese",
    "korean",
    "japanese",
    "arabic",
    "russian",
    "polish",
    "hindi",
    "tagalog",
    "creole",
];

/// Words just before a language name that make it a request for that language, not a
/// mention ("a Spanish cookbook").
const SPEAK_WORDS: &[&str] = &[
    "speak", "speaks", "speaking", "habla", "hablar", "hablo", "parlez", "parle",
];

/// "in Spanish" asks for the language only when it is about being served in it ("someone in
/// Spanish", "help in Spanish, please"), not about a thing ("the manual in German").
const SERVED_WORDS: &[&str] = &[
    "someone",
    "somebody",
    "anyone",
    "anybody",
    "person",
    "agent",
    "representative",
    "operator",
    "help",
    "service",
    "talk",
    "alguien",
    "ayuda",
];

/// Saying they cannot do this in English.
const NO_ENGLISH: &[&str] = &[
    "no english",
    "no hablo ingles",
    "no hablo inglés",
    "don't speak english",
    "do not speak english",
    "don't speak much english",
    "doesn't speak english",
    "my english is not good",
    "my english is not very good",
    "my english isn't good",
    "my english isn't very good",
    "english is not my first language",
    "english isn't my first language",
];

/// Common words of other languages that are not English words too (so no "con", "me", "a").
const FOREIGN_WORDS: &[&str] = &[
    // Spanish
    "hola",
    "necesito",
    "ayuda",
    "gracias",
    "quiero",
    "hablar",
    "alguien",
    "cuenta",
    "factura",
    "pedido",
    "buenos",
    "buenas",
    "días",
    "tardes",
    "señor",
    "señora",
    "usted",
    "tengo",
    "problema",
    // French
    "bonjour",
    "merci",
    "voudrais",
    "parler",
    "quelqu'un",
    "monsieur",
    "madame",
    "plaît",
    "commande",
    "j'ai",
    "avec",
    // German
    "guten",
    "möchte",
    "jemandem",
    "bitte",
    "danke",
    "rechnung",
    "ich",
    "nicht",
    // Italian / Portuguese
    "buongiorno",
    "vorrei",
    "parlare",
    "grazie",
    "olá",
    "obrigado",
    "obrigada",
    "preciso",
    "ajuda",
];

/// What `raw` (the transcript as Whisper wrote it, annotations included) says about the
/// caller's language, if anything.
pub fn detect(raw: &str) -> Option<Foreign> {
    if annotations(raw).any(|a| {
        let a = text::normalize(a);
        ANNOTATION_WORDS.iter().any(|w| a.contains(w))
    }) {
        return Some(Foreign::Annotated);
    }
    let words = text::words(raw);
    if asks_for_language(&words) {
        return Some(Foreign::Asked);
    }
    let mut foreign: Vec<&str> = words
        .iter()
        .map(String::as_str)
        .filter(|w| FOREIGN_WORDS.contains(w))
        .collect();
    foreign.sort_unstable();
    foreign.dedup();
    // Two different ones: a caller may say "gracias" or "bitte" in an English sentence.
    (foreign.len() >= 2).then_some(Foreign::ForeignWords)
}

fn asks_for_language(words: &[String]) -> bool {
    if NO_ENGLISH.iter().any(|p| text::find(words, p).is_some()) {
        return true;
    }
    words.iter().enumerate().any(|(i, w)| {
        if !LANGUAGES.contains(&w.as_str()) {
            return false;
        }
        let before = &words[i.saturating_sub(3)..i];
        let after = words.get(i + 1).map(String::as_str);
        let please = matches!(after, Some("please" | "por"));
        let served_in = matches!(
            i.checked_sub(1).map(|j| words[j].as_str()),
            Some("in" | "en")
        ) && (please
            || words[..i]
                .iter()
                .any(|w| SERVED_WORDS.contains(&w.as_str())));
        before.iter().any(|b| SPEAK_WORDS.contains(&b.as_str()))
            || served_in
            // "Spanish, please." / "Español por favor."
            || (i == 0 && (please || after.is_none()))
    })
}

/// The text inside (…) and […] in a transcript.
fn annotations(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(['(', '['])
        .skip(1)
        .filter_map(|rest| rest.split([')', ']']).next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whisper_annotations_of_foreign_speech() {
        for raw in [
            "(speaking in foreign language)",
            " [speaking in foreign language]",
            "[SPEAKING SPANISH]",
            "(speaks French)",
            "Hello? (speaking in foreign language)",
        ] {
            assert_eq!(detect(raw), Some(Foreign::Annotated), "{raw}");
        }
        for raw in [
            "(music)",
            "[BLANK_AUDIO]",
            "(coughs) I need an agent",
            "*sigh*",
        ] {
            assert_eq!(detect(raw), None, "{raw}");
        }
    }

    #[test]
    fn asking_for_another_language() {
        for raw in [
            "Do you have someone who speaks Spanish?",
            "Can I talk to someone in French, please?",
            "Spanish, please.",
            "Español por favor.",
            "¿Habla español?",
            "Sorry, my English is not very good.",
            "No English. No hablo inglés.",
            "I don't speak English well.",
        ] {
            assert_eq!(detect(raw), Some(Foreign::Asked), "{raw}");
        }
    }

    #[test]
    fn mentions_of_languages_and_foreign_words_in_english_calls() {
        for raw in [
            "I ordered a Spanish cookbook and it never arrived.",
            "My French press arrived broken, order 4471.",
            "The German translation of the manual is missing.",
            "I need the manual in German, it only came in English.",
            "Thanks, gracias, that's all.",
            "I speak English, I just want the opening hours.",
            "My account is in my wife's name.",
            "I have a problem with my bill.",
        ] {
            assert_eq!(detect(raw), None, "{raw}");
        }
    }

    #[test]
    fn foreign_words_written_down() {
        for raw in [
            "Hola, necesito ayuda con mi factura.",
            "Bonjour, je voudrais parler avec quelqu'un.",
            "Guten Tag, ich möchte bitte mit jemandem sprechen.",
            "Buongiorno, vorrei parlare con qualcuno.",
        ] {
            assert_eq!(detect(raw), Some(Foreign::ForeignWords), "{raw}");
        }
    }
}
