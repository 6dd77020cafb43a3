//! Reading a number back when the line is not sure of it ("I have 4 4 7 — is that right?").
//!
//! An agent who gets the wrong account number on the card starts the call with the wrong
//! customer; one who gets a number marked "not confirmed" knows to check it. So before a
//! routine transfer, a number heard on a shaky transcript, or shorter than an id can be, is
//! read back once in the prompts' voice. "Yes" confirms it; a new number replaces it; "no" gets
//! one chance to say it again; anything else, or silence, goes to the person anyway with the
//! number marked unconfirmed. It never costs the caller more than one question and one answer.

use crate::analysis::numbers::{self, Facts};
use crate::analysis::{feedback, text};

/// A number heard below this confidence is read back before it goes on the card.
pub const SURE_CONFIDENCE: f32 = 0.45;

/// Which id the line is confirming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Account,
    Order,
}

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Field::Account => "account_number",
            Field::Order => "order_number",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Field::Account => "account number",
            Field::Order => "order number",
        }
    }

    pub fn get(self, f: &Facts) -> Option<&str> {
        match self {
            Field::Account => f.account_number.as_deref(),
            Field::Order => f.order_number.as_deref(),
        }
    }
}

/// The id a routine transfer would pass on, if the line should check it first.
pub fn doubtful(facts: &Facts, confidence: f32, id_digits_min: usize) -> Option<(Field, String)> {
    let (field, number) = [Field::Account, Field::Order]
        .into_iter()
        .find_map(|f| f.get(facts).map(|n| (f, n.to_string())))?;
    let digits = number.chars().filter(char::is_ascii_digit).count();
    (confidence < SURE_CONFIDENCE || digits < id_digits_min).then_some((field, number))
}

/// What the caller said to "I have … — is that right?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Yes,
    No,
    /// They said a number: the one they meant.
    Number(String),
    /// Something else (a question, a request for a person): the number stays unconfirmed.
    Other,
}

const YES: &[&str] = &[
    "yes",
    "yeah",
    "yep",
    "yup",
    "correct",
    "that's right",
    "that is right",
    "right",
    "that's correct",
    "that is correct",
    "yes that's right",
    "yes it is",
    "it is",
    "exactly",
    "sure",
    "uh huh",
];

/// Reads the reply. A number wins over yes/no ("no, it's 4 4 7 1 9").
pub fn reply(transcript: &str, field: Field) -> Reply {
    if let Some(n) = said_number(transcript, field) {
        return Reply::Number(n);
    }
    let words: Vec<String> = text::words(transcript)
        .into_iter()
        .filter(|w| {
            !matches!(
                w.as_str(),
                "um" | "uh" | "oh" | "well" | "ok" | "okay" | "so"
            )
        })
        .collect();
    let joined = words.join(" ");
    if YES.contains(&joined.as_str())
        || words
            .first()
            .is_some_and(|w| matches!(w.as_str(), "yes" | "yeah" | "yep" | "correct"))
            && !words.iter().any(|w| w == "no" || w == "not")
    {
        return Reply::Yes;
    }
    if feedback::plain_no(transcript)
        || words
            .first()
            .is_some_and(|w| matches!(w.as_str(), "no" | "nope" | "wrong"))
    {
        return Reply::No;
    }
    Reply::Other
}

/// A number in the reply, taken as the id being confirmed even when the caller does not name
/// it again ("No — 4 4 7 1 9.").
fn said_number(transcript: &str, field: Field) -> Option<String> {
    let facts = numbers::extract(transcript);
    if let Some(n) = field.get(&facts) {
        return Some(n.to_string());
    }
    let labelled = format!("my {} is {}", field.label(), transcript);
    field.get(&numbers::extract(&labelled)).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_shaky_or_short_numbers_are_read_back() {
        let facts = Facts {
            account_number: Some("44719".into()),
            ..Facts::default()
        };
        assert_eq!(doubtful(&facts, 0.9, 5), None);
        assert_eq!(
            doubtful(&facts, 0.4, 5),
            Some((Field::Account, "44719".into()))
        );
        let short = Facts {
            order_number: Some("447".into()),
            ..Facts::default()
        };
        assert_eq!(doubtful(&short, 0.9, 5), Some((Field::Order, "447".into())));
        assert_eq!(doubtful(&Facts::default(), 0.1, 5), None);
    }

    #[test]
    fn replies() {
        for t in [
            "Yes.",
            "Yeah, that's right.",
            "Correct.",
            "That's right.",
            "Uh, yes.",
        ] {
            assert_eq!(reply(t, Field::Account), Reply::Yes, "{t}");
        }
        for t in ["No.", "Nope.", "No, that's wrong.", "Wrong."] {
            assert_eq!(reply(t, Field::Account), Reply::No, "{t}");
        }
        assert_eq!(
            reply("No, it's 4 4 7 1 9.", Field::Account),
            Reply::Number("44719".into())
        );
        assert_eq!(
            reply("Four four seven one nine.", Field::Order),
            Reply::Number("44719".into())
        );
        for t in ["I want an agent.", "What are your hours?", ""] {
            assert_eq!(reply(t, Field::Account), Reply::Other, "{t}");
        }
    }
}
