//! What to say, as fragments: the spoken summary's sentences, numbers read digit by digit,
//! amounts, dates, counts, and the read-back of a caller's number.
//!
//! The summary is planned from its text (the sentence `handoff::spoken_summary` writes and
//! the store keeps), so the agent hears exactly the facts the card's `spoken_summary` says,
//! and the HTTP route needs nothing but the stored card. The text's grammar is small and
//! closed; the property test in `tests.rs` drives `spoken_summary` over its whole input space
//! and requires every sentence to map to fragments.

use std::borrow::Cow;

use super::MAX_READBACK_DIGITS;
use super::compose::{Pause, Utterance};
use super::library::{FragmentLibrary, SpeechError};

/// Every fragment id the planner can name (besides `q_<queue>`, which is optional: a queue
/// without one is announced with `q_unknown`). Checked at load.
#[rustfmt::skip]
pub const REQUIRED: &[&str] = &[
    "d_0", "d_1", "d_2", "d_3", "d_4", "d_5", "d_6", "d_7", "d_8", "d_9", "d_oh",
    "n_10", "n_11", "n_12", "n_13", "n_14", "n_15", "n_16", "n_17", "n_18", "n_19",
    "n_20", "n_30", "n_40", "n_50", "n_60", "n_70", "n_80", "n_90", "n_hundred", "n_thousand",
    "o_1", "o_2", "o_3", "o_4", "o_5", "o_6", "o_7", "o_8", "o_9", "o_10", "o_11", "o_12",
    "o_13", "o_14", "o_15", "o_16", "o_17", "o_18", "o_19", "o_20", "o_30",
    "m_january", "m_february", "m_march", "m_april", "m_may", "m_june", "m_july",
    "m_august", "m_september", "m_october", "m_november", "m_december",
    "q_unknown", "p_high", "p_urgent",
    "f_account", "f_order", "f_amount", "f_date",
    "w_dollars", "w_dollar", "w_cents", "w_cent", "w_and", "w_once", "w_twice", "w_times",
    "s_language", "s_caller", "s_asked_for_person", "s_called_before", "s_cut_off",
    "s_more_on_card", "s_connecting",
    "t_calm", "t_positive", "t_frustrated", "t_angry", "t_at_first_now", "t_now",
    "t_earlier", "t_getting_worse", "t_throughout", "t_not_heard_yet",
    "r_i_have", "r_is_that_right", "r_say_again", "r_got_it",
];

/// Word sequences of the spoken summary and the fragment that says each. The longest match
/// wins. Mood words are `analysis::tone::ToneLabel::as_str` and `ToneTracker::describe`'s.
const PHRASES: &[(&[&str], &str)] = &[
    (
        &["caller", "may", "need", "another", "language"],
        "s_language",
    ),
    (
        &[
            "a",
            "caller",
            "whose",
            "automated",
            "call",
            "was",
            "cut",
            "off",
        ],
        "s_cut_off",
    ),
    (
        &["a", "caller", "is", "being", "connected", "to", "you"],
        "s_connecting",
    ),
    (&["asked", "for", "a", "person"], "s_asked_for_person"),
    (&["has", "called", "before"], "s_called_before"),
    (&["caller"], "s_caller"),
    (&["calm"], "t_calm"),
    (&["positive"], "t_positive"),
    (&["frustrated"], "t_frustrated"),
    (&["angry"], "t_angry"),
    (&["at", "first", "now"], "t_at_first_now"),
    (&["now"], "t_now"),
    (&["earlier"], "t_earlier"),
    (&["getting", "worse"], "t_getting_worse"),
    (&["throughout"], "t_throughout"),
    (&["not", "heard", "yet"], "t_not_heard_yet"),
    (&["once"], "w_once"),
    (&["twice"], "w_twice"),
    (&["times"], "w_times"),
    (&["high", "priority"], "p_high"),
    (&["urgent", "priority"], "p_urgent"),
    (&["account"], "f_account"),
    (&["order"], "f_order"),
    (&["amount"], "f_amount"),
    (&["date"], "f_date"),
    (&["incoming", "call"], "q_unknown"),
];

#[rustfmt::skip]
const MONTHS: [&str; 12] = [
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december",
];

/// Bounds on a stored summary: what `spoken_summary` writes is a few hundred characters.
pub const MAX_TEXT_CHARS: usize = 2000;
pub const MAX_SENTENCES: usize = 16;

/// How a zero is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zero {
    Zero,
    Oh,
}

/// The planned summary and the sentences that could not be said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryPlan {
    pub utterance: Utterance,
    pub dropped: Vec<String>,
}

/// The fragment announcing `queue`'s calls ("Billing call"), when there is one.
pub fn queue_fragment(lib: &FragmentLibrary, queue: &str) -> Option<String> {
    let name = queue.trim().to_lowercase().replace([' ', '-'], "_");
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let id = format!("q_{name}");
    lib.contains(&id).then_some(id)
}

/// Plans a spoken summary's text. A sentence with a word no fragment says is left out
/// (except an unknown queue name, which becomes "Incoming call"); if anything was left out
/// the agent hears "More on the card."; if nothing is left, "A caller is being connected".
pub fn summary(lib: &FragmentLibrary, text: &str) -> SummaryPlan {
    let text: String = text.chars().take(MAX_TEXT_CHARS).collect();
    let mut u = Utterance::new();
    let mut dropped = Vec::new();
    for (k, sentence) in sentences(&text).iter().take(MAX_SENTENCES).enumerate() {
        match say_sentence(lib, sentence, k == 0) {
            Some(pieces) => {
                u.push_pause(Pause::Sentence);
                u.pieces.extend(pieces.pieces);
            }
            None => dropped.push(
                sentence
                    .iter()
                    .map(|t| t.w.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        }
    }
    if u.is_empty() {
        u.push_say("s_connecting");
    } else if !dropped.is_empty() {
        u.push_pause(Pause::Sentence);
        u.push_say("s_more_on_card");
    }
    SummaryPlan {
        utterance: u,
        dropped,
    }
}

/// "I have 3 8 2 6 1 — is that right?" Spaces and hyphens between digits are ignored.
pub fn readback(digits: &str) -> Result<Utterance, SpeechError> {
    let d: String = digits
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    if d.is_empty() || !d.chars().all(|c| c.is_ascii_digit()) {
        return Err(SpeechError::NotDigits(digits.chars().take(64).collect()));
    }
    if d.len() > MAX_READBACK_DIGITS {
        return Err(SpeechError::TooLong {
            len: d.len(),
            max: MAX_READBACK_DIGITS,
        });
    }
    let mut u = Utterance::new().say("r_i_have");
    say_digits(&mut u, &d, Zero::Zero);
    u.push_pause(Pause::Comma);
    u.push_say("r_is_that_right");
    Ok(u)
}

/// Digits one by one; numbers over six digits in groups of three (the last of four rather
/// than leave one alone), as people read them out.
pub fn say_digits(u: &mut Utterance, digits: &str, zero: Zero) {
    let ds: Vec<u32> = digits.chars().filter_map(|c| c.to_digit(10)).collect();
    let groups = if ds.len() <= 6 {
        vec![ds.len()]
    } else {
        let mut g = vec![3; ds.len() / 3];
        match ds.len() % 3 {
            0 => {}
            1 => *g.last_mut().expect("len > 6") += 1,
            r => g.push(r),
        }
        g
    };
    let mut i = 0;
    for (gi, len) in groups.into_iter().enumerate() {
        if gi > 0 {
            u.push_pause(Pause::Comma);
        }
        for (k, d) in ds[i..i + len].iter().enumerate() {
            if k > 0 {
                u.push_pause(Pause::Digit);
            }
            u.push_say(digit_id(*d, zero));
        }
        i += len;
    }
}

fn digit_id(d: u32, zero: Zero) -> Cow<'static, str> {
    match (d, zero) {
        (0, Zero::Oh) => "d_oh".into(),
        (d, _) => format!("d_{d}").into(),
    }
}

/// A whole number in words up to 999 999 ("twelve thousand three hundred forty"); larger
/// ones digit by digit.
pub fn say_cardinal(u: &mut Utterance, n: u64) {
    if n >= 1_000_000 {
        say_digits(u, &n.to_string(), Zero::Zero);
        return;
    }
    if n == 0 {
        u.push_say("d_0");
        return;
    }
    let (thousands, rest) = (n / 1000, n % 1000);
    if thousands > 0 {
        below_thousand(u, thousands);
        u.push_say("n_thousand");
    }
    if rest > 0 {
        below_thousand(u, rest);
    }
}

fn below_thousand(u: &mut Utterance, n: u64) {
    let (hundreds, rest) = (n / 100, n % 100);
    if hundreds > 0 {
        below_hundred(u, hundreds);
        u.push_say("n_hundred");
    }
    if rest > 0 {
        below_hundred(u, rest);
    }
}

fn below_hundred(u: &mut Utterance, n: u64) {
    match n {
        1..=9 => u.push_say(format!("d_{n}")),
        10..=19 => u.push_say(format!("n_{n}")),
        _ => {
            u.push_say(format!("n_{}", n / 10 * 10));
            if !n.is_multiple_of(10) {
                u.push_say(format!("d_{}", n % 10));
            }
        }
    }
}

/// The day of a month as an ordinal ("third", "twenty first").
fn say_ordinal(u: &mut Utterance, day: u64) {
    match day {
        1..=20 => u.push_say(format!("o_{day}")),
        21..=29 => {
            u.push_say("n_20");
            u.push_say(format!("o_{}", day - 20));
        }
        30 => u.push_say("o_30"),
        31 => {
            u.push_say("n_30");
            u.push_say("o_1");
        }
        _ => say_cardinal(u, day),
    }
}

/// "12.99 dollars" → twelve dollars and ninety nine cents.
fn say_money(u: &mut Utterance, dollars: u64, cents: u64) {
    if dollars > 0 || cents == 0 {
        say_cardinal(u, dollars);
        u.push_say(if dollars == 1 {
            "w_dollar"
        } else {
            "w_dollars"
        });
    }
    if cents > 0 {
        if dollars > 0 {
            u.push_say("w_and");
        }
        say_cardinal(u, cents);
        u.push_say(if cents == 1 { "w_cent" } else { "w_cents" });
    }
}

/// "12.99" → (12, 99); "1,299.5" → (1299, 50); "40" → (40, 0).
fn parse_money(s: &str) -> Option<(u64, u64)> {
    let s: String = s.chars().filter(|&c| c != ',').collect();
    let (d, c) = s.split_once('.').unwrap_or((&s, "0"));
    if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()) || d.len() > 12 {
        return None;
    }
    if !c.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let cents = match c.len() {
        1 => c.parse::<u64>().ok()? * 10,
        2 => c.parse().ok()?,
        _ => return None,
    };
    Some((d.parse().ok()?, cents))
}

fn whole_number(s: &str) -> Option<u64> {
    (!s.is_empty() && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// A word of the text and whether a comma (or dash, colon) followed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tok {
    pub w: String,
    pub comma_after: bool,
}

/// Splits at sentence ends ('.', '?', '!' closing a word, so "12.99" stays whole) into
/// lower-case words stripped of edge punctuation.
pub(crate) fn sentences(text: &str) -> Vec<Vec<Tok>> {
    let mut out = Vec::new();
    let mut cur: Vec<Tok> = Vec::new();
    for raw in text.split_whitespace() {
        let end = raw.ends_with(['.', '?', '!']);
        let comma = raw.ends_with([',', ';', ':', '—', '–']);
        let w = raw
            .trim_matches(|c: char| !c.is_alphanumeric())
            .to_lowercase();
        if w.is_empty() {
            if let Some(last) = cur.last_mut() {
                last.comma_after |= comma || raw.chars().any(|c| matches!(c, '—' | '–' | '-'));
            }
        } else {
            cur.push(Tok {
                w,
                comma_after: comma,
            });
        }
        if end && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// One sentence's fragments, or None when a word in it has none.
fn say_sentence(lib: &FragmentLibrary, toks: &[Tok], first: bool) -> Option<Utterance> {
    let mut u = Utterance::new();
    let mut i = 0;
    // A queue named in the dialplan without a fragment: "Returns call, high priority."
    if first
        && say_unit(lib, toks, 0, &mut Utterance::new()).is_none()
        && let Some(p) = toks.iter().take(4).position(|t| t.w == "call")
        && p >= 1
    {
        u.push_say("q_unknown");
        i = p + 1;
    }
    while i < toks.len() {
        if i > 0 && toks[i - 1].comma_after {
            u.push_pause(Pause::Comma);
        }
        i = say_unit(lib, toks, i, &mut u)?;
    }
    Some(u)
}

/// Says the unit starting at `toks[i]` into `u`; returns where the next unit starts.
fn say_unit(lib: &FragmentLibrary, toks: &[Tok], i: usize, u: &mut Utterance) -> Option<usize> {
    let w = |k: usize| toks.get(k).map_or("", |t| t.w.as_str());
    let is_digit = |k: usize| w(k).len() == 1 && w(k).as_bytes()[0].is_ascii_digit();
    // Digits spelled out one by one: "4 4 7 1 9".
    if is_digit(i) && (is_digit(i + 1) || !matches!(w(i + 1), "times" | "dollars")) {
        let mut end = i;
        while is_digit(end) {
            end += 1;
        }
        let digits: String = toks[i..end].iter().map(|t| t.w.as_str()).collect();
        say_digits(u, &digits, Zero::Zero);
        return Some(end);
    }
    if w(i + 1) == "dollars"
        && let Some((d, c)) = parse_money(w(i))
    {
        say_money(u, d, c);
        return Some(i + 2);
    }
    if let Some(m) = MONTHS.iter().position(|m| *m == w(i))
        && let Some(day) = whole_number(w(i + 1)).filter(|d| (1..=31).contains(d))
    {
        u.push_say(format!("m_{}", MONTHS[m]));
        say_ordinal(u, day);
        return Some(i + 2);
    }
    if let Some(n) = whole_number(w(i)) {
        say_cardinal(u, n);
        return Some(i + 1);
    }
    if w(i + 1) == "call"
        && let Some(id) = queue_fragment(lib, w(i))
    {
        u.push_say(id);
        return Some(i + 2);
    }
    let (words, id) = PHRASES
        .iter()
        .filter(|(words, _)| {
            words.len() <= toks.len() - i && words.iter().enumerate().all(|(k, x)| w(i + k) == *x)
        })
        .max_by_key(|(words, _)| words.len())?;
    u.push_say(*id);
    Some(i + words.len())
}
