//! The caller's tone over a call: words and voice together, turn by turn.
//!
//! Voice is judged only against the caller's own first voiced turn: a loud talker on a bad
//! line is not angry, but the same caller 8 dB louder and 25% higher than when they started
//! probably is. Arousal (louder, higher, faster) amplifies negative words; on its own it can
//! only make a neutral-worded turn angry when the jump is large, because people also get loud
//! when the line is bad or the room is noisy.

use crate::audio::Prosody;

use super::sentiment::Lexical;

/// One turn's tone.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TurnTone {
    /// -1 ..= 1, frustration-signed: negative is frustrated or angry.
    pub score: f32,
    pub label: ToneLabel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToneLabel {
    Calm,
    Positive,
    Frustrated,
    Angry,
}

impl ToneLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            ToneLabel::Calm => "calm",
            ToneLabel::Positive => "positive",
            ToneLabel::Frustrated => "frustrated",
            ToneLabel::Angry => "angry",
        }
    }

    fn from_score(score: f32) -> ToneLabel {
        if score <= ANGRY_AT {
            ToneLabel::Angry
        } else if score <= FRUSTRATED_AT {
            ToneLabel::Frustrated
        } else if score >= POSITIVE_AT {
            ToneLabel::Positive
        } else {
            ToneLabel::Calm
        }
    }
}

/// Direction of the tone across the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trend {
    Steady,
    Improving,
    Worsening,
}

impl Trend {
    pub fn as_str(self) -> &'static str {
        match self {
            Trend::Steady => "steady",
            Trend::Improving => "improving",
            Trend::Worsening => "worsening",
        }
    }
}

// Label thresholds. A calm report of a problem scores about -0.33 at worst (see sentiment),
// so "frustrated" starts just below it.
const ANGRY_AT: f32 = -0.6;
const FRUSTRATED_AT: f32 = -0.35;
const POSITIVE_AT: f32 = 0.3;

/// Turns shorter than this say too little about a voice to compare.
const MIN_VOICED_MS: u64 = 300;
/// Loudness rise (dB over the first turn) where arousal starts, and where it is full.
const LOUD_FROM_DB: f32 = 2.0;
const LOUD_FULL_DB: f32 = 10.0;
/// Pitch ratio to the first turn where arousal starts and is full.
const PITCH_FROM: f32 = 1.05;
const PITCH_FULL: f32 = 1.30;
/// Speaking-rate ratio to the first turn where arousal starts and is full.
const RATE_FROM: f32 = 1.10;
const RATE_FULL: f32 = 1.40;
const LOUD_WEIGHT: f32 = 0.45;
const PITCH_WEIGHT: f32 = 0.35;
const RATE_WEIGHT: f32 = 0.20;
/// How far arousal alone moves a neutral turn: never past "calm".
const AROUSAL_ALONE: f32 = 0.2;
/// A jump this large (both at once) is shouting, whatever the words.
const SHOUT_DB: f32 = 8.0;
const SHOUT_PITCH: f32 = 1.25;
/// Scores that seed phrases and shouting guarantee.
const STRONG_NEGATIVE_SCORE: f32 = -0.5;
const SHOUT_SCORE: f32 = -0.65;
/// Fall from the first turn that counts as worsening (or rise as improving).
pub const TREND_DELTA: f32 = 0.3;

/// The caller's first measurable voice, one feature at a time (a first turn may have no pitch).
#[derive(Debug, Clone, Copy, Default)]
struct Baseline {
    loudness_db: Option<f32>,
    pitch_hz: Option<f32>,
    syllables_per_s: Option<f32>,
}

/// Tone state for one call.
#[derive(Debug, Clone, Default)]
pub struct ToneTracker {
    baseline: Baseline,
    history: Vec<f32>,
    labels: Vec<ToneLabel>,
}

impl ToneTracker {
    pub fn new() -> ToneTracker {
        ToneTracker::default()
    }

    /// Folds in one caller turn and returns its tone.
    pub fn observe(&mut self, lexical: &Lexical, prosody: Option<&Prosody>) -> TurnTone {
        let (arousal, shouting) = match prosody.filter(|p| p.voiced_ms >= MIN_VOICED_MS) {
            Some(p) => self.arousal(p),
            None => (0.0, false),
        };
        let l = lexical.score;
        let mut score = if l < 0.0 {
            l * (1.0 + arousal)
        } else {
            l * (1.0 - 0.5 * arousal)
        };
        score -= AROUSAL_ALONE * arousal;
        if lexical.strong_negative {
            score = score.min(STRONG_NEGATIVE_SCORE);
        }
        if shouting {
            score = score.min(SHOUT_SCORE);
        }
        let score = score.clamp(-1.0, 1.0);
        let label = ToneLabel::from_score(score);
        self.history.push(score);
        self.labels.push(label);
        TurnTone { score, label }
    }

    /// Arousal 0..=1 relative to the baseline, and whether the jump is shouting. The first
    /// measurement of each feature becomes its baseline and so adds nothing.
    fn arousal(&mut self, p: &Prosody) -> (f32, bool) {
        let b = &mut self.baseline;
        let loud_db = match b.loudness_db {
            Some(base) => p.loudness_db - base,
            None => {
                b.loudness_db = Some(p.loudness_db);
                0.0
            }
        };
        let pitch_ratio = match (b.pitch_hz, p.pitch_hz) {
            (Some(base), Some(now)) if base > 0.0 => now / base,
            (None, Some(now)) if now > 0.0 => {
                b.pitch_hz = Some(now);
                1.0
            }
            _ => 1.0,
        };
        let rate_ratio = match b.syllables_per_s {
            Some(base) if base > 0.0 => p.syllables_per_s / base,
            None if p.syllables_per_s > 0.0 => {
                b.syllables_per_s = Some(p.syllables_per_s);
                1.0
            }
            _ => 1.0,
        };
        let ramp = |x: f32, from: f32, full: f32| ((x - from) / (full - from)).clamp(0.0, 1.0);
        let arousal = LOUD_WEIGHT * ramp(loud_db, LOUD_FROM_DB, LOUD_FULL_DB)
            + PITCH_WEIGHT * ramp(pitch_ratio, PITCH_FROM, PITCH_FULL)
            + RATE_WEIGHT * ramp(rate_ratio, RATE_FROM, RATE_FULL);
        let shouting = loud_db >= SHOUT_DB && pitch_ratio >= SHOUT_PITCH;
        (arousal.clamp(0.0, 1.0), shouting)
    }

    /// Direction over the call, with the default [`TREND_DELTA`].
    pub fn trend(&self) -> Trend {
        self.trend_with(TREND_DELTA)
    }

    /// Worsening when the latest turn is at least `delta` below the first and the last step
    /// went down (a caller who is calming again is not "worsening"); improving symmetrically.
    pub fn trend_with(&self, delta: f32) -> Trend {
        let h = &self.history;
        let (Some(&first), Some(&last)) = (h.first(), h.last()) else {
            return Trend::Steady;
        };
        let Some(&prev) = h.len().checked_sub(2).map(|i| &h[i]) else {
            return Trend::Steady;
        };
        if first - last >= delta && last < prev {
            Trend::Worsening
        } else if last - first >= delta && last > prev {
            Trend::Improving
        } else {
            Trend::Steady
        }
    }

    /// The latest turn's score; 0 before the caller has spoken.
    pub fn current(&self) -> f32 {
        self.history.last().copied().unwrap_or(0.0)
    }

    /// Every turn's score, in order.
    pub fn history(&self) -> &[f32] {
        &self.history
    }

    /// The latest turn's label.
    pub fn last_label(&self) -> Option<ToneLabel> {
        self.labels.last().copied()
    }

    /// The call's tone in a few words for the agent: "calm at first, now angry".
    pub fn describe(&self) -> String {
        let (Some(&first), Some(&last)) = (self.labels.first(), self.labels.last()) else {
            return "not heard yet".to_owned();
        };
        if first != last {
            return format!("{} at first, now {}", first.as_str(), last.as_str());
        }
        // The most upset label in between, if it differs from where the call started and ended.
        let worst = self
            .labels
            .iter()
            .copied()
            .filter(|&l| l != last)
            .max_by_key(|l| upset_rank(*l))
            .filter(|&l| upset_rank(l) > upset_rank(last));
        match (worst, self.labels.len(), last) {
            (Some(w), _, _) => format!("{} now, {} earlier", last.as_str(), w.as_str()),
            (None, _, _) if self.trend() == Trend::Worsening => {
                format!("{}, getting worse", last.as_str())
            }
            (None, 1, l) | (None, _, l @ ToneLabel::Calm) => l.as_str().to_owned(),
            (None, _, l) => format!("{} throughout", l.as_str()),
        }
    }
}

fn upset_rank(l: ToneLabel) -> u8 {
    match l {
        ToneLabel::Positive => 0,
        ToneLabel::Calm => 1,
        ToneLabel::Frustrated => 2,
        ToneLabel::Angry => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::super::sentiment;
    use super::*;

    fn voice(loudness_db: f32, pitch_hz: f32, syllables_per_s: f32) -> Prosody {
        Prosody {
            loudness_db,
            pitch_hz: Some(pitch_hz),
            syllables_per_s,
            voiced_ms: 1500,
        }
    }

    fn lex(score: f32) -> Lexical {
        Lexical {
            score,
            ..Default::default()
        }
    }

    const BASE: (f32, f32, f32) = (-30.0, 140.0, 4.0);

    fn tracker_with_baseline() -> ToneTracker {
        let mut t = ToneTracker::new();
        t.observe(&lex(0.0), Some(&voice(BASE.0, BASE.1, BASE.2)));
        t
    }

    #[test]
    fn labels_from_words_alone() {
        let cases = [
            ("what are your opening hours", ToneLabel::Calm),
            ("the box arrived damaged", ToneLabel::Calm),
            (
                "the router is broken and the wifi is not working and the app has an error",
                ToneLabel::Calm,
            ),
            ("thanks, that's great", ToneLabel::Positive),
            ("I'm not happy", ToneLabel::Frustrated),
            ("I'm annoyed", ToneLabel::Frustrated),
            ("third time calling", ToneLabel::Frustrated),
            ("I'm furious", ToneLabel::Angry),
            ("this is absolutely ridiculous", ToneLabel::Angry),
        ];
        for (text, want) in cases {
            let mut t = ToneTracker::new();
            let got = t.observe(&sentiment::lexical(text), None);
            assert_eq!(got.label, want, "{text:?} → {got:?}");
        }
    }

    #[test]
    fn first_voiced_turn_is_the_baseline_not_an_absolute_norm() {
        // A loud, high, fast talker from the start is just how this caller sounds.
        let mut t = ToneTracker::new();
        let got = t.observe(&lex(0.0), Some(&voice(-8.0, 260.0, 7.0)));
        assert_eq!(got.label, ToneLabel::Calm);
        let got = t.observe(&lex(0.0), Some(&voice(-8.0, 260.0, 7.0)));
        assert_eq!(
            got,
            TurnTone {
                score: 0.0,
                label: ToneLabel::Calm
            }
        );
    }

    #[test]
    fn short_or_missing_prosody_does_not_set_the_baseline() {
        let mut t = ToneTracker::new();
        let blip = Prosody {
            loudness_db: -50.0,
            pitch_hz: None,
            syllables_per_s: 0.0,
            voiced_ms: 100,
        };
        t.observe(&lex(0.0), Some(&blip));
        t.observe(&lex(0.0), None);
        // The first real turn becomes the baseline, so it is calm even though -50 → -20 dB.
        let got = t.observe(&lex(0.0), Some(&voice(-20.0, 150.0, 4.0)));
        assert_eq!(got.label, ToneLabel::Calm);
    }

    #[test]
    fn arousal_amplifies_negative_words() {
        let mut calm = tracker_with_baseline();
        let quiet = calm.observe(&lex(-0.45), Some(&voice(BASE.0, BASE.1, BASE.2)));
        let mut raised = tracker_with_baseline();
        let loud = raised.observe(
            &lex(-0.45),
            Some(&voice(BASE.0 + 6.0, BASE.1 * 1.15, BASE.2 * 1.2)),
        );
        assert_eq!(quiet.label, ToneLabel::Frustrated);
        assert_eq!(loud.label, ToneLabel::Angry, "{loud:?}");
        assert!(loud.score < quiet.score);
    }

    #[test]
    fn arousal_alone_keeps_neutral_words_calm_unless_shouting() {
        let cases = [
            ((6.0, 1.0, 1.0), ToneLabel::Calm),
            ((7.0, 1.3, 1.5), ToneLabel::Calm),
            ((12.0, 1.1, 1.0), ToneLabel::Calm),
            ((8.0, 1.25, 1.0), ToneLabel::Angry),
            ((10.0, 1.4, 1.3), ToneLabel::Angry),
        ];
        for ((db, pitch, rate), want) in cases {
            let mut t = tracker_with_baseline();
            let got = t.observe(
                &lex(0.0),
                Some(&voice(BASE.0 + db, BASE.1 * pitch, BASE.2 * rate)),
            );
            assert_eq!(
                got.label, want,
                "+{db} dB ×{pitch} pitch ×{rate} rate → {got:?}"
            );
        }
    }

    #[test]
    fn quieter_and_lower_is_not_arousal() {
        let mut t = tracker_with_baseline();
        let got = t.observe(
            &lex(-0.45),
            Some(&voice(BASE.0 - 10.0, BASE.1 * 0.7, BASE.2 * 0.6)),
        );
        assert!((got.score + 0.45).abs() < 1e-6, "{got:?}");
    }

    #[test]
    fn strong_negative_is_at_least_frustrated() {
        let mut t = ToneTracker::new();
        let l = Lexical {
            score: -0.1,
            strong_negative: true,
            ..Default::default()
        };
        assert!(t.observe(&l, None).score <= -0.5);
    }

    fn tracker(scores: &[f32]) -> ToneTracker {
        let mut t = ToneTracker::new();
        for &s in scores {
            t.observe(&lex(s), None);
        }
        t
    }

    #[test]
    fn trend_table() {
        let cases: &[(&[f32], Trend)] = &[
            (&[], Trend::Steady),
            (&[-0.8], Trend::Steady),
            (&[0.0, -0.1, 0.0], Trend::Steady),
            (&[0.0, -0.2, -0.5], Trend::Worsening),
            (&[0.0, -0.5], Trend::Worsening),
            // Still far below the start, but calming down on the last step.
            (&[0.0, -0.7, -0.5], Trend::Steady),
            (&[-0.7, -0.2], Trend::Improving),
            (&[-0.7, -0.1, -0.3], Trend::Steady),
        ];
        for (scores, want) in cases {
            assert_eq!(tracker(scores).trend(), *want, "{scores:?}");
        }
        assert_eq!(tracker(&[0.0, -0.2]).trend_with(0.1), Trend::Worsening);
    }

    #[test]
    fn describe_table() {
        let cases: &[(&[f32], &str)] = &[
            (&[], "not heard yet"),
            (&[0.0], "calm"),
            (&[0.0, 0.1, 0.0], "calm"),
            (&[0.0, -0.8], "calm at first, now angry"),
            (&[-0.5, -0.45, -0.5], "frustrated throughout"),
            (&[-0.8], "angry"),
            (&[-0.8, 0.0], "angry at first, now calm"),
            (&[0.0, -0.8, 0.0], "calm now, angry earlier"),
            (&[0.5, 0.6], "positive throughout"),
            (&[-0.7, -0.8, -0.7], "angry throughout"),
            (&[-0.6, -0.8, -0.95], "angry, getting worse"),
            (&[0.25, 0.0, -0.3], "calm, getting worse"),
            (&[-0.36, -0.45, -0.59], "frustrated throughout"),
        ];
        for (scores, want) in cases {
            assert_eq!(tracker(scores).describe(), *want, "{scores:?}");
        }
    }

    #[test]
    fn accessors() {
        let t = tracker(&[0.0, -0.5]);
        assert_eq!(t.history(), [0.0, -0.5]);
        assert_eq!(t.current(), -0.5);
        assert_eq!(t.last_label(), Some(ToneLabel::Frustrated));
        assert_eq!(ToneTracker::new().current(), 0.0);
        assert_eq!(ToneTracker::new().last_label(), None);
    }

    #[test]
    fn serializes_snake_case() {
        let tone = TurnTone {
            score: -0.75,
            label: ToneLabel::Angry,
        };
        assert_eq!(
            serde_json::to_string(&tone).unwrap(),
            r#"{"score":-0.75,"label":"angry"}"#
        );
        assert_eq!(
            serde_json::to_string(&Trend::Worsening).unwrap(),
            r#""worsening""#
        );
        for l in [
            ToneLabel::Calm,
            ToneLabel::Positive,
            ToneLabel::Frustrated,
            ToneLabel::Angry,
        ] {
            assert_eq!(
                serde_json::to_string(&l).unwrap(),
                format!("\"{}\"", l.as_str())
            );
        }
    }
}
