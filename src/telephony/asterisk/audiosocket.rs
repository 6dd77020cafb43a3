//! The AudioSocket protocol: TLV frames over TCP — kind (1 byte), payload length (big-endian
//! u16), payload. Asterisk sends the call's UUID first, then signed-linear 8 kHz audio in
//! 20 ms frames (320 bytes, little-endian), DTMF on newer versions, and simply closes the
//! socket when the caller hangs up. warmline sends slin 8 kHz back and a zero-length hangup
//! frame to hand the channel back to the dialplan.
//!
//! Sources: asterisk/documentation `Configuration/Channel-Drivers/AudioSocket.md`;
//! asterisk `res/res_audiosocket.c` (kinds 0x00, 0x01, 0x03, 0x10, 0xff) — see
//! ../shared/notes/telephony-providers.md §5. Only kind 0x10 is sent: Asterisk ends the call
//! on other audio kinds in some versions.

use crate::audio::ulaw;
use crate::telephony::media::{Frame, MediaEvent, Outgoing, StreamStart, WireError};

pub const KIND_HANGUP: u8 = 0x00;
pub const KIND_UUID: u8 = 0x01;
pub const KIND_DTMF: u8 = 0x03;
pub const KIND_SLIN8: u8 = 0x10;
pub const KIND_ERROR: u8 = 0xff;

/// Frame header: kind + length.
pub const HEADER: usize = 3;
/// Largest payload accepted (Asterisk sends 320 bytes per 20 ms; the u16 length allows 64 kB).
pub const MAX_PAYLOAD: usize = 8_000;
/// Samples in 20 ms at 8 kHz.
const FRAME_SAMPLES: usize = 160;

#[derive(Debug, Default)]
pub struct Codec {
    started: bool,
}

/// Builds one frame.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.push(kind);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&payload[..usize::from(len)]);
    out
}

/// The canonical 8-4-4-4-12 form of a 16-byte UUID.
pub fn uuid_text(b: &[u8; 16]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

impl Codec {
    /// `frame` is one whole TLV frame as read from the socket.
    pub fn decode(&mut self, frame: Frame) -> Result<MediaEvent, WireError> {
        let Frame::Binary(bytes) = frame else {
            return Err(WireError::new("text", "text on an AudioSocket"));
        };
        if bytes.len() < HEADER {
            return Err(WireError::new(
                "short_frame",
                "frame shorter than its header",
            ));
        }
        let kind = bytes[0];
        let len = usize::from(u16::from_be_bytes([bytes[1], bytes[2]]));
        let payload = &bytes[HEADER..];
        if payload.len() != len {
            return Err(WireError::new(
                "bad_length",
                format!("length {len}, payload {}", payload.len()),
            ));
        }
        match kind {
            KIND_HANGUP => Ok(MediaEvent::Stop),
            KIND_UUID => {
                let id: [u8; 16] = payload
                    .try_into()
                    .map_err(|_| WireError::new("bad_uuid", format!("{len}-byte UUID")))?;
                if self.started {
                    return Ok(MediaEvent::DuplicateStart);
                }
                self.started = true;
                let call_id = uuid_text(&id);
                Ok(MediaEvent::Start(StreamStart {
                    stream_id: call_id.clone(),
                    call_id,
                    ..StreamStart::default()
                }))
            }
            KIND_DTMF => match payload {
                [d] if d.is_ascii_digit() || matches!(d, b'*' | b'#' | b'A'..=b'D') => {
                    Ok(MediaEvent::Dtmf(char::from(*d)))
                }
                _ => Err(WireError::new("bad_digit", format!("{payload:?}"))),
            },
            KIND_SLIN8 => {
                if len % 2 != 0 || len > MAX_PAYLOAD {
                    return Err(WireError::new("bad_audio", format!("{len} bytes of slin")));
                }
                let ulaw = payload
                    .chunks_exact(2)
                    .map(|s| ulaw::encode(i16::from_le_bytes([s[0], s[1]])))
                    .collect();
                Ok(MediaEvent::Audio { ulaw, chunk: None })
            }
            KIND_ERROR => Err(WireError::new(
                "provider_error",
                format!("Asterisk reported an error {payload:?}"),
            )),
            other => Err(WireError::new(
                "unknown_kind",
                format!("frame kind {other:#04x}"),
            )),
        }
    }

    pub fn encode(&mut self, out: Outgoing<'_>) -> Option<Frame> {
        match out {
            Outgoing::Audio(ulaw_frame) => {
                // Whole 20 ms frames only: a prompt's short tail is padded with silence.
                let samples = ulaw_frame.len().max(FRAME_SAMPLES);
                let mut pcm = Vec::with_capacity(samples * 2);
                for &b in ulaw_frame {
                    pcm.extend_from_slice(&ulaw::decode(b).to_le_bytes());
                }
                pcm.resize(samples * 2, 0);
                Some(Frame::Binary(frame(KIND_SLIN8, &pcm)))
            }
            // No marks or buffer on this protocol: audio is paced in real time and the driver
            // tracks what has played; a clear simply stops sending.
            Outgoing::Mark(_) | Outgoing::Clear => None,
            Outgoing::Hangup => Some(Frame::Binary(frame(KIND_HANGUP, &[]))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_as_asterisk_sends_it() {
        let mut c = Codec::default();
        let id = [
            0x4f, 0x2c, 0x1a, 0x90, 0x12, 0x34, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23,
            0x45, 0x67,
        ];
        let MediaEvent::Start(s) = c.decode(Frame::Binary(frame(KIND_UUID, &id))).unwrap() else {
            panic!("not a start")
        };
        assert_eq!(s.call_id, "4f2c1a90-1234-4567-89ab-cdef01234567");
        // 20 ms of silence as slin: 320 bytes → 160 μ-law bytes.
        let MediaEvent::Audio { ulaw, .. } = c
            .decode(Frame::Binary(frame(KIND_SLIN8, &[0u8; 320])))
            .unwrap()
        else {
            panic!("not audio")
        };
        assert_eq!(ulaw.len(), 160);
        assert_eq!(
            c.decode(Frame::Binary(frame(KIND_DTMF, b"0"))).unwrap(),
            MediaEvent::Dtmf('0')
        );
        assert_eq!(
            c.decode(Frame::Binary(frame(KIND_HANGUP, &[]))).unwrap(),
            MediaEvent::Stop
        );
        assert_eq!(
            c.decode(Frame::Binary(frame(KIND_UUID, &id))).unwrap(),
            MediaEvent::DuplicateStart
        );
    }

    #[test]
    fn bad_frames_are_typed_errors() {
        let mut c = Codec::default();
        for (bytes, kind) in [
            (vec![0x10, 0x00], "short_frame"),
            (vec![0x10, 0x00, 0x04, 1, 2], "bad_length"),
            (frame(KIND_SLIN8, &[1, 2, 3]), "bad_audio"),
            (frame(KIND_UUID, &[1; 4]), "bad_uuid"),
            (frame(KIND_DTMF, b"x"), "bad_digit"),
            (frame(0x11, &[0; 640]), "unknown_kind"),
            (frame(KIND_ERROR, &[1]), "provider_error"),
        ] {
            assert_eq!(c.decode(Frame::Binary(bytes)).unwrap_err().kind, kind);
        }
        assert_eq!(c.decode(Frame::Text("x".into())).unwrap_err().kind, "text");
    }

    #[test]
    fn outbound_audio_is_slin_and_hangup_is_an_empty_frame() {
        let mut c = Codec::default();
        let Some(Frame::Binary(f)) = c.encode(Outgoing::Audio(&[0xFF; 160])) else {
            panic!()
        };
        assert_eq!(
            (f[0], u16::from_be_bytes([f[1], f[2]]), f.len()),
            (0x10, 320, 323)
        );
        let Some(Frame::Binary(tail)) = c.encode(Outgoing::Audio(&[0x00; 8])) else {
            panic!()
        };
        assert_eq!(tail.len(), 323, "a prompt's tail is padded to 20 ms");
        assert_eq!(c.encode(Outgoing::Mark("m")), None);
        assert_eq!(
            c.encode(Outgoing::Hangup),
            Some(Frame::Binary(vec![0x00, 0x00, 0x00]))
        );
    }
}
