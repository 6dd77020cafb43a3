//! Sample-rate conversion: the 8 kHz line up to Whisper's 16 kHz, and prompt WAVs down to 8 kHz.
//!
//! Both use rubato's synchronous FFT resampler: the ratios are exact integers or fixed rationals,
//! so there is nothing for an asynchronous (drift-tracking) resampler to do.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use super::{AudioError, FRAME_SAMPLES_8K, STT_RATE};

const LINE_RATE: usize = 8_000;
const OUT_PER_FRAME: usize = FRAME_SAMPLES_8K * STT_RATE as usize / LINE_RATE;

/// Streams 8 kHz i16 frames up to 16 kHz f32 in [-1, 1].
///
/// # Latency and alignment
///
/// The FFT resampler works on whole 160-sample blocks and its filter is centred, so every input
/// event comes out [`Upsampler::DELAY_16K`] output samples (10 ms) later than its ideal position:
/// input sample `i` lands at output index `2 * i + DELAY_16K`, and the first `DELAY_16K`
/// output samples of a stream are the filter's start-up (silence). The delay is constant for the
/// life of the stream, so the output never drifts; a consumer that wants the 16 kHz audio for
/// 8 kHz frames `a..b` reads output `320 * a + DELAY_16K .. 320 * b + DELAY_16K` (which is what
/// [`super::Frontend`] does). Dropping the start-up samples instead would make the first call
/// return fewer than 320 samples and break the one-frame-in, one-frame-out contract.
pub struct Upsampler {
    resampler: Fft<f32>,
    /// Input samples not yet forming a whole 160-sample block (only used with odd-size input).
    pending: [f32; FRAME_SAMPLES_8K],
    pending_len: usize,
    scratch_out: [f32; OUT_PER_FRAME],
}

impl std::fmt::Debug for Upsampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upsampler")
            .field("pending_len", &self.pending_len)
            .finish_non_exhaustive()
    }
}

impl Upsampler {
    /// Output samples by which the 16 kHz stream lags the 8 kHz input (half the FFT block).
    pub const DELAY_16K: usize = OUT_PER_FRAME / 2;

    pub fn new() -> Result<Self, AudioError> {
        // One FFT block per 20 ms frame: a 160-point filter puts the anti-imaging cutoff at
        // about 0.92 of 4 kHz, above the 3.4 kHz telephone band, for 10 ms of delay.
        let resampler = Fft::<f32>::new(
            LINE_RATE,
            STT_RATE as usize,
            FRAME_SAMPLES_8K,
            1,
            FixedSync::Both,
        )
        .map_err(|e| AudioError::Resampler(e.to_string()))?;
        debug_assert_eq!(resampler.input_frames_next(), FRAME_SAMPLES_8K);
        debug_assert_eq!(resampler.output_frames_next(), OUT_PER_FRAME);
        debug_assert_eq!(resampler.output_delay(), Self::DELAY_16K);
        Ok(Self {
            resampler,
            pending: [0.0; FRAME_SAMPLES_8K],
            pending_len: 0,
            scratch_out: [0.0; OUT_PER_FRAME],
        })
    }

    /// Appends the 16 kHz version of `frame_8k` to `out`: exactly 320 samples for a 160-sample
    /// frame. Other lengths are accepted: samples are held back until a whole 160-sample block
    /// is available, so `out` always grows by 320 per completed block.
    pub fn process(&mut self, frame_8k: &[i16], out: &mut Vec<f32>) {
        for &s in frame_8k {
            self.pending[self.pending_len] = s as f32 / 32_768.0;
            self.pending_len += 1;
            if self.pending_len == FRAME_SAMPLES_8K {
                self.pending_len = 0;
                self.run_block(out);
            }
        }
    }

    fn run_block(&mut self, out: &mut Vec<f32>) {
        let done = match (
            InterleavedSlice::new(&self.pending[..], 1, FRAME_SAMPLES_8K),
            InterleavedSlice::new_mut(&mut self.scratch_out[..], 1, OUT_PER_FRAME),
        ) {
            (Ok(input), Ok(mut output)) => self
                .resampler
                .process_into_buffer(&input, &mut output, None)
                .is_ok(),
            _ => false,
        };
        if done {
            // The sinc can ring slightly past full scale on clipped input; Whisper wants [-1, 1].
            out.extend(self.scratch_out.iter().map(|v| v.clamp(-1.0, 1.0)));
        } else {
            // Cannot happen with the fixed sizes above; silence keeps the stream's timing intact.
            debug_assert!(false, "rubato rejected a fixed-size block");
            out.extend(std::iter::repeat_n(0.0, OUT_PER_FRAME));
        }
    }

    /// Back to a fresh stream (the start-up delay applies again).
    pub fn reset(&mut self) {
        self.resampler.reset();
        self.pending_len = 0;
    }
}

/// Resamples a whole clip (a prompt WAV, say) from `from_rate` to 8 kHz, start-up delay trimmed,
/// `ceil(len * 8000 / from_rate)` samples long. A `from_rate` of 0 yields an empty clip.
pub fn resample_to_8k(samples: &[f32], from_rate: u32) -> Vec<f32> {
    let from = from_rate as usize;
    if from == LINE_RATE || samples.is_empty() {
        return samples.to_vec();
    }
    if from == 0 {
        return Vec::new();
    }
    // About 50 ms per chunk, one FFT block each: long enough for a sharp anti-alias filter at
    // any common rate, and this runs once per prompt, not per frame.
    let chunk = (from / 20).max(1);
    let Ok(mut resampler) = Fft::<f32>::new_custom(
        from,
        LINE_RATE,
        chunk,
        1,
        1,
        rubato::WindowFunction::BlackmanHarris2,
        FixedSync::Input,
    ) else {
        return Vec::new();
    };
    let Ok(input) = InterleavedSlice::new(samples, 1, samples.len()) else {
        return Vec::new();
    };
    match resampler.process_all(&input, samples.len(), None) {
        Ok(out) => out.take_data(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f32::consts::TAU;

    fn sine_i16(freq: f32, amp: f32, frames: usize) -> Vec<i16> {
        (0..frames * FRAME_SAMPLES_8K)
            .map(|i| (amp * 32_767.0 * (TAU * freq * i as f32 / 8000.0).sin()) as i16)
            .collect()
    }

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
    }

    /// Frequency from upward zero crossings with linear interpolation between samples.
    fn frequency(x: &[f32], rate: f32) -> f32 {
        let mut crossings = Vec::new();
        for i in 1..x.len() {
            if x[i - 1] < 0.0 && x[i] >= 0.0 {
                crossings.push((i - 1) as f32 + x[i - 1] / (x[i - 1] - x[i]));
            }
        }
        let n = crossings.len() - 1;
        n as f32 * rate / (crossings[n] - crossings[0])
    }

    #[test]
    fn one_frame_in_320_samples_out() {
        let mut up = Upsampler::new().unwrap();
        let input = sine_i16(440.0, 0.3, 25);
        let mut out = Vec::new();
        for (n, frame) in input.chunks(FRAME_SAMPLES_8K).enumerate() {
            up.process(frame, &mut out);
            assert_eq!(out.len(), 320 * (n + 1));
        }
    }

    #[test]
    fn odd_sized_input_is_carried_over() {
        let input = sine_i16(440.0, 0.3, 10);
        let mut whole = Vec::new();
        let mut up = Upsampler::new().unwrap();
        for frame in input.chunks(FRAME_SAMPLES_8K) {
            up.process(frame, &mut whole);
        }
        let mut odd = Vec::new();
        let mut up = Upsampler::new().unwrap();
        for piece in input.chunks(97) {
            up.process(piece, &mut odd);
            assert_eq!(odd.len() % 320, 0);
        }
        assert_eq!(whole, odd);
    }

    #[test]
    fn sine_keeps_frequency_and_level() {
        let mut up = Upsampler::new().unwrap();
        let input = sine_i16(1000.0, 0.5, 50);
        let mut out = Vec::new();
        for frame in input.chunks(FRAME_SAMPLES_8K) {
            up.process(frame, &mut out);
        }
        // Skip the start-up transient; measure over whole cycles (1 kHz = 16 samples).
        let steady = &out[640..640 + 16 * 900];
        let f = frequency(steady, 16_000.0);
        assert!((f - 1000.0).abs() < 1.0, "frequency {f}");
        let level_db = 20.0 * (rms(steady) / (0.5 / 2f32.sqrt())).log10();
        assert!(level_db.abs() < 1.0, "level off by {level_db} dB");
    }

    #[test]
    fn dc_stays_dc() {
        let mut up = Upsampler::new().unwrap();
        let mut out = Vec::new();
        for _ in 0..20 {
            up.process(&[8192i16; FRAME_SAMPLES_8K], &mut out);
        }
        for &v in &out[640..] {
            assert!((v - 0.25).abs() < 0.01, "{v}");
        }
    }

    #[test]
    fn delay_is_as_documented() {
        let mut up = Upsampler::new().unwrap();
        let mut input = vec![0i16; 4 * FRAME_SAMPLES_8K];
        let at = 2 * FRAME_SAMPLES_8K + 37;
        input[at] = 16_000;
        let mut out = Vec::new();
        for frame in input.chunks(FRAME_SAMPLES_8K) {
            up.process(frame, &mut out);
        }
        let peak = out
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .unwrap()
            .0;
        assert_eq!(peak, 2 * at + Upsampler::DELAY_16K);
    }

    #[test]
    fn reset_restarts_the_stream() {
        let input = sine_i16(300.0, 0.4, 6);
        let run = |up: &mut Upsampler| {
            let mut out = Vec::new();
            for frame in input.chunks(FRAME_SAMPLES_8K) {
                up.process(frame, &mut out);
            }
            out
        };
        let mut up = Upsampler::new().unwrap();
        let first = run(&mut up);
        up.process(&input[..50], &mut Vec::new());
        up.reset();
        assert_eq!(run(&mut up), first);
    }

    #[test]
    fn downsample_prompt_rates() {
        for rate in [16_000u32, 22_050, 44_100, 48_000] {
            let secs = 1.0;
            let n = (rate as f32 * secs) as usize;
            let input: Vec<f32> = (0..n)
                .map(|i| 0.5 * (TAU * 700.0 * i as f32 / rate as f32).sin())
                .collect();
            let out = resample_to_8k(&input, rate);
            assert_eq!(
                out.len(),
                (n as f64 * 8000.0 / rate as f64).ceil() as usize,
                "rate {rate}"
            );
            let steady = &out[400..7600];
            let f = frequency(steady, 8000.0);
            assert!((f - 700.0).abs() < 2.0, "rate {rate}: frequency {f}");
            let level_db = 20.0 * (rms(steady) / (0.5 / 2f32.sqrt())).log10();
            assert!(level_db.abs() < 1.0, "rate {rate}: level {level_db} dB");
        }
    }

    #[test]
    fn downsample_removes_what_8k_cannot_carry() {
        // A 6 kHz tone has no place below 4 kHz: it must be filtered, not folded to 2 kHz.
        let input: Vec<f32> = (0..16_000)
            .map(|i| 0.5 * (TAU * 6000.0 * i as f32 / 16_000.0).sin())
            .collect();
        let out = resample_to_8k(&input, 16_000);
        assert!(rms(&out[400..7600]) < 0.005);
    }

    #[test]
    fn downsample_edge_cases() {
        assert_eq!(resample_to_8k(&[0.1, 0.2], 8000), vec![0.1, 0.2]);
        assert!(resample_to_8k(&[0.1, 0.2], 0).is_empty());
        assert!(resample_to_8k(&[], 16_000).is_empty());
    }
}
