//! A fake Asterisk PBX on the AudioSocket path (`AudioSocket(${UUID},host:port)`, the most
//! common way a PBX hands warmline a call): TLV frames over TCP — the UUID frame first, then
//! signed-linear 8 kHz audio in 20 ms frames and DTMF — and, once warmline hands the channel
//! back with a hang-up frame, the dialplan's lookup of where the caller goes
//! (`/asterisk/route/{uuid}?token=…`). There is no cloud to fake: the PBX is the provider,
//! and its transfer is that hand-back followed by a `Dial()` to the queue the lookup names.

use crate::audio::ulaw;
use crate::telephony::asterisk::audiosocket::{
    self, KIND_DTMF, KIND_ERROR, KIND_HANGUP, KIND_SLIN8, KIND_UUID,
};
use crate::telephony::media::Frame;

use super::LineEvent;

/// The route-lookup secret (`WARMLINE_ASTERISK_TOKEN`) of the fake PBX.
pub const TOKEN: &str = "loadtest-asterisk-route-token";

/// The settings (by their documented environment names) that open warmline's AudioSocket
/// listener on `audiosocket` for this PBX.
pub fn server_env(audiosocket: std::net::SocketAddr) -> Vec<(&'static str, String)> {
    vec![
        ("WARMLINE_AUDIOSOCKET_LISTEN", audiosocket.to_string()),
        ("WARMLINE_ASTERISK_TOKEN", TOKEN.into()),
    ]
}

/// The dialplan's lookup after the hand-back: one word, a queue or `hangup`.
pub fn route_url(base: &str, uuid: &str, token: &str) -> String {
    format!("{base}/asterisk/route/{uuid}?token={token}")
}

/// What `/asterisk/route/{uuid}` answered, as the dialplan acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `hangup`: the call ended with a goodbye.
    Hangup,
    /// `Dial()` this queue.
    Queue(String),
}

impl Route {
    pub fn parse(body: &str) -> Option<Route> {
        match body.trim() {
            "" => None,
            "hangup" => Some(Route::Hangup),
            q if q
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
            {
                Some(Route::Queue(q.to_string()))
            }
            _ => None,
        }
    }
}

/// What warmline sent over the AudioSocket (one whole TLV frame).
pub fn read(frame: &[u8]) -> LineEvent {
    if frame.len() < audiosocket::HEADER {
        return LineEvent::Other("short frame".into());
    }
    let payload = &frame[audiosocket::HEADER..];
    match frame[0] {
        KIND_SLIN8 => LineEvent::Audio(
            payload
                .chunks_exact(2)
                .map(|s| ulaw::encode(i16::from_le_bytes([s[0], s[1]])))
                .collect(),
        ),
        KIND_HANGUP => LineEvent::HangUp,
        KIND_ERROR => LineEvent::Other("error frame".into()),
        other => LineEvent::Other(format!("frame kind {other:#04x}")),
    }
}

/// One 20 ms frame of caller audio as Asterisk sends it: μ-law turned into slin.
pub fn slin_frame(ulaw_frame: &[u8]) -> Vec<u8> {
    let pcm: Vec<u8> = ulaw_frame
        .iter()
        .flat_map(|&b| ulaw::decode(b).to_le_bytes())
        .collect();
    audiosocket::frame(KIND_SLIN8, &pcm)
}

pub fn dtmf_frame(digit: char) -> Vec<u8> {
    let mut b = [0u8; 4];
    audiosocket::frame(KIND_DTMF, digit.encode_utf8(&mut b).as_bytes())
}

pub fn uuid_frame(id: &[u8; 16]) -> Vec<u8> {
    audiosocket::frame(KIND_UUID, id)
}

/// The PBX's side of one AudioSocket call.
#[derive(Debug)]
pub struct MediaClient {
    id: [u8; 16],
}

impl MediaClient {
    pub fn new(id: [u8; 16]) -> MediaClient {
        MediaClient { id }
    }

    /// A fresh random channel id, as `${UUID}` gives one.
    pub fn random() -> MediaClient {
        let mut id = [0u8; 16];
        rand::fill(&mut id);
        // Version 4, variant 1: what Asterisk's `${UUID}` produces.
        id[6] = (id[6] & 0x0f) | 0x40;
        id[8] = (id[8] & 0x3f) | 0x80;
        MediaClient::new(id)
    }

    /// The call's UUID as warmline and the dialplan name it.
    pub fn uuid(&self) -> String {
        audiosocket::uuid_text(&self.id)
    }

    pub fn hello(&mut self) -> Vec<Frame> {
        vec![Frame::Binary(uuid_frame(&self.id))]
    }

    pub fn audio(&mut self, ulaw: &[u8]) -> Frame {
        Frame::Binary(slin_frame(ulaw))
    }

    pub fn dtmf(&mut self, digit: char) -> Frame {
        Frame::Binary(dtmf_frame(digit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telephony::media::MediaEvent;

    #[test]
    fn warmline_reads_the_fake_pbx_and_the_pbx_reads_warmline() {
        let mut pbx = MediaClient::random();
        let mut server = audiosocket::Codec::default();
        let Frame::Binary(hello) = &pbx.hello()[0] else {
            panic!()
        };
        let MediaEvent::Start(s) = server.decode(Frame::Binary(hello.clone())).unwrap() else {
            panic!()
        };
        assert_eq!(s.call_id, pbx.uuid());
        assert_eq!(server.decode(pbx.dtmf('0')).unwrap(), MediaEvent::Dtmf('0'));
        let MediaEvent::Audio { ulaw, .. } = server.decode(pbx.audio(&[0x10; 160])).unwrap() else {
            panic!()
        };
        assert_eq!(ulaw, [0x10; 160]);
        let Some(Frame::Binary(out)) =
            server.encode(crate::telephony::media::Outgoing::Audio(&[0x10; 160]))
        else {
            panic!()
        };
        assert_eq!(read(&out), LineEvent::Audio(vec![0x10; 160]));
        let Some(Frame::Binary(bye)) = server.encode(crate::telephony::media::Outgoing::Hangup)
        else {
            panic!()
        };
        assert_eq!(read(&bye), LineEvent::HangUp);
        assert_eq!(
            Route::parse("billing\n"),
            Some(Route::Queue("billing".into()))
        );
        assert_eq!(Route::parse("hangup"), Some(Route::Hangup));
        assert_eq!(Route::parse("<html>"), None);
    }
}
