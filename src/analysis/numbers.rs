//! Account, order and phone numbers, amounts and dates, from how Whisper writes speech.
//!
//! The same spoken "four four seven one nine" arrives as words, as "4 4 7 1 9", "4.4.7.1.9",
//! "447, 1.9", "4-4-7-1-9" or "44719", so every form is reduced to digit chunks first and
//! adjacent chunks are joined into one run. Dates and amounts are taken out before runs are
//! read as ids, so "March 3rd" and "$12.99" never become an account number. A run belongs to
//! the nearest keyword before it ("account", "order", "phone"), since callers name the thing
//! and then read it out.

use super::text;

/// What the caller has told us so far; each field as digits (ids, phone), "12.99" (amount)
/// or "March 3" (date).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Facts {
    pub account_number: Option<String>,
    pub order_number: Option<String>,
    pub phone_number: Option<String>,
    pub amount: Option<String>,
    pub date: Option<String>,
}

impl Facts {
    /// Takes every field `newer` knows; a caller correcting a number is believed.
    pub fn merge(&mut self, newer: &Facts) {
        let take = |old: &mut Option<String>, new: &Option<String>| {
            if new.is_some() {
                old.clone_from(new);
            }
        };
        take(&mut self.account_number, &newer.account_number);
        take(&mut self.order_number, &newer.order_number);
        take(&mut self.phone_number, &newer.phone_number);
        take(&mut self.amount, &newer.amount);
        take(&mut self.date, &newer.date);
    }

    pub fn is_empty(&self) -> bool {
        *self == Facts::default()
    }
}

const UNITS: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];
const TEENS: [&str; 10] = [
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 8] = [
    "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];
const ORDINAL_UNITS: [&str; 9] = [
    "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
];
const ORDINAL_TEENS: [&str; 10] = [
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// Keywords, as phrases; matched across Whisper's word splits ("a count number").
const ACCOUNT_WORDS: &[&str] = &[
    "account",
    "accounts",
    "count number",
    "customer number",
    "customer id",
    "member",
    "membership",
    "client number",
    "acct",
];
const ORDER_WORDS: &[&str] = &[
    "order",
    "orders",
    "tracking",
    "confirmation",
    "reference",
    "ref",
    "case",
    "ticket",
    "shipment",
    "invoice",
    "booking",
    "reservation",
];
const PHONE_WORDS: &[&str] = &[
    "phone",
    "call me",
    "call back",
    "callback",
    "reach me",
    "cell",
    "mobile",
    "telephone",
    "text me",
    "ring me",
    "contact number",
];
/// Words that mean the utterance is about an order even without "order number".
const ORDER_CONTEXT: &[&str] = &[
    "ordered",
    "purchase",
    "purchased",
    "bought",
    "shipped",
    "delivery",
    "package",
    "parcel",
];
/// After a number, these make it a quantity or a time, not an id.
const NOT_ID_AFTER: &[&str] = &[
    "am", "pm", "o'clock", "oclock", "days", "day", "weeks", "week", "months", "month", "years",
    "year", "hours", "hour", "minutes", "minute", "times", "items", "item", "percent", "gb", "mb",
    "mbps", "gigs", "megs",
];
/// Before a four-digit 19xx/20xx run, these make it a year.
const YEAR_BEFORE: &[&str] = &["in", "since", "from", "year", "of", "back", "until", "till"];
const MONEY_WORDS: &[&str] = &[
    "dollars", "dollar", "bucks", "buck", "pounds", "pound", "euros", "euro", "quid",
];
const CENT_WORDS: &[&str] = &["cents", "cent", "pence", "p"];
/// Hesitations that may sit inside a number being read out.
const RUN_FILLERS: &[&str] = &["uh", "um", "er", "erm", "dash", "hyphen"];
/// Words Whisper writes for a digit it mis-heard inside a digit string read out one by one
/// ("8, free one, two, five" for "eight three one two five"). Only taken as digits between
/// two single digits, where the word itself would make no sense.
const DIGIT_HOMOPHONES: &[(&str, u64)] = &[
    ("free", 3),
    ("tree", 3),
    ("for", 4),
    ("fore", 4),
    ("to", 2),
    ("too", 2),
    ("won", 1),
    ("ate", 8),
    // "3/8 to fix one" for "three eight two six one".
    ("fix", 6),
    ("niner", 9),
];
/// Words after which a digit string starts ("the order number is for oh double two…"): a
/// homophone right after one of them is a digit when at least two digits follow it.
const NUMBER_LEADS: &[&str] = &["number", "numbers", "is", "it's"];
/// Longer than this, a digit run is a Whisper repetition loop ("81891 891 891 891 …"), not a
/// number anyone said; taking it would put a false number on the card.
const MAX_RUN_DIGITS: usize = 15;
/// A run made of the same digits twice, each half at least this long, is a number said twice
/// (or decoded twice): "692 535 06 692 535 06".
const MIN_REPEATED_HALF: usize = 5;
/// Before "oh", these make it the digit zero rather than an exclamation.
const OH_LEADS: &[&str] = &[
    "is", "number", "it's", "its", "was", "be", "account", "order", "phone", "code", "id",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Number words: "four", "forty four", "double five", "a hundred".
    Spoken,
    /// Digits, possibly with separators: "447", "4.4.7", "4-4-7".
    Numeral,
    /// Digits with exactly two decimals: "12.99".
    Decimal,
}

/// A chunk of a spoken number covering words `start..end`.
#[derive(Debug, Clone)]
struct Num {
    start: usize,
    end: usize,
    kind: Kind,
    digits: String,
    /// The value of a cardinal ("forty four" = 44); `None` for "double five" and numerals
    /// that are too long to be a quantity.
    value: Option<u64>,
    /// Whether this is a single spoken digit ("four"): two of those are a digit string, not
    /// "twelve ninety nine".
    single_digit: bool,
}

/// Reads the facts out of one utterance.
pub fn extract(text: &str) -> Facts {
    extract_after(text, None)
}

/// Reads the facts out of an utterance that follows one leaving `open` a field ("…my order
/// number is" / "1 6 7 1 8."): a number said first and without a name of its own is that
/// field's.
pub fn extract_after(text: &str, open: Option<OpenField>) -> Facts {
    let words = numeral_words(text);
    let mut facts = Facts::default();
    let mut used = vec![false; words.len()];
    dates(&words, &mut used, &mut facts);
    let nums = lex(&words, &used);
    let runs = runs(&words, &nums);
    let id_runs = money(&words, &nums, runs, &mut facts);
    ids(&words, &nums, &id_runs, open.map(|o| o.0), &mut facts);
    facts
}

/// An id field an utterance names last, with no number after the name ("…and my order number
/// is", "order number?"): the caller's next words are most likely that number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenField(Field);

/// Words after the name that still leave it open: "is", "uh", "it's".
const MAX_WORDS_AFTER_OPEN_FIELD: usize = 3;

pub fn open_field(text: &str) -> Option<OpenField> {
    let words = numeral_words(text);
    let (field, end) = (0..words.len()).rev().find_map(|i| keyword_at(&words, i))?;
    let rest = words.get(end..).unwrap_or_default();
    let says_digits = rest
        .iter()
        .any(|w| digit_word(w).is_some() || w.contains(|c: char| c.is_ascii_digit()));
    (rest.len() <= MAX_WORDS_AFTER_OPEN_FIELD && !says_digits).then_some(OpenField(field))
}

// ---- dates ----

fn dates(words: &[String], used: &mut [bool], facts: &mut Facts) {
    for (m, w) in words.iter().enumerate() {
        let Some(month) = MONTHS.iter().position(|x| x == w) else {
            continue;
        };
        // "March 3rd", "March the third", "March 3"
        let mut j = m + 1;
        if words.get(j).is_some_and(|w| w == "the") {
            j += 1;
        }
        let after = day_at(words, j);
        // "the third of March", "3rd March"
        let before = (m.checked_sub(1))
            .map(|k| if words[k] == "of" { k } else { m })
            .and_then(|k| day_ending_at(words, k));
        let (day, from, to) = match (after, before) {
            (Some((day, end)), _) => (day, m, end),
            (None, Some((day, start))) => (day, start, m + 1),
            _ => continue,
        };
        let mut to = to;
        // A year after the date is part of it, not an id.
        if words.get(to).is_some_and(|w| is_year(w)) {
            to += 1;
        }
        used[from..to].iter_mut().for_each(|u| *u = true);
        facts.date = Some(format!(
            "{}{} {day}",
            MONTHS[month][..1].to_uppercase(),
            &MONTHS[month][1..]
        ));
    }
}

fn is_year(w: &str) -> bool {
    w.len() == 4 && w.parse::<u32>().is_ok_and(|y| (1900..2100).contains(&y))
}

/// A day of the month starting at `i`: "3rd", "3", "third", "twenty first", "twenty one".
fn day_at(words: &[String], i: usize) -> Option<(u32, usize)> {
    let w = words.get(i)?;
    let day = if let Some(n) = numeral_ordinal(w).or_else(|| w.parse().ok()) {
        (n, i + 1)
    } else if let Some(n) = ordinal_word(words, i) {
        n
    } else {
        let (v, end) = below_hundred(words, i)?;
        (u32::try_from(v).ok()?, end)
    };
    (1..=31).contains(&day.0).then_some(day)
}

/// A day of the month ending just before `end`: the "third" in "the third of March".
fn day_ending_at(words: &[String], end: usize) -> Option<(u32, usize)> {
    (end.saturating_sub(2)..end).find_map(|start| {
        day_at(words, start)
            .filter(|&(_, e)| e == end)
            .map(|(d, _)| {
                let start = if start > 0 && words[start - 1] == "the" {
                    start - 1
                } else {
                    start
                };
                (d, start)
            })
    })
}

fn numeral_ordinal(w: &str) -> Option<u32> {
    let digits = w
        .strip_suffix("st")
        .or(w.strip_suffix("nd"))
        .or(w.strip_suffix("rd"))
        .or(w.strip_suffix("th"))?;
    digits.parse().ok()
}

fn ordinal_word(words: &[String], i: usize) -> Option<(u32, usize)> {
    let w = words.get(i)?.as_str();
    let unit = |w: &str| {
        ORDINAL_UNITS
            .iter()
            .position(|x| *x == w)
            .map(|p| p as u32 + 1)
    };
    if let Some(u) = unit(w) {
        return Some((u, i + 1));
    }
    if let Some(t) = ORDINAL_TEENS.iter().position(|x| *x == w) {
        return Some((t as u32 + 10, i + 1));
    }
    match w {
        "twentieth" => return Some((20, i + 1)),
        "thirtieth" => return Some((30, i + 1)),
        _ => {}
    }
    let tens = match w {
        "twenty" => 20,
        "thirty" => 30,
        _ => return None,
    };
    let u = unit(words.get(i + 1)?)?;
    Some((tens + u, i + 2))
}

// ---- lexing number chunks ----

/// A cardinal digit word, "zero" to "nine" (not "oh": that one needs its context).
fn unit(w: &str) -> Option<u64> {
    UNITS.iter().position(|x| *x == w).map(|p| p as u64)
}

/// The one reader of a spoken digit: "zero".."nine" → 0..9, and "oh"/"o" → 0 (as a caller reads
/// a number out: "four oh seven"). Lowercase words, as [`text::words`] gives them. Whether an
/// "oh" is a digit at all in running speech ("oh, I see") is for the caller to judge;
/// [`extract`] does.
pub fn digit_word(word: &str) -> Option<u8> {
    match word {
        "oh" | "o" => Some(0),
        _ => unit(word).map(|d| d as u8),
    }
}

/// The digits a transcript says, spoken or written, in order: "four 4-7, oh" → "4470",
/// "double 7" → "77".
pub fn spoken_digits(text: &str) -> String {
    let mut out = String::new();
    let mut times = 1;
    for w in numeral_words(text) {
        let digits: String = match digit_word(&w) {
            Some(d) => d.to_string(),
            None => w.chars().filter(char::is_ascii_digit).collect(),
        };
        match w.as_str() {
            "double" => times = 2,
            "triple" => times = 3,
            _ => {
                out.push_str(&digits.repeat(times));
                times = 1;
            }
        }
    }
    out
}

/// [`text::words`], with a letter O written inside a numeral read as the zero it was
/// ("1429O" → "14290": Whisper's beam search writes a final "oh" so).
fn numeral_words(text: &str) -> Vec<String> {
    let mut words = text::words(text);
    for w in &mut words {
        if w.contains(|c: char| c.is_ascii_digit())
            && w.chars().all(|c| c.is_ascii_digit() || c == 'o')
        {
            *w = w.replace('o', "0");
        }
    }
    words
}

/// 0..=99 in words: "seven", "twelve", "forty", "forty four".
fn below_hundred(words: &[String], i: usize) -> Option<(u64, usize)> {
    let w = words.get(i)?.as_str();
    if let Some(t) = TENS.iter().position(|x| *x == w) {
        let tens = 20 + 10 * t as u64;
        return match words.get(i + 1).and_then(|w| unit(w)) {
            Some(u) if u > 0 => Some((tens + u, i + 2)),
            _ => Some((tens, i + 1)),
        };
    }
    if let Some(t) = TEENS.iter().position(|x| *x == w) {
        return Some((10 + t as u64, i + 1));
    }
    unit(w).map(|u| (u, i + 1))
}

/// 0..=999 in words, with "hundred" and an optional "and": "four hundred and twelve".
fn below_thousand(words: &[String], i: usize) -> Option<(u64, usize)> {
    let (base, j) = if words.get(i).is_some_and(|w| w == "a")
        && words.get(i + 1).is_some_and(|w| w == "hundred")
    {
        (1, i + 1)
    } else {
        below_hundred(words, i)?
    };
    if words.get(j).is_none_or(|w| w != "hundred") || base == 0 || base > 9 {
        return (i != j).then_some((base, j));
    }
    let mut v = base * 100;
    let mut j = j + 1;
    let skip_and = usize::from(words.get(j).is_some_and(|w| w == "and"));
    if let Some((rest, end)) = below_hundred(words, j + skip_and) {
        v += rest;
        j = end;
    }
    Some((v, j))
}

/// A cardinal in words, up to the thousands: "twelve", "a hundred and twenty", "two thousand".
fn cardinal(words: &[String], i: usize) -> Option<(u64, usize)> {
    let (v, j) = if words.get(i).is_some_and(|w| w == "a")
        && words.get(i + 1).is_some_and(|w| w == "thousand")
    {
        (1, i + 1)
    } else {
        below_thousand(words, i)?
    };
    if words.get(j).is_none_or(|w| w != "thousand") || v == 0 {
        return Some((v, j));
    }
    let mut total = v * 1000;
    let mut j = j + 1;
    let skip_and = usize::from(words.get(j).is_some_and(|w| w == "and"));
    if let Some((rest, end)) = below_thousand(words, j + skip_and) {
        total += rest;
        j = end;
    }
    Some((total, j))
}

/// Splits the words into number chunks, skipping words already claimed by a date.
fn lex(words: &[String], used: &[bool]) -> Vec<Num> {
    let mut out: Vec<Num> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        if used[i] {
            i += 1;
            continue;
        }
        let w = words[i].as_str();
        let prev_is_num = out.last().is_some_and(|n| n.end == i);
        let next_is_digit = words.get(i + 1).is_some_and(|n| {
            unit(n).is_some() || n == "oh" || n.chars().next().is_some_and(|c| c.is_ascii_digit())
        });
        let spoken_digit = |w: &str| digit_word(w).map(u64::from);
        // "double five" → 55, "triple two" → 222.
        let times = match w {
            "double" => 2,
            "triple" => 3,
            _ => 0,
        };
        if times > 0 {
            let next = words.get(i + 1).map_or("", String::as_str);
            let d = spoken_digit(next).or_else(|| next.parse::<u64>().ok().filter(|&d| d < 10));
            if let Some(d) = d.filter(|_| !used.get(i + 1).copied().unwrap_or(true)) {
                out.push(Num {
                    start: i,
                    end: i + 2,
                    kind: Kind::Spoken,
                    digits: d.to_string().repeat(times),
                    value: None,
                    single_digit: false,
                });
                i += 2;
                continue;
            }
        }
        // "oh" is zero inside a digit run ("four oh seven"), not in "oh, I see".
        if matches!(w, "oh" | "o") {
            let leads = i > 0 && OH_LEADS.contains(&words[i - 1].as_str());
            if prev_is_num || (next_is_digit && leads) {
                out.push(Num {
                    start: i,
                    end: i + 1,
                    kind: Kind::Spoken,
                    digits: "0".into(),
                    value: Some(0),
                    single_digit: true,
                });
            }
            i += 1;
            continue;
        }
        if let Some(&(_, d)) = DIGIT_HOMOPHONES.iter().find(|(h, _)| *h == w) {
            let prev_digitwise =
                prev_is_num && out.last().is_some_and(|n| said_digitwise(words, n));
            let after_lead = i > 0 && NUMBER_LEADS.contains(&words[i - 1].as_str());
            if (prev_digitwise && digits_follow(words, i + 1, 1))
                || (after_lead && digits_follow(words, i + 1, 2))
            {
                out.push(Num {
                    start: i,
                    end: i + 1,
                    kind: Kind::Spoken,
                    digits: d.to_string(),
                    value: Some(d),
                    single_digit: true,
                });
                i += 1;
                continue;
            }
        }
        if let Some((v, end)) = cardinal(words, i).filter(|&(_, end)| !used[i..end].contains(&true))
        {
            out.push(Num {
                start: i,
                end,
                kind: Kind::Spoken,
                digits: v.to_string(),
                value: Some(v),
                single_digit: end == i + 1 && unit(w).is_some(),
            });
            i = end;
            continue;
        }
        let zeroed = letters_as_zero(w);
        if let Some(num) = numeral(zeroed.as_deref().unwrap_or(w), i) {
            out.push(num);
        } else if w == "l"
            && prev_is_num
            && out.last().is_some_and(|n| said_digitwise(words, n))
            && digits_follow(words, i + 1, 1)
        {
            out.push(Num {
                start: i,
                end: i + 1,
                kind: Kind::Spoken,
                digits: "0".into(),
                value: Some(0),
                single_digit: true,
            });
        }
        i += 1;
    }
    out
}

/// A digit said on its own or a numeral Whisper wrote digit by digit ("3/8", "4.4.7"), as
/// opposed to a quantity ("10", "twenty").
fn said_digitwise(words: &[String], n: &Num) -> bool {
    n.single_digit
        || (n.kind == Kind::Numeral && n.end == n.start + 1 && digitwise_numeral(&words[n.start]))
}

/// Single digits joined by separators: "3/8", "4.4.7", "4-4-7"; not "12.99" or "447-19".
fn digitwise_numeral(w: &str) -> bool {
    w.contains(['.', '/', '-'])
        && w.split(['.', '/', '-'])
            .all(|p| p.len() == 1 && p.chars().all(|c| c.is_ascii_digit()))
}

/// Whether `count` digit-like words start at `i`, skipping digit homophones between them.
fn digits_follow(words: &[String], i: usize, count: usize) -> bool {
    let digitlike = |w: &str| {
        unit(w).is_some()
            || matches!(w, "oh" | "o" | "l" | "double" | "triple")
            || (w.len() == 1 && w.chars().all(|c| c.is_ascii_digit()))
            || digitwise_numeral(w)
    };
    let homophone = |w: &str| DIGIT_HOMOPHONES.iter().any(|(h, _)| *h == w);
    let mut found = 0;
    for w in words.iter().skip(i) {
        if digitlike(w) {
            found += 1;
            if found == count {
                return true;
            }
        } else if !homophone(w) {
            return false;
        }
    }
    false
}

/// "l4" → "04", "2ll8" → "2008": Whisper writes a spoken "oh" inside a digit string as the
/// letter L (or O). Only tokens of digits and those letters with at least one digit.
fn letters_as_zero(w: &str) -> Option<String> {
    let digits = w.chars().any(|c| c.is_ascii_digit());
    let letters = w.chars().any(|c| matches!(c, 'l' | 'o'));
    (digits
        && letters
        && w.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, 'l' | 'o')))
    .then(|| w.replace(['l', 'o'], "0"))
}

/// A token of digits, maybe with separators: "447", "4.4.7.1.9", "12.99", "1,299".
/// Times ("5:30"), ordinals ("3rd") and "$" amounts are not chunks of an id.
fn numeral(w: &str, i: usize) -> Option<Num> {
    if !w.chars().next()?.is_ascii_digit() || w.contains(':') {
        return None;
    }
    if !w.chars().all(|c| c.is_ascii_digit() || ".,-/".contains(c)) {
        return None;
    }
    let digits: String = w.chars().filter(char::is_ascii_digit).collect();
    let decimal = w.split_once('.').is_some_and(|(int, frac)| {
        frac.len() == 2
            && frac.chars().all(|c| c.is_ascii_digit())
            && int.chars().all(|c| c.is_ascii_digit() || c == ',')
    });
    let plain = w.chars().all(|c| c.is_ascii_digit());
    Some(Num {
        start: i,
        end: i + 1,
        kind: if decimal {
            Kind::Decimal
        } else {
            Kind::Numeral
        },
        value: if plain && digits.len() <= 6 {
            digits.parse().ok()
        } else {
            None
        },
        single_digit: digits.len() == 1,
        digits,
    })
}

/// Groups chunks that follow each other (fillers allowed between) into runs of indices.
fn runs(words: &[String], nums: &[Num]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    for (k, n) in nums.iter().enumerate() {
        let joined = k > 0 && {
            let prev = &nums[k - 1];
            prev.kind != Kind::Decimal
                && n.kind != Kind::Decimal
                && words[prev.end..n.start]
                    .iter()
                    .all(|w| RUN_FILLERS.contains(&w.as_str()))
        };
        match out.last_mut() {
            Some(run) if joined => run.push(k),
            _ => out.push(vec![k]),
        }
    }
    out
}

// ---- amounts ----

/// Before a number, these say it is money even if a keyword is also near: "account … it cost".
const PRICE_WORDS: &[&str] = &[
    "cost", "costs", "charged", "charge", "paid", "pay", "price", "fee", "billed", "refund",
    "amount", "total", "owe", "for",
];

/// Takes amounts out of `runs`, returning the runs left for ids.
fn money(
    words: &[String],
    nums: &[Num],
    runs: Vec<Vec<usize>>,
    facts: &mut Facts,
) -> Vec<Vec<usize>> {
    let word = |i: usize| words.get(i).map_or("", String::as_str);
    // "$12.99" is a single word.
    for w in words {
        if let Some((d, c)) = w.strip_prefix('$').and_then(dollars_and_cents) {
            facts.amount = Some(format!("{d}.{c:02}"));
        }
    }
    let mut left = Vec::new();
    let mut r = 0;
    while r < runs.len() {
        let run = &runs[r];
        r += 1;
        let first = &nums[run[0]];
        let last = &nums[run[run.len() - 1]];
        let after = word(last.end);
        // An id keyword just before ("account number forty four nineteen") beats the price
        // reading unless a price word is nearer still.
        let id_near = near_keyword(words, first.start) && !price_near(words, first.start);
        let amount = if MONEY_WORDS.contains(&after) {
            // "twelve dollars and ninety nine cents", "12 dollars 99"
            let whole = pair(nums, run).or_else(|| whole_amount(words, nums, run));
            let cents = runs.get(r).and_then(|next| {
                let c = &nums[next[0]];
                let only_and = words[last.end + 1..c.start].iter().all(|w| w == "and");
                (next.len() == 1 && only_and)
                    .then_some(c.value?)
                    .filter(|&v| v < 100)
            });
            whole.map(|(d, c)| match cents {
                Some(extra) if c == 0 => {
                    r += 1;
                    (d, extra)
                }
                _ => (d, c),
            })
        } else if CENT_WORDS.contains(&after) && run.len() == 1 {
            first.value.filter(|&v| v < 100).map(|c| (0, c))
        } else if id_near {
            None
        } else if let Some(p) = pair(nums, run) {
            // "twelve ninety nine": how prices are said.
            Some(p)
        } else if first.kind == Kind::Decimal && run.len() == 1 {
            dollars_and_cents(&words[first.start])
        } else {
            None
        };
        match amount {
            Some((d, c)) => facts.amount = Some(format!("{d}.{c:02}")),
            None => left.push(run.clone()),
        }
    }
    left
}

/// "12.99" → (12, 99), "1,299" → (1299, 0), "12.5" → (12, 50).
fn dollars_and_cents(s: &str) -> Option<(u64, u64)> {
    let s: String = s.chars().filter(|&c| c != ',').collect();
    let (d, c) = s.split_once('.').unwrap_or((&s, "0"));
    let c: u64 = match c.len() {
        1 => c.parse::<u64>().ok()? * 10,
        2 => c.parse().ok()?,
        _ => return None,
    };
    Some((d.parse().ok()?, c))
}

/// The amount a run before "dollars" names: "12.99", "forty", "a hundred and twenty".
fn whole_amount(words: &[String], nums: &[Num], run: &[usize]) -> Option<(u64, u64)> {
    if let [k] = run {
        let n = &nums[*k];
        return match n.kind {
            Kind::Decimal | Kind::Numeral => dollars_and_cents(&words[n.start]),
            Kind::Spoken => Some((n.value.or_else(|| n.digits.parse().ok())?, 0)),
        };
    }
    let digits: String = run.iter().map(|&k| nums[k].digits.as_str()).collect();
    Some((digits.parse().ok()?, 0))
}

/// Two spoken cardinals, the second at least ten: "twelve ninety nine" = 12.99.
fn pair(nums: &[Num], run: &[usize]) -> Option<(u64, u64)> {
    let [a, b] = run else { return None };
    let (a, b) = (&nums[*a], &nums[*b]);
    if a.kind != Kind::Spoken || b.kind != Kind::Spoken || b.single_digit {
        return None;
    }
    let (d, c) = (a.value?, b.value?);
    ((1..100).contains(&d) && (10..100).contains(&c)).then_some((d, c))
}

/// Whether an id keyword ends within three words before `at`.
fn near_keyword(words: &[String], at: usize) -> bool {
    (at.saturating_sub(5)..at)
        .any(|i| keyword_at(words, i).is_some_and(|(_, end)| end <= at && end + 3 >= at))
}

fn price_near(words: &[String], at: usize) -> bool {
    words[at.saturating_sub(3)..at]
        .iter()
        .any(|w| PRICE_WORDS.contains(&w.as_str()))
}

// ---- ids ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Account,
    Order,
    Phone,
}

fn keyword_at(words: &[String], i: usize) -> Option<(Field, usize)> {
    let lists = [
        (Field::Account, ACCOUNT_WORDS),
        (Field::Order, ORDER_WORDS),
        (Field::Phone, PHONE_WORDS),
    ];
    lists.iter().find_map(|(field, list)| {
        list.iter()
            .find_map(|p| text::match_at(words, i, p).map(|end| (*field, end)))
    })
}

/// The digits of a run as an id: a run said twice counts once, a repetition loop not at all.
fn run_digits(nums: &[Num], run: &[usize]) -> Option<String> {
    let digits: String = run.iter().map(|&k| nums[k].digits.as_str()).collect();
    let half = digits.len() / 2;
    let on_chunk_boundary = run
        .iter()
        .scan(0, |len, &k| {
            *len += nums[k].digits.len();
            Some(*len)
        })
        .any(|len| len == half);
    if digits.len().is_multiple_of(2)
        && half >= MIN_REPEATED_HALF
        && on_chunk_boundary
        && digits[..half] == digits[half..]
    {
        return Some(digits[..half].to_string());
    }
    (digits.len() <= MAX_RUN_DIGITS).then_some(digits)
}

fn ids(
    words: &[String],
    nums: &[Num],
    runs: &[Vec<usize>],
    open: Option<Field>,
    facts: &mut Facts,
) {
    let order_context = (0..words.len()).any(|i| {
        keyword_at(words, i).is_some_and(|(f, _)| f == Field::Order)
            || ORDER_CONTEXT.contains(&words[i].as_str())
    });
    let mut prev_end = 0;
    for run in runs {
        let start = nums[run[0]].start;
        let end = nums[run[run.len() - 1]].end;
        let Some(digits) = run_digits(nums, run) else {
            prev_end = end;
            continue;
        };
        // A keyword read before an earlier number belongs to that number; the field the
        // previous utterance left open, to the first.
        let before = (prev_end..start)
            .rev()
            .find_map(|i| {
                keyword_at(words, i)
                    .filter(|&(_, e)| e <= start)
                    .map(|(f, _)| f)
            })
            .or(open.filter(|_| prev_end == 0));
        prev_end = end;
        let after =
            (end..(end + 4).min(words.len())).find_map(|i| keyword_at(words, i).map(|(f, _)| f));
        let next = words.get(end).map_or("", String::as_str);
        let prev = start.checked_sub(1).map_or("", |i| words[i].as_str());
        if NOT_ID_AFTER.contains(&next) {
            continue;
        }
        let n = digits.len();
        let phone_len = n == 7 || n == 10 || (n == 11 && digits.starts_with('1'));
        let field = match before.or(after) {
            Some(Field::Phone) if (7..=11).contains(&n) => Field::Phone,
            Some(Field::Phone) => continue,
            Some(f) if n >= 3 => f,
            Some(_) => continue,
            None if phone_len && n >= 10 => Field::Phone,
            None if n < 4 => continue,
            None if n == 4 && is_year(&digits) && YEAR_BEFORE.contains(&prev) => continue,
            None if order_context => Field::Order,
            None => Field::Account,
        };
        let slot = match field {
            Field::Account => &mut facts.account_number,
            Field::Order => &mut facts.order_number,
            Field::Phone => &mut facts.phone_number,
        };
        *slot = Some(digits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(text: &str) -> Option<String> {
        extract(text).account_number
    }

    #[test]
    fn one_reader_for_spoken_digits() {
        let read: Vec<Option<u8>> = ["zero", "oh", "o", "four", "nine", "ten", "for", "Four"]
            .iter()
            .map(|w| digit_word(w))
            .collect();
        assert_eq!(
            read,
            [
                Some(0),
                Some(0),
                Some(0),
                Some(4),
                Some(9),
                None,
                None,
                None
            ]
        );
        assert_eq!(spoken_digits("Four 4-7, oh. Nine!"), "44709");
        assert_eq!(spoken_digits("two eight triple four double 7"), "2844477");
        assert_eq!(spoken_digits("I need an agent"), "");
    }

    #[test]
    fn a_number_said_after_its_name_in_the_previous_utterance_is_that_field() {
        let open = open_field("Where is my parcel, order number?");
        assert!(open.is_some());
        let f = extract_after("1 6 7 1 8", open);
        assert_eq!(f.order_number.as_deref(), Some("16718"));
        assert_eq!(f.account_number, None);
        // Without the previous utterance it is an account number, as before.
        assert_eq!(account("1 6 7 1 8"), Some("16718".into()));
        assert!(open_field("my account number is").is_some());
        // A name with its number, or far back in the sentence, leaves nothing open.
        assert_eq!(open_field("my order number is 4 4 7"), None);
        assert_eq!(
            open_field("the order number is on the receipt somewhere"),
            None
        );
        assert_eq!(open_field("I need a refund"), None);
        // Only the first number takes the open field; a named one keeps its own name.
        let f = extract_after("4 4 7 1 9, and my account number is 5 5 5 1 2", open);
        assert_eq!(f.order_number.as_deref(), Some("44719"));
        assert_eq!(f.account_number.as_deref(), Some("55512"));
    }

    #[test]
    fn the_number_pass_prompt_reads_as_its_two_numbers() {
        // The call engine refuses a second hearing that copies these (see after_number_pass).
        let f = extract(crate::stt::NUMBER_PASS_PROMPT);
        assert_eq!(f.account_number.as_deref(), Some("44719"));
        assert_eq!(f.order_number.as_deref(), Some("51880666"));
    }

    #[test]
    fn a_letter_o_inside_a_numeral_is_a_zero() {
        assert_eq!(
            extract("The order number is 1429O.")
                .order_number
                .as_deref(),
            Some("14290")
        );
        assert_eq!(account("account number O4471"), Some("04471".into()));
        assert_eq!(spoken_digits("4O7, oh"), "4070");
        // A word without a digit in it stays a word.
        assert_eq!(spoken_digits("oo zoo"), "");
    }

    #[test]
    fn digit_string_forms() {
        let cases = [
            "my account number is four four seven one nine",
            "account number 4 4 7 1 9",
            "account number 4.4.7.1.9",
            "Account number, 447, 1.9.",
            "my account number is 44719",
            "account 4-4-7-1-9",
            "my count number is 44719",
            "a count number 4 4 7 1 9",
            "account number forty four seven nineteen",
            "account number four four seven, uh, one nine",
            "the number on my account is 44719",
        ];
        for text in cases {
            assert_eq!(account(text).as_deref(), Some("44719"), "{text:?}");
        }
    }

    #[test]
    fn spoken_digit_helpers() {
        let cases = [
            ("account number double five one two", "5512"),
            ("account triple two four one", "22241"),
            ("account number four oh seven one nine", "40719"),
            ("account number is oh four four seven", "0447"),
            ("account number double oh seven nine", "0079"),
            ("customer number 1 2 3 4 5", "12345"),
            ("member id zero zero nine one", "0091"),
            ("account five hundred twelve", "512"),
        ];
        for (text, want) in cases {
            assert_eq!(account(text).as_deref(), Some(want), "{text:?}");
        }
    }

    /// What Whisper tiny.en wrote for numbers in `fixtures/digits` (and the issue's own
    /// example), and what the caller said.
    #[test]
    fn tiny_en_transcripts_of_spoken_numbers() {
        let cases = [
            // "three eight two six one", from issue 11.
            ("my account number is 3/8 to fix one", Some("38261"), None),
            // "eight two five eight two oh four eight" (quiet Piper): "oh" written as L.
            (
                "Hi, my order hasn't arrived. The order number is 82582 L4 8.",
                None,
                Some("82582048"),
            ),
            // "two double oh eight four seven eight", spaced out by a digit prompt.
            (
                "I have a question about a chart. The account number is 2 L L 8 4 7 8",
                Some("2008478"),
                None,
            ),
            // "four oh double two six oh seven" (noisy flite): "four" heard as "for".
            (
                "I want to return and I don't feel order numbers for 0, double 2, 6, 0, 7.",
                None,
                Some("4022607"),
            ),
            // The number decoded twice over a chunked reading.
            (
                "I have a question about my bill. My account number is 692 535 06 692 535 06",
                Some("69253506"),
                None,
            ),
            // Already read right before; kept so they stay right.
            (
                "I'm calling about a delivery. My order number is 28, triple 4, double 7.",
                None,
                Some("2844477"),
            ),
            (
                "I have a question about the chart. The account number is 1-85-0731-293.",
                Some("1850731293"),
                None,
            ),
            (
                "I have a question about my bill. My count number is 3 0 1 0 1 5",
                Some("301015"),
                None,
            ),
            (
                "I need help with billing, the count number 1 9 3 9 3 7 7 1",
                Some("19393771"),
                None,
            ),
            (
                "Hi, my order hasn't arrived. The order number is 470 293.",
                None,
                Some("470293"),
            ),
        ];
        for (text, a, o) in cases {
            let f = extract(text);
            assert_eq!(
                (f.account_number.as_deref(), f.order_number.as_deref()),
                (a, o),
                "{text:?}"
            );
        }
    }

    #[test]
    fn repetition_loops_are_not_numbers() {
        let loops = [
            "Where's my parcel? Order number 81891 891 891 891 891 891 891 891 891 891 891",
            "I want to return an item. The order number is 2, 3, 7, 9, 3, 7, 9, 3, 7, 9, 3, 7, \
             9, 3, 7, 7, 9, 3, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7",
            "My account time is 1, 4, 4, 10, 3, 10, 6, 10, 10, 5, 10, 10, 10, 10, 10, 10, 10",
        ];
        for text in loops {
            let f = extract(text);
            assert_eq!((f.account_number, f.order_number), (None, None), "{text:?}");
        }
        // A short number said twice is two digits groups, not one number said twice.
        assert_eq!(account("account 4545").as_deref(), Some("4545"));
    }

    #[test]
    fn no_number_in_everyday_counts() {
        for text in [
            "I've been waiting for two weeks",
            "one of them is broken",
            "I've called twice",
            "I called 2 or 3 times",
            "it's for 2 people",
            "the number is for my wife",
            "it's for the 2 of us",
            "I paid for 1 and got 2",
            "between 4 and 5 pm",
            "it was 2 to 3 weeks ago",
            "I've had 1 l 2 things",
            "I bought it for 12.99",
        ] {
            let f = extract(text);
            assert_eq!(
                (f.account_number, f.order_number, f.phone_number),
                (None, None, None),
                "{text:?}"
            );
        }
    }

    #[test]
    fn oh_as_an_exclamation_is_not_zero() {
        let f = extract("oh, I see. my account is 4 4 7");
        assert_eq!(f.account_number.as_deref(), Some("447"));
        assert_eq!(extract("oh okay"), Facts::default());
    }

    #[test]
    fn attribution_table() {
        // (text, account, order, phone)
        type Row = (
            &'static str,
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
        );
        let cases: &[Row] = &[
            ("order number 5 1 8 2", None, Some("5182"), None),
            // Whisper's mis-heard digits inside a digit string.
            (
                "Order number 8, free one, two, five.",
                None,
                Some("83125"),
                None,
            ),
            ("my account is 4 for 7 1 9", Some("44719"), None, None),
            // …but not between quantities or outside a digit string.
            ("order 2 for 10 dollars", None, None, None),
            ("I got it for free", None, None, None),
            (
                "account 44719, it cost twelve ninety nine",
                Some("44719"),
                None,
                None,
            ),
            (
                "my account is forty four nineteen",
                Some("4419"),
                None,
                None,
            ),
            ("the confirmation is 7 7 3 1 0", None, Some("77310"), None),
            ("reference 51826", None, Some("51826"), None),
            (
                "account 44719 and order 51826",
                Some("44719"),
                Some("51826"),
                None,
            ),
            (
                "my account is 44719 and the order is 5 1 8 2 6",
                Some("44719"),
                Some("51826"),
                None,
            ),
            ("44719", Some("44719"), None, None),
            ("it's 4 4 7 1 9", Some("44719"), None, None),
            ("where is my order, it's 51826", None, Some("51826"), None),
            (
                "I ordered it, the number is 51826",
                None,
                Some("51826"),
                None,
            ),
            ("51826 is my order number", None, Some("51826"), None),
            (
                "my phone number is 555 123 4567",
                None,
                None,
                Some("5551234567"),
            ),
            ("call me on 555-123-4567", None, None, Some("5551234567")),
            (
                "call me back at five five five one two one two",
                None,
                None,
                Some("5551212"),
            ),
            ("you can reach me at 555 0199", None, None, Some("5550199")),
            ("5551234567", None, None, Some("5551234567")),
            (
                "account 44719, call me on 555 123 4567",
                Some("44719"),
                None,
                Some("5551234567"),
            ),
            ("account 12", None, None, None),
            ("I've had it for 3 years", None, None, None),
            ("it took 2 weeks", None, None, None),
            ("since 2019", None, None, None),
            ("open at 9 am", None, None, None),
            ("it's been 1200 days", None, None, None),
            ("I called at 5:30", None, None, None),
        ];
        for &(text, a, o, p) in cases {
            let f = extract(text);
            assert_eq!(
                (
                    f.account_number.as_deref(),
                    f.order_number.as_deref(),
                    f.phone_number.as_deref()
                ),
                (a, o, p),
                "{text:?}"
            );
        }
    }

    #[test]
    fn amounts_table() {
        let cases = [
            ("I was charged twelve ninety nine", "12.99"),
            ("it was $12.99", "12.99"),
            ("$12.99 twice", "12.99"),
            ("twelve dollars and ninety nine cents", "12.99"),
            ("twelve dollars ninety nine", "12.99"),
            ("12 dollars and 99 cents", "12.99"),
            ("they charged me 12.99", "12.99"),
            ("a hundred and twenty dollars", "120.00"),
            ("$40", "40.00"),
            ("forty dollars", "40.00"),
            ("ninety nine cents", "0.99"),
            ("$1,299.00", "1299.00"),
            ("twelve ninety nine dollars", "12.99"),
            ("it went up by 5 bucks", "5.00"),
        ];
        for (text, want) in cases {
            let f = extract(text);
            assert_eq!(f.amount.as_deref(), Some(want), "{text:?}");
            assert_eq!(f.account_number, None, "{text:?}");
            assert_eq!(f.order_number, None, "{text:?}");
        }
    }

    #[test]
    fn dates_table() {
        let cases = [
            ("the third of March", "March 3"),
            ("on March 3rd", "March 3"),
            ("March 3", "March 3"),
            ("March the third", "March 3"),
            ("3rd of March", "March 3"),
            ("on the 21st of June", "June 21"),
            ("the twenty first of june", "June 21"),
            ("December thirty first", "December 31"),
            ("May 5th 2024", "May 5"),
            ("on the 3rd March", "March 3"),
        ];
        for (text, want) in cases {
            let f = extract(text);
            assert_eq!(f.date.as_deref(), Some(want), "{text:?}");
            assert_eq!(f.account_number, None, "{text:?}");
            assert_eq!(f.amount, None, "{text:?}");
        }
        assert_eq!(extract("may I ask something").date, None);
        assert_eq!(extract("the third time I've called").date, None);
    }

    #[test]
    fn everything_at_once() {
        let f = extract(
            "Hi, my account number is 4.4.7.1.9 and I was charged $12.99 on March 3rd for order 5 1 8 2 6",
        );
        assert_eq!(
            f,
            Facts {
                account_number: Some("44719".into()),
                order_number: Some("51826".into()),
                phone_number: None,
                amount: Some("12.99".into()),
                date: Some("March 3".into()),
            }
        );
    }

    #[test]
    fn merge_prefers_newer_known_fields() {
        let mut f = Facts {
            account_number: Some("1111".into()),
            amount: Some("1.00".into()),
            ..Default::default()
        };
        f.merge(&Facts {
            account_number: Some("2222".into()),
            date: Some("March 3".into()),
            ..Default::default()
        });
        assert_eq!(f.account_number.as_deref(), Some("2222"));
        assert_eq!(f.amount.as_deref(), Some("1.00"));
        assert_eq!(f.date.as_deref(), Some("March 3"));
        f.merge(&Facts::default());
        assert_eq!(f.account_number.as_deref(), Some("2222"));
        assert!(!f.is_empty());
        assert!(Facts::default().is_empty());
    }

    #[test]
    fn nothing_in_plain_talk() {
        for text in [
            "",
            "I want to talk to someone about my bill",
            "oh no",
            "one moment please",
        ] {
            assert_eq!(extract(text), Facts::default(), "{text:?}");
        }
    }
}
