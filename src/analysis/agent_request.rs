//! Did the caller ask for a human, how many times, or say they don't want one?
//!
//! The counts drive escalation ("repeated requests for an agent"), so a false positive sends a
//! caller who only wanted the opening hours to a queue, and a miss traps someone who asked.
//! Words like "agent" and "person" are everywhere in ordinary narration ("my travel agent",
//! "the agent I spoke to yesterday"), so a mention only counts when nothing marks it as
//! narration, and never when the clause negates it.

use super::text;

/// Requests for a person in one utterance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct AgentRequest {
    /// Clauses that ask for a person; "agent. agent! get me an agent" is 3.
    pub count: u32,
    /// The caller said they do not want a person ("I don't need an agent").
    pub declined: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strength {
    /// Asks for a person on its own: "agent", "real person", "transfer me".
    Strong,
    /// Only a request after a verb like "talk to" or "get me": "person", "someone".
    Weak,
}

/// A way of naming a person. `family` groups synonyms so "agent, agent" is two requests but
/// "a human, a real person" is one request restated.
struct Term {
    words: &'static str,
    family: &'static str,
    strength: Strength,
    /// Job titles take qualifiers ("travel agent"); descriptions of people do not.
    titled: bool,
}

const fn t(words: &'static str, family: &'static str, strength: Strength, titled: bool) -> Term {
    Term {
        words,
        family,
        strength,
        titled,
    }
}

use Strength::{Strong, Weak};

/// Longest first, so "human being" wins over "human" and "someone who can help" over "someone".
const TERMS: &[Term] = &[
    t("someone who can help", "someone", Strong, false),
    t("somebody who can help", "someone", Strong, false),
    t("anyone who can help", "someone", Strong, false),
    t("someone that can help", "someone", Strong, false),
    t("somebody that can help", "someone", Strong, false),
    t("customer service person", "agent", Strong, true),
    t("customer service", "agent", Strong, true),
    t("put me through", "transfer", Strong, false),
    // "…through to someone" when Whisper mangles the verb ("but me through to someone").
    t("through to someone", "transfer", Strong, false),
    t("through to somebody", "transfer", Strong, false),
    t("through to a person", "transfer", Strong, false),
    t("through to a human", "transfer", Strong, false),
    t("transfer me", "transfer", Strong, false),
    t("connect me", "transfer", Strong, false),
    t("human being", "human", Strong, false),
    t("real person", "human", Strong, false),
    t("live person", "human", Strong, false),
    t("actual person", "human", Strong, false),
    t("real human", "human", Strong, false),
    t("real people", "human", Strong, false),
    t("representatives", "rep", Strong, true),
    t("representative", "rep", Strong, true),
    t("representive", "rep", Strong, true),
    t("reps", "rep", Strong, true),
    t("rep", "rep", Strong, true),
    t("agents", "agent", Strong, true),
    t("agent", "agent", Strong, true),
    t("operator", "operator", Strong, true),
    t("supervisor", "manager", Strong, true),
    t("manager", "manager", Strong, true),
    t("humans", "human", Strong, false),
    t("human", "human", Strong, false),
    t("person", "person", Weak, false),
    t("people", "person", Weak, false),
    t("someone", "someone", Weak, false),
    t("somebody", "someone", Weak, false),
    t("anyone", "someone", Weak, false),
    t("anybody", "someone", Weak, false),
    t("staff", "person", Weak, false),
];

/// Before a job title, these name some other agent: always narration.
const HARD_QUALIFIERS: &[&str] = &[
    "travel",
    "insurance",
    "estate",
    "secret",
    "booking",
    "free",
    "double",
    "special",
    "fbi",
    "undercover",
    "tour",
    "shipping",
    "leasing",
    "rental",
    "ticket",
    "talent",
    "literary",
    "border",
    "cleaning",
    "chemical",
    "bleaching",
    "network",
    "bank",
    "store",
    "branch",
];

/// Before a term, these point at a particular person already met: narration unless the caller
/// is asking to reach them ("can I talk to one of your agents").
const SOFT_QUALIFIERS: &[&str] = &[
    "my", "your", "the", "that", "this", "his", "her", "their", "our", "same", "last", "previous",
    "other", "first", "another",
];

/// Verbs that, after a term, make it the subject of a story: "an agent told me".
const NARRATION_AFTER: &[&str] = &[
    "said",
    "told",
    "spoke",
    "talked",
    "promised",
    "was",
    "were",
    "is",
    "are",
    "hung",
    "gave",
    "sent",
    "called",
    "explained",
    "mentioned",
    "helped",
    "assured",
    "booked",
    "did",
    "had",
    "offered",
    "transferred",
    "sold",
    "answered",
    "picked",
    "says",
    "tells",
    "keeps",
    "kept",
];

/// Verbs that, before a term, tell of an earlier contact: "I already spoke to an agent".
const NARRATION_BEFORE: &[&str] = &[
    "spoke", "talked", "spoken", "told", "met", "saw", "called", "had", "got", "was", "were",
];

/// Words allowed between a term and a following narration verb: "the agent (who) said".
const NARRATION_SUBJECTS: &[&str] = &[
    "who", "that", "i", "you", "we", "he", "she", "they", "already",
];

/// Verbs that turn a following person-word into a request.
const REQUEST_VERBS: &[&str] = &[
    "talk", "speak", "speaking", "talking", "chat", "want", "wanna", "need", "get", "give",
    "reach", "connect", "transfer", "ask", "asking", "put",
];

/// First-person descriptions ("I'm a person who…", "I'm only human").
const SELF_DESCRIPTION: &[&str] = &["i'm", "im", "am", "only", "i"];

/// Nouns after "human" that make it an adjective, not a person.
const HUMAN_COMPOUNDS: &[&str] = &[
    "error",
    "errors",
    "resources",
    "rights",
    "body",
    "nature",
    "race",
    "resource",
];

/// Negators that decline a person. "can't"/"won't"/"didn't" are left out on purpose: "I can't
/// get a human" and "they won't transfer me" are complaints that mean "I want one".
const DECLINE_NEGATORS: &[&str] = &[
    "not", "never", "don't", "dont", "doesn't", "doesnt", "without",
];

/// What may sit between "no" and the term for "no" to negate it: "no need for an agent".
const NO_SCOPE: &[&str] = &[
    "need", "for", "to", "talk", "speak", "a", "an", "the", "more", "real", "live", "actual", "any",
];

/// Words that only pad a repeated demand: "agent, I said agent", "agent please agent".
const FILLERS: &[&str] = &[
    "a", "an", "the", "please", "um", "uh", "i", "said", "just", "oh", "now", "like",
];

/// Words after a negation that start a fresh request: "I don't care, just get me an agent".
const SCOPE_BREAKERS: &[&str] = &[
    "but", "just", "instead", "rather", "actually", "so", "please",
];
const SUBJECTS: &[&str] = &["i", "i'd", "id", "i'm", "im", "i'll"];
const IMPERATIVES: &[&str] = &[
    "let", "get", "give", "put", "transfer", "connect", "can", "could", "may",
];

/// One place a term appears.
struct Mention {
    start: usize,
    end: usize,
    term: &'static Term,
}

/// Counts requests for a person in `text` and notices an explicit refusal.
pub fn detect(text: &str) -> AgentRequest {
    let mut out = AgentRequest::default();
    // (sentence, had a request verb) of the last clause that counted.
    let mut last: Option<(usize, bool)> = None;
    for clause in text::clauses(text) {
        let words = &clause.words;
        let mut requests: Vec<&Mention> = Vec::new();
        let mentions = mentions(words);
        for m in &mentions {
            let verb = has_request_verb(&words[..m.start]) || offers_talk(&words[m.end..]);
            if is_negated(words, m, verb) {
                out.declined = true;
            } else if is_request(words, m, verb) {
                requests.push(m);
            }
        }
        if requests.is_empty() {
            continue;
        }
        let verb = requests
            .iter()
            .any(|m| m.term.family == "transfer" || has_request_verb(&words[..m.start]));
        // "I want a human, a real person" restates one request; "agent, agent" repeats it.
        let restated = last
            .is_some_and(|(sentence, had_verb)| sentence == clause.sentence && had_verb && !verb);
        let n = 1 + repeats(words, &requests);
        out.count += if restated { n - 1 } else { n };
        last = Some((clause.sentence, verb));
    }
    if out.count == 0 && !out.declined && (rejects_machine(text) || misheard_alone(text)) {
        out.count = 1;
    }
    out
}

/// How tiny.en hears an escape word said on its own over a phone line, measured on real and
/// synthetic callers (`tests/hard_words.rs`): "Agent." → "Ages", "and it's an"; "Person." →
/// "Persian"; "Someone." → "Sun one". They count only as the whole utterance: inside a
/// sentence they are ordinary words.
const MISHEARD_ALONE: &[&str] = &[
    "ages",
    "aged",
    "asian",
    "and it's an",
    "and its an",
    "a gent",
    "agents",
    "agent's",
    "a jent",
    "persian",
    "poison",
    "sun one",
    "some one",
    "somewhat one",
    "of theator",
    "operate her",
    "opera tour",
    "you man",
    "hugh man",
];

/// "Reppin now it's a div", "Reppering at a bit", "Re-pre-ment, okay": "Representative." said
/// alone, its first syllables heard and the rest garbled. No English word a caller would say
/// alone starts this way.
const REPRESENTATIVE_STARTS: &[&str] = &["repp", "repre", "reper", "re pre", "re-pre"];

/// Whether `text` is nothing but a request for a person: an escape word alone ("Agent.",
/// "a person, please"), or a known mishearing of one. Such an utterance is trusted at any
/// confidence: there is no sentence around it that the keyword could be hallucinated from.
pub fn is_lone_request(text: &str) -> bool {
    if misheard_alone(text) {
        return true;
    }
    let words = text::words(text);
    let mentions = mentions(&words);
    !mentions.is_empty()
        && words.len() <= 4
        && words.iter().enumerate().all(|(i, w)| {
            mentions.iter().any(|m| (m.start..m.end).contains(&i))
                || matches!(
                    w.as_str(),
                    "a" | "an" | "the" | "please" | "um" | "uh" | "just" | "oh" | "now"
                )
        })
        && detect(text).count > 0
}

/// Whether the whole utterance is a known mishearing of a single escape word.
fn misheard_alone(text: &str) -> bool {
    let words = text::words(text);
    if words.is_empty() || words.len() > 6 {
        return false;
    }
    let said = words.join(" ");
    if words.len() <= 3 && MISHEARD_ALONE.contains(&said.as_str()) {
        return true;
    }
    let raw = text
        .trim_start_matches(|c: char| !c.is_alphabetic())
        .to_lowercase();
    REPRESENTATIVE_STARTS.iter().any(|p| raw.starts_with(p))
}

/// Machines a caller may refuse to talk to.
const MACHINES: &[&str] = &[
    "robot",
    "robots",
    "machine",
    "machines",
    "computer",
    "bot",
    "bots",
    "automated",
    "recording",
    "automation",
];

/// "I don't want to talk to a robot", "no more machines": refusing the automation is asking
/// for a person, even without naming one.
fn rejects_machine(text: &str) -> bool {
    text::clauses(text).iter().any(|c| {
        c.words.iter().enumerate().any(|(i, w)| {
            MACHINES.contains(&w.as_str())
                && c.words[..i].iter().any(|b| {
                    text::is_negator(b) || matches!(b.as_str(), "stop" | "enough" | "hate" | "sick")
                })
        })
    })
}

fn mentions(words: &[String]) -> Vec<Mention> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let hit = TERMS
            .iter()
            .find_map(|term| text::match_at(words, i, term.words).map(|end| (term, end)));
        match hit {
            Some((term, end)) => {
                out.push(Mention {
                    start: i,
                    end,
                    term,
                });
                i = end;
            }
            None => i += 1,
        }
    }
    out
}

/// Words that may sit between a person-word and a following "talk": "someone (real) (here) I
/// can talk to", "anyone there we could speak with".
const BEFORE_TALK: &[&str] = &[
    "real", "else", "here", "there", "i", "we", "can", "could", "may", "might", "to", "who",
    "that", "live", "actually", "at", "all",
];

/// Whether a person-word is what the caller wants to talk to, said after it: "is there someone I
/// can talk to?", "anybody to speak with". A story names the talk in the past ("the person I
/// talked to"), which is not one of these verbs.
fn offers_talk(after: &[String]) -> bool {
    for w in after.iter().take(6) {
        match w.as_str() {
            "talk" | "speak" | "chat" => return true,
            w if BEFORE_TALK.contains(&w) => continue,
            _ => return false,
        }
    }
    false
}

fn has_request_verb(before: &[String]) -> bool {
    before.iter().enumerate().any(|(i, w)| {
        REQUEST_VERBS.contains(&w.as_str())
            || (matches!(w.as_str(), "like" | "love")
                && i > 0
                && matches!(before[i - 1].as_str(), "i'd" | "id" | "would"))
            || (w == "have" && i > 0 && before[i - 1] == "i")
    })
}

/// Whether an un-negated mention asks for a person (rather than talking about one).
fn is_request(words: &[String], m: &Mention, verb: bool) -> bool {
    let before = |k: usize| m.start.checked_sub(k).map(|i| words[i].as_str());
    let after = |k: usize| words.get(m.end + k).map(String::as_str);
    // A person-word said on its own ("Person.", "someone please") answers "how can I help?".
    let alone = words[..m.start]
        .iter()
        .chain(&words[m.end..])
        .all(|w| matches!(w.as_str(), "a" | "an" | "please" | "um" | "uh" | "just"));
    if m.term.strength == Weak && !verb && !alone {
        return false;
    }
    if m.term.titled && before(1).is_some_and(|w| HARD_QUALIFIERS.contains(&w)) {
        return false;
    }
    if m.term.family == "human" {
        if after(0).is_some_and(|w| HUMAN_COMPOUNDS.contains(&w)) {
            return false;
        }
        // "I'm a real person", "I am human", "I'm only human".
        let described = |w: Option<&str>| w.is_some_and(|w| SELF_DESCRIPTION.contains(&w));
        let article = before(1).is_some_and(|w| w == "a" || w == "an");
        if described(before(1)) || (article && described(before(2))) {
            return false;
        }
    }
    if verb {
        return true;
    }
    if before(1).is_some_and(|w| SOFT_QUALIFIERS.contains(&w)) {
        return false;
    }
    let told_before = words[..m.start]
        .iter()
        .any(|w| NARRATION_BEFORE.contains(&w.as_str()));
    let rest = &words[m.end..];
    let subjects = rest
        .iter()
        .take_while(|w| NARRATION_SUBJECTS.contains(&w.as_str()))
        .count();
    let told_after = rest.get(subjects).is_some_and(|w| {
        // "agent, I said agent" repeats the demand; it does not tell a story.
        let insisting = w == "said" && rest[..subjects].iter().any(|s| s == "i");
        NARRATION_AFTER.contains(&w.as_str()) && !insisting
    });
    !(told_before || told_after)
}

/// Whether a negation in the same clause reaches this mention and the mention would otherwise
/// be about reaching a person ("I don't need an agent", "not a person, just the hours").
fn is_negated(words: &[String], m: &Mention, verb: bool) -> bool {
    let direct_weak = m.term.strength == Weak && !verb;
    if direct_weak {
        // "not a person" declines; "not a person who complains" describes.
        let next = words.get(m.end).map(String::as_str);
        if matches!(next, Some("who" | "that" | "at" | "in")) {
            return false;
        }
    } else if !is_request(words, m, verb) {
        return false;
    }
    (0..m.start).rev().any(|n| {
        let between = &words[n + 1..m.start];
        let negator = words[n].as_str();
        if direct_weak {
            // Only a negator right in front: "not a person", "no person".
            return (negator == "not" || negator == "no")
                && between
                    .iter()
                    .all(|w| matches!(w.as_str(), "a" | "an" | "the" | "one"));
        }
        if negator == "no" {
            return between.iter().all(|w| NO_SCOPE.contains(&w.as_str()));
        }
        DECLINE_NEGATORS.contains(&negator) && !breaks_scope(between)
    })
}

/// Whether the words after a negator start a new request that the negation does not cover.
fn breaks_scope(between: &[String]) -> bool {
    between.iter().enumerate().any(|(i, w)| {
        let w = w.as_str();
        let prev = if i > 0 { between[i - 1].as_str() } else { "" };
        let next = between.get(i + 1).map_or("", String::as_str);
        SCOPE_BREAKERS.contains(&w)
            || (SUBJECTS.contains(&w) && !text::is_negator(next) && next != "do")
            || (IMPERATIVES.contains(&w)
                && matches!(next, "me" | "i" | "you" | "us")
                && !text::is_negator(prev)
                && prev != "to")
    })
}

/// Extra requests inside one clause from bare repetition: "agent agent agent" is three.
fn repeats(words: &[String], requests: &[&Mention]) -> u32 {
    let mut n = 0;
    for pair in requests.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let padding = words[a.end..b.start]
            .iter()
            .all(|w| FILLERS.contains(&w.as_str()));
        if a.term.family == b.term.family && a.term.strength == Strong && padding {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_on_every_phrasing() {
        let cases = [
            "agent",
            "Agent.",
            "a gent",
            "can I get a gent please",
            "an agent please",
            "representative",
            "I want a representative",
            "rep",
            "get me a rep",
            "real person",
            "I want to talk to a real person",
            "live person please",
            "human",
            "Human!",
            "can I speak to a human being",
            "operator",
            "someone who can help",
            "I need someone who can help me",
            "let me talk to somebody",
            "can I speak to someone",
            "speak to someone",
            "talk to a person",
            "I just want to talk to a person",
            "customer service person",
            "transfer me",
            "just transfer me please",
            "put me through to someone",
            "I need an agent, my travel agent booked it wrong",
            "can I talk to one of your agents",
            "let me speak to a manager",
            "I don't care, just get me an agent",
            "I don't want to wait I want an agent",
            "no I want an agent",
            "no get me a person",
            "I can't get through to a human",
            "is this a real person",
            "I'd like a representative",
            "i want a human not a robot",
            "sales rep please",
            "I'm not talking to a robot, get me a person",
            "why won't you transfer me",
            "Person.",
            "a person please",
            "someone, please",
            "I don't want to talk to robot, but me through to someone.",
            "I don't want to talk to a robot.",
            "No more machines, please.",
            "I'm sick of this automated system",
            "Ages.",
            "and it's an",
            "Persian.",
            "Sun one.",
            "Reppering at a bit.",
            "Re-pre-ment, okay.",
            // The verb after the person: heard on an unseen Piper caller as "…talk to you?".
            "Is there someone real I can talk to you?",
            "Is there someone I can talk to?",
            "is there anybody there I could speak with",
            "anyone I can chat to",
            "is there a person I can speak to",
        ];
        for text in cases {
            let r = detect(text);
            assert!(r.count >= 1, "{text:?} → {r:?}");
            assert!(!r.declined, "{text:?} → {r:?}");
        }
    }

    #[test]
    fn ignores_narration_and_descriptions() {
        let cases = [
            "my travel agent booked it",
            "the agent I spoke to yesterday said I'd get a refund",
            "the agent who called me hung up",
            "an agent told me it would be fixed",
            "I already spoke to an agent",
            "real estate agent",
            "my real estate agent sent me",
            "insurance agent",
            "it's from my insurance agent",
            "secret agent",
            "I'm a person who likes things on time",
            "the person at the store",
            "the person at the store told me to call",
            "I'm only human",
            "it was human error",
            "I talked to a person yesterday",
            "someone already came out",
            "your agents are useless",
            "what are your hours",
            "my order hasn't arrived",
            "my washing machine arrived broken",
            "the robot vacuum I ordered doesn't work",
            "are you a robot?",
            "I got through to someone yesterday but they hung up",
            "",
            // Short words that sound like an escape word but ask for no one.
            "Agenda.",
            "again",
            "Urgent.",
            "Oh, gents.",
            "at Jen's Watch.",
            "Operation.",
            "Yes.",
            "No.",
            "Thanks.",
            "Hours.",
            "Perfect.",
            "Come on.",
            "Repair.",
            "I need a repair.",
            "the ages of my kids are on the account",
            "my Persian rug never arrived",
            "I'm calling about the reply you sent",
            "the person I talked to was rude",
            "someone I spoke to last week promised a refund",
            "someone real nice helped me last time",
        ];
        for text in cases {
            let r = detect(text);
            assert_eq!(r, AgentRequest::default(), "{text:?}");
        }
    }

    #[test]
    fn declines_are_not_requests() {
        let cases = [
            "I don't need an agent",
            "no, not a person, just the hours",
            "no not a person just the hours",
            "I do not want to speak to a representative",
            "don't transfer me",
            "no need for an agent",
            "I don't really want a human",
            "no agent please, I just need the address",
            "I'd rather sort it out without talking to a person",
            "I don't need someone to talk to, just the hours",
        ];
        for text in cases {
            let r = detect(text);
            assert_eq!(
                r,
                AgentRequest {
                    count: 0,
                    declined: true
                },
                "{text:?}"
            );
        }
    }

    #[test]
    fn counts_separate_requests() {
        let cases = [
            ("agent", 1),
            ("agent. agent! get me an agent", 3),
            ("agent agent agent", 3),
            ("agent, agent", 2),
            ("agent I said agent", 2),
            ("representative. Representative.", 2),
            ("I want a human, a real person", 1),
            ("get me an agent, please", 1),
            ("I want a person. Let me talk to a human being", 2),
            ("operator. I said operator, transfer me now", 3),
            ("an agent please", 1),
        ];
        for (text, want) in cases {
            assert_eq!(detect(text).count, want, "{text:?}");
        }
    }

    #[test]
    fn a_refusal_then_a_request_reports_both() {
        let r = detect("I don't need an agent. Actually, get me an agent");
        assert_eq!(
            r,
            AgentRequest {
                count: 1,
                declined: true
            }
        );
    }

    #[test]
    fn lone_requests_are_only_the_request() {
        for t in [
            "Agent.",
            "Operator. Operator.",
            "a person, please",
            "Representative.",
            "Ages.",
            "Reppin now it's a div",
            "Someone.",
        ] {
            assert!(is_lone_request(t), "{t:?}");
        }
        for t in [
            "A gents watch.",
            "Agents. Watch.",
            "I want an agent for my bill",
            "my travel agent",
            "Agenda.",
            "",
        ] {
            assert!(!is_lone_request(t), "{t:?}");
        }
    }

    #[test]
    fn serializes_plainly() {
        let json = serde_json::to_string(&AgentRequest {
            count: 2,
            declined: false,
        })
        .unwrap();
        assert_eq!(json, r#"{"count":2,"declined":false}"#);
    }
}
