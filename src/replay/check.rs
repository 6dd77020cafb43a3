//! Scoring a replayed call against its fixture's expectation, the way the Twilio simulator
//! scores a live one: decision, timing, queue, reason, priority, facts, answer, barge-in.

use regex::Regex;

use super::fixture::Fixture;
use super::sim::{Ending, Outcome};
use crate::call::Speaker;

/// One expectation that did not hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Miss {
    pub check: &'static str,
    pub detail: String,
}

/// Prompts that ask the caller to say it again or say more.
const CLARIFYING_PROMPTS: [&str; 3] = ["clarify", "repeat_unclear", "still_there"];

/// Lowercase, spoken digits to digits, separators between digits dropped: "4-4 7,1 9" → "44719".
pub fn norm_text(s: &str) -> String {
    let words: Vec<String> = s
        .to_lowercase()
        .split_whitespace()
        .map(|w| {
            let bare = w.trim_matches(|c: char| !c.is_alphanumeric());
            crate::analysis::numbers::digit_word(bare)
                .map_or_else(|| w.to_string(), |d| d.to_string())
        })
        .collect();
    let joined = words.join(" ");
    let mut out = String::with_capacity(joined.len());
    let chars: Vec<char> = joined.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if " -.,/".contains(c) && out.ends_with(|p: char| p.is_ascii_digit()) {
            let mut j = i;
            while j < chars.len() && " -.,/".contains(chars[j]) {
                j += 1;
            }
            if j < chars.len() && chars[j].is_ascii_digit() {
                i = j;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

fn answer_patterns(kind: &str) -> &'static [&'static str] {
    match kind {
        "hours" => &[
            r"\bopen",
            r"\bhours?\b",
            r"\bclos(e|ed|es|ing)\b",
            r"\b\d{1,2}(:\d\d)?\s*(a\.?m\b|p\.?m\b)",
            r"\b(monday|tuesday|wednesday|thursday|friday|saturday|sunday)s?\b",
            r"\bweekdays?\b",
        ],
        "address" => &[
            r"\baddress\b",
            r"\bstreet\b",
            r"\bavenue\b",
            r"\bsuite\b",
            r"\bdot (com|org|net|example)\b",
            r"\bweb ?site\b",
        ],
        _ => &[],
    }
}

/// Every way the outcome differs from what the fixture expects (empty: the call passed).
pub fn check(f: &Fixture, o: &Outcome) -> Vec<Miss> {
    let mut misses = Vec::new();
    let mut miss = |check: &'static str, detail: String| misses.push(Miss { check, detail });
    let e = &f.expect;
    match (e.transfer, o.handoff()) {
        (true, None) => miss(
            "transfer",
            format!(
                "expected a transfer, call ended by {:?}",
                ending_name(&o.ending)
            ),
        ),
        (false, Some(h)) => miss(
            "no_transfer",
            format!("unexpected transfer ({})", h.card.reason),
        ),
        (true, Some(h)) => {
            let trig = e.trigger_turn.unwrap_or(0);
            let latest = e.latest_turn.unwrap_or(trig);
            let t = o.ended_at;
            match o.turn_start.get(trig).copied().flatten() {
                Some(s) if s <= t => {}
                _ => miss(
                    "timing",
                    format!("transfer at {t} ms, before turn {trig} started"),
                ),
            }
            if let Some(Some(s)) = o.turn_start.get(latest + 1)
                && *s <= t
            {
                miss(
                    "timing",
                    format!("transfer at {t} ms, after turn {} started", latest + 1),
                );
            }
            let card = &h.card;
            if let Some(q) = &e.queue
                && !q.to_vec().contains(&card.queue)
            {
                miss(
                    "queue",
                    format!("queue {} not in {:?}", card.queue, q.to_vec()),
                );
            }
            if let Some(r) = &e.reason
                && !r.to_vec().contains(&card.reason)
            {
                miss(
                    "reason",
                    format!("reason {} not in {:?}", card.reason, r.to_vec()),
                );
            }
            if let Some(p) = e.priority_at_least
                && card.priority < p
            {
                miss(
                    "priority",
                    format!("priority {} below {}", card.priority.as_str(), p.as_str()),
                );
            }
            if let Some(p) = e.priority_at_most
                && card.priority > p
            {
                miss(
                    "priority",
                    format!("priority {} above {}", card.priority.as_str(), p.as_str()),
                );
            }
            let facts_json = serde_json::to_string(&card.facts).unwrap_or_default();
            let hay = norm_text(&format!(
                "{facts_json} | {} | {} | {}",
                card.summary,
                card.spoken_summary,
                card.intent.as_deref().unwrap_or("")
            ));
            for fact in &e.facts {
                if !hay.contains(&norm_text(fact)) {
                    miss("facts", format!("fact {fact:?} not on the card"));
                }
            }
            if h.caller_say.trim().is_empty() || card.spoken_summary.trim().is_empty() {
                miss("summary", "empty caller line or spoken summary".into());
            }
        }
        (false, None) => {
            if let Some(kind) = &e.answer {
                let said = system_text_after_caller(o).to_lowercase();
                let found = answer_patterns(kind)
                    .iter()
                    .any(|p| Regex::new(p).map(|r| r.is_match(&said)).unwrap_or(false));
                if !found {
                    miss("answer", format!("no {kind} answer in {said:?}"));
                }
            }
        }
    }
    if let Some(want) = e.clarify {
        let asked: Vec<&str> = o
            .transcript
            .iter()
            .filter(|l| l.speaker == Speaker::System)
            .filter_map(|l| l.prompt.as_deref())
            .filter(|p| CLARIFYING_PROMPTS.iter().any(|c| p.starts_with(c)))
            .collect();
        if want == asked.is_empty() {
            miss(
                "clarify",
                format!("expected clarifying questions {want}, saw {asked:?}"),
            );
        }
    }
    if let Some(want) = e.barge_in
        && want != (o.clears > 0)
    {
        miss(
            "barge_in",
            format!("expected barge-in {want}, saw {} clear(s)", o.clears),
        );
    }
    misses
}

fn ending_name(e: &Ending) -> &'static str {
    match e {
        Ending::Transferred(_) => "transfer",
        Ending::HungUp => "warmline hang-up",
        Ending::CallerHungUp => "caller hang-up",
    }
}

/// What warmline said after the caller first spoke (the greeting does not count as an answer).
fn system_text_after_caller(o: &Outcome) -> String {
    let mut heard = false;
    let mut out = Vec::new();
    for l in &o.transcript {
        match l.speaker {
            Speaker::Caller => heard = true,
            Speaker::System if heard => out.push(l.text.as_str()),
            Speaker::System => {}
        }
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::norm_text;

    #[test]
    fn norm_text_joins_spoken_and_separated_digits() {
        assert!(norm_text("account four four seven one nine").contains("44719"));
        assert!(norm_text("4-4 7,1 9").contains("44719"));
        assert!(norm_text("Account 4 4 7 1 9.").contains("44719"));
        assert_eq!(norm_text("Hello There"), "hello there");
    }
}
