//! Which topic a caller named, by phrase lists from the dialplan.
//!
//! Phrase matching rather than a model: the dialplan author can read exactly why a call went
//! to billing, and a transcript that names nothing falls through to "not understood" instead of
//! a confident guess. Phrases match whole words after stemming, so "charge" catches "charged"
//! and "charges", and Whisper's split words ("wi fi", "log in") still meet their phrase.

use super::text;

/// A topic and the phrases that name it, as the dialplan declares them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IntentSpec {
    pub name: String,
    pub phrases: Vec<String>,
}

/// The best-scoring topic and the phrases (as written in the dialplan) that matched it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IntentMatch<'a> {
    pub name: &'a str,
    pub score: f32,
    pub matched: Vec<String>,
}

/// Negators that rule a topic out ("it's not about my bill"). Verb negations such as "can't",
/// "didn't" and "never" are left out: "I can't log in" and "it never arrived" state the problem.
const TOPIC_NEGATORS: &[&str] = &[
    "not", "isn't", "isnt", "wasn't", "wasnt", "aren't", "arent", "nothing",
];

/// Words that may sit between a topic negator and the topic it rules out.
const NEGATION_GLUE: &[&str] = &[
    "about",
    "calling",
    "call",
    "regarding",
    "related",
    "to",
    "with",
    "for",
    "my",
    "the",
    "a",
    "an",
    "this",
    "that",
    "it",
    "its",
    "it's",
    "is",
    "do",
    "really",
    "just",
    "actually",
    "even",
    "any",
    "your",
    "our",
    "an",
    "of",
    "one",
    "at",
    "all",
    "here",
];

/// Where a phrase matched: clause, first word, one past the last word.
type Span = (usize, usize, usize);

/// A transcript prepared once for matching many phrases.
struct Prepared {
    /// Per clause: the words as heard (for negation) and their stems (for matching).
    clauses: Vec<(Vec<String>, Vec<String>)>,
}

impl Prepared {
    fn new(text: &str) -> Prepared {
        let clauses = text::clauses(text)
            .into_iter()
            .map(|c| {
                let stems = c.words.iter().map(|w| text::stem(w)).collect();
                (c.words, stems)
            })
            .collect();
        Prepared { clauses }
    }

    /// Spans (clause, start, end) where `phrase` matches outside a negated stretch.
    fn spans(&self, phrase: &str) -> Vec<Span> {
        let key: String = text::words(phrase).iter().map(|w| text::stem(w)).collect();
        let mut out = Vec::new();
        for (c, (raw, stems)) in self.clauses.iter().enumerate() {
            for start in 0..stems.len() {
                if let Some(end) = text::match_at(stems, start, &key)
                    && !negated(raw, start)
                {
                    out.push((c, start, end));
                }
            }
        }
        out
    }
}

/// Whether a topic negator governs the word at `at`, reaching it only across glue words.
fn negated(raw: &[String], at: usize) -> bool {
    (0..at).rev().any(|n| {
        TOPIC_NEGATORS.contains(&raw[n].as_str())
            && raw[n + 1..at]
                .iter()
                .all(|w| NEGATION_GLUE.contains(&w.as_str()))
    })
}

/// Picks the intent whose phrases best cover `text`; `None` when nothing matched. More and
/// longer phrases score higher; a tie goes to the intent listed first.
pub fn classify<'a>(text: &str, intents: &'a [IntentSpec]) -> Option<IntentMatch<'a>> {
    let prepared = Prepared::new(text);
    let mut best: Option<IntentMatch<'a>> = None;
    for intent in intents {
        let Some(m) = score(&prepared, intent) else {
            continue;
        };
        if best.as_ref().is_none_or(|b| m.score > b.score) {
            best = Some(m);
        }
    }
    best
}

/// Whether any of `phrases` is said (and not negated) in `text`; for yes/no/goodbye.
pub fn matches_any(text: &str, phrases: &[String]) -> bool {
    let prepared = Prepared::new(text);
    phrases.iter().any(|p| !prepared.spans(p).is_empty())
}

fn score<'a>(prepared: &Prepared, intent: &'a IntentSpec) -> Option<IntentMatch<'a>> {
    let mut hits: Vec<(usize, &String, Vec<Span>)> = intent
        .phrases
        .iter()
        .enumerate()
        .map(|(i, p)| (i, p, prepared.spans(p)))
        .filter(|(_, _, spans)| !spans.is_empty())
        .collect();
    // Longest phrases claim their words first; a phrase heard only inside words already
    // claimed ("internet" within "internet not working", or "billing" and "bill" on the same
    // word) is the same evidence and adds nothing.
    hits.sort_by_key(|(_, _, spans)| std::cmp::Reverse(spans.iter().map(|(_, s, e)| e - s).max()));
    let mut claimed: Vec<Span> = Vec::new();
    let mut counted: Vec<(usize, &String)> = Vec::new();
    for (i, phrase, spans) in hits {
        let new = spans.iter().any(|&(c, s, e)| {
            !claimed
                .iter()
                .any(|&(c2, s2, e2)| c2 == c && s2 <= s && e <= e2)
        });
        if new {
            claimed.extend(spans);
            counted.push((i, phrase));
        }
    }
    if counted.is_empty() {
        return None;
    }
    counted.sort_by_key(|(i, _)| *i);
    let score = counted
        .iter()
        .map(|(_, p)| 1.0 + 0.5 * (text::words(p).len().max(1) as f32 - 1.0))
        .sum();
    let matched = counted.into_iter().map(|(_, p)| p.clone()).collect();
    Some(IntentMatch {
        name: &intent.name,
        score,
        matched,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, phrases: &[&str]) -> IntentSpec {
        IntentSpec {
            name: name.into(),
            phrases: phrases.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn support() -> Vec<IntentSpec> {
        vec![
            spec(
                "billing",
                &[
                    "bill",
                    "charge",
                    "refund",
                    "invoice",
                    "payment",
                    "overcharged",
                    "billing",
                    "paid",
                ],
            ),
            spec(
                "orders",
                &[
                    "order", "delivery", "package", "shipping", "return", "tracking", "arrived",
                    "parcel",
                ],
            ),
            spec(
                "technical",
                &[
                    "internet",
                    "wifi",
                    "app",
                    "login",
                    "password",
                    "outage",
                    "router",
                    "not working",
                    "connection",
                ],
            ),
            spec("hours", &["open", "hours", "close", "what time"]),
            spec(
                "address",
                &["address", "where are you located", "website", "located"],
            ),
        ]
    }

    fn goodbye() -> Vec<String> {
        [
            "that's all",
            "that's it",
            "bye",
            "goodbye",
            "that's everything",
            "nothing else",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    #[test]
    fn realistic_phrasings_table() {
        let cases = [
            ("I have a question about my bill", "billing"),
            ("I was charged twice this month", "billing"),
            ("there's a charge I don't recognize", "billing"),
            ("why are there two charges on my card", "billing"),
            ("I still haven't been refunded", "billing"),
            ("I want a refund", "billing"),
            ("can you send me a copy of the invoice", "billing"),
            ("my payment didn't go through", "billing"),
            ("I think I was overcharged", "billing"),
            ("Billing.", "billing"),
            ("where is my order", "orders"),
            ("my package never arrived", "orders"),
            ("the delivery is late", "orders"),
            ("it was delivered to the wrong house", "orders"),
            ("how much is shipping", "orders"),
            ("I want to return something", "orders"),
            ("I need a tracking number for my parcel", "orders"),
            ("My internet is down.", "technical"),
            ("the wi-fi keeps dropping", "technical"),
            ("Wi Fi not working", "technical"),
            ("the app keeps crashing", "technical"),
            ("I can't log in", "technical"),
            ("I forgot my password", "technical"),
            ("is there an outage in my area", "technical"),
            ("my router lights are blinking red", "technical"),
            ("it's just not working", "technical"),
            ("what are your hours", "hours"),
            ("are you open on sunday", "hours"),
            ("what time do you close", "hours"),
            ("when do you open tomorrow", "hours"),
            ("what's your address", "address"),
            ("where are you located", "address"),
            ("what's the website", "address"),
            ("it's not about my bill, it's my internet", "technical"),
            ("it's not about my bill it's my internet", "technical"),
            ("not the router, the app", "technical"),
            (
                "I'm not calling about an order, I was overcharged",
                "billing",
            ),
        ];
        let intents = support();
        for (text, want) in cases {
            let got = classify(text, &intents).map(|m| m.name);
            assert_eq!(got, Some(want), "{text:?}");
        }
    }

    #[test]
    fn nothing_named_is_none() {
        let intents = support();
        for text in [
            "",
            "um hello?",
            "yes",
            "I'm not sure",
            "nothing to do with my bill",
        ] {
            assert_eq!(classify(text, &intents), None, "{text:?}");
        }
    }

    #[test]
    fn more_and_longer_phrases_score_higher() {
        let intents = support();
        let one = classify("my internet", &intents).unwrap();
        let two = classify("my internet and my router", &intents).unwrap();
        let long = classify("where are you located", &intents).unwrap();
        assert!(two.score > one.score);
        assert!(long.score > one.score);
        assert_eq!(long.matched, ["where are you located"]);
    }

    #[test]
    fn a_phrase_inside_a_longer_match_is_not_counted_twice() {
        let intents = vec![
            spec("technical", &["internet", "internet not working"]),
            spec("orders", &["package", "arrived", "box"]),
        ];
        let m = classify("my internet not working", &intents).unwrap();
        assert_eq!(m.matched, ["internet not working"]);
        assert_eq!(m.score, 2.0);
        let text = "the package arrived in a box but my internet not working";
        let m = classify(text, &intents).unwrap();
        assert_eq!(m.name, "orders");
    }

    #[test]
    fn ties_go_to_the_first_intent() {
        let intents = support();
        let m = classify("my bill and my order", &intents).unwrap();
        assert_eq!(m.name, "billing");
        let mut reversed = intents.clone();
        reversed.swap(0, 1);
        assert_eq!(
            classify("my bill and my order", &reversed).unwrap().name,
            "orders"
        );
    }

    #[test]
    fn whole_words_only() {
        let intents = vec![spec("hours", &["open"]), spec("apps", &["app"])];
        assert_eq!(classify("I reopened the ticket", &intents), None);
        assert_eq!(classify("I'm happy", &intents), None);
        assert_eq!(
            classify("it was opened", &intents).map(|m| m.name),
            Some("hours")
        );
    }

    #[test]
    fn goodbye_detection() {
        let phrases = goodbye();
        for text in [
            "that's all",
            "That's it, thanks.",
            "bye",
            "Okay bye!",
            "no, that's everything",
            "Thats all thanks",
            "no nothing else",
        ] {
            assert!(matches_any(text, &phrases), "{text:?}");
        }
        for text in [
            "my bill is wrong",
            "all of it is broken",
            "",
            "it's not everything",
        ] {
            assert!(!matches_any(text, &phrases), "{text:?}");
        }
    }

    #[test]
    fn yes_no_detection_respects_negation() {
        let yes: Vec<String> = ["yes", "yeah", "correct", "that's right"]
            .map(String::from)
            .to_vec();
        assert!(matches_any("yes that's right", &yes));
        assert!(matches_any("Yeah.", &yes));
        assert!(!matches_any("that's not correct", &yes));
        assert!(!matches_any("no", &yes));
    }
}
