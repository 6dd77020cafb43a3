//! Endpointing: turning per-frame "speech or not" into utterance start and end.
//!
//! The VAD's frame decisions are noisy in both directions, so two things are smoothed here:
//! a start needs `min_speech_ms` of mostly-voiced frames (a cough or a click is shorter), and an
//! end needs a run of silence — the hangover — long enough that a caller pausing between digits
//! is not cut off, yet short enough that a caller who has finished hears a reply promptly.
//! The hangover therefore adapts to the utterance: it starts at `min_hangover_ms` and grows with
//! the time spent talking and with the longest pause the caller already made, capped at
//! `max_hangover_ms`. Ends are detected exactly one hangover after the last voiced frame.
//!
//! Frame energy is used to second-guess the VAD: libfvad keeps reporting speech for up to ~100 ms
//! after loud sound ends (its own overhang), and on a quiet line it can fire on faint noise. A
//! frame only counts as voiced when it is also clearly above the tracked noise floor.

use super::FRAME_MS;

/// Frames that are voiced-by-VAD but quieter than this (dBFS) never count as speech: that is
/// the level of μ-law's smallest steps, idle line noise, not a voice.
const ABSOLUTE_GATE_DB: f32 = -62.0;
/// A voiced frame must be this far above the noise floor; VAD overhang sits right at the floor.
const FLOOR_MARGIN_DB: f32 = 6.0;
/// The noise floor is the quietest frame of the last 3 s (minimum statistics): running speech
/// has closures and breaths well below its syllables within that span, so the floor sits on the
/// background, and a background that gets louder (and that the VAD mistakes for speech) is
/// followed within 3 s instead of feeding Whisper 15 s of hiss. The price: a sound held at a
/// perfectly steady level for longer than this (a long "mmmm") starts to count as background
/// and can end the utterance early.
const FLOOR_WINDOW_FRAMES: usize = 150;
/// Floor reported before any frame has been heard (nothing is gated by it).
const SILENCE_DB: f32 = -100.0;
/// Share of the start window that must be voiced.
const START_VOICED_FRACTION: f32 = 0.8;
/// Gaps in voicing shorter than this are articulation, not pauses, and do not feed the hangover.
const MIN_PAUSE_FRAMES: u64 = 5;
/// After a pause, voicing must last this many frames to count as the caller resuming, so a
/// single click does not restart the hangover clock.
const RESUME_FRAMES: u64 = 2;
/// Hangover growth per second of voiced speech: long turns tend to be thinking-aloud turns.
const HANGOVER_PER_VOICED_S_MS: u64 = 40;
/// Hangover growth per pause already made in this utterance (digits, addresses).
const HANGOVER_PER_PAUSE_MS: u64 = 25;
/// The hangover stays this far above the longest pause so far.
const HANGOVER_PAUSE_MARGIN_MS: u64 = 160;

/// Timing knobs, in ms; everything is rounded up to whole 20 ms frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointConfig {
    pub min_speech_ms: u64,
    pub min_hangover_ms: u64,
    pub max_hangover_ms: u64,
    pub max_utterance_ms: u64,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            min_speech_ms: 200,
            min_hangover_ms: 400,
            max_hangover_ms: 700,
            max_utterance_ms: 15_000,
        }
    }
}

impl EndpointConfig {
    /// Why this config cannot work, if it cannot.
    pub fn problem(&self) -> Option<&'static str> {
        let window = frames(self.min_speech_ms);
        if window == 0 || window > 64 {
            return Some("min_speech_ms must be 1..=1280");
        }
        if frames(self.min_hangover_ms) == 0 {
            return Some("min_hangover_ms must be at least one frame");
        }
        if self.min_hangover_ms > self.max_hangover_ms {
            return Some("min_hangover_ms must not exceed max_hangover_ms");
        }
        if self.max_utterance_ms < self.min_speech_ms {
            return Some("max_utterance_ms must be at least min_speech_ms");
        }
        None
    }
}

fn frames(ms: u64) -> u64 {
    ms.div_ceil(FRAME_MS)
}

/// What the endpointer decided on a frame, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointEvent {
    /// Sustained speech began at `start_frame` (detected `min_speech_ms` or so later).
    SpeechStart { start_frame: u64 },
    /// The utterance that began at `start_frame` is over.
    SpeechEnd(SpeechEnd),
}

/// One finished utterance, in frame indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeechEnd {
    pub start_frame: u64,
    /// Last frame that counted as voiced (for a capped utterance: the frame the cap hit).
    pub last_voiced_frame: u64,
    /// Frame on which the end was decided.
    pub detected_frame: u64,
    /// Cut at `max_utterance_ms` while the caller may still be talking.
    pub capped: bool,
    /// A pause inside it was held open ([`Endpointer::hold_pause`]): it may hold silences
    /// longer than any hangover.
    pub held: bool,
}

impl SpeechEnd {
    pub fn start_ms(&self) -> u64 {
        self.start_frame * FRAME_MS
    }
    /// End of the last voiced frame.
    pub fn end_ms(&self) -> u64 {
        (self.last_voiced_frame + 1) * FRAME_MS
    }
    /// End of the frame on which the end was decided.
    pub fn detected_ms(&self) -> u64 {
        (self.detected_frame + 1) * FRAME_MS
    }
}

#[derive(Debug, Clone, Copy)]
struct Active {
    start_frame: u64,
    last_voiced: u64,
    /// First frame of a voiced run after a pause that has not yet lasted `RESUME_FRAMES`.
    resume_from: Option<u64>,
    voiced_frames: u64,
    pauses: u64,
    longest_pause_frames: u64,
    /// A longer hangover for this pause only, asked for by whoever knows the caller is
    /// mid-thought (see [`Endpointer::hold_pause`]); dropped when they speak again.
    hold: Option<u64>,
    /// Some pause of this utterance was held.
    was_held: bool,
}

/// Decides utterance boundaries from one frame decision at a time. Pure state, no audio.
#[derive(Debug, Clone)]
pub struct Endpointer {
    window_frames: u32,
    start_needed: u32,
    min_hangover: u64,
    max_hangover: u64,
    max_utterance: u64,
    /// Bit k set = frame (current - k) was voiced.
    window: u64,
    /// Energies of the last `FLOOR_WINDOW_FRAMES` frames, a ring; the first `recent_len` valid.
    /// Only frames actually heard count: a line that is noisy from its first frame must not be
    /// measured against an imagined quiet past.
    recent_db: [f32; FLOOR_WINDOW_FRAMES],
    recent_pos: usize,
    recent_len: usize,
    active: Option<Active>,
    last_voiced: bool,
}

impl Endpointer {
    /// Panics never; an unusable config (see [`EndpointConfig::problem`]) is clamped into range.
    pub fn new(cfg: EndpointConfig) -> Self {
        let window_frames = frames(cfg.min_speech_ms).clamp(1, 64) as u32;
        let min_hangover = frames(cfg.min_hangover_ms).max(1);
        Self {
            window_frames,
            start_needed: ((window_frames as f32 * START_VOICED_FRACTION).ceil() as u32).max(1),
            min_hangover,
            max_hangover: frames(cfg.max_hangover_ms).max(min_hangover),
            max_utterance: frames(cfg.max_utterance_ms).max(window_frames as u64),
            window: 0,
            recent_db: [SILENCE_DB; FLOOR_WINDOW_FRAMES],
            recent_pos: 0,
            recent_len: 0,
            active: None,
            last_voiced: false,
        }
    }

    /// Back to the state of a new call.
    pub fn reset(&mut self) {
        self.window = 0;
        self.recent_db = [SILENCE_DB; FLOOR_WINDOW_FRAMES];
        self.recent_pos = 0;
        self.recent_len = 0;
        self.active = None;
        self.last_voiced = false;
    }

    pub fn in_speech(&self) -> bool {
        self.active.is_some()
    }

    /// Ends the current utterance now, at `frame` (the call hung up, or the stream ended), as
    /// if the hangover had run out. `None` when no utterance was in progress.
    pub fn finish(&mut self, frame: u64) -> Option<SpeechEnd> {
        let a = self.active.take()?;
        self.window = 0;
        Some(SpeechEnd {
            start_frame: a.start_frame,
            last_voiced_frame: a.last_voiced,
            detected_frame: frame.max(a.last_voiced),
            capped: false,
            held: a.was_held,
        })
    }

    /// The utterance in progress as it would end if the silence since its last voiced frame
    /// went on until `frame`: what to transcribe ahead of the endpoint. `None` outside speech.
    pub fn ongoing(&self, frame: u64) -> Option<SpeechEnd> {
        let a = self.active?;
        Some(SpeechEnd {
            start_frame: a.start_frame,
            last_voiced_frame: a.last_voiced,
            detected_frame: frame.max(a.last_voiced),
            capped: false,
            held: a.was_held,
        })
    }

    /// Whether voicing has begun again after the utterance's last pause (too briefly yet to
    /// count as the caller resuming).
    pub fn resuming(&self) -> bool {
        self.last_voiced || self.active.is_some_and(|a| a.resume_from.is_some())
    }

    /// Whether voicing has begun outside an utterance but is not yet long enough to count
    /// as one: for its first `min_speech_ms` a caller who has started again looks silent.
    pub fn starting(&self) -> bool {
        self.active.is_none() && self.last_voiced
    }

    /// Whether the last frame pushed counted as voiced after the energy gate.
    pub fn last_frame_voiced(&self) -> bool {
        self.last_voiced
    }

    /// Current hangover in frames: what the silence after the last voiced frame must reach.
    pub fn hangover_frames(&self) -> u64 {
        self.active
            .map_or(self.min_hangover, |a| self.hangover_for(&a))
    }

    fn hangover_for(&self, a: &Active) -> u64 {
        let voiced_ms = a.voiced_frames * FRAME_MS;
        let grown_ms = self.min_hangover * FRAME_MS
            + voiced_ms * HANGOVER_PER_VOICED_S_MS / 1000
            + a.pauses * HANGOVER_PER_PAUSE_MS;
        let pause_ms = if a.pauses > 0 {
            a.longest_pause_frames * FRAME_MS + HANGOVER_PAUSE_MARGIN_MS
        } else {
            0
        };
        let adaptive = frames(grown_ms.max(pause_ms)).clamp(self.min_hangover, self.max_hangover);
        a.hold.map_or(adaptive, |hold| hold.max(adaptive))
    }

    /// Holds the current pause open for up to `ms` of silence after the last voiced frame
    /// (rounded up to frames), whatever the adaptive hangover says: the caller is mid-thought.
    /// Returns whether there was an utterance to hold.
    pub fn hold_pause(&mut self, ms: u64) -> bool {
        match self.active.as_mut() {
            Some(a) => {
                a.hold = Some(frames(ms).min(self.max_utterance));
                a.was_held = true;
                true
            }
            None => false,
        }
    }

    /// Feeds frame `frame` (consecutive indices expected; a gap counts as silence) with the
    /// VAD's verdict and the frame's energy in dBFS.
    pub fn push(&mut self, frame: u64, is_speech: bool, energy_db: f32) -> Option<EndpointEvent> {
        // The floor is taken before this frame joins the history, so a frame is never compared
        // with itself.
        let floor_db = self.noise_floor_db();
        let voiced =
            is_speech && energy_db >= ABSOLUTE_GATE_DB && energy_db >= floor_db + FLOOR_MARGIN_DB;
        self.recent_db[self.recent_pos] = energy_db.max(SILENCE_DB);
        self.recent_pos = (self.recent_pos + 1) % FLOOR_WINDOW_FRAMES;
        self.recent_len = (self.recent_len + 1).min(FLOOR_WINDOW_FRAMES);
        self.last_voiced = voiced;
        self.window = (self.window << 1) | voiced as u64;
        if self.window_frames < 64 {
            self.window &= (1u64 << self.window_frames) - 1;
        }

        let Some(mut a) = self.active else {
            if voiced && self.window.count_ones() >= self.start_needed {
                // Back-date the start to the oldest voiced frame in the window.
                let oldest = 63 - self.window.leading_zeros() as u64;
                let start_frame = frame.saturating_sub(oldest);
                self.active = Some(Active {
                    start_frame,
                    last_voiced: frame,
                    resume_from: None,
                    voiced_frames: self.window.count_ones() as u64,
                    pauses: 0,
                    longest_pause_frames: 0,
                    hold: None,
                    was_held: false,
                });
                return Some(EndpointEvent::SpeechStart { start_frame });
            }
            return None;
        };

        if voiced {
            let gap = frame.saturating_sub(a.last_voiced + 1);
            if gap <= 1 {
                // A one-frame dropout inside a word is the VAD flickering, not a pause.
                a.voiced_frames += 1;
                a.last_voiced = frame;
                a.resume_from = None;
            } else {
                let from = *a.resume_from.get_or_insert(frame);
                if frame + 1 - from >= RESUME_FRAMES {
                    let pause = from - a.last_voiced - 1;
                    if pause >= MIN_PAUSE_FRAMES {
                        a.pauses += 1;
                        a.longest_pause_frames = a.longest_pause_frames.max(pause);
                    }
                    a.voiced_frames += frame + 1 - from;
                    a.last_voiced = frame;
                    a.resume_from = None;
                    a.hold = None;
                }
            }
        } else {
            // A resumption that did not last was a click.
            a.resume_from = None;
        }

        let end = if frame.saturating_sub(a.last_voiced) >= self.hangover_for(&a) {
            Some(SpeechEnd {
                start_frame: a.start_frame,
                last_voiced_frame: a.last_voiced,
                detected_frame: frame,
                capped: false,
                held: a.was_held,
            })
        } else if frame + 1 - a.start_frame >= self.max_utterance {
            Some(SpeechEnd {
                start_frame: a.start_frame,
                last_voiced_frame: frame,
                detected_frame: frame,
                capped: true,
                held: a.was_held,
            })
        } else {
            None
        };
        if let Some(end) = end {
            self.active = None;
            // Speech that continues past a cap has to prove itself again, like any start.
            self.window = 0;
            return Some(EndpointEvent::SpeechEnd(end));
        }
        self.active = Some(a);
        None
    }

    /// Estimated background level, dBFS.
    pub fn noise_floor_db(&self) -> f32 {
        if self.recent_len == 0 {
            return SILENCE_DB;
        }
        // The valid entries are the first `recent_len` until the ring has wrapped once.
        self.recent_db[..self.recent_len]
            .iter()
            .copied()
            .fold(f32::INFINITY, f32::min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEECH_DB: f32 = -25.0;
    /// Level of a stop closure inside running speech: the VAD still says speech.
    const CLOSURE_DB: f32 = -45.0;
    const SILENCE_DB: f32 = -90.0;

    /// Feeds a pattern of (voiced, frames) runs; returns (frame, event) pairs. Voiced runs
    /// have a quiet closure frame every 200 ms (never as their last frame), as real speech does.
    fn run(ep: &mut Endpointer, runs: &[(bool, u64)]) -> Vec<(u64, EndpointEvent)> {
        let mut frame = 0;
        let mut events = Vec::new();
        for &(voiced, n) in runs {
            for i in 0..n {
                let db = match voiced {
                    true if i % 10 == 5 && i + 1 < n => CLOSURE_DB,
                    true => SPEECH_DB,
                    false => SILENCE_DB,
                };
                if let Some(e) = ep.push(frame, voiced, db) {
                    events.push((frame, e));
                }
                frame += 1;
            }
        }
        events
    }

    fn ends(events: &[(u64, EndpointEvent)]) -> Vec<SpeechEnd> {
        events
            .iter()
            .filter_map(|(_, e)| match e {
                EndpointEvent::SpeechEnd(end) => Some(*end),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn speech_then_silence_ends_within_bound() {
        for speech_frames in [12u64, 50, 150, 400] {
            let mut ep = Endpointer::new(EndpointConfig::default());
            let events = run(&mut ep, &[(false, 25), (true, speech_frames), (false, 100)]);
            assert!(
                matches!(events[0].1, EndpointEvent::SpeechStart { start_frame: 25 }),
                "{events:?}"
            );
            let ends = ends(&events);
            assert_eq!(ends.len(), 1, "{events:?}");
            let end = ends[0];
            assert_eq!(end.start_ms(), 500);
            assert_eq!(end.end_ms(), (25 + speech_frames) * 20);
            let hang = end.detected_ms() - end.end_ms();
            assert!(
                (400..=700).contains(&hang),
                "{speech_frames} frames: hangover {hang} ms"
            );
            assert!(!end.capped);
        }
    }

    #[test]
    fn hangover_grows_with_talk_and_pauses() {
        let short = {
            let mut ep = Endpointer::new(EndpointConfig::default());
            ends(&run(&mut ep, &[(true, 15), (false, 60)]))[0]
        };
        let long = {
            let mut ep = Endpointer::new(EndpointConfig::default());
            ends(&run(&mut ep, &[(true, 300), (false, 60)]))[0]
        };
        let paused = {
            let mut ep = Endpointer::new(EndpointConfig::default());
            let digits = [
                (true, 15),
                (false, 18),
                (true, 15),
                (false, 18),
                (true, 15),
                (false, 60),
            ];
            ends(&run(&mut ep, &digits))[0]
        };
        let h = |e: SpeechEnd| e.detected_ms() - e.end_ms();
        assert!(h(short) <= 440, "{}", h(short));
        assert!(h(long) > h(short), "{} vs {}", h(long), h(short));
        // 360 ms pauses already made: the hangover must clear them with room to spare.
        assert!(h(paused) >= 500 && h(paused) <= 700, "{}", h(paused));
    }

    #[test]
    fn mid_utterance_pause_does_not_split() {
        let mut ep = Endpointer::new(EndpointConfig::default());
        let events = run(
            &mut ep,
            &[
                (false, 10),
                (true, 100),
                (false, 15),
                (true, 100),
                (false, 60),
            ],
        );
        let ends = ends(&events);
        assert_eq!(ends.len(), 1, "{events:?}");
        assert_eq!(ends[0].start_frame, 10);
        assert_eq!(ends[0].last_voiced_frame, 10 + 100 + 15 + 100 - 1);
    }

    #[test]
    fn short_blips_do_not_start_speech() {
        let mut ep = Endpointer::new(EndpointConfig::default());
        let mut pattern = vec![(false, 20)];
        for len in [1u64, 3, 5, 7] {
            pattern.push((true, len));
            pattern.push((false, 20));
        }
        // A 140 ms burst with a dropout (a cough): 7 voiced out of 8.
        pattern.extend([(true, 4), (false, 1), (true, 3), (false, 30)]);
        let events = run(&mut ep, &pattern);
        assert!(events.is_empty(), "{events:?}");
        assert!(!ep.in_speech());
    }

    #[test]
    fn mostly_voiced_start_with_dropouts() {
        let mut ep = Endpointer::new(EndpointConfig::default());
        let events = run(
            &mut ep,
            &[(false, 5), (true, 4), (false, 1), (true, 5), (false, 50)],
        );
        assert!(
            matches!(events[0].1, EndpointEvent::SpeechStart { start_frame: 5 }),
            "{events:?}"
        );
        assert_eq!(ends(&events).len(), 1);
    }

    #[test]
    fn quiet_vad_hits_are_not_speech() {
        // VAD says speech, but at the noise floor: overhang or line noise.
        let mut ep = Endpointer::new(EndpointConfig::default());
        for f in 0..500 {
            let db = if f % 2 == 0 { -50.0 } else { -48.0 };
            assert_eq!(ep.push(f, true, db), None);
        }
        // And below the absolute gate, even on a line that was digitally silent.
        ep.reset();
        for f in 0..100 {
            assert_eq!(ep.push(f, true, -65.0), None);
        }
    }

    #[test]
    fn vad_overhang_after_speech_is_not_speech() {
        // On a hissy line the VAD keeps saying "speech" for a few frames after the caller stops;
        // those frames sit at the hiss level and must not delay the end.
        let mut ep = Endpointer::new(EndpointConfig::default());
        let mut end = None;
        for f in 0..400u64 {
            let (vad, db) = match f {
                0..200 => (false, -50.0),
                200..260 => (true, -25.0),
                260..265 => (true, -50.0),
                _ => (false, -50.0),
            };
            if let Some(EndpointEvent::SpeechEnd(e)) = ep.push(f, vad, db) {
                end = Some(e);
            }
        }
        assert_eq!(end.expect("no end").last_voiced_frame, 259);
    }

    #[test]
    fn single_click_in_hangover_does_not_extend() {
        let mut ep = Endpointer::new(EndpointConfig::default());
        let events = run(&mut ep, &[(true, 30), (false, 10), (true, 1), (false, 60)]);
        let end = ends(&events)[0];
        assert_eq!(end.last_voiced_frame, 29);
        assert_eq!(end.detected_ms() - end.end_ms(), ep_hangover_ms(30));
    }

    fn ep_hangover_ms(voiced_frames: u64) -> u64 {
        let mut ep = Endpointer::new(EndpointConfig::default());
        run(&mut ep, &[(true, voiced_frames)]);
        ep.hangover_frames() * 20
    }

    #[test]
    fn cap_cuts_long_talk_and_restarts() {
        let cfg = EndpointConfig {
            max_utterance_ms: 2_000,
            ..EndpointConfig::default()
        };
        let mut ep = Endpointer::new(cfg);
        let events = run(&mut ep, &[(false, 5), (true, 250), (false, 60)]);
        let ends = ends(&events);
        assert_eq!(ends.len(), 3, "{events:?}");
        assert!(ends[0].capped && ends[1].capped && !ends[2].capped);
        assert_eq!(ends[0].start_frame, 5);
        assert_eq!(ends[0].detected_ms() - ends[0].start_ms(), 2_000);
        assert_eq!(ends[0].end_ms(), ends[0].detected_ms());
        // The next one starts right after the cut (its frames were voiced all along).
        assert_eq!(ends[1].start_frame, ends[0].detected_frame + 1);
        assert_eq!(ends[2].end_ms(), 255 * 20);
    }

    #[test]
    fn floor_follows_a_louder_line() {
        // Quiet line, a second of speech, then hiss at -40 dBFS that the VAD calls speech: once
        // the quiet frames have left the floor's window the hiss stops counting and the
        // utterance ends, instead of running on to the cap.
        let mut ep = Endpointer::new(EndpointConfig::default());
        let mut end = None;
        for f in 0..1_000u64 {
            let (speech, db) = match f {
                0..150 => (false, -70.0),
                150..200 => (true, -25.0),
                _ => (true, -40.0),
            };
            if let Some(EndpointEvent::SpeechEnd(e)) = ep.push(f, speech, db) {
                end = Some(e);
                break;
            }
        }
        let end = end.expect("utterance never ended");
        assert!(!end.capped);
        assert!(end.detected_frame < 400, "{end:?}");
    }

    #[test]
    fn flickering_vad_inside_speech_is_bridged() {
        let mut ep = Endpointer::new(EndpointConfig::default());
        let mut pattern = vec![(false, 20), (true, 10)];
        for _ in 0..40 {
            pattern.extend([(true, 1), (false, 1)]);
        }
        pattern.push((false, 60));
        let ends = ends(&run(&mut ep, &pattern));
        assert_eq!(ends.len(), 1);
        assert_eq!(ends[0].last_voiced_frame, 20 + 10 + 78);
    }

    #[test]
    fn config_problems() {
        assert_eq!(EndpointConfig::default().problem(), None);
        let bad = EndpointConfig {
            min_hangover_ms: 800,
            ..EndpointConfig::default()
        };
        assert!(bad.problem().is_some());
    }
}
