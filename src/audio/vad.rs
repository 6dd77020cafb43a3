//! Frame-level voice activity from webrtc-vad (libfvad), at the line's own 8 kHz.
//!
//! The VAD answers "does this frame look like speech", nothing more; deciding when an utterance
//! starts and ends is [`super::endpoint`]'s job.

use super::AudioError;

/// Mode used when the config does not say: 2 ("aggressive"). Chosen with `survey::mode_survey`
/// (run it with `--nocapture`), which feeds the telephone-speech fixtures, clean and with
/// hiss or rumble added, through the VAD alone and through the whole frontend. Modes 0 and 1
/// call most of a low rumble speech (0.91 / 0.41 of noise frames). Mode 3 flags the least noise
/// but drops weak speech: with -40 dBFS hiss it kept 80 % of speech frames and lost the
/// caller's first word ("My", 420 ms late). Mode 2 kept 87 %, every utterance edge within
/// ~100 ms, and, behind the endpointer's noise-floor gate and minimum speech time, raised no
/// false speech start in 30 s of any of the noises.
pub const DEFAULT_MODE: u8 = 2;

/// webrtc-vad's `Vad` wrapped so a call engine that owns one can move between threads.
struct SendFvad(webrtc_vad::Vad);

// SAFETY: `webrtc_vad::Vad` is `!Send` only because it holds a raw `*mut Fvad`. That pointer is
// a private heap allocation owned by this value alone (created in `new`, freed in `Drop`), and
// libfvad keeps all of its state in it: there are no globals besides constant tables and no
// thread-local storage, so nothing ties the state to the thread that created it. Moving the
// owner to another thread is therefore sound. `Sync` is deliberately not implemented (the raw
// pointer keeps it `!Sync`): every call mutates the state, and `&mut self` already serialises
// them.
unsafe impl Send for SendFvad {}

/// Voice activity detector for 8 kHz 16-bit frames of 10, 20 or 30 ms.
pub struct Vad {
    inner: SendFvad,
    mode: u8,
}

impl std::fmt::Debug for Vad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vad").field("mode", &self.mode).finish()
    }
}

fn to_mode(mode: u8) -> Result<webrtc_vad::VadMode, AudioError> {
    Ok(match mode {
        0 => webrtc_vad::VadMode::Quality,
        1 => webrtc_vad::VadMode::LowBitrate,
        2 => webrtc_vad::VadMode::Aggressive,
        3 => webrtc_vad::VadMode::VeryAggressive,
        other => return Err(AudioError::InvalidVadMode(other)),
    })
}

impl Vad {
    /// A detector in `mode` (0 = lets most through … 3 = strictest about calling it speech).
    pub fn new(mode: u8) -> Result<Self, AudioError> {
        let vad_mode = to_mode(mode)?;
        let inner =
            webrtc_vad::Vad::new_with_rate_and_mode(webrtc_vad::SampleRate::Rate8kHz, vad_mode);
        Ok(Self {
            inner: SendFvad(inner),
            mode,
        })
    }

    pub fn mode(&self) -> u8 {
        self.mode
    }

    /// Is this frame speech? `frame` must be 80, 160 or 240 samples (10/20/30 ms at 8 kHz);
    /// anything else is an error rather than a panic, since odd sizes come from the network.
    pub fn is_speech(&mut self, frame: &[i16]) -> Result<bool, AudioError> {
        // Checked here as well as in libfvad: the Rust wrapper indexes `frame[0]` before libfvad
        // gets to reject the length, so an empty slice would panic.
        if !matches!(frame.len(), 80 | 160 | 240) {
            return Err(AudioError::BadFrameLength { got: frame.len() });
        }
        self.inner
            .0
            .is_voice_segment(frame)
            .map_err(|()| AudioError::BadFrameLength { got: frame.len() })
    }

    /// Forgets the adaptive noise model (new call). libfvad's reset also forgets rate and mode,
    /// so both are set again.
    pub fn reset(&mut self) {
        self.inner.0.reset();
        self.inner
            .0
            .set_sample_rate(webrtc_vad::SampleRate::Rate8kHz);
        // The mode was validated in `new`.
        if let Ok(mode) = to_mode(self.mode) {
            self.inner.0.set_mode(mode);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn vad_is_send() {
        assert_send::<Vad>();
    }

    #[test]
    fn rejects_bad_sizes_without_panicking() {
        let mut vad = Vad::new(DEFAULT_MODE).unwrap();
        for len in [0usize, 1, 159, 161, 320, 480] {
            let frame = vec![0i16; len];
            assert_eq!(
                vad.is_speech(&frame),
                Err(AudioError::BadFrameLength { got: len })
            );
        }
        for len in [80usize, 160, 240] {
            assert_eq!(vad.is_speech(&vec![0i16; len]), Ok(false));
        }
    }

    #[test]
    fn rejects_bad_mode() {
        assert_eq!(Vad::new(4).unwrap_err(), AudioError::InvalidVadMode(4));
    }

    #[test]
    fn silence_is_not_speech_and_a_voiced_tone_mostly_is() {
        let mut vad = Vad::new(DEFAULT_MODE).unwrap();
        let silence = [0i16; 160];
        for _ in 0..20 {
            assert!(!vad.is_speech(&silence).unwrap());
        }
        vad.reset();
        // A 140 Hz buzz with formant-ish harmonics, the crudest stand-in for a vowel.
        let mut hits = 0;
        for f in 0..50 {
            let frame: Vec<i16> = (0..160)
                .map(|i| {
                    let t = (f * 160 + i) as f32 / 8000.0;
                    let v: f32 = (1..20)
                        .map(|h| {
                            let fr = 140.0 * h as f32;
                            let formant = (-((fr - 700.0) / 400.0).powi(2)).exp()
                                + 0.5 * (-((fr - 1200.0) / 500.0).powi(2)).exp();
                            formant * (std::f32::consts::TAU * fr * t).sin()
                        })
                        .sum();
                    (v * 6000.0) as i16
                })
                .collect();
            hits += vad.is_speech(&frame).unwrap() as u32;
        }
        assert!(
            hits > 25,
            "only {hits}/50 frames of a vowel-like buzz were speech"
        );
    }
}

/// The survey behind [`DEFAULT_MODE`]: the telephone-speech fixtures, clean and with line
/// noise added, through every mode. Run with `--nocapture` to see the table.
#[cfg(test)]
mod survey {
    use super::*;
    use crate::audio::{FRAME_SAMPLES_8K, prosody, ulaw};

    fn fixture(name: &str) -> Vec<i16> {
        let path = format!(
            "{}/tests/data/audio/{name}.ulaw",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .iter()
            .map(|&b| ulaw::decode(b))
            .collect()
    }

    /// Deterministic noise at `level_db` dBFS RMS: white, or low-passed to a rumble.
    fn noise(len: usize, level_db: f32, rumble: bool, seed: u32) -> Vec<f32> {
        let mut state = seed;
        let mut lp = 0.0f32;
        let raw: Vec<f32> = (0..len)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let white = (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                lp = 0.9 * lp + 0.1 * white;
                if rumble { lp } else { white }
            })
            .collect();
        let rms = (raw.iter().map(|v| v * v).sum::<f32>() / len as f32).sqrt();
        let gain = 10f32.powf(level_db / 20.0) * 32_768.0 / rms;
        raw.iter().map(|v| v * gain).collect()
    }

    /// (recall on speech frames, false alarms on noise-only frames) for one mode.
    fn score(mode: u8, clean: &[i16], noise: &[f32]) -> (f32, f32) {
        let mut vad = Vad::new(mode).unwrap();
        let (mut hit, mut speech, mut fa, mut quiet) = (0, 0, 0, 0);
        let mut since_speech = usize::MAX;
        for (i, frame) in clean.chunks_exact(FRAME_SAMPLES_8K).enumerate() {
            let mixed: Vec<i16> = frame
                .iter()
                .zip(&noise[i * FRAME_SAMPLES_8K..])
                .map(|(&s, &n)| (s as f32 + n).clamp(-32_768.0, 32_767.0) as i16)
                // Through the codec, as the line would deliver it.
                .map(|s| ulaw::decode(ulaw::encode(s)))
                .collect();
            let said = vad.is_speech(&mixed).unwrap();
            let level = prosody::energy_db_i16(frame);
            since_speech = if level > -90.0 {
                0
            } else {
                since_speech.saturating_add(1)
            };
            if level > -45.0 {
                speech += 1;
                hit += said as u32;
            } else if since_speech > 15 {
                // Padding, clear of the VAD's own overhang: only the added noise is there.
                quiet += 1;
                fa += said as u32;
            }
        }
        (hit as f32 / speech as f32, fa as f32 / quiet.max(1) as f32)
    }

    fn mix(clean: &[i16], noise: &[f32]) -> Vec<u8> {
        clean
            .iter()
            .zip(noise)
            .map(|(&s, &n)| ulaw::encode((s as f32 + n).clamp(-32_768.0, 32_767.0) as i16))
            .collect()
    }

    /// The whole frontend in `mode`: (utterances found, worst start/end error in ms) over the
    /// fixtures, and speech starts raised by 30 s of noise alone.
    fn frontend_score(mode: u8, cond: Option<(f32, bool)>) -> (usize, u64, usize) {
        use crate::audio::{Frontend, FrontendConfig, FrontendEvent};
        let cfg = FrontendConfig {
            vad_mode: mode,
            ..FrontendConfig::default()
        };
        let (mut count, mut worst) = (0, 0);
        for name in ["billing", "digits"] {
            let clean = fixture(name);
            let path = format!("{}/tests/data/audio/{name}.txt", env!("CARGO_MANIFEST_DIR"));
            let truth: Vec<u64> = std::fs::read_to_string(path)
                .unwrap()
                .split_whitespace()
                .map(|v| v.parse().unwrap())
                .collect();
            let n = cond.map_or(vec![0.0; clean.len()], |(db, r)| {
                noise(clean.len(), db, r, 7)
            });
            let mut fe = Frontend::new(cfg.clone()).unwrap();
            let mut events = Vec::new();
            fe.push_ulaw_bytes(&mix(&clean, &n), &mut events);
            for e in events {
                if let FrontendEvent::Utterance(u) = e {
                    count += 1;
                    worst = worst
                        .max(u.start_ms.abs_diff(truth[0]))
                        .max(u.end_ms.abs_diff(truth[1]));
                    println!(
                        "  {name}: {} .. {} ms, truth {truth:?}",
                        u.start_ms, u.end_ms
                    );
                }
            }
        }
        let starts = cond.map_or(0, |(db, rumble)| {
            let len = 30 * 8000;
            let mut fe = Frontend::new(cfg.clone()).unwrap();
            let mut events = Vec::new();
            fe.push_ulaw_bytes(
                &mix(&vec![0; len], &noise(len, db, rumble, 99)),
                &mut events,
            );
            events
                .iter()
                .filter(|e| matches!(e, FrontendEvent::SpeechStart { .. }))
                .count()
        });
        (count, worst, starts)
    }

    #[test]
    fn mode_survey() {
        let conditions: [(&str, Option<(f32, bool)>); 4] = [
            ("clean", None),
            ("hiss -50", Some((-50.0, false))),
            ("hiss -40", Some((-40.0, false))),
            ("rumble -35", Some((-35.0, true))),
        ];
        let mut table = Vec::new();
        for mode in 0..=3u8 {
            for (label, cond) in conditions {
                let (mut recall, mut fa) = (0.0, 0.0);
                for name in ["billing", "digits"] {
                    let clean = fixture(name);
                    let n = match cond {
                        Some((db, rumble)) => noise(clean.len(), db, rumble, 42),
                        None => vec![0.0; clean.len()],
                    };
                    let (r, f) = score(mode, &clean, &n);
                    recall += r / 2.0;
                    fa += f / 2.0;
                }
                let (utterances, worst_ms, false_starts) = frontend_score(mode, cond);
                println!(
                    "mode {mode} {label:>10}: frame recall {recall:.2}, noise frames flagged {fa:.2} | \
                     frontend: {utterances} utterances (want 2), worst edge error {worst_ms} ms, \
                     {false_starts} false starts in 30 s of noise"
                );
                table.push((mode, label, recall, fa, utterances, worst_ms, false_starts));
            }
        }
        for &(mode, label, _, _, utterances, worst_ms, false_starts) in &table {
            if mode == DEFAULT_MODE {
                assert_eq!(utterances, 2, "mode {mode} {label}");
                assert!(worst_ms <= 150, "mode {mode} {label}: {worst_ms} ms");
                assert_eq!(false_starts, 0, "mode {mode} {label}");
            }
        }
    }
}
