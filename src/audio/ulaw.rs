//! G.711 μ-law, the codec of every Twilio media stream and of the prompts we send back.
//!
//! Bytes on the wire are the complement of sign|exponent|mantissa, so silence is 0xFF (and
//! 0x7F, "negative zero"). Decoding goes through a table built at compile time: it runs for
//! every inbound sample, and a 512-byte table beats the shifts on any core we care about.

/// Added before the segment search so every segment starts on a power of two; removed again
/// on decode. The standard's value, not a tuning knob.
const BIAS: i32 = 0x84;
/// Largest magnitude that still fits the top segment once the bias is added.
const CLIP: i32 = 32_635;

const fn decode_slow(byte: u8) -> i16 {
    let u = !byte;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn build_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = decode_slow(i as u8);
        i += 1;
    }
    table
}

static DECODE_TABLE: [i16; 256] = build_table();

/// μ-law byte to linear 16-bit PCM.
#[inline]
pub fn decode(byte: u8) -> i16 {
    DECODE_TABLE[byte as usize]
}

/// Linear 16-bit PCM to a μ-law byte (rounds toward zero within a step, as G.711 does).
#[inline]
pub fn encode(sample: i16) -> u8 {
    let mut x = sample as i32;
    let sign: u8 = if x < 0 {
        // In i32, so -32768 does not overflow; the clip below takes care of its magnitude.
        x = -x;
        0x80
    } else {
        0
    };
    x = x.min(CLIP) + BIAS;
    // x is in [0x84, 0x7FFF]: its top set bit is bit 7..=14, which is the segment number + 7.
    let exponent = ((x as u32).ilog2() - 7) as u8;
    let mantissa = ((x >> (exponent + 3)) & 0x0F) as u8;
    !(sign | (exponent << 4) | mantissa)
}

/// Decodes a frame into `out`, replacing its contents (the caller keeps the buffer so the
/// per-frame path does not allocate once `out` has grown to a frame).
pub fn decode_frame(frame: &[u8], out: &mut Vec<i16>) {
    out.clear();
    out.extend(frame.iter().map(|&b| decode(b)));
}

/// Encodes PCM for sending (prompts are encoded once at load time, so this one allocates).
pub fn encode_samples(samples: &[i16]) -> Vec<u8> {
    samples.iter().map(|&s| encode(s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(decode(0xFF), 0);
        assert_eq!(decode(0x7F), 0);
        assert_eq!(decode(0x00), -32124);
        assert_eq!(decode(0x80), 32124);
        assert_eq!(encode(0), 0xFF);
        assert_eq!(encode(32767), 0x80);
        assert_eq!(encode(-32768), 0x00);
    }

    #[test]
    fn table_matches_formula() {
        for b in 0..=255u8 {
            assert_eq!(decode(b), decode_slow(b), "byte {b:#04x}");
        }
    }

    #[test]
    fn round_trip_every_code() {
        for b in 0..=255u8 {
            let back = encode(decode(b));
            if b == 0x7F {
                // Negative zero decodes to 0, which encodes as positive zero.
                assert_eq!(back, 0xFF);
            } else {
                assert_eq!(back, b, "byte {b:#04x}");
            }
        }
    }

    #[test]
    fn quantisation_is_monotonic_and_close() {
        let mut prev = i16::MIN;
        for s in i16::MIN..=i16::MAX {
            let q = decode(encode(s));
            assert!(q >= prev, "not monotonic at {s}: {q} < {prev}");
            prev = q;
            // Step size of the top segment is 1024; nothing should be further off than that,
            // apart from the clipped extremes.
            if (s as i32).abs() <= CLIP {
                assert!((q as i32 - s as i32).abs() <= 1024, "{s} -> {q}");
            }
        }
    }

    #[test]
    fn decoded_codes_are_ordered() {
        // Positive codes 0xFF down to 0x80 grow in magnitude; negative 0x7F down to 0x00 too.
        for b in 0x80..0xFFu8 {
            assert!(decode(b) > decode(b + 1));
        }
        for b in 0x00..0x7Fu8 {
            assert!(decode(b) < decode(b + 1));
        }
    }

    #[test]
    fn frame_helpers() {
        let pcm = [0i16, 1000, -1000, 32000, -32000];
        let bytes = encode_samples(&pcm);
        let mut out = Vec::new();
        decode_frame(&bytes, &mut out);
        assert_eq!(out.len(), pcm.len());
        for (a, b) in pcm.iter().zip(&out) {
            assert!((*a as i32 - *b as i32).abs() <= 1024);
        }
    }
}
