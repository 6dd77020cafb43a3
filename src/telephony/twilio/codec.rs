//! The Twilio Media Streams wire codec (also spoken by SignalWire's cXML `<Stream>`):
//! JSON text frames in, JSON text frames out, native marks and `clear`.

use super::messages::{self, Inbound};
use crate::telephony::media::{Frame, MediaEvent, Outgoing, StreamStart, WireError};

/// Largest media payload accepted in one message (Twilio sends 160 bytes per 20 ms).
pub const MAX_PAYLOAD: usize = 8_000;

#[derive(Debug, Default)]
pub struct Codec {
    /// Learned from `start`; every outbound message names it.
    stream_sid: String,
}

impl Codec {
    pub fn decode(&mut self, frame: Frame) -> Result<MediaEvent, WireError> {
        let text = match frame {
            Frame::Text(t) => t,
            Frame::Binary(_) => return Err(WireError::new("binary", "binary frame")),
        };
        let msg = messages::parse_inbound(&text, MAX_PAYLOAD)
            .map_err(|e| WireError::new(e.kind(), e.to_string()))?;
        Ok(match msg {
            Inbound::Connected => MediaEvent::Nothing,
            Inbound::Start(s) if self.stream_sid.is_empty() => {
                self.stream_sid = s.stream_sid.clone();
                MediaEvent::Start(StreamStart {
                    call_id: s.call_sid,
                    stream_id: s.stream_sid,
                    account: s.account_sid,
                    token: s.custom_parameters.get("token").cloned(),
                })
            }
            Inbound::Start(_) => MediaEvent::DuplicateStart,
            Inbound::Media(m) => MediaEvent::Audio {
                ulaw: m.payload,
                chunk: m.chunk,
            },
            Inbound::Dtmf { digit } => MediaEvent::Dtmf(digit),
            Inbound::Mark { name } => MediaEvent::Mark(name),
            Inbound::Stop => MediaEvent::Stop,
        })
    }

    pub fn encode(&mut self, out: Outgoing<'_>) -> Option<Frame> {
        let sid = &self.stream_sid;
        Some(Frame::Text(match out {
            Outgoing::Audio(ulaw) => messages::media_out(sid, ulaw),
            Outgoing::Mark(name) => messages::mark_out(sid, name),
            Outgoing::Clear => messages::clear_out(sid),
            // Closing the socket is how a Twilio stream ends from our side.
            Outgoing::Hangup => return None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // From Twilio's Media Streams docs ("WebSocket Messages"), trimmed.
    const START: &str = r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"ACXXXX","streamSid":"MZXXXX","callSid":"CAXXXX","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{"token":"t0k"}},"streamSid":"MZXXXX"}"#;
    const MEDIA: &str = r#"{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"1","timestamp":"5","payload":"no+JhoaJjpzSHxAKBgYJDhtEopGKh4aIjZm7JhILBwYIDRg1qZSLh4aIjJevLBUMBwYHCxUqtZeMh4aHi5SjMBgNCAYHChIkxZyOiIaHipKfOxwOCAcHCRAfX6GQiYaHiZCcTSAQCQcHCQ8cQ6qTi4eGiI6ZviUSCwcGCA0YNKmUi4eGiIyXrysUDAcGBwsVKrWXjIeGh4uUozAYDQgGBwoSJMWcjoiGh4qSnzscDggHBwkQH1+hkImGh4mQnE0gEAkHBwkPHEOqk4uHhoiOmb4lEgsHBggNGDSplIuHhoiMl68rFAwHBgcLFSq1l4yHhoeLlKMwGA0IBgcKEiTFnI6Ihoc="},"streamSid":"MZXXXX"}"#;

    #[test]
    fn decodes_the_documented_messages_and_answers_with_the_stream_sid() {
        let mut c = Codec::default();
        let MediaEvent::Start(s) = c.decode(Frame::Text(START.into())).unwrap() else {
            panic!("not a start");
        };
        assert_eq!(
            (s.call_id.as_str(), s.stream_id.as_str(), s.account.as_str()),
            ("CAXXXX", "MZXXXX", "ACXXXX")
        );
        assert_eq!(s.token.as_deref(), Some("t0k"));
        let MediaEvent::Audio { ulaw, chunk } = c.decode(Frame::Text(MEDIA.into())).unwrap() else {
            panic!("not media");
        };
        assert_eq!((ulaw.len(), chunk), (260, Some(1)));
        assert_eq!(
            c.decode(Frame::Text(START.into())).unwrap(),
            MediaEvent::DuplicateStart
        );
        let Some(Frame::Text(clear)) = c.encode(Outgoing::Clear) else {
            panic!()
        };
        assert_eq!(clear, r#"{"event":"clear","streamSid":"MZXXXX"}"#);
        assert_eq!(c.encode(Outgoing::Hangup), None);
        assert_eq!(c.decode(Frame::Binary(vec![1])).unwrap_err().kind, "binary");
    }
}
