//! Whether the caller has finished their turn, from what they said as well as from the pause.
//!
//! Silence alone cuts people off: a caller reading an account number in chunks ("four four
//! seven … one nine"), or one who says "Hello." and draws breath before the question, pauses as
//! long as one who has finished. And silence alone is slow for the turns that matter most: "an
//! agent, please" waits out the same hangover as small talk. The transcript of the audio so far
//! (ready at the first pause, see [`crate::audio::FrontendEvent::Pause`]) tells these apart:
//!
//! - **Act now**: an unambiguous request for a person and nothing else, a plain question or a
//!   goodbye. Nothing the caller could add changes what happens next, so the line acts at the
//!   first pause instead of the full endpoint. A request that names a topic or a number ("an
//!   agent about my bill, account …") and an outburst ("I'm furious. You charged me twice on
//!   account …") wait for the endpoint: such callers usually go on to say what the agent needs
//!   to hear, and the card should carry it.
//! - **Unfinished**: a lone greeting, a trailing "and" / "my account number is", a digit string
//!   shorter than an id. The line waits for more (up to [`TurnTaking::hold_ms`] of silence) and
//!   hears what follows as the same turn.
//! - **Finished**: everything else goes by the endpoint, as before.
//!
//! Pure text rules, no model: they run on every pause of every call and must cost nothing
//! next to the transcription that feeds them.

use crate::analysis::agent_request;
use crate::analysis::text;
use crate::dialplan::TurnTaking;

/// What a transcript says about the turn it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnEnd {
    /// Act at this pause: waiting could not change the decision, only delay it.
    ActNow(Why),
    /// The caller is mid-thought: wait for the rest.
    Unfinished(Why),
    /// Complete, but nothing urgent: the endpoint decides as usual.
    Finished,
}

/// The cue that decided, for the call record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    RequestForPerson,
    Question,
    Goodbye,
    Greeting,
    TrailingWord,
    ShortDigits,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Why::RequestForPerson => "a request for a person",
            Why::Question => "a question",
            Why::Goodbye => "a goodbye",
            Why::Greeting => "a greeting on its own",
            Why::TrailingWord => "a sentence that trails off",
            Why::ShortDigits => "a number shorter than an id",
        }
    }
}

/// What the caller's words mean to the dialplan, worked out by the engine (which knows the
/// intents and answers); this module only weighs them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Heard {
    /// Mean token probability of the transcript.
    pub confidence: f32,
    /// The dialplan's confidence floor for trusting words.
    pub min_confidence: f32,
    /// The words match a self-serve answer more strongly than any topic.
    pub answer: bool,
    /// The words name one of the dialplan's topics.
    pub topic: bool,
    /// The words are one of the dialplan's goodbye phrases.
    pub goodbye: bool,
}

/// Greetings and fillers: a turn made only of these is a caller clearing their throat before
/// the question. "Yes" and "no" are not here: they answer the line's own questions.
const OPENERS: &[&str] = &[
    "hello",
    "hi",
    "hey",
    "hiya",
    "there",
    "good",
    "morning",
    "afternoon",
    "evening",
    "um",
    "uh",
    "er",
    "erm",
    "hmm",
    "so",
    "well",
    "oh",
    "yeah",
    "okay",
    "ok",
    "right",
    "alright",
];

/// A sentence ending on one of these has more to come ("…my account number is", "it's about").
const TRAILING: &[&str] = &[
    "and",
    "but",
    "or",
    "so",
    "because",
    "cause",
    "um",
    "uh",
    "er",
    "erm",
    "the",
    "a",
    "an",
    "my",
    "your",
    "our",
    "to",
    "for",
    "of",
    "with",
    "about",
    "is",
    "was",
    "are",
    "it's",
    "its",
    "like",
    "then",
    "if",
    "that",
    "which",
    "from",
    "on",
    "in",
    "at",
    "i",
    "i'm",
    "we",
    "number's",
    // A verb still waiting for its object: "I'd like to know …", "I need to check …".
    "know",
    "ask",
    "wondering",
    "want",
    "wanted",
    "need",
    "check",
];

/// Words that name the thing a number read out next belongs to.
const ID_WORDS: &[&str] = &[
    "account",
    "number",
    "order",
    "reference",
    "customer",
    "member",
    "membership",
    "tracking",
    "confirmation",
    "case",
    "ticket",
    "invoice",
    "id",
];

/// Judges `transcript` (cleaned of non-speech markers) as the end of a turn.
pub fn judge(transcript: &str, heard: Heard, cfg: &TurnTaking) -> TurnEnd {
    let words = text::words(transcript);
    if words.is_empty() {
        return TurnEnd::Finished;
    }
    let request = agent_request::detect(transcript);
    let trusted = heard.confidence >= heard.min_confidence
        || words.len() <= super::policy::SHORT_UTTERANCE_WORDS;
    let details = heard.topic || words.iter().any(|w| digit_count(w).is_some());
    if request.count > 0
        && !request.declined
        && !details
        && (trusted || agent_request::is_lone_request(transcript))
    {
        return TurnEnd::ActNow(Why::RequestForPerson);
    }
    if let Some(why) = unfinished(transcript, &words, cfg) {
        return TurnEnd::Unfinished(why);
    }
    if heard.goodbye && trusted {
        return TurnEnd::ActNow(Why::Goodbye);
    }
    // A question Whisper closed with "?" is a finished sentence; one it did not may be the
    // first half of a longer one ("what are your hours on … Sunday").
    if heard.answer
        && heard.confidence >= heard.min_confidence
        && transcript.trim_end().ends_with('?')
    {
        return TurnEnd::ActNow(Why::Question);
    }
    TurnEnd::Finished
}

fn unfinished(transcript: &str, words: &[String], cfg: &TurnTaking) -> Option<Why> {
    if words.iter().all(|w| OPENERS.contains(&w.as_str())) {
        return Some(Why::Greeting);
    }
    if let Some(short) = trailing_digits(words)
        && short < cfg.id_digits_min
        && (words.iter().any(|w| ID_WORDS.contains(&w.as_str()))
            || words.iter().all(|w| digit_count(w).is_some()))
    {
        return Some(Why::ShortDigits);
    }
    let last = words.last()?;
    // Whisper ends a trailing-off sentence with "…" or "," as often as with a bare word.
    let trails = transcript.trim_end().ends_with("...")
        || transcript.trim_end().ends_with('…')
        || transcript.trim_end().ends_with(',');
    if TRAILING.contains(&last.as_str()) || (trails && words.len() <= 12) {
        return Some(Why::TrailingWord);
    }
    None
}

/// Digits in the run of digit tokens that ends the utterance, if it ends in one.
fn trailing_digits(words: &[String]) -> Option<usize> {
    let mut total = 0;
    let mut any = false;
    for w in words.iter().rev() {
        if w == "double" || w == "triple" {
            // "double five": the five was counted once already.
            total += if w == "double" { 1 } else { 2 };
            continue;
        }
        match digit_count(w) {
            Some(n) => {
                total += n;
                any = true;
            }
            None => break,
        }
    }
    any.then_some(total)
}

/// How many digits a token stands for: "447" → 3, "4.4.7" → 3, "four" → 1; `None` for a word.
fn digit_count(word: &str) -> Option<usize> {
    if crate::analysis::numbers::digit_word(word).is_some() {
        return Some(1);
    }
    let digits = word.chars().filter(char::is_ascii_digit).count();
    let rest = word
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | ',' | '-' | ':' | '/'));
    (digits > 0 && rest).then_some(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> TurnTaking {
        TurnTaking::default()
    }

    fn heard(confidence: f32) -> Heard {
        Heard {
            confidence,
            min_confidence: 0.4,
            ..Heard::default()
        }
    }

    fn judged(t: &str) -> TurnEnd {
        judge(t, heard(0.8), &cfg())
    }

    #[test]
    fn requests_act_at_the_first_pause() {
        for t in [
            " Agent.",
            " I need to speak to an agent, please.",
            " Can I talk to a real person?",
            " Representative.",
        ] {
            assert_eq!(judged(t), TurnEnd::ActNow(Why::RequestForPerson), "{t}");
        }
        // Callers who name a topic or a number, or who are angry, usually go on: the
        // endpoint decides, so the card gets the rest.
        assert_eq!(
            judged(" This is absolutely ridiculous, I am furious."),
            TurnEnd::Finished
        );
        assert_eq!(
            judge(
                " I need an agent about my bill.",
                Heard {
                    topic: true,
                    ..heard(0.8)
                },
                &cfg()
            ),
            TurnEnd::Finished
        );
        assert_eq!(
            judged(" Agent, my account is 4 4 7 1 9."),
            TurnEnd::Finished
        );
        // Declined, or a keyword inside an untrusted sentence: not a request.
        assert_eq!(judged(" I don't need an agent."), TurnEnd::Finished);
        assert_ne!(
            judge(
                " the view open and the main operator went to the event",
                heard(0.2),
                &cfg()
            ),
            TurnEnd::ActNow(Why::RequestForPerson)
        );
    }

    #[test]
    fn half_thoughts_wait() {
        for (t, why) in [
            (" Hello.", Why::Greeting),
            (" Hi there, um,", Why::Greeting),
            (" Good morning.", Why::Greeting),
            (" My account number is", Why::TrailingWord),
            (" I'm calling about my bill and", Why::TrailingWord),
            (" So I was wondering...", Why::TrailingWord),
            (" I would like to know.", Why::TrailingWord),
            (" My account number is 4 4 7.", Why::ShortDigits),
            (" My account number is four four seven.", Why::ShortDigits),
            (" 6.", Why::ShortDigits),
            (" 2 9.", Why::ShortDigits),
        ] {
            assert_eq!(judged(t), TurnEnd::Unfinished(why), "{t}");
        }
    }

    #[test]
    fn complete_thoughts_go_by_the_endpoint() {
        for t in [
            " My internet keeps dropping.",
            " My account number is 4 4 7 1 9.",
            " My account number is 44719.",
            " Yes.",
            " No.",
            " I was charged twice this month.",
            // A number that is not an id: no wait.
            " I've been waiting 3 days.",
        ] {
            assert_eq!(judged(t), TurnEnd::Finished, "{t}");
        }
    }

    #[test]
    fn questions_and_goodbyes_act_now_only_when_sure() {
        let q = Heard {
            answer: true,
            ..heard(0.8)
        };
        assert_eq!(
            judge(" What are your opening hours?", q, &cfg()),
            TurnEnd::ActNow(Why::Question)
        );
        // Not closed as a question, or not confident: the endpoint decides.
        assert_eq!(
            judge(" What are your opening hours", q, &cfg()),
            TurnEnd::Finished
        );
        assert_eq!(
            judge(
                " What are your opening hours?",
                Heard {
                    answer: true,
                    ..heard(0.3)
                },
                &cfg()
            ),
            TurnEnd::Finished
        );
        let bye = Heard {
            goodbye: true,
            ..heard(0.8)
        };
        assert_eq!(
            judge(" That's all, thanks.", bye, &cfg()),
            TurnEnd::ActNow(Why::Goodbye)
        );
    }

    #[test]
    fn digit_tokens() {
        assert_eq!(digit_count("447"), Some(3));
        assert_eq!(digit_count("4.4.7"), Some(3));
        assert_eq!(digit_count("four"), Some(1));
        assert_eq!(digit_count("fourth"), None);
        assert_eq!(
            trailing_digits(&text::words("number is double five 3")),
            Some(3)
        );
        assert_eq!(trailing_digits(&text::words("number is")), None);
    }
}
