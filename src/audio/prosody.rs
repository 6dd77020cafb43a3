//! How an utterance sounded: loudness, pitch, speaking rate (see [`Prosody`]).
//!
//! The work is split so the live path never does it all at once: [`FrameAnalyzer`] measures one
//! 20 ms frame of 8 kHz audio as it arrives (energy, and pitch when the frame is voiced), and
//! [`summarize`] turns an utterance's worth of those per-frame measurements into a [`Prosody`]
//! when the utterance ends. [`analyze`] does both for a finished clip at any rate.
//!
//! Pitch is estimated at 8 kHz: the telephone band holds nothing above 3.4 kHz, and the
//! autocorrelation is four times cheaper than at 16 kHz.

use super::{FRAME_MS, FRAME_SAMPLES_8K, Prosody};

const RATE: f32 = 8_000.0;
/// Reported for frames (and utterances) with no energy at all, instead of -inf.
pub const SILENCE_DB: f32 = -100.0;
const MIN_PITCH_HZ: f32 = 70.0;
const MAX_PITCH_HZ: f32 = 400.0;
/// Shortest and longest period searched, in 8 kHz samples.
const MIN_LAG: usize = (RATE / MAX_PITCH_HZ) as usize;
const MAX_LAG: usize = (RATE / MIN_PITCH_HZ) as usize + 1;
/// Correlation window: 30 ms holds two periods of a 70 Hz voice.
const CORR_LEN: usize = 240;
/// Samples of history a pitch estimate needs.
pub const PITCH_SPAN: usize = CORR_LEN + MAX_LAG + 1;
/// Normalised autocorrelation a frame needs to count as periodic. On the phone the fundamental
/// itself is often filtered out, but the harmonics keep the period; band-limited noise and
/// fricatives stay well below this.
const VOICING_THRESHOLD: f32 = 0.5;
/// A shorter lag within this share of the best correlation wins: the best peak of a periodic
/// signal repeats at every multiple of the period, and the multiples are not the pitch.
const SUBHARMONIC_TOLERANCE: f32 = 0.9;
/// Syllable nuclei are energy peaks standing this far above the dips on both sides.
const SYLLABLE_DIP_DB: f32 = 3.0;
/// Peaks quieter than the loudest frame by more than this are noise, not syllables.
const SYLLABLE_RANGE_DB: f32 = 25.0;
/// Silences at least this long are pauses and do not count as speaking time for the rate.
const PAUSE_FRAMES: usize = 10;
/// In [`analyze`], frames within this much of the loudest frame count as voiced.
const ANALYZE_RANGE_DB: f32 = 35.0;
/// In [`analyze`], frames below this are never voiced.
const ANALYZE_GATE_DB: f32 = -62.0;

/// What was measured on one 20 ms frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameFeatures {
    /// Frame energy, dBFS (RMS relative to full scale, floored at [`SILENCE_DB`]).
    pub energy_db: f32,
    /// The frame is part of the speech (VAD + gate, decided by the caller).
    pub voiced: bool,
    /// Fundamental frequency, when the frame was voiced and periodic.
    pub pitch_hz: Option<f32>,
}

impl Default for FrameFeatures {
    fn default() -> Self {
        Self {
            energy_db: SILENCE_DB,
            voiced: false,
            pitch_hz: None,
        }
    }
}

/// RMS level of `samples` (in [-1, 1]) in dBFS.
pub fn energy_db(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return SILENCE_DB;
    }
    let power = dot(samples, samples) / samples.len() as f32;
    if power > 0.0 {
        (10.0 * power.log10()).max(SILENCE_DB)
    } else {
        SILENCE_DB
    }
}

/// RMS level of 16-bit samples in dBFS (full scale = 32768).
pub fn energy_db_i16(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return SILENCE_DB;
    }
    let sum: i64 = samples.iter().map(|&s| s as i64 * s as i64).sum();
    let power = sum as f64 / samples.len() as f64 / (32_768.0 * 32_768.0);
    if power > 0.0 {
        ((10.0 * power.log10()) as f32).max(SILENCE_DB)
    } else {
        SILENCE_DB
    }
}

/// Dot product with eight independent accumulators: without them f32 addition order is fixed
/// and the compiler cannot vectorise, and this loop is most of the per-frame pitch cost.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// Fundamental frequency of the last [`PITCH_SPAN`] samples of `x` (8 kHz), by normalised
/// autocorrelation over 70–400 Hz; `None` when the signal is not periodic enough or too short.
/// `scratch` keeps the per-lag correlations so repeated calls do not allocate.
pub fn pitch_8k(x: &[f32], scratch: &mut Vec<f32>) -> Option<f32> {
    if x.len() < PITCH_SPAN {
        return None;
    }
    let x = &x[x.len() - PITCH_SPAN..];
    let head = &x[..CORR_LEN];
    let e0 = dot(head, head);
    if e0 <= 1e-9 {
        return None;
    }
    scratch.clear();
    scratch.resize(MAX_LAG + 2, 0.0);
    // One lag either side of the search range so every candidate can be checked for being a
    // local maximum. The lagged window's energy slides along instead of being recomputed.
    let first = MIN_LAG - 1;
    let mut e_lag = dot(&x[first..first + CORR_LEN], &x[first..first + CORR_LEN]);
    for lag in first..=MAX_LAG + 1 {
        if lag > first {
            let (gone, new) = (x[lag - 1], x[lag - 1 + CORR_LEN]);
            e_lag += new * new - gone * gone;
        }
        let denom = (e0 * e_lag.max(0.0)).sqrt();
        scratch[lag] = if denom > 1e-9 {
            dot(head, &x[lag..lag + CORR_LEN]) / denom
        } else {
            0.0
        };
    }
    let r = &scratch[..];
    let is_peak = |l: usize| r[l] >= r[l - 1] && r[l] >= r[l + 1];
    let (best_lag, best) = (MIN_LAG..=MAX_LAG)
        .filter(|&l| is_peak(l))
        .map(|l| (l, r[l]))
        .fold((0, f32::MIN), |acc, c| if c.1 > acc.1 { c } else { acc });
    if best_lag == 0 || best < VOICING_THRESHOLD {
        return None;
    }
    let lag = (MIN_LAG..=best_lag)
        .find(|&l| is_peak(l) && r[l] >= SUBHARMONIC_TOLERANCE * best)
        .unwrap_or(best_lag);
    // Parabolic interpolation between lags: integer lags are 2 % apart at 150 Hz.
    let (a, b, c) = (r[lag - 1], r[lag], r[lag + 1]);
    let curvature = a - 2.0 * b + c;
    let shift = if curvature < 0.0 {
        (0.5 * (a - c) / curvature).clamp(-0.5, 0.5)
    } else {
        0.0
    };
    let hz = RATE / (lag as f32 + shift);
    (MIN_PITCH_HZ * 0.95..=MAX_PITCH_HZ * 1.05)
        .contains(&hz)
        .then_some(hz)
}

/// Per-frame measurements of a live 8 kHz stream. Holds the few frames of history pitch needs;
/// never allocates after construction.
#[derive(Debug, Clone)]
pub struct FrameAnalyzer {
    history: Vec<f32>,
    scratch: Vec<f32>,
}

impl Default for FrameAnalyzer {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameAnalyzer {
    const HISTORY: usize = PITCH_SPAN.div_ceil(FRAME_SAMPLES_8K) * FRAME_SAMPLES_8K;

    pub fn new() -> Self {
        Self {
            history: vec![0.0; Self::HISTORY],
            scratch: Vec::with_capacity(MAX_LAG + 2),
        }
    }

    /// Takes the next frame into the history (call for every frame, voiced or not).
    pub fn push(&mut self, frame: &[i16]) {
        let n = frame.len().min(Self::HISTORY);
        self.history.copy_within(n.., 0);
        let start = Self::HISTORY - n;
        for (h, &s) in self.history[start..]
            .iter_mut()
            .zip(&frame[frame.len() - n..])
        {
            *h = s as f32 / 32_768.0;
        }
    }

    /// Pitch of the audio ending with the last pushed frame. Only worth calling on voiced frames.
    pub fn pitch(&mut self) -> Option<f32> {
        pitch_8k(&self.history, &mut self.scratch)
    }

    pub fn reset(&mut self) {
        self.history.fill(0.0);
    }
}

/// Turns an utterance's per-frame measurements into a [`Prosody`]. `frames` is walked twice,
/// hence `Clone`; `scratch` collects pitches for the median and is reused between utterances.
pub fn summarize<I>(frames: I, scratch: &mut Vec<f32>) -> Prosody
where
    I: Iterator<Item = FrameFeatures> + Clone,
{
    let mut voiced = 0u64;
    let mut power_sum = 0.0f64;
    let mut loudest = f32::MIN;
    scratch.clear();
    for f in frames.clone().filter(|f| f.voiced) {
        voiced += 1;
        power_sum += 10f64.powf(f.energy_db as f64 / 10.0);
        loudest = loudest.max(f.energy_db);
        if let Some(p) = f.pitch_hz {
            scratch.push(p);
        }
    }
    if voiced == 0 {
        return Prosody {
            loudness_db: SILENCE_DB,
            pitch_hz: None,
            syllables_per_s: 0.0,
            voiced_ms: 0,
        };
    }
    let pitch_hz = if scratch.is_empty() {
        None
    } else {
        let mid = scratch.len() / 2;
        let (_, m, _) = scratch.select_nth_unstable_by(mid, f32::total_cmp);
        Some(*m)
    };

    let (peaks, speaking_frames) = syllables(frames, loudest);
    Prosody {
        loudness_db: (10.0 * (power_sum / voiced as f64).log10()) as f32,
        pitch_hz,
        syllables_per_s: if speaking_frames > 0 {
            peaks as f32 / (speaking_frames as f32 * FRAME_MS as f32 / 1000.0)
        } else {
            0.0
        },
        voiced_ms: voiced * FRAME_MS,
    }
}

/// Counts syllable nuclei as prominent peaks of the smoothed energy envelope, and the speaking
/// time they fall in (voiced frames plus the gaps between them shorter than a pause).
fn syllables<I>(frames: I, loudest: f32) -> (u32, usize)
where
    I: Iterator<Item = FrameFeatures>,
{
    // Unvoiced frames sit on the floor, so only speech can make peaks.
    let floor = loudest - SYLLABLE_RANGE_DB - SYLLABLE_DIP_DB;
    let mut picker = PeakPicker {
        rising: false,
        extreme: floor,
        min_peak: loudest - SYLLABLE_RANGE_DB,
        peaks: 0,
    };
    let mut speaking = 0usize;
    let mut since_voiced: Option<usize> = None;
    // [1, 2, 1] smoothing over the envelope padded with the floor at both ends.
    let (mut before, mut current) = (floor, None::<f32>);
    for f in frames {
        if f.voiced {
            if let Some(gap) = since_voiced
                && gap < PAUSE_FRAMES
            {
                speaking += gap;
            }
            speaking += 1;
            since_voiced = Some(0);
        } else if let Some(gap) = since_voiced.as_mut() {
            *gap += 1;
        }
        let next = if f.voiced {
            f.energy_db.max(floor)
        } else {
            floor
        };
        if let Some(c) = current {
            picker.feed(0.25 * before + 0.5 * c + 0.25 * next);
            before = c;
        }
        current = Some(next);
    }
    if let Some(c) = current {
        picker.feed(0.25 * before + 0.5 * c + 0.25 * floor);
    }
    // The utterance ends in silence, so a peak still open at the end is complete.
    picker.feed(floor);
    (picker.peaks, speaking)
}

/// Hysteresis peak picking: a peak counts once the envelope has fallen `SYLLABLE_DIP_DB` below
/// it, and the next one must first rise that much above the dip in between.
struct PeakPicker {
    rising: bool,
    extreme: f32,
    min_peak: f32,
    peaks: u32,
}

impl PeakPicker {
    fn feed(&mut self, level: f32) {
        if self.rising {
            if level > self.extreme {
                self.extreme = level;
            } else if level < self.extreme - SYLLABLE_DIP_DB {
                if self.extreme >= self.min_peak {
                    self.peaks += 1;
                }
                self.rising = false;
                self.extreme = level;
            }
        } else if level < self.extreme {
            self.extreme = level;
        } else if level > self.extreme + SYLLABLE_DIP_DB {
            self.rising = true;
            self.extreme = level;
        }
    }
}

/// Prosody of a finished clip at `rate` Hz (an utterance's 16 kHz samples, typically). Without a
/// VAD decision at hand, frames within 35 dB of the loudest count as voiced.
pub fn analyze(samples: &[f32], rate: u32) -> Prosody {
    let owned;
    let x: &[f32] = if rate == 8_000 {
        samples
    } else {
        owned = super::resample::resample_to_8k(samples, rate);
        &owned
    };
    let mut frames: Vec<FrameFeatures> = x
        .chunks_exact(FRAME_SAMPLES_8K)
        .map(|c| FrameFeatures {
            energy_db: energy_db(c),
            voiced: false,
            pitch_hz: None,
        })
        .collect();
    let loudest = frames
        .iter()
        .map(|f| f.energy_db)
        .fold(SILENCE_DB, f32::max);
    let gate = ANALYZE_GATE_DB.max(loudest - ANALYZE_RANGE_DB);
    let mut scratch = Vec::new();
    for (i, f) in frames.iter_mut().enumerate() {
        f.voiced = f.energy_db >= gate;
        if f.voiced {
            // Same history as the live path sees: the window ending with this frame.
            let end = (i + 1) * FRAME_SAMPLES_8K;
            f.pitch_hz = pitch_8k(&x[end.saturating_sub(PITCH_SPAN)..end], &mut scratch);
        }
    }
    summarize(frames.iter().copied(), &mut scratch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f32::consts::TAU;

    /// Harmonics `first..=20` of `f0` with 1/k amplitudes, peak-normalised to `amp`.
    fn buzz(f0: f32, first: u32, amp: f32, secs: f32, rate: f32) -> Vec<f32> {
        let n = (secs * rate) as usize;
        let mut x: Vec<f32> = (0..n)
            .map(|i| {
                let t = i as f32 / rate;
                (first..=20)
                    .filter(|&k| f0 * k as f32 <= 3_400.0)
                    .map(|k| (TAU * f0 * k as f32 * t).sin() / k as f32)
                    .sum()
            })
            .collect();
        let peak = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        x.iter_mut().for_each(|v| *v *= amp / peak);
        x
    }

    #[test]
    fn pitch_of_harmonic_tone() {
        for f0 in [90.0f32, 150.0, 230.0, 350.0] {
            let p = analyze(&buzz(f0, 1, 0.5, 1.0, 16_000.0), 16_000)
                .pitch_hz
                .expect("no pitch");
            assert!((p - f0).abs() / f0 < 0.05, "{f0} Hz -> {p}");
        }
    }

    #[test]
    fn pitch_with_missing_fundamental() {
        // What a phone line does to a low voice: 300 Hz high-pass removes the fundamental.
        let p = analyze(&buzz(150.0, 3, 0.5, 1.0, 16_000.0), 16_000)
            .pitch_hz
            .expect("no pitch");
        assert!((p - 150.0).abs() / 150.0 < 0.05, "{p}");
    }

    #[test]
    fn noise_has_no_pitch() {
        let mut seed = 0x1234_5678u32;
        let noise: Vec<f32> = (0..16_000)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect();
        assert_eq!(analyze(&noise, 16_000).pitch_hz, None);
    }

    #[test]
    fn louder_is_louder_by_the_right_amount() {
        let quiet = analyze(&buzz(150.0, 1, 0.1, 1.0, 16_000.0), 16_000);
        let loud = analyze(&buzz(150.0, 1, 0.4, 1.0, 16_000.0), 16_000);
        let diff = loud.loudness_db - quiet.loudness_db;
        assert!((diff - 12.04).abs() < 0.2, "{diff}");
        // A full-scale sine is -3 dBFS RMS.
        let sine: Vec<f32> = (0..16_000)
            .map(|i| (TAU * 1000.0 * i as f32 / 16_000.0).sin())
            .collect();
        assert!((analyze(&sine, 16_000).loudness_db + 3.01).abs() < 0.2);
        assert_eq!(quiet.voiced_ms, 1000);
    }

    #[test]
    fn syllable_rate_of_modulated_tone() {
        for rate in [3.0f32, 4.0, 6.0] {
            let carrier = buzz(160.0, 1, 0.5, 5.0, 16_000.0);
            let x: Vec<f32> = carrier
                .iter()
                .enumerate()
                .map(|(i, v)| v * 0.5 * (1.0 - (TAU * rate * i as f32 / 16_000.0).cos()))
                .collect();
            let p = analyze(&x, 16_000);
            assert!(
                (p.syllables_per_s - rate).abs() < 0.4,
                "{rate}/s -> {}",
                p.syllables_per_s
            );
        }
    }

    #[test]
    fn pauses_do_not_dilute_the_rate() {
        // 2 s at 4 syllables/s, 1 s of silence, 2 s more: still 4/s, not 3.2.
        let carrier = buzz(160.0, 1, 0.5, 5.0, 16_000.0);
        let x: Vec<f32> = carrier
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let t = i as f32 / 16_000.0;
                if (2.0..3.0).contains(&t) {
                    0.0
                } else {
                    v * 0.5 * (1.0 - (TAU * 4.0 * t).cos())
                }
            })
            .collect();
        let p = analyze(&x, 16_000);
        assert!(
            (p.syllables_per_s - 4.0).abs() < 0.5,
            "{}",
            p.syllables_per_s
        );
        assert!(p.voiced_ms < 4_200, "{}", p.voiced_ms);
    }

    #[test]
    fn silence_gives_empty_prosody() {
        let p = analyze(&vec![0.0; 16_000], 16_000);
        assert_eq!(p.voiced_ms, 0);
        assert_eq!(p.pitch_hz, None);
        assert_eq!(p.loudness_db, SILENCE_DB);
    }

    #[test]
    fn frame_analyzer_matches_offline_pitch() {
        let x = buzz(200.0, 1, 0.5, 0.5, 8_000.0);
        let pcm: Vec<i16> = x.iter().map(|v| (v * 32_767.0) as i16).collect();
        let mut fa = FrameAnalyzer::new();
        let mut last = None;
        for frame in pcm.chunks_exact(FRAME_SAMPLES_8K) {
            fa.push(frame);
            last = fa.pitch();
        }
        let p = last.expect("no pitch");
        assert!((p - 200.0).abs() < 4.0, "{p}");
    }

    #[test]
    fn energy_helpers_agree() {
        let pcm = [16_384i16, -16_384, 16_384, -16_384];
        let f: Vec<f32> = pcm.iter().map(|&s| s as f32 / 32_768.0).collect();
        assert!((energy_db_i16(&pcm) - energy_db(&f)).abs() < 1e-3);
        assert!((energy_db(&f) + 6.02).abs() < 0.01);
        assert_eq!(energy_db_i16(&[0; 160]), SILENCE_DB);
    }
}
