//! Joining fragments into one stretch of 8 kHz audio: silence between them sized to what
//! separates them (a word, a digit, a comma, a sentence), and a few milliseconds of fade at
//! every edge so no join clicks.

use std::borrow::Cow;

use super::library::FragmentLibrary;

/// Samples per second of everything here (the fragments' and the telephone's rate).
pub const RATE: u32 = 8000;
/// Silence before the first and after the last fragment.
pub const EDGE_MS: u32 = 150;
/// Length of the fade-in and fade-out at each fragment's edges (5 ms).
pub const FADE_SAMPLES: usize = 40;
/// Longest audio one utterance may make; pieces beyond it are not said.
pub const MAX_MS: u32 = 60_000;

/// The silence between two fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pause {
    /// Between words of one phrase ("Account number" · "four").
    Word,
    /// Between the digits of a number, read one by one.
    Digit,
    /// Where the text has a comma, and between groups of a long number.
    Comma,
    /// Between sentences.
    Sentence,
}

impl Pause {
    pub const fn ms(self) -> u32 {
        match self {
            // Fragments are cut at the voice, so even adjacent words need a breath of air.
            Pause::Word => 60,
            Pause::Digit => 140,
            Pause::Comma => 260,
            Pause::Sentence => 450,
        }
    }
}

/// One step of an utterance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Say(Cow<'static, str>),
    Pause(Pause),
}

/// What to say: fragment ids with pauses between them. Two fragments with no pause given
/// are a [`Pause::Word`] apart; of several pauses in a row the longest counts; pauses at the
/// ends are replaced by [`EDGE_MS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Utterance {
    pub pieces: Vec<Piece>,
}

impl Utterance {
    pub fn new() -> Utterance {
        Utterance::default()
    }

    pub fn say(mut self, id: impl Into<Cow<'static, str>>) -> Utterance {
        self.push_say(id);
        self
    }

    pub fn pause(mut self, p: Pause) -> Utterance {
        self.push_pause(p);
        self
    }

    pub fn push_say(&mut self, id: impl Into<Cow<'static, str>>) {
        self.pieces.push(Piece::Say(id.into()));
    }

    pub fn push_pause(&mut self, p: Pause) {
        self.pieces.push(Piece::Pause(p));
    }

    /// The fragment ids, in order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Say(id) => Some(id.as_ref()),
            Piece::Pause(_) => None,
        })
    }

    /// The fragments' texts joined: what a listener hears, for logs and tests.
    pub fn text(&self, lib: &FragmentLibrary) -> String {
        self.ids()
            .map(|id| lib.get(id).map_or("?", |f| f.text.as_str()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn is_empty(&self) -> bool {
        self.ids().next().is_none()
    }
}

/// 8 kHz mono 16-bit audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audio {
    pub pcm: Vec<i16>,
}

impl Audio {
    pub fn duration_ms(&self) -> u64 {
        self.pcm.len() as u64 * 1000 / u64::from(RATE)
    }

    /// A WAV file (RIFF, PCM, 8000 Hz, mono, 16-bit).
    pub fn to_wav(&self) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut out = std::io::Cursor::new(Vec::with_capacity(44 + self.pcm.len() * 2));
        // Writing to memory cannot fail; the length is capped far below WAV's 4 GiB.
        if let Ok(mut w) = hound::WavWriter::new(&mut out, spec) {
            let mut i16w = w.get_i16_writer(self.pcm.len() as u32);
            for &s in &self.pcm {
                i16w.write_sample(s);
            }
            let _ = i16w.flush();
            let _ = w.finalize();
        }
        out.into_inner()
    }

    /// 8 kHz μ-law, as the media streams carry it.
    pub fn to_ulaw(&self) -> Vec<u8> {
        crate::audio::ulaw::encode_samples(&self.pcm)
    }
}

fn samples(ms: u32) -> usize {
    (ms * RATE / 1000) as usize
}

/// Joins the utterance's fragments. Ids the library lacks are skipped (the planner only
/// names ids [`FragmentLibrary::check_required`] vouched for, or checked queue fragments).
pub fn compose(lib: &FragmentLibrary, u: &Utterance) -> Audio {
    let max = samples(MAX_MS);
    let mut pcm: Vec<i16> = Vec::with_capacity(samples(10_000));
    pcm.resize(samples(EDGE_MS), 0);
    let mut gap: Option<Pause> = None;
    let mut first = true;
    for piece in &u.pieces {
        match piece {
            Piece::Pause(p) => gap = Some(gap.map_or(*p, |g| g.max(*p))),
            Piece::Say(id) => {
                let Some(frag) = lib.get(id) else {
                    tracing::error!(%id, "fragment missing at compose time: skipped");
                    continue;
                };
                let pause = if first {
                    0
                } else {
                    samples(gap.unwrap_or(Pause::Word).ms())
                };
                if pcm.len() + pause + frag.pcm.len() + samples(EDGE_MS) > max {
                    tracing::warn!(%id, "utterance reached its length cap: the rest is not said");
                    break;
                }
                pcm.resize(pcm.len() + pause, 0);
                let start = pcm.len();
                pcm.extend_from_slice(&frag.pcm);
                fade(&mut pcm[start..]);
                gap = None;
                first = false;
            }
        }
    }
    pcm.resize(pcm.len() + samples(EDGE_MS), 0);
    Audio { pcm }
}

/// Raised-cosine fade-in over the first and fade-out over the last [`FADE_SAMPLES`].
fn fade(x: &mut [i16]) {
    let n = FADE_SAMPLES.min(x.len() / 2);
    for i in 0..n {
        let g = 0.5 - 0.5 * (std::f32::consts::PI * i as f32 / n as f32).cos();
        let end = x.len() - 1 - i;
        x[i] = (f32::from(x[i]) * g) as i16;
        x[end] = (f32::from(x[end]) * g) as i16;
    }
}
