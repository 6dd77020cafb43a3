//! Summaries generated from the call's structured state, never a transcript dump.
//!
//! The agent reads the written summary (two sentences: who, what, how they feel, what was
//! tried) and hears the spoken one before the caller is bridged (under 15 seconds). The caller
//! hears where they are going and what was passed on (VOICE.md).

use crate::analysis::numbers::Facts;
use crate::handoff::{Priority, Reason};

/// Everything a summary may draw on.
#[derive(Debug, Clone)]
pub struct SummaryInput<'a> {
    pub queue: &'a str,
    pub intent: Option<&'a str>,
    pub reason: Reason,
    pub priority: Priority,
    pub facts: &'a Facts,
    /// The caller's mood over the call in words ("calm at first, now angry").
    pub mood: &'a str,
    /// True when the caller is frustrated or angry now.
    pub upset: bool,
    pub agent_requests: u32,
    /// What warmline did before the handoff ("answered the opening hours").
    pub tried: &'a [String],
    /// The caller's own words on the problem, shortened.
    pub gist: Option<&'a str>,
    pub repeat_contact: bool,
}

fn topic(input: &SummaryInput) -> String {
    match input.intent {
        Some("account") => "their account details".to_string(),
        Some("orders") => "an order".to_string(),
        Some("technical") => "a technical problem".to_string(),
        Some(i) => i.to_string(),
        None => "an unclear topic".to_string(),
    }
}

fn why(reason: Reason, requests: u32) -> String {
    match reason {
        Reason::ExplicitRequest => "asked for a person".into(),
        Reason::RepeatedRequest => format!("asked for a person {}", times(requests)),
        Reason::Dtmf => "pressed 0 for a person".into(),
        Reason::NegativeSentiment => "sent straight to a person because they are upset".into(),
        Reason::NotUnderstood => "the system could not understand them".into(),
        Reason::LowConfidence => "hard to hear on the line".into(),
        Reason::UnsupportedLanguage => "speaks a language the system does not serve".into(),
        Reason::Dialplan => "routed by topic".into(),
        Reason::SystemFault => "handed over because the automated line had a fault".into(),
        Reason::Overload => "handed over because the automated line was busy".into(),
    }
}

fn times(n: u32) -> String {
    match n {
        0 | 1 => "once".into(),
        2 => "twice".into(),
        n => format!("{n} times"),
    }
}

/// Facts as words for the screen: "account 44719, order 51826".
fn facts_written(f: &Facts) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(a) = &f.account_number {
        out.push(format!("account {a}"));
    }
    if let Some(o) = &f.order_number {
        out.push(format!("order {o}"));
    }
    if let Some(p) = &f.phone_number {
        out.push(format!("callback number {p}"));
    }
    if let Some(a) = &f.amount {
        out.push(format!("amount ${a}"));
    }
    if let Some(d) = &f.date {
        out.push(format!("date {d}"));
    }
    out
}

/// Digits spaced out so text-to-speech reads them one by one: "4 4 7 1 9".
fn spell_digits(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

fn facts_spoken(f: &Facts) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(a) = &f.account_number {
        out.push(format!("account {}", spell_digits(a)));
    }
    if let Some(o) = &f.order_number {
        out.push(format!("order {}", spell_digits(o)));
    }
    if let Some(a) = &f.amount {
        out.push(format!("amount {a} dollars"));
    }
    if let Some(d) = &f.date {
        out.push(format!("date {d}"));
    }
    out
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// Two sentences for the agent's screen.
pub fn written_summary(input: &SummaryInput) -> String {
    let facts = facts_written(input.facts);
    let mut first = format!("Caller about {}", topic(input));
    if !facts.is_empty() {
        first.push_str(&format!(" ({})", facts.join(", ")));
    }
    if let Some(g) = input.gist {
        first.push_str(&format!(": \"{g}\""));
    }
    first.push('.');
    let mut second = format!(
        "{}; {}",
        capitalize(input.mood),
        why(input.reason, input.agent_requests)
    );
    if input.repeat_contact {
        second.push_str("; says they have called about this before");
    }
    if !input.tried.is_empty() {
        second.push_str(&format!("; warmline {}", input.tried.join(" and ")));
    }
    second.push('.');
    format!("{first} {second}")
}

/// The sentence the agent hears as they pick up: short enough to say in under 15 seconds.
pub fn spoken_summary(input: &SummaryInput) -> String {
    let mut parts = vec![format!(
        "{} call{}",
        capitalize(input.queue),
        match input.priority {
            Priority::Normal => String::new(),
            p => format!(", {} priority", p.as_str()),
        }
    )];
    parts.extend(
        facts_spoken(input.facts)
            .into_iter()
            .map(|f| capitalize(&f)),
    );
    if input.reason == Reason::UnsupportedLanguage {
        // First thing after the facts: the agent may need an interpreter before anything else.
        parts.push("Caller may need another language".into());
    }
    parts.push(format!("Caller {}", input.mood));
    if input.agent_requests >= 2 {
        parts.push(format!(
            "Asked for a person {}",
            times(input.agent_requests)
        ));
    }
    if input.repeat_contact {
        parts.push("Has called before".into());
    }
    let mut s = parts.join(". ");
    s.push('.');
    s
}

/// What the caller hears while being connected: where they are going and what was passed on.
pub fn caller_line(input: &SummaryInput) -> String {
    let team = if input.queue == "general" {
        "someone who can help".to_string()
    } else {
        format!("someone in {}", input.queue)
    };
    let passed = if facts_written(input.facts).is_empty() {
        "what you've told me".to_string()
    } else {
        let mut what = Vec::new();
        if input.facts.account_number.is_some() {
            what.push("your account number");
        }
        if input.facts.order_number.is_some() {
            what.push("your order number");
        }
        what.push("what you've told me");
        what.join(" and ")
    };
    if input.upset {
        format!("I hear you. I'm connecting you to {team} now. I've passed on {passed}.")
    } else {
        format!(
            "Sure. I'm connecting you to {team} now. I've passed on {passed}, so you won't need to repeat it."
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(facts: &'a Facts, tried: &'a [String]) -> SummaryInput<'a> {
        SummaryInput {
            queue: "billing",
            intent: Some("billing"),
            reason: Reason::NegativeSentiment,
            priority: Priority::Urgent,
            facts,
            mood: "calm at first, now angry",
            upset: true,
            agent_requests: 2,
            tried,
            gist: Some("you charged me again after I cancelled"),
            repeat_contact: true,
        }
    }

    #[test]
    fn written_summary_is_two_sentences_with_facts_and_mood() {
        let facts = Facts {
            account_number: Some("44719".into()),
            ..Default::default()
        };
        let tried = vec!["answered the opening hours".to_string()];
        let s = written_summary(&input(&facts, &tried));
        assert_eq!(s.matches(". ").count() + 1, 2, "{s}");
        assert!(s.contains("account 44719"), "{s}");
        assert!(s.contains("Calm at first, now angry"), "{s}");
        assert!(s.contains("called about this before"), "{s}");
    }

    #[test]
    fn spoken_summary_spells_digits_and_stays_short() {
        let facts = Facts {
            account_number: Some("44719".into()),
            ..Default::default()
        };
        let s = spoken_summary(&input(&facts, &[]));
        assert!(s.contains("Account 4 4 7 1 9"), "{s}");
        assert!(s.contains("urgent priority"), "{s}");
        // About 2.5 words a second when spoken: 15 s is under 38 words.
        assert!(s.split_whitespace().count() <= 37, "{s}");
    }

    #[test]
    fn spoken_summary_warns_of_another_language() {
        let facts = Facts::default();
        let base = input(&facts, &[]);
        let foreign = SummaryInput {
            reason: Reason::UnsupportedLanguage,
            ..base
        };
        assert!(spoken_summary(&foreign).contains("Caller may need another language"));
        assert!(!spoken_summary(&base).contains("language"));
    }

    #[test]
    fn caller_line_is_plain_when_upset() {
        let facts = Facts::default();
        let s = caller_line(&input(&facts, &[]));
        assert!(s.starts_with("I hear you."), "{s}");
        assert!(!s.to_lowercase().contains("apolog"), "{s}");
        assert!(s.contains("billing"), "{s}");
    }
}
