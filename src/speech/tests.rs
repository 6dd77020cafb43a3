use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::compose::{EDGE_MS, FADE_SAMPLES, RATE};
use super::plan::{self, Zero};
use super::*;
use crate::analysis::numbers::Facts;
use crate::analysis::sentiment::Lexical;
use crate::analysis::tone::ToneTracker;
use crate::call::Reason;
use crate::handoff::Priority;

fn fragments_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("voice-prompts/fragments")
}

fn speech() -> &'static Speech {
    static S: std::sync::OnceLock<Speech> = std::sync::OnceLock::new();
    S.get_or_init(|| Speech::load(&fragments_dir()).expect("the committed fragments load"))
}

fn ms(n: u32) -> usize {
    (n * RATE / 1000) as usize
}

/// What the listener hears, as plain lower-case words.
fn heard(u: &Utterance) -> String {
    u.text(speech().library())
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || c.is_whitespace())
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

const DIGIT_WORDS: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];

fn digit_words(s: &str) -> String {
    s.chars()
        .map(|c| DIGIT_WORDS[c.to_digit(10).unwrap() as usize])
        .collect::<Vec<_>>()
        .join(" ")
}

// ---- loading ----

fn copy_fragments(to: &Path) {
    for e in std::fs::read_dir(fragments_dir()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

#[test]
fn every_committed_fragment_loads_and_every_required_id_is_listed() {
    let lib = speech().library();
    for id in plan::REQUIRED {
        let f = lib.get(id).unwrap_or_else(|| panic!("{id} missing"));
        // Trimmed to the voice, and no fragment is a whole sentence's length.
        assert!(
            f.pcm.len() > ms(100) && f.pcm.len() < ms(3000),
            "{id}: {}",
            f.pcm.len()
        );
    }
    for q in ["billing", "orders", "technical", "general"] {
        assert_eq!(plan::queue_fragment(lib, q), Some(format!("q_{q}")));
    }
}

#[test]
fn a_fragment_missing_from_the_list_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    copy_fragments(dir.path());
    let list = dir.path().join("fragments.toml");
    let src = std::fs::read_to_string(&list).unwrap();
    let without = src.replace("[d_7]\ntext = \"seven.\"\n", "");
    assert_ne!(src, without, "the test edits a real entry");
    std::fs::write(&list, without).unwrap();
    match Speech::load(dir.path()) {
        Err(SpeechError::Missing { ids, .. }) => assert_eq!(ids, ["d_7"]),
        other => panic!("expected Missing, got {other:?}"),
    }
}

#[test]
fn a_listed_fragment_without_its_wav_or_in_the_wrong_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    copy_fragments(dir.path());
    std::fs::remove_file(dir.path().join("t_calm.wav")).unwrap();
    match Speech::load(dir.path()) {
        Err(SpeechError::Read { path, .. }) => assert!(path.ends_with("t_calm.wav"), "{path}"),
        other => panic!("expected Read, got {other:?}"),
    }
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(dir.path().join("t_calm.wav"), spec).unwrap();
    for _ in 0..1600 {
        w.write_sample(0i16).unwrap();
    }
    w.finalize().unwrap();
    let err = Speech::load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, SpeechError::Format { found, .. } if found.starts_with("16000 Hz")),
        "{err}"
    );
}

// ---- composition ----

/// A library of constant-level "fragments" whose lengths are known.
fn square_lib() -> FragmentLibrary {
    FragmentLibrary::from_pcm([
        ("a", "a".to_string(), vec![20_000i16; 800]),
        ("b", "b".to_string(), vec![-20_000i16; 400]),
        ("c", "c".to_string(), vec![20_000i16; 1200]),
    ])
}

#[test]
fn composition_is_fragments_plus_gaps_plus_edges_and_the_gaps_are_silent() {
    let lib = square_lib();
    let u = Utterance::new()
        .pause(Pause::Sentence) // leading pauses give way to the edge
        .say("a")
        .say("b") // no pause given: a word gap
        .pause(Pause::Digit)
        .pause(Pause::Comma) // the longest of several counts
        .say("c")
        .pause(Pause::Sentence);
    let a = compose::compose(&lib, &u);
    let edge = ms(EDGE_MS);
    let (word, comma) = (ms(Pause::Word.ms()), ms(Pause::Comma.ms()));
    assert_eq!(a.pcm.len(), edge + 800 + word + 400 + comma + 1200 + edge);
    let silent = |r: std::ops::Range<usize>| a.pcm[r].iter().all(|&s| s == 0);
    assert!(silent(0..edge));
    assert!(silent(edge + 800..edge + 800 + word));
    let c_at = edge + 800 + word + 400;
    assert!(silent(c_at..c_at + comma));
    assert!(silent(a.pcm.len() - edge..a.pcm.len()));
    // Full level between the fades.
    assert_eq!(a.pcm[edge + 400], 20_000);
    assert_eq!(a.pcm[edge + 800 + word + 200], -20_000);
    assert_eq!(a.duration_ms(), a.pcm.len() as u64 / 8);
}

#[test]
fn joins_fade_so_nothing_clicks() {
    let lib = square_lib();
    let a = compose::compose(&lib, &Utterance::new().say("a").say("b").say("c"));
    // Without fades each join would step 20 000 in one sample.
    let worst = a
        .pcm
        .windows(2)
        .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
        .max()
        .unwrap();
    let bound = (20_000.0 * (std::f32::consts::PI / FADE_SAMPLES as f32)) as i32;
    assert!(worst <= bound, "largest step {worst} > {bound}");
    assert_eq!(a.pcm[ms(EDGE_MS)], 0, "a fragment starts from silence");
}

#[test]
fn an_empty_utterance_is_edge_silence_and_long_ones_stop_at_the_cap() {
    let lib = square_lib();
    assert_eq!(
        compose::compose(&lib, &Utterance::new()).pcm.len(),
        2 * ms(EDGE_MS)
    );
    let mut long = Utterance::new();
    for _ in 0..1000 {
        long.push_say("c");
    }
    let a = compose::compose(&lib, &long);
    assert!(
        a.duration_ms() <= u64::from(compose::MAX_MS),
        "{}",
        a.duration_ms()
    );
    assert!(a.duration_ms() > u64::from(compose::MAX_MS) - 1000);
}

#[test]
fn wav_header_says_8khz_mono_16bit_pcm_and_the_samples_follow() {
    let audio = Audio {
        pcm: vec![0, 1, -1, i16::MAX, i16::MIN, 1234],
    };
    let wav = audio.to_wav();
    let u32_at = |i: usize| u32::from_le_bytes(wav[i..i + 4].try_into().unwrap());
    let u16_at = |i: usize| u16::from_le_bytes(wav[i..i + 2].try_into().unwrap());
    assert_eq!(&wav[0..4], b"RIFF");
    assert_eq!(u32_at(4) as usize, wav.len() - 8);
    assert_eq!(&wav[8..16], b"WAVEfmt ");
    assert_eq!(u32_at(16), 16, "PCM fmt chunk");
    assert_eq!(u16_at(20), 1, "PCM");
    assert_eq!(u16_at(22), 1, "mono");
    assert_eq!(u32_at(24), 8000, "sample rate");
    assert_eq!(u32_at(28), 16000, "byte rate");
    assert_eq!(u16_at(32), 2, "block align");
    assert_eq!(u16_at(34), 16, "bits");
    assert_eq!(&wav[36..40], b"data");
    assert_eq!(u32_at(40) as usize, audio.pcm.len() * 2);
    assert_eq!(wav.len(), 44 + audio.pcm.len() * 2);
    let back: Vec<i16> = hound::WavReader::new(std::io::Cursor::new(wav))
        .unwrap()
        .samples::<i16>()
        .map(Result::unwrap)
        .collect();
    assert_eq!(back, audio.pcm);
}

// ---- planning ----

#[test]
fn readback_says_i_have_the_digits_is_that_right() {
    let u = plan::readback("38261").unwrap();
    assert_eq!(
        u.ids().collect::<Vec<_>>(),
        [
            "r_i_have",
            "d_3",
            "d_8",
            "d_2",
            "d_6",
            "d_1",
            "r_is_that_right"
        ]
    );
    assert_eq!(heard(&u), "i have three eight two six one is that right");
    assert_eq!(plan::readback("382 61").unwrap(), u);
    assert!(matches!(
        plan::readback("38a61"),
        Err(SpeechError::NotDigits(_))
    ));
    assert!(matches!(
        plan::readback(" "),
        Err(SpeechError::NotDigits(_))
    ));
    assert!(matches!(
        plan::readback(&"1".repeat(MAX_READBACK_DIGITS + 1)),
        Err(SpeechError::TooLong { .. })
    ));
    let audio = speech().readback("38261").unwrap();
    // Seven fragments, every one at least 150 ms, with the gaps between them.
    assert!(
        (2500..6000).contains(&audio.duration_ms()),
        "{}",
        audio.duration_ms()
    );
    assert!(speech().ask_again().duration_ms() > 1500);
}

#[test]
fn long_numbers_are_grouped_and_zero_can_be_oh() {
    let mut u = Utterance::new();
    plan::say_digits(&mut u, "5550123", Zero::Oh);
    assert_eq!(
        u.pieces
            .iter()
            .filter(|p| **p == Piece::Pause(Pause::Comma))
            .count(),
        1,
        "3 + 4"
    );
    assert_eq!(heard(&u), "five five five oh one two three");
    let mut u = Utterance::new();
    plan::say_digits(&mut u, "12345678", Zero::Zero);
    assert_eq!(
        u.pieces
            .iter()
            .filter(|p| **p == Piece::Pause(Pause::Comma))
            .count(),
        2,
        "3 + 3 + 2"
    );
}

#[test]
fn amounts_dates_and_counts_are_said_in_words() {
    let lib = speech().library();
    let cases = [
        (
            "Amount 12.99 dollars.",
            "amount twelve dollars and ninety nine cents",
        ),
        (
            "Amount 1299.00 dollars.",
            "amount one thousand two hundred ninety nine dollars",
        ),
        ("Amount 0.99 dollars.", "amount ninety nine cents"),
        ("Amount 1.01 dollars.", "amount one dollar and one cent"),
        ("Amount 40.00 dollars.", "amount forty dollars"),
        ("Date March 3.", "date march third"),
        ("Date June 21.", "date june twenty first"),
        ("Date December 31.", "date december thirty first"),
        ("Date May 20.", "date may twentieth"),
        (
            "Asked for a person 3 times.",
            "asked for a person three times",
        ),
        (
            "Asked for a person 12 times.",
            "asked for a person twelve times",
        ),
        ("Asked for a person twice.", "asked for a person twice"),
    ];
    for (text, want) in cases {
        let p = plan::summary(lib, text);
        assert!(p.dropped.is_empty(), "{text}: {:?}", p.dropped);
        assert_eq!(heard(&p.utterance), want, "{text}");
    }
}

#[test]
fn an_unknown_queue_is_an_incoming_call_and_free_text_points_to_the_card() {
    let lib = speech().library();
    let p = plan::summary(
        lib,
        "Returns call, high priority. Account 4 4 7. Caller calm.",
    );
    assert!(p.dropped.is_empty(), "{:?}", p.dropped);
    assert_eq!(
        heard(&p.utterance),
        "incoming call high priority account number four four seven caller calm"
    );
    // What fail_open::recover_card writes when a call was cut before any decision.
    let p = plan::summary(
        lib,
        "A caller whose automated call was cut off. They last said: my router keeps dropping",
    );
    assert_eq!(p.dropped, ["they last said my router keeps dropping"]);
    assert_eq!(
        p.utterance.ids().collect::<Vec<_>>(),
        ["s_cut_off", "s_more_on_card"]
    );
    let p = plan::summary(lib, "¿Qué?");
    assert_eq!(p.utterance.ids().collect::<Vec<_>>(), ["s_connecting"]);
    let p = plan::summary(lib, "");
    assert_eq!(p.utterance.ids().collect::<Vec<_>>(), ["s_connecting"]);
}

#[test]
fn comma_in_the_text_is_a_longer_pause_than_between_words() {
    let lib = speech().library();
    let p = plan::summary(
        lib,
        "Billing call, urgent priority. Caller calm now, angry earlier.",
    );
    let pauses: Vec<_> = p
        .utterance
        .pieces
        .iter()
        .filter_map(|x| match x {
            Piece::Pause(p) => Some(*p),
            Piece::Say(_) => None,
        })
        .collect();
    assert_eq!(
        pauses,
        [Pause::Sentence, Pause::Comma, Pause::Sentence, Pause::Comma]
    );
    assert_eq!(
        heard(&p.utterance),
        "billing call urgent priority caller calm now angry earlier"
    );
}

// ---- every spoken summary maps to fragments ----

const REASONS: [Reason; 10] = [
    Reason::ExplicitRequest,
    Reason::RepeatedRequest,
    Reason::Dtmf,
    Reason::NegativeSentiment,
    Reason::NotUnderstood,
    Reason::LowConfidence,
    Reason::UnsupportedLanguage,
    Reason::Dialplan,
    Reason::SystemFault,
    Reason::Overload,
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn digits_string(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(0u8..10, 1..=max)
        .prop_map(|v| v.into_iter().map(|d| char::from(b'0' + d)).collect())
}

fn facts() -> impl Strategy<Value = Facts> {
    (
        proptest::option::of(digits_string(12)),
        proptest::option::of(digits_string(12)),
        proptest::option::of(digits_string(11)),
        proptest::option::of((0u64..20_000, 0u64..100)),
        proptest::option::of((0usize..12, 1u32..=31)),
    )
        .prop_map(|(account, order, phone, amount, date)| Facts {
            account_number: account,
            order_number: order,
            phone_number: phone,
            amount: amount.map(|(d, c)| format!("{d}.{c:02}")),
            date: date.map(|(m, d)| format!("{} {d}", MONTHS[m])),
        })
}

/// The mood as the engine writes it: a real tone tracker's description of a call.
fn mood() -> impl Strategy<Value = String> {
    proptest::collection::vec(-1.0f32..1.0, 0..6).prop_map(|scores| {
        let mut t = ToneTracker::new();
        for s in scores {
            t.observe(
                &Lexical {
                    score: s,
                    ..Default::default()
                },
                None,
            );
        }
        t.describe()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_spoken_summary_maps_to_fragments_with_its_facts(
        queue in prop::sample::select(vec!["billing", "orders", "technical", "general"]),
        intent in proptest::option::of(prop::sample::select(vec!["billing", "orders", "technical", "account"])),
        reason in prop::sample::select(REASONS.to_vec()),
        priority in prop::sample::select(vec![Priority::Normal, Priority::High, Priority::Urgent]),
        facts in facts(),
        mood in mood(),
        upset in any::<bool>(),
        agent_requests in 0u32..40,
        repeat_contact in any::<bool>(),
    ) {
        let input = crate::handoff::SummaryInput {
            queue,
            intent,
            reason,
            priority,
            facts: &facts,
            mood: &mood,
            upset,
            agent_requests,
            tried: &[],
            gist: None,
            repeat_contact,
        };
        let text = crate::handoff::spoken_summary(&input);
        let lib = speech().library();
        let p = plan::summary(lib, &text);
        prop_assert!(p.dropped.is_empty(), "{text}: dropped {:?}", p.dropped);
        for id in p.utterance.ids() {
            prop_assert!(lib.contains(id), "{text}: {id}");
        }
        let said = heard(&p.utterance);
        prop_assert!(said.starts_with(&format!("{queue} call")), "{text} -> {said}");
        if let Some(a) = &facts.account_number {
            prop_assert!(said.contains(&format!("account number {}", digit_words(a))), "{text} -> {said}");
        }
        if let Some(o) = &facts.order_number {
            prop_assert!(said.contains(&format!("order number {}", digit_words(o))), "{text} -> {said}");
        }
        if facts.amount.is_some() {
            prop_assert!(said.contains("amount ") && (said.contains("dollar") || said.contains("cent")), "{said}");
        }
        if let Some(d) = &facts.date {
            let month = d.split(' ').next().unwrap().to_lowercase();
            prop_assert!(said.contains(&format!("date {month} ")), "{said}");
        }
        prop_assert!(said.contains(&format!("caller {}", mood.replace(',', ""))), "{text} -> {said}");
        prop_assert_eq!(said.contains("has called before"), repeat_contact);
        prop_assert_eq!(said.contains("another language"), reason == Reason::UnsupportedLanguage);
        // The same plan through the public helper gives audio of a plausible length: at
        // least 120 ms a word heard, at most 800 ms (gaps included).
        let audio = speech().spoken_summary_audio(&input);
        let words = said.split_whitespace().count() as u64;
        prop_assert!(audio.duration_ms() >= 120 * words && audio.duration_ms() <= 800 * words + 400,
            "{} ms for {words} words: {said}", audio.duration_ms());
    }
}

#[test]
fn a_typical_summary_is_under_fifteen_seconds() {
    let facts = Facts {
        account_number: Some("44719".into()),
        ..Default::default()
    };
    let input = crate::handoff::SummaryInput {
        queue: "billing",
        intent: Some("billing"),
        reason: Reason::NegativeSentiment,
        priority: Priority::Urgent,
        facts: &facts,
        mood: "calm at first, now angry",
        upset: true,
        agent_requests: 2,
        tried: &[],
        gist: None,
        repeat_contact: true,
    };
    let audio = speech().spoken_summary_audio(&input);
    assert!(
        (5_000..15_000).contains(&audio.duration_ms()),
        "{} ms",
        audio.duration_ms()
    );
    let wav = audio.to_wav();
    assert_eq!(wav.len(), 44 + audio.pcm.len() * 2);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever a store holds (a tampered or foreign card), planning never panics and the
    /// audio stays within its cap.
    #[test]
    fn any_text_plans_without_panicking_and_stays_bounded(text in "\\PC{0,3000}") {
        let p = plan::summary(speech().library(), &text);
        prop_assert!(!p.utterance.is_empty());
        prop_assert!(speech().compose(&p.utterance).duration_ms() <= u64::from(compose::MAX_MS));
    }

    /// The same over the summary's own words shuffled with numbers and punctuation, which
    /// reaches every rule of the planner.
    #[test]
    fn summary_words_in_any_order_plan_without_panicking(
        words in proptest::collection::vec(prop::sample::select(vec![
            "Billing", "call,", "call.", "urgent", "priority.", "Account", "Order", "Amount",
            "Date", "March", "31", "0", "7", "12.99", "1,299.5", "99999999999999", "dollars",
            "times", "twice.", "Caller", "calm", "at", "first,", "now", "angry.", "—", "?",
            "Asked", "for", "a", "person", "Has", "called", "before.", "Returns", "x.y",
        ]), 0..400),
    ) {
        let text = words.join(" ");
        let p = plan::summary(speech().library(), &text);
        for id in p.utterance.ids() {
            prop_assert!(speech().library().contains(id), "{id} from {text}");
        }
        prop_assert!(speech().compose(&p.utterance).duration_ms() <= u64::from(compose::MAX_MS));
    }
}
