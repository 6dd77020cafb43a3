//! Normalization shared by every analyser, so they all see a transcript the same way.
//!
//! Whisper tiny.en on 8 kHz audio produces random capitalization, patchy punctuation, split
//! words ("a gent", "wi fi", "log in") and digits with odd separators ("4.4.7.1.9", "447, 1.9").
//! Normalization keeps exactly what later stages need: words, and separators that sit between
//! two digits (they tell a spoken digit string from prose). Clause punctuation is only used by
//! [`clauses`], because negation and contrast stop at a clause boundary.

/// Separators Whisper puts inside spoken numbers: "4.4.7", "4-4-7", "12.99", "5:30", "1,299".
const DIGIT_SEPARATORS: [char; 5] = ['.', ',', '-', ':', '/'];

/// Punctuation that ends a clause; the first four also end a sentence.
const SENTENCE_ENDS: [char; 4] = ['.', '!', '?', '…'];
const CLAUSE_ENDS: [char; 4] = [',', ';', ':', '—'];

/// One clause of an utterance, already normalized into words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    pub words: Vec<String>,
    /// Index of the sentence this clause belongs to, counting from 0.
    pub sentence: usize,
}

/// Lowercases, drops punctuation (except digit separators and a `$` before a number), keeps
/// in-word apostrophes ("don't") and collapses whitespace.
pub fn normalize(text: &str) -> String {
    let chars: Vec<char> = text.chars().map(fold_char).collect();
    let mut out = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        let prev = if i > 0 { Some(chars[i - 1]) } else { None };
        let next = chars.get(i + 1).copied();
        let digit = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit());
        let alpha = |c: Option<char>| c.is_some_and(char::is_alphabetic);
        let keep = if c.is_alphanumeric() {
            true
        } else if c == '\'' {
            alpha(prev) && alpha(next)
        } else if DIGIT_SEPARATORS.contains(&c) {
            digit(prev) && digit(next)
        } else {
            c == '$' && digit(next)
        };
        if keep {
            out.extend(c.to_lowercase());
        } else if !out.ends_with(' ') && !out.is_empty() {
            out.push(' ');
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// The normalized words of `text`.
pub fn words(text: &str) -> Vec<String> {
    normalize(text)
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Splits `text` into clauses at punctuation that is not inside a number; empty clauses are
/// dropped but still advance the sentence count.
pub fn clauses(text: &str) -> Vec<Clause> {
    let chars: Vec<char> = text.chars().map(fold_char).collect();
    let mut out = Vec::new();
    let mut sentence = 0;
    let mut start = 0;
    let flush = |from: usize, to: usize, sentence: usize, out: &mut Vec<Clause>| {
        let piece: String = chars[from..to].iter().collect();
        let words = words(&piece);
        if !words.is_empty() {
            out.push(Clause { words, sentence });
        }
    };
    for (i, &c) in chars.iter().enumerate() {
        let prev = if i > 0 { Some(chars[i - 1]) } else { None };
        let next = chars.get(i + 1).copied();
        let in_number =
            prev.is_some_and(|p| p.is_ascii_digit()) && next.is_some_and(|n| n.is_ascii_digit());
        let spaced_dash = c == '-'
            && prev.is_none_or(char::is_whitespace)
            && next.is_none_or(char::is_whitespace);
        if (SENTENCE_ENDS.contains(&c) || c == '\n') && !in_number {
            flush(start, i, sentence, &mut out);
            // A run like "?!" or "..." is one sentence end, not several empty sentences.
            if out.last().is_some_and(|c| c.sentence == sentence) {
                sentence += 1;
            }
            start = i + 1;
        } else if (CLAUSE_ENDS.contains(&c) && !in_number) || spaced_dash {
            flush(start, i, sentence, &mut out);
            start = i + 1;
        }
    }
    flush(start, chars.len(), sentence, &mut out);
    out
}

/// Words that negate what follows them in the same clause.
pub fn is_negator(word: &str) -> bool {
    matches!(
        word,
        "not"
            | "no"
            | "never"
            | "don't"
            | "dont"
            | "doesn't"
            | "doesnt"
            | "didn't"
            | "didnt"
            | "isn't"
            | "isnt"
            | "wasn't"
            | "wasnt"
            | "aren't"
            | "arent"
            | "weren't"
            | "won't"
            | "wont"
            | "can't"
            | "cant"
            | "cannot"
            | "couldn't"
            | "wouldn't"
            | "shouldn't"
            | "haven't"
            | "hasn't"
            | "hadn't"
            | "ain't"
            | "without"
            | "nothing"
            | "nobody"
            | "neither"
            | "nor"
    )
}

/// A crude suffix stripper: enough that "charge", "charged", "charges" and "charging" meet,
/// as do "deliver", "delivery", "delivered" and "deliveries". It only has to be consistent,
/// because phrases and transcripts go through the same function.
pub fn stem(word: &str) -> String {
    let mut w: String = word.chars().filter(|&c| c != '\'').collect();
    if w.chars().count() <= 3 || !w.chars().all(char::is_alphabetic) {
        return w;
    }
    if let Some(s) = w.strip_suffix("ies").filter(|s| s.len() >= 3) {
        w = format!("{s}y");
    } else if let Some(s) = w.strip_suffix("es").filter(|s| {
        s.ends_with('x')
            || s.ends_with("ss")
            || s.ends_with("sh")
            || s.ends_with("ch")
            || s.ends_with('z')
    }) {
        w = s.to_owned();
    } else if w.ends_with('s') && !(w.ends_with("ss") || w.ends_with("us") || w.ends_with("is")) {
        w.pop();
    }
    for suffix in ["ing", "ed"] {
        if let Some(s) = w
            .strip_suffix(suffix)
            .filter(|s| s.len() >= 3 && has_vowel(s))
        {
            w = undouble(s);
            break;
        }
    }
    if w.len() > 5 && w.ends_with("ery") {
        w.pop();
    }
    if w.len() > 4 && w.ends_with('e') {
        w.pop();
    }
    w
}

/// If the words starting at `at` spell `phrase` exactly, ignoring spaces (in the phrase and
/// between the words), returns the index just past them. Whisper splits and joins words
/// unpredictably ("a gent", "wi fi", "log in" vs "login"), so word boundaries inside a phrase
/// are not significant; the phrase must still start and end on a word boundary.
pub fn match_at<S: AsRef<str>>(words: &[S], at: usize, phrase: &str) -> Option<usize> {
    let mut key = phrase.chars().filter(|&c| c != ' ').peekable();
    key.peek()?;
    for (i, w) in words.iter().enumerate().skip(at) {
        for c in w.as_ref().chars() {
            if key.next()? != c {
                return None;
            }
        }
        if key.peek().is_none() {
            return Some(i + 1);
        }
    }
    None
}

/// Where `phrase` first matches in `words`: its start and end.
pub fn find<S: AsRef<str>>(words: &[S], phrase: &str) -> Option<(usize, usize)> {
    (0..words.len()).find_map(|i| match_at(words, i, phrase).map(|end| (i, end)))
}

fn fold_char(c: char) -> char {
    match c {
        '’' | '‘' | '`' | 'ʼ' => '\'',
        '–' | '‐' | '‑' => '-',
        _ => c,
    }
}

fn has_vowel(s: &str) -> bool {
    s.chars().any(|c| "aeiouy".contains(c))
}

/// "shipp" → "ship", but "bill" and "pass" keep their pair: they are doubled in the base word.
fn undouble(s: &str) -> String {
    let b = s.as_bytes();
    let n = b.len();
    if n >= 2 && b[n - 1] == b[n - 2] && !b"aeiouylsz".contains(&b[n - 1]) {
        s[..n - 1].to_owned()
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_table() {
        let cases = [
            ("Hello,   WORLD!", "hello world"),
            ("I don't want an AGENT.", "i don't want an agent"),
            ("It’s fine", "it's fine"),
            ("4.4.7.1.9", "4.4.7.1.9"),
            ("447, 1.9.", "447 1.9"),
            ("4-4-7-1-9", "4-4-7-1-9"),
            ("It was $12.99!", "it was $12.99"),
            ("fed-up", "fed up"),
            ("'quoted'", "quoted"),
            ("  ", ""),
            ("$ sign", "sign"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input), want, "{input:?}");
        }
    }

    #[test]
    fn clauses_split_on_punctuation_outside_numbers() {
        let c = clauses("Agent. Agent! get me an agent, please; it's 4.4.7");
        let got: Vec<(String, usize)> = c.iter().map(|c| (c.words.join(" "), c.sentence)).collect();
        let want = [
            ("agent", 0),
            ("agent", 1),
            ("get me an agent", 2),
            ("please", 2),
            ("it's 4.4.7", 2),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for ((g, gs), (w, ws)) in got.iter().zip(want) {
            assert_eq!((g.as_str(), *gs), (w, ws));
        }
    }

    #[test]
    fn repeated_sentence_punctuation_is_one_boundary() {
        let c = clauses("What?! No... fine - whatever");
        let got: Vec<usize> = c.iter().map(|c| c.sentence).collect();
        assert_eq!(got, [0, 1, 2, 2]);
    }

    #[test]
    fn stem_table() {
        let groups: &[&[&str]] = &[
            &["charge", "charged", "charges", "charging"],
            &["refund", "refunded", "refunds", "refunding"],
            &[
                "deliver",
                "delivery",
                "delivered",
                "deliveries",
                "delivering",
            ],
            &["bill", "bills", "billing", "billed"],
            &["ship", "shipping", "shipped"],
            &["box", "boxes"],
            &["address", "addresses"],
            &["close", "closed", "closes", "closing"],
            &["arrive", "arrived"],
            &["that's", "thats"],
        ];
        for g in groups {
            let s = stem(g[0]);
            for w in &g[1..] {
                assert_eq!(stem(w), s, "{w} vs {}", g[0]);
            }
        }
        assert_ne!(stem("order"), stem("other"));
        assert_eq!(stem("need"), "need");
    }

    #[test]
    fn match_at_ignores_word_splits() {
        let w = words("can I get a gent please");
        assert_eq!(find(&w, "agent"), Some((3, 5)));
        let w = words("my wi fi is down");
        assert_eq!(find(&w, "wifi"), Some((1, 3)));
        let w = words("i can't login");
        assert_eq!(find(&w, "log in"), Some((2, 3)));
        // Must end on a word boundary.
        let w = words("agents");
        assert_eq!(find(&w, "agent"), None);
        assert_eq!(find(&w, ""), None);
        assert_eq!(find(&words("fed-up"), "fedup"), Some((0, 2)));
        assert_eq!(find(&words("im fedup"), "fed up"), Some((1, 2)));
    }
}
