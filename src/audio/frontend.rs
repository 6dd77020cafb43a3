//! The whole inbound media path for one call: μ-law frames in, speech events and utterances out.
//!
//! Per 20 ms frame: decode, upsample to 16 kHz into a ring of recent audio, VAD, energy, pitch
//! (voiced frames only), endpointing. Nothing on that path allocates once the frontend is built;
//! the only allocation is the sample buffer of each emitted utterance, which the STT pool then
//! owns. The ring is sized for the longest possible utterance plus its pre-roll, so cutting an
//! utterance is a copy, never a search.

use std::collections::VecDeque;

use super::endpoint::{EndpointConfig, EndpointEvent, Endpointer, SpeechEnd};
use super::prosody::{self, FrameAnalyzer, FrameFeatures};
use super::resample::Upsampler;
use super::vad::{self, Vad};
use super::{AudioError, FRAME_MS, FRAME_SAMPLES_8K, Prosody, ulaw};

/// 16 kHz samples per inbound frame.
const SAMPLES_16K: usize = FRAME_SAMPLES_8K * 2;
/// Silence kept after the last voiced frame: word-final consonants trail off below the VAD's
/// threshold, and Whisper transcribes a clean ending better than a cut one. It is also how
/// long a pause lasts before its transcript starts ([`FrontendEvent::Pause`]): every
/// millisecond here is one more before a caller asking for a person is put through. 120 ms
/// was tried: WER on the fixture turns 14.19 % against 14.01 %, and replay lost a lone
/// "ours." (heard as "Our", so the caller got no opening hours).
const TRAILING_MS: u64 = 200;

/// Silence after which a short utterance is offered for a quick look
/// ([`FrontendEvent::QuickPause`]): long enough that the caller has stopped, not only taken a
/// breath between two syllables, and half of [`TRAILING_MS`], so a lone "Agent." can be put
/// through before the ordinary pause transcript would even start.
const QUICK_TRAILING_MS: u64 = 100;

/// Longest silence left inside a held utterance (see [`Frontend::shorten_inner_silences`]).
const MAX_INNER_SILENCE_MS: u64 = 300;
/// Upper bounds that keep a bad config from reserving absurd amounts of memory per call.
const MAX_UTTERANCE_LIMIT_MS: u64 = 120_000;
const MAX_PRE_ROLL_MS: u64 = 2_000;

/// Tuning of the media path. Every field has a default, so a config file may set any subset.
/// (Deliberately not `Copy`, so it can grow non-`Copy` fields without breaking callers.)
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct FrontendConfig {
    /// webrtc-vad aggressiveness, 0..=3 (3 = strictest about calling a frame speech).
    pub vad_mode: u8,
    /// Mostly-voiced time needed before speech counts as started.
    pub min_speech_ms: u64,
    /// Shortest silence that ends an utterance.
    pub min_hangover_ms: u64,
    /// Longest silence ever needed to end an utterance, however long the caller talked or paused.
    pub max_hangover_ms: u64,
    /// Utterances are cut (and flagged `capped`) at this length.
    pub max_utterance_ms: u64,
    /// Audio kept from before the detected start, so the first syllable is not clipped.
    pub pre_roll_ms: u64,
    /// Report each pause in speech as a [`FrontendEvent::Pause`] as soon as its utterance's
    /// audio is complete, so transcription can start before the endpoint is sure.
    pub early_transcripts: bool,
    /// With `early_transcripts`, also report an utterance's first 100 ms of silence as a
    /// [`FrontendEvent::QuickPause`], so an unambiguous request for a person is acted on
    /// sooner, and a caller who goes on speaking as [`FrontendEvent::Resumed`], so a look
    /// that has become moot is called off instead of slowing the transcription that matters.
    pub quick_transcripts: bool,
    /// Only utterances with at most this much speech get a quick look. A request for a person
    /// is one word to one sentence ("Hello there. I would like to speak to an agent, please."
    /// is 3.5 s); longer turns are stories, which go by the endpoint anyway.
    pub quick_max_speech_ms: u64,
}

impl Default for FrontendConfig {
    fn default() -> Self {
        let ep = EndpointConfig::default();
        Self {
            vad_mode: vad::DEFAULT_MODE,
            min_speech_ms: ep.min_speech_ms,
            min_hangover_ms: ep.min_hangover_ms,
            max_hangover_ms: ep.max_hangover_ms,
            max_utterance_ms: ep.max_utterance_ms,
            pre_roll_ms: 200,
            early_transcripts: true,
            quick_transcripts: true,
            quick_max_speech_ms: 5_000,
        }
    }
}

impl FrontendConfig {
    fn endpoint(&self) -> EndpointConfig {
        EndpointConfig {
            min_speech_ms: self.min_speech_ms,
            min_hangover_ms: self.min_hangover_ms,
            max_hangover_ms: self.max_hangover_ms,
            max_utterance_ms: self.max_utterance_ms,
        }
    }
}

/// What the frontend has to say about the audio so far.
#[derive(Debug, Clone, PartialEq)]
pub enum FrontendEvent {
    /// Sustained speech began (used for barge-in while a prompt plays). Reported
    /// `min_speech_ms` or so after `at_ms`, the time the speech itself started.
    SpeechStart { at_ms: u64 },
    /// End of speech detected (or the length cap hit): one utterance for Whisper.
    Utterance(Utterance),
    /// The caller has paused for long enough that the utterance's audio is complete: if the
    /// endpoint follows without more speech, its [`Utterance`] has exactly these samples. A
    /// transcription started now is ready when the endpoint (hundreds of milliseconds later)
    /// is; one started at the endpoint would make the caller wait for it.
    Pause(Utterance),
    /// A short utterance has had [`QUICK_TRAILING_MS`] of silence: too little to be sure of
    /// the end, enough for a first look at its words. Its audio has less trailing silence
    /// than the [`Utterance`] the endpoint would cut, so its transcript only ever decides an
    /// unmistakable turn; anything else waits for the [`FrontendEvent::Pause`].
    QuickPause(Utterance),
    /// The caller spoke again (for long enough not to be a click) after a
    /// [`FrontendEvent::QuickPause`] of the same utterance: the look is of speech they have
    /// gone on from.
    Resumed,
}

/// One stretch of caller speech, ready for transcription.
#[derive(Clone, PartialEq)]
pub struct Utterance {
    /// 16 kHz mono, [-1, 1], including the pre-roll and up to ~200 ms of trailing silence.
    pub samples: Vec<f32>,
    /// Stream time of speech start (frames_seen * 20).
    pub start_ms: u64,
    /// Stream time of the end of the last voiced frame (for a capped utterance: of the cut).
    pub end_ms: u64,
    /// Stream time the end was detected (end_ms + hangover).
    pub detected_ms: u64,
    pub capped: bool,
    pub prosody: Prosody,
}

/// Shows the sample count, not the samples: utterances end up in logs and assertion messages.
impl std::fmt::Debug for Utterance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Utterance")
            .field("samples", &format_args!("[f32; {}]", self.samples.len()))
            .field("start_ms", &self.start_ms)
            .field("end_ms", &self.end_ms)
            .field("detected_ms", &self.detected_ms)
            .field("capped", &self.capped)
            .field("prosody", &self.prosody)
            .finish()
    }
}

/// The inbound media path of one call. `Send`, not `Sync`: one call task owns it.
pub struct Frontend {
    cfg: FrontendConfig,
    vad: Vad,
    upsampler: Upsampler,
    endpointer: Endpointer,
    analyzer: FrameAnalyzer,
    /// Scratch for one frame's upsampled audio (capacity reserved up front).
    upsampled: Vec<f32>,
    /// The last `ring.len()` samples of the 16 kHz stream; stream sample `n` is at `n % len`.
    ring: Vec<f32>,
    /// 16 kHz samples written so far.
    written: u64,
    /// Per-frame measurements, a ring like `ring`: frame `f` is at `f % len`.
    features: Vec<FrameFeatures>,
    frames_seen: u64,
    /// Stream sample where the last emitted utterance's audio ended; the next one's pre-roll
    /// never reaches back over it (that only matters after a cap).
    emitted_until: u64,
    /// Bytes of an incomplete frame from an odd-sized provider packet.
    carry: [u8; FRAME_SAMPLES_8K],
    carry_len: usize,
    /// Events produced by a `push_ulaw` call that completed more than one frame.
    pending: VecDeque<FrontendEvent>,
    pitch_scratch: Vec<f32>,
    /// The last voiced frame of the utterance as it stood at its latest quick look, until the
    /// caller resumes or the utterance ends.
    looked_at: Option<u64>,
}

impl std::fmt::Debug for Frontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frontend")
            .field("cfg", &self.cfg)
            .field("frames_seen", &self.frames_seen)
            .field("in_speech", &self.endpointer.in_speech())
            .finish_non_exhaustive()
    }
}

fn frames(ms: u64) -> u64 {
    ms.div_ceil(FRAME_MS)
}

impl Frontend {
    pub fn new(cfg: FrontendConfig) -> Result<Frontend, AudioError> {
        if let Some(problem) = cfg.endpoint().problem() {
            return Err(AudioError::InvalidConfig(problem.to_owned()));
        }
        if cfg.max_utterance_ms > MAX_UTTERANCE_LIMIT_MS {
            return Err(AudioError::InvalidConfig(format!(
                "max_utterance_ms must be at most {MAX_UTTERANCE_LIMIT_MS}"
            )));
        }
        if cfg.pre_roll_ms > MAX_PRE_ROLL_MS {
            return Err(AudioError::InvalidConfig(format!(
                "pre_roll_ms must be at most {MAX_PRE_ROLL_MS}"
            )));
        }
        let vad = Vad::new(cfg.vad_mode)?;
        let endpointer = Endpointer::new(cfg.endpoint());
        // The oldest audio an utterance can need is its pre-roll before a start that is at most
        // max_utterance old; one spare frame covers the upsampler's half-frame delay.
        let ring_frames = (frames(cfg.max_utterance_ms) + frames(cfg.pre_roll_ms) + 2) as usize;
        Ok(Frontend {
            cfg,
            vad,
            upsampler: Upsampler::new()?,
            endpointer,
            analyzer: FrameAnalyzer::new(),
            upsampled: Vec::with_capacity(SAMPLES_16K),
            ring: vec![0.0; ring_frames * SAMPLES_16K],
            written: 0,
            features: vec![FrameFeatures::default(); ring_frames],
            frames_seen: 0,
            emitted_until: 0,
            carry: [0; FRAME_SAMPLES_8K],
            carry_len: 0,
            pending: VecDeque::with_capacity(4),
            pitch_scratch: Vec::with_capacity(ring_frames),
            looked_at: None,
        })
    }

    pub fn config(&self) -> &FrontendConfig {
        &self.cfg
    }

    /// Frames of inbound audio processed since the start (or the last reset).
    pub fn frames_seen(&self) -> u64 {
        self.frames_seen
    }

    /// Whether the caller is mid-utterance (speech started, end not yet detected).
    pub fn in_speech(&self) -> bool {
        self.endpointer.in_speech()
    }

    /// Whether the caller has started voicing again, too briefly yet to be an utterance.
    pub fn speech_starting(&self) -> bool {
        self.endpointer.starting()
    }

    /// Feeds one 20 ms frame (160 μ-law bytes). Other sizes are taken as a piece of the byte
    /// stream, exactly as [`push_ulaw_bytes`](Self::push_ulaw_bytes) does; if that completes
    /// several frames and more than one of them produces an event, the extra events come out of
    /// the following calls, in order.
    pub fn push_ulaw(&mut self, frame: &[u8]) -> Option<FrontendEvent> {
        if let Ok(whole) = <&[u8; FRAME_SAMPLES_8K]>::try_from(frame)
            && self.carry_len == 0
        {
            let event = self.push_frame(whole);
            if self.pending.is_empty() {
                return event;
            }
            self.pending.extend(event);
        } else {
            let mut pending = std::mem::take(&mut self.pending);
            self.feed(frame, &mut pending);
            self.pending = pending;
        }
        self.pending.pop_front()
    }

    /// Feeds any number of μ-law bytes (providers do not all send 20 ms packets), appending an
    /// event to `out` for every frame that produced one. A trailing partial frame is kept for
    /// the next call.
    pub fn push_ulaw_bytes(&mut self, bytes: &[u8], out: &mut Vec<FrontendEvent>) {
        out.extend(self.pending.drain(..));
        self.feed(bytes, out);
    }

    /// Every utterance in `ulaw` (a whole recording), the one still open at its end included,
    /// as [`finish`](Self::finish) ends it.
    pub fn utterances(&mut self, ulaw: &[u8]) -> Vec<Utterance> {
        let mut events = Vec::new();
        self.push_ulaw_bytes(ulaw, &mut events);
        events
            .into_iter()
            .filter_map(|e| match e {
                FrontendEvent::Utterance(u) => Some(u),
                _ => None,
            })
            .chain(self.finish())
            .collect()
    }

    /// Ends the utterance in progress, if any, as if the caller had stopped (call over, replay
    /// done). Any partial frame is dropped.
    pub fn finish(&mut self) -> Option<Utterance> {
        self.carry_len = 0;
        let last = self.frames_seen.checked_sub(1)?;
        let end = self.endpointer.finish(last)?;
        Some(self.cut(end))
    }

    /// Ends the utterance in progress now, as [`FrontendEvent::Pause`] reported it, when the
    /// caller has stayed silent since speech that ended at `end_ms`: what they said at that
    /// pause already decided the turn. `None` if they have started again (or never paused
    /// there), so a turn is never cut under a caller who is talking.
    pub fn end_turn_at_pause(&mut self, end_ms: u64) -> Option<Utterance> {
        let last = self.frames_seen.checked_sub(1)?;
        let ongoing = self.endpointer.ongoing(last)?;
        if ongoing.end_ms() != end_ms || self.endpointer.resuming() {
            return None;
        }
        let end = self.endpointer.finish(last)?;
        Some(self.cut(end))
    }

    /// Keeps the utterance in progress open through up to `ms` of silence after speech that
    /// ended at `end_ms`, when the caller has not spoken since: they are mid-thought (half a
    /// number, a greeting before the question), and what they say next belongs to the same
    /// utterance. Returns whether it was held.
    pub fn hold_pause(&mut self, end_ms: u64, ms: u64) -> bool {
        let Some(last) = self.frames_seen.checked_sub(1) else {
            return false;
        };
        match self.endpointer.ongoing(last) {
            Some(ongoing) if ongoing.end_ms() == end_ms => self.endpointer.hold_pause(ms),
            _ => false,
        }
    }

    /// The 16 kHz audio from `from_ms` to [`TRAILING_MS`] after `to_ms` (stream times), as it
    /// arrived; `None` if the ring no longer holds all of it.
    pub fn audio_between(&self, from_ms: u64, to_ms: u64) -> Option<Vec<f32>> {
        let delay = Upsampler::DELAY_16K as u64;
        let per_ms = (SAMPLES_16K as u64) / FRAME_MS;
        let len = self.ring.len() as u64;
        let from = from_ms * per_ms + delay;
        let to = ((to_ms + TRAILING_MS) * per_ms + delay).min(self.written);
        if to <= from || from < self.written.saturating_sub(len) {
            return None;
        }
        Some((from..to).map(|i| self.ring[(i % len) as usize]).collect())
    }

    /// Back to the state of a new call: all history, carry-over and pending events dropped.
    pub fn reset(&mut self) {
        self.vad.reset();
        self.upsampler.reset();
        self.endpointer.reset();
        self.analyzer.reset();
        self.written = 0;
        self.frames_seen = 0;
        self.emitted_until = 0;
        self.carry_len = 0;
        self.pending.clear();
    }

    fn feed<E: Extend<FrontendEvent>>(&mut self, mut bytes: &[u8], out: &mut E) {
        if self.carry_len > 0 {
            let take = (FRAME_SAMPLES_8K - self.carry_len).min(bytes.len());
            self.carry[self.carry_len..self.carry_len + take].copy_from_slice(&bytes[..take]);
            self.carry_len += take;
            bytes = &bytes[take..];
            if self.carry_len < FRAME_SAMPLES_8K {
                return;
            }
            let frame = self.carry;
            self.carry_len = 0;
            out.extend(self.push_frame(&frame));
        }
        let mut chunks = bytes.chunks_exact(FRAME_SAMPLES_8K);
        for chunk in &mut chunks {
            if let Ok(frame) = <&[u8; FRAME_SAMPLES_8K]>::try_from(chunk) {
                out.extend(self.push_frame(frame));
            }
        }
        let rest = chunks.remainder();
        self.carry[..rest.len()].copy_from_slice(rest);
        self.carry_len = rest.len();
    }

    fn push_frame(&mut self, bytes: &[u8; FRAME_SAMPLES_8K]) -> Option<FrontendEvent> {
        let frame = self.frames_seen;
        self.frames_seen += 1;

        let mut pcm = [0i16; FRAME_SAMPLES_8K];
        for (s, &b) in pcm.iter_mut().zip(bytes) {
            *s = ulaw::decode(b);
        }

        self.upsampled.clear();
        self.upsampler.process(&pcm, &mut self.upsampled);
        let len = self.ring.len();
        let at = (self.written % len as u64) as usize;
        // The ring holds a whole number of frames, so a frame never straddles its end.
        self.ring[at..at + SAMPLES_16K].copy_from_slice(&self.upsampled);
        self.written += SAMPLES_16K as u64;

        let energy_db = prosody::energy_db_i16(&pcm);
        // 160 samples is always a valid VAD frame; should that ever change, silence is the
        // safe reading of a frame the VAD refused.
        let is_speech = self.vad.is_speech(&pcm).unwrap_or(false);
        self.analyzer.push(&pcm);
        let event = self.endpointer.push(frame, is_speech, energy_db);
        let voiced = self.endpointer.last_frame_voiced();
        let slot = (frame % self.features.len() as u64) as usize;
        self.features[slot] = FrameFeatures {
            energy_db,
            voiced,
            pitch_hz: if voiced { self.analyzer.pitch() } else { None },
        };

        let Some(event) = event else {
            return self.pause(frame);
        };
        self.looked_at = None;
        match event {
            EndpointEvent::SpeechStart { start_frame } => {
                tracing::trace!(at_ms = start_frame * FRAME_MS, "speech start");
                Some(FrontendEvent::SpeechStart {
                    at_ms: start_frame * FRAME_MS,
                })
            }
            EndpointEvent::SpeechEnd(end) => Some(FrontendEvent::Utterance(self.cut(end))),
        }
    }

    /// On the frame where the audio [`Self::cut`] would take for the utterance in progress
    /// is complete (its trailing silence, plus the upsampler's half-frame delay), that utterance.
    fn pause(&mut self, frame: u64) -> Option<FrontendEvent> {
        if !self.cfg.early_transcripts {
            return None;
        }
        let end = self.endpointer.ongoing(frame)?;
        if self.looked_at.is_some_and(|at| end.last_voiced_frame > at) {
            self.looked_at = None;
            return Some(FrontendEvent::Resumed);
        }
        if frame == end.last_voiced_frame + frames(TRAILING_MS) + 1 {
            // Only a real end moves the boundary the next utterance's pre-roll must respect.
            let (utterance, _) = self.copy_out(end, TRAILING_MS);
            return Some(FrontendEvent::Pause(utterance));
        }
        let speech_ms = (end.last_voiced_frame + 1 - end.start_frame) * FRAME_MS;
        if self.cfg.quick_transcripts
            && !end.held
            && speech_ms <= self.cfg.quick_max_speech_ms
            && frame == end.last_voiced_frame + frames(QUICK_TRAILING_MS) + 1
        {
            self.looked_at = Some(end.last_voiced_frame);
            let (utterance, _) = self.copy_out(end, QUICK_TRAILING_MS);
            return Some(FrontendEvent::QuickPause(utterance));
        }
        None
    }

    /// Ends an utterance: copies it out and keeps the next one's pre-roll from reaching back
    /// over its audio.
    fn cut(&mut self, end: SpeechEnd) -> Utterance {
        self.looked_at = None;
        let (utterance, to) = self.copy_out(end, TRAILING_MS);
        self.emitted_until = to;
        tracing::debug!(
            start_ms = utterance.start_ms,
            end_ms = utterance.end_ms,
            detected_ms = utterance.detected_ms,
            capped = utterance.capped,
            "utterance"
        );
        utterance
    }

    /// A held utterance can hold a silence of a second or more between "four four seven" and
    /// "one nine", and Whisper tends to end its transcript at such a silence, dropping what
    /// follows. Silences inside the speech are cut down to [`MAX_INNER_SILENCE_MS`]; the
    /// words and their order are untouched.
    fn shorten_inner_silences(&self, end: &SpeechEnd, from: u64, samples: Vec<f32>) -> Vec<f32> {
        let n = self.features.len() as u64;
        let delay = Upsampler::DELAY_16K as u64;
        let keep = frames(MAX_INNER_SILENCE_MS);
        let mut out = Vec::with_capacity(samples.len());
        let mut quiet_run = 0;
        let mut copied_to = from;
        for f in end.start_frame..=end.last_voiced_frame {
            let voiced = self.features[(f % n) as usize].voiced;
            quiet_run = if voiced { 0 } else { quiet_run + 1 };
            if quiet_run > keep {
                // Drop this frame's samples: copy what came before it, then skip it.
                let frame_from = (f * SAMPLES_16K as u64 + delay).max(from);
                let frame_to = ((f + 1) * SAMPLES_16K as u64 + delay).max(from);
                let lo = ((copied_to - from) as usize).min(samples.len());
                let hi = ((frame_from - from) as usize).min(samples.len());
                if hi > lo {
                    out.extend_from_slice(&samples[lo..hi]);
                }
                copied_to = frame_to.max(copied_to);
            }
        }
        out.extend_from_slice(&samples[((copied_to - from) as usize).min(samples.len())..]);
        out
    }

    /// Copies an utterance's audio out of the ring and summarises its prosody; also returns
    /// the stream sample its audio ends at.
    fn copy_out(&mut self, end: SpeechEnd, trailing_ms: u64) -> (Utterance, u64) {
        let first_frame = end.start_frame.saturating_sub(frames(self.cfg.pre_roll_ms));
        let end_frame = if end.capped {
            end.detected_frame + 1
        } else {
            (end.last_voiced_frame + 1 + frames(trailing_ms)).min(end.detected_frame + 1)
        };
        // The upsampled stream lags the frames by the resampler's delay (see `Upsampler`).
        let delay = Upsampler::DELAY_16K as u64;
        let len = self.ring.len() as u64;
        let from = (first_frame * SAMPLES_16K as u64 + delay)
            .max(self.emitted_until)
            .max(self.written.saturating_sub(len));
        let to = (end_frame * SAMPLES_16K as u64 + delay)
            .min(self.written)
            .max(from);

        let mut samples = Vec::with_capacity((to - from) as usize);
        let (a, b) = ((from % len) as usize, (to % len) as usize);
        if to - from == len || (a > b) {
            samples.extend_from_slice(&self.ring[a..]);
            samples.extend_from_slice(&self.ring[..b]);
        } else {
            samples.extend_from_slice(&self.ring[a..b]);
        }
        if end.held {
            samples = self.shorten_inner_silences(&end, from, samples);
        }

        let n = self.features.len() as u64;
        let features = &self.features;
        let speech = (end.start_frame..=end.last_voiced_frame).map(|f| features[(f % n) as usize]);
        let prosody = prosody::summarize(speech, &mut self.pitch_scratch);

        let utterance = Utterance {
            samples,
            start_ms: end.start_ms(),
            end_ms: end.end_ms(),
            detected_ms: end.detected_ms(),
            capped: end.capped,
            prosody,
        };
        (utterance, to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f32::consts::TAU;

    fn data(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/data/audio/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{path}: {e} (run scripts/make_audio_test_data.sh)"))
    }

    /// (start_ms, end_ms) of the speech in a fixture, from its sidecar.
    fn truth(name: &str) -> (u64, u64) {
        let text = String::from_utf8(data(&format!("{name}.txt"))).unwrap();
        let v: Vec<u64> = text
            .split_whitespace()
            .map(|s| s.parse().unwrap())
            .collect();
        (v[0], v[1])
    }

    fn run(fe: &mut Frontend, bytes: &[u8]) -> Vec<FrontendEvent> {
        bytes
            .chunks(FRAME_SAMPLES_8K)
            .filter_map(|frame| fe.push_ulaw(frame))
            .collect()
    }

    fn utterances(events: &[FrontendEvent]) -> Vec<&Utterance> {
        events
            .iter()
            .filter_map(|e| match e {
                FrontendEvent::Utterance(u) => Some(u),
                _ => None,
            })
            .collect()
    }

    /// Vowel-like buzz (harmonics of `f0` shaped by two formants) as μ-law, `frames` long.
    fn vowel(f0: f32, frames: usize, amp: f32, offset: usize) -> Vec<u8> {
        let pcm: Vec<i16> = (0..frames * FRAME_SAMPLES_8K)
            .map(|i| {
                let t = (offset + i) as f32 / 8000.0;
                let v: f32 = (1..25)
                    .map(|h| {
                        let fr = f0 * h as f32;
                        let gain = (-((fr - 700.0) / 400.0).powi(2)).exp()
                            + 0.5 * (-((fr - 1200.0) / 500.0).powi(2)).exp();
                        gain * (TAU * fr * t).sin()
                    })
                    .sum();
                (v * amp * 32_767.0 / 3.0).clamp(-32_768.0, 32_767.0) as i16
            })
            .collect();
        ulaw::encode_samples(&pcm)
    }

    /// Vowels at four syllables a second: level dips of ~20 dB between them, like speech.
    fn syllables(f0: f32, frames: usize, amp: f32) -> Vec<u8> {
        let steady: Vec<i16> = vowel(f0, frames, amp, 0)
            .iter()
            .map(|&b| ulaw::decode(b))
            .collect();
        let pcm: Vec<i16> = steady
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let t = i as f32 / 8000.0;
                let env = 0.1 + 0.9 * (0.5 - 0.5 * (TAU * 4.0 * t).cos());
                (s as f32 * env) as i16
            })
            .collect();
        ulaw::encode_samples(&pcm)
    }

    fn silence(frames: usize) -> Vec<u8> {
        vec![0xFF; frames * FRAME_SAMPLES_8K]
    }

    #[test]
    fn frontend_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Frontend>();
    }

    #[test]
    fn config_defaults_and_partial_toml() {
        let cfg: FrontendConfig = toml::from_str("max_hangover_ms = 600").unwrap();
        assert_eq!(cfg.max_hangover_ms, 600);
        assert_eq!(cfg.min_speech_ms, FrontendConfig::default().min_speech_ms);
        assert!(Frontend::new(cfg).is_ok());
    }

    #[test]
    fn bad_configs_are_errors() {
        let bad_mode = FrontendConfig {
            vad_mode: 7,
            ..FrontendConfig::default()
        };
        assert_eq!(
            Frontend::new(bad_mode).unwrap_err(),
            AudioError::InvalidVadMode(7)
        );
        let inverted = FrontendConfig {
            min_hangover_ms: 900,
            ..FrontendConfig::default()
        };
        assert!(matches!(
            Frontend::new(inverted),
            Err(AudioError::InvalidConfig(_))
        ));
        let huge = FrontendConfig {
            max_utterance_ms: 3_600_000,
            ..FrontendConfig::default()
        };
        assert!(matches!(
            Frontend::new(huge),
            Err(AudioError::InvalidConfig(_))
        ));
    }

    #[test]
    fn synthetic_utterance_timing_and_audio() {
        let mut fe = Frontend::new(FrontendConfig::default()).unwrap();
        let mut stream = silence(50);
        stream.extend(vowel(140.0, 60, 0.5, 0));
        stream.extend(silence(60));
        let events = run(&mut fe, &stream);
        assert_eq!(fe.frames_seen(), 170);
        assert!(
            matches!(events[0], FrontendEvent::SpeechStart { at_ms } if at_ms.abs_diff(1000) <= 40),
            "{events:?}"
        );
        let u = utterances(&events);
        assert_eq!(u.len(), 1);
        let u = u[0];
        assert!(u.start_ms.abs_diff(1000) <= 40, "{}", u.start_ms);
        assert!(u.end_ms.abs_diff(2200) <= 40, "{}", u.end_ms);
        assert!(u.detected_ms - u.end_ms <= 700);
        assert!(!u.capped);
        // Pre-roll + speech + trailing silence, and the audio really is where the speech was:
        // silent in the pre-roll, loud in the middle.
        let expected = (u.end_ms + TRAILING_MS - (u.start_ms - 200)) as usize * 16;
        assert_eq!(u.samples.len(), expected);
        let pre = &u.samples[..16 * 140];
        assert!(pre.iter().all(|v| v.abs() < 1e-3));
        let mid = &u.samples[16 * 400..16 * 800];
        assert!(mid.iter().map(|v| v * v).sum::<f32>() / mid.len() as f32 > 1e-3);
        let p = u.prosody.pitch_hz.expect("pitch");
        assert!((p - 140.0).abs() < 7.0, "{p}");
        assert!(u.prosody.voiced_ms >= 1000);
    }

    #[test]
    fn odd_packet_sizes_give_the_same_events() {
        let mut stream = silence(30);
        stream.extend(vowel(180.0, 40, 0.4, 0));
        stream.extend(silence(50));
        let mut fe = Frontend::new(FrontendConfig::default()).unwrap();
        let whole = run(&mut fe, &stream);
        for size in [1usize, 77, 159, 161, 333, 1000] {
            let mut fe = Frontend::new(FrontendConfig::default()).unwrap();
            let mut got = Vec::new();
            for piece in stream.chunks(size) {
                fe.push_ulaw_bytes(piece, &mut got);
            }
            assert_eq!(got, whole, "packet size {size}");
            // And through push_ulaw with odd sizes.
            let mut fe = Frontend::new(FrontendConfig::default()).unwrap();
            let mut got: Vec<_> = stream
                .chunks(size)
                .filter_map(|p| fe.push_ulaw(p))
                .collect();
            got.extend(std::iter::from_fn(|| fe.push_ulaw(&[])));
            assert_eq!(got, whole, "push_ulaw packet size {size}");
        }
    }

    #[test]
    fn cap_splits_long_speech_without_losing_audio() {
        let cfg = FrontendConfig {
            max_utterance_ms: 2_000,
            ..FrontendConfig::default()
        };
        let mut fe = Frontend::new(cfg).unwrap();
        let mut stream = silence(20);
        stream.extend(syllables(120.0, 250, 0.5));
        stream.extend(silence(60));
        let events = run(&mut fe, &stream);
        let u = utterances(&events);
        assert_eq!(u.len(), 3, "{events:?}");
        assert!(u[0].capped && u[1].capped && !u[2].capped);
        assert_eq!(u[0].end_ms - u[0].start_ms, 2_000);
        // Consecutive pieces tile the stream: no gap, no overlap.
        let total: usize = u.iter().map(|u| u.samples.len()).sum();
        let span_ms = (u[2].end_ms + TRAILING_MS) - (u[0].start_ms - 200);
        assert_eq!(total, span_ms as usize * 16);
    }

    fn pauses(events: &[FrontendEvent]) -> Vec<&Utterance> {
        events
            .iter()
            .filter_map(|e| match e {
                FrontendEvent::Pause(u) => Some(u),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_pause_reports_exactly_the_utterance_the_endpoint_then_cuts() {
        let mut fe = Frontend::new(FrontendConfig::default()).unwrap();
        let mut stream = silence(50);
        stream.extend(vowel(140.0, 60, 0.5, 0));
        stream.extend(silence(60));
        let events = run(&mut fe, &stream);
        let (p, u) = (pauses(&events), utterances(&events));
        assert_eq!((p.len(), u.len()), (1, 1), "{events:?}");
        assert_eq!(p[0].samples, u[0].samples);
        assert_eq!((p[0].start_ms, p[0].end_ms), (u[0].start_ms, u[0].end_ms));
        assert_eq!(p[0].prosody, u[0].prosody);
        // Reported once the 200 ms of trailing audio (and the upsampler's delay) is in, well
        // before the 400 ms minimum hangover ends the utterance.
        assert_eq!(p[0].detected_ms, p[0].end_ms + 220);
        assert!(u[0].detected_ms >= p[0].detected_ms + 160, "{u:?}");
    }

    fn quick_pauses(events: &[FrontendEvent]) -> Vec<&Utterance> {
        events
            .iter()
            .filter_map(|e| match e {
                FrontendEvent::QuickPause(u) => Some(u),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_short_utterance_gets_a_quick_look_before_its_pause() {
        let mut stream = silence(50);
        stream.extend(vowel(140.0, 60, 0.5, 0));
        stream.extend(silence(60));
        let on = FrontendConfig {
            quick_transcripts: true,
            ..FrontendConfig::default()
        };
        let mut fe = Frontend::new(on.clone()).unwrap();
        let events = run(&mut fe, &stream);
        let (q, p) = (quick_pauses(&events), pauses(&events));
        assert_eq!((q.len(), p.len()), (1, 1), "{events:?}");
        let first = events
            .iter()
            .position(|e| matches!(e, FrontendEvent::QuickPause(_)));
        let pause = events
            .iter()
            .position(|e| matches!(e, FrontendEvent::Pause(_)));
        assert!(first < pause, "{events:?}");
        assert_eq!((q[0].start_ms, q[0].end_ms), (p[0].start_ms, p[0].end_ms));
        assert_eq!(q[0].detected_ms, q[0].end_ms + 120);
        // The same audio with 100 ms less trailing silence.
        let short = (TRAILING_MS - QUICK_TRAILING_MS) as usize * 16;
        assert_eq!(q[0].samples.len() + short, p[0].samples.len());
        assert_eq!(q[0].samples[..], p[0].samples[..q[0].samples.len()]);

        // Off: none.
        let off = FrontendConfig {
            quick_transcripts: false,
            ..FrontendConfig::default()
        };
        let mut fe = Frontend::new(off).unwrap();
        assert!(quick_pauses(&run(&mut fe, &stream)).is_empty());
    }

    #[test]
    fn a_caller_who_goes_on_after_a_quick_look_is_reported_resumed_once() {
        // 160 ms of silence: past the quick look's 100 ms, short of the pause's 200 ms.
        let mut stream = silence(50);
        stream.extend(vowel(140.0, 40, 0.5, 0));
        stream.extend(silence(8));
        stream.extend(vowel(120.0, 40, 0.5, 0));
        stream.extend(silence(60));
        let mut fe = Frontend::new(FrontendConfig::default()).unwrap();
        let events = run(&mut fe, &stream);
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| match e {
                FrontendEvent::SpeechStart { .. } => "start",
                FrontendEvent::QuickPause(_) => "quick",
                FrontendEvent::Resumed => "resumed",
                FrontendEvent::Pause(_) => "pause",
                FrontendEvent::Utterance(_) => "utterance",
            })
            .collect();
        assert_eq!(
            kinds,
            ["start", "quick", "resumed", "quick", "pause", "utterance"]
        );
        // The second look is of the whole utterance, not of the first half again.
        let q = quick_pauses(&events);
        let u = utterances(&events)[0];
        assert!(q[0].end_ms < q[1].end_ms);
        assert_eq!((q[1].start_ms, q[1].end_ms), (u.start_ms, u.end_ms));
    }

    #[test]
    fn a_long_utterance_gets_no_quick_look() {
        let mut stream = silence(50);
        stream.extend(vowel(140.0, 110, 0.5, 0));
        stream.extend(silence(80));
        let on = FrontendConfig {
            quick_transcripts: true,
            quick_max_speech_ms: 2_000,
            ..FrontendConfig::default()
        };
        let mut fe = Frontend::new(on).unwrap();
        let events = run(&mut fe, &stream);
        assert_eq!(pauses(&events).len(), 1, "{events:?}");
        assert!(quick_pauses(&events).is_empty(), "{events:?}");
    }

    #[test]
    fn a_recording_yields_every_utterance_including_the_unfinished_last() {
        let mut stream = silence(50);
        stream.extend(vowel(140.0, 60, 0.5, 0));
        stream.extend(silence(60));
        stream.extend(vowel(120.0, 40, 0.5, 0));
        let mut fe = Frontend::new(FrontendConfig::default()).unwrap();
        let events = run(&mut fe, &stream);
        let mut want: Vec<Utterance> = utterances(&events).into_iter().cloned().collect();
        want.extend(fe.finish());
        assert_eq!(want.len(), 2);
        let mut fe = Frontend::new(FrontendConfig::default()).unwrap();
        assert_eq!(fe.utterances(&stream), want);
    }

    #[test]
    fn a_pause_the_caller_talks_through_is_superseded() {
        let mut fe = Frontend::new(FrontendConfig::default()).unwrap();
        let mut stream = silence(50);
        stream.extend(vowel(140.0, 40, 0.5, 0));
        stream.extend(silence(15));
        stream.extend(vowel(120.0, 40, 0.5, 0));
        stream.extend(silence(60));
        let events = run(&mut fe, &stream);
        let (p, u) = (pauses(&events), utterances(&events));
        assert_eq!((p.len(), u.len()), (2, 1), "{events:?}");
        assert!(p[0].end_ms < u[0].end_ms && p[0].samples.len() < u[0].samples.len());
        assert_eq!(p[1].samples, u[0].samples);

        let quiet = FrontendConfig {
            early_transcripts: false,
            ..FrontendConfig::default()
        };
        let mut fe = Frontend::new(quiet).unwrap();
        let events = run(&mut fe, &stream);
        assert!(pauses(&events).is_empty());
        assert_eq!(utterances(&events)[0].samples, u[0].samples);
    }

    #[test]
    fn a_held_pause_keeps_one_utterance_and_shortens_its_silence() {
        // "four four seven" … 1.2 s … "one nine".
        let mut first = silence(50);
        first.extend(vowel(140.0, 40, 0.5, 0));
        first.extend(silence(12));
        let mut rest = silence(48);
        rest.extend(vowel(120.0, 40, 0.5, 0));
        rest.extend(silence(100));

        let mut fe = Frontend::new(FrontendConfig::default()).unwrap();
        let events = run(&mut fe, &first);
        let pause = pauses(&events)[0].clone();
        assert!(fe.hold_pause(pause.end_ms, 1500));
        let events = run(&mut fe, &rest);
        let u = utterances(&events);
        assert_eq!(u.len(), 1, "{events:?}");
        // Spans both words, yet ~0.9 s of the 1.2 s silence between them is gone.
        assert!(u[0].end_ms - u[0].start_ms >= 2_800, "{:?}", u[0]);
        let spanned = (u[0].end_ms - u[0].start_ms) as usize * 16;
        assert!(
            u[0].samples.len() + 800 * 16 <= spanned + 600 * 16,
            "{} samples for {spanned} spanned",
            u[0].samples.len()
        );

        // Not held: the pause ends the utterance and the second word is its own.
        let mut fe = Frontend::new(FrontendConfig::default()).unwrap();
        let mut stream = first.clone();
        stream.extend(rest.clone());
        assert_eq!(utterances(&run(&mut fe, &stream)).len(), 2);
        // A hold for speech that has moved on is refused.
        let mut fe = Frontend::new(FrontendConfig::default()).unwrap();
        run(&mut fe, &first);
        assert!(!fe.hold_pause(pause.end_ms + 20, 1500));
    }

    #[test]
    fn finish_flushes_and_reset_restarts() {
        let mut fe = Frontend::new(FrontendConfig::default()).unwrap();
        let mut stream = silence(10);
        stream.extend(vowel(150.0, 30, 0.5, 0));
        run(&mut fe, &stream);
        assert!(fe.in_speech());
        let u = fe.finish().expect("utterance in progress");
        assert_eq!(u.detected_ms, 40 * 20);
        assert!(!fe.in_speech());
        assert!(fe.finish().is_none());
        fe.reset();
        assert_eq!(fe.frames_seen(), 0);
        let again = run(&mut fe, &stream);
        assert!(
            matches!(again[0], FrontendEvent::SpeechStart { at_ms } if at_ms.abs_diff(200) <= 40)
        );
    }

    #[test]
    fn silence_and_line_noise_stay_quiet() {
        let mut fe = Frontend::new(FrontendConfig::default()).unwrap();
        let mut seed = 7u32;
        let hiss: Vec<i16> = (0..500 * FRAME_SAMPLES_8K)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((seed >> 16) as i16) / 200
            })
            .collect();
        let mut stream = silence(100);
        stream.extend(ulaw::encode_samples(&hiss));
        assert!(run(&mut fe, &stream).is_empty());
    }

    /// The real-speech check: a synthesised caller, band-limited and μ-law coded like a phone
    /// line, padded with 0.5 s of silence before and 1.0 s after (see
    /// scripts/make_audio_test_data.sh).
    fn check_fixture(name: &str) -> Utterance {
        let (start, end) = truth(name);
        let mut fe = Frontend::new(FrontendConfig::default()).unwrap();
        let events = run(&mut fe, &data(&format!("{name}.ulaw")));
        let u = utterances(&events);
        assert_eq!(u.len(), 1, "{name}: {events:?}");
        let u = u[0].clone();
        println!("{name}: truth {start}..{end} ms, got {u:?}");
        assert!(
            u.start_ms.abs_diff(start) <= 150,
            "{name}: start {} vs {start}",
            u.start_ms
        );
        assert!(
            u.end_ms.abs_diff(end) <= 150,
            "{name}: end {} vs {end}",
            u.end_ms
        );
        assert!(
            u.detected_ms - u.end_ms <= 700,
            "{name}: hangover {}",
            u.detected_ms - u.end_ms
        );
        assert!(!u.capped);
        let p = u.prosody;
        assert!(
            p.loudness_db > -40.0 && p.loudness_db < -5.0,
            "{name}: {p:?}"
        );
        assert!(
            p.pitch_hz.is_some_and(|f| (70.0..300.0).contains(&f)),
            "{name}: {p:?}"
        );
        assert!((1.5..9.0).contains(&p.syllables_per_s), "{name}: {p:?}");
        u
    }

    #[test]
    fn real_speech_billing_sentence() {
        check_fixture("billing");
    }

    #[test]
    fn real_speech_digits_with_pauses() {
        check_fixture("digits");
    }
}
