//! The Plivo audio-streaming wire codec: JSON text frames both ways. Marks are Plivo's
//! `checkpoint` → `playedStream`; a clear is `clearAudio`.
//!
//! Shapes from plivo.com `docs/voice/audio-streaming` (start, media, playedStream,
//! clearedAudio, playAudio, checkpoint, clearAudio) and plivo-stream-sdk
//! `plivo_stream/types.py` (dtmf). No `stop` is documented — the socket closes — but one is
//! accepted. The start's `extra_headers` carries the stream token warmline put in
//! `extraHeaders` (the upgrade itself is not signed).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::audio::ulaw;
use crate::telephony::media::{Frame, MediaEvent, Outgoing, StreamStart, WireError};

/// Largest decoded media payload accepted in one message.
pub const MAX_PAYLOAD: usize = 8_000;

#[derive(Debug, Default)]
pub struct Codec {
    stream_id: String,
    /// Plivo's default content type is linear PCM; warmline asks for μ-law, but honours a
    /// start that says otherwise.
    linear: bool,
}

#[derive(Deserialize)]
struct Raw {
    event: Option<String>,
    start: Option<RawStart>,
    extra_headers: Option<String>,
    media: Option<RawMedia>,
    dtmf: Option<RawDtmf>,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStart {
    call_id: Option<String>,
    stream_id: Option<String>,
    account_id: Option<String>,
    media_format: Option<RawFormat>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawFormat {
    encoding: Option<String>,
    sample_rate: Option<Value>,
}

#[derive(Deserialize)]
struct RawMedia {
    payload: Option<String>,
    chunk: Option<Value>,
}

#[derive(Deserialize)]
struct RawDtmf {
    digit: Option<String>,
}

fn missing(field: &'static str) -> WireError {
    WireError::new("missing_field", format!("missing field {field}"))
}

/// `extra_headers` arrives as `k=v;k2=v2`.
fn header_value(extra: &str, key: &str) -> Option<String> {
    extra.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

impl Codec {
    pub fn decode(&mut self, frame: Frame) -> Result<MediaEvent, WireError> {
        let Frame::Text(text) = frame else {
            return Err(WireError::new("binary", "binary frame"));
        };
        let raw: Raw =
            serde_json::from_str(&text).map_err(|e| WireError::new("json", e.to_string()))?;
        let event = raw.event.ok_or_else(|| missing("event"))?;
        match event.as_str() {
            "start" => {
                let s = raw.start.ok_or_else(|| missing("start"))?;
                if !self.stream_id.is_empty() {
                    return Ok(MediaEvent::DuplicateStart);
                }
                if let Some(f) = &s.media_format {
                    let enc = f.encoding.as_deref().unwrap_or("").to_ascii_lowercase();
                    let rate = f
                        .sample_rate
                        .as_ref()
                        .map(|r| r.to_string().trim_matches('"').to_string());
                    let at_8k = rate.as_deref().is_none_or(|r| r == "8000");
                    self.linear = enc.contains("l16");
                    if !(enc.contains("mulaw") || enc.contains("pcmu") || enc.contains("l16"))
                        || !at_8k
                    {
                        return Err(WireError::new(
                            "unsupported_format",
                            format!("{enc} at {rate:?}"),
                        ));
                    }
                }
                let stream_id = s.stream_id.ok_or_else(|| missing("start.streamId"))?;
                self.stream_id = stream_id.clone();
                Ok(MediaEvent::Start(StreamStart {
                    call_id: s.call_id.ok_or_else(|| missing("start.callId"))?,
                    stream_id,
                    account: s.account_id.unwrap_or_default(),
                    token: raw
                        .extra_headers
                        .as_deref()
                        .and_then(|h| header_value(h, "token")),
                }))
            }
            "media" => {
                let m = raw.media.ok_or_else(|| missing("media"))?;
                let payload = m.payload.ok_or_else(|| missing("media.payload"))?;
                if payload.len() / 4 * 3 > MAX_PAYLOAD * 2 {
                    return Err(WireError::new("oversized", "media payload too large"));
                }
                let bytes = BASE64
                    .decode(payload)
                    .map_err(|e| WireError::new("bad_base64", e.to_string()))?;
                let ulaw = if self.linear {
                    bytes
                        .chunks_exact(2)
                        .map(|s| ulaw::encode(i16::from_le_bytes([s[0], s[1]])))
                        .collect()
                } else {
                    bytes
                };
                if ulaw.len() > MAX_PAYLOAD {
                    return Err(WireError::new("oversized", "media payload too large"));
                }
                let chunk = match m.chunk {
                    Some(Value::Number(n)) => n.as_u64(),
                    Some(Value::String(s)) => s.parse().ok(),
                    _ => None,
                };
                Ok(MediaEvent::Audio { ulaw, chunk })
            }
            "dtmf" => {
                let d = raw
                    .dtmf
                    .and_then(|d| d.digit)
                    .ok_or_else(|| missing("dtmf.digit"))?;
                let mut chars = d.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if c.is_ascii_digit() || matches!(c, '*' | '#') => {
                        Ok(MediaEvent::Dtmf(c))
                    }
                    _ => Err(WireError::new("bad_digit", d)),
                }
            }
            "playedStream" => Ok(MediaEvent::Mark(raw.name.ok_or_else(|| missing("name"))?)),
            "clearedAudio" => Ok(MediaEvent::Nothing),
            "stop" => Ok(MediaEvent::Stop),
            other => Err(WireError::new(
                "unknown_event",
                other.chars().take(40).collect::<String>(),
            )),
        }
    }

    pub fn encode(&mut self, out: Outgoing<'_>) -> Option<Frame> {
        let v = match out {
            Outgoing::Audio(ulaw) => json!({
                "event": "playAudio",
                "media": {"contentType": "audio/x-mulaw", "sampleRate": 8000, "payload": BASE64.encode(ulaw)},
            }),
            Outgoing::Mark(name) => {
                json!({"event": "checkpoint", "streamId": self.stream_id, "name": name})
            }
            Outgoing::Clear => json!({"event": "clearAudio", "streamId": self.stream_id}),
            // Closing the socket ends the stream; keepCallAlive runs the next XML element.
            Outgoing::Hangup => return None,
        };
        Some(Frame::Text(v.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shapes from Plivo's audio-streaming docs.
    const START: &str = r#"{"event":"start","sequenceNumber":1,"start":{"callId":"d1c0-uuid","streamId":"20170ada-f610-433b-8758-c02a2aab3662","accountId":"MAXXXX","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000}},"extra_headers":"token=abc123;x=y"}"#;

    #[test]
    fn decodes_plivo_events_and_answers_in_kind() {
        let mut c = Codec::default();
        let MediaEvent::Start(s) = c.decode(Frame::Text(START.into())).unwrap() else {
            panic!()
        };
        assert_eq!(
            (s.call_id.as_str(), s.token.as_deref()),
            ("d1c0-uuid", Some("abc123"))
        );
        let media = format!(
            r#"{{"event":"media","sequenceNumber":2,"streamId":"x","media":{{"track":"inbound","timestamp":"1700000000000","chunk":3,"payload":"{}"}}}}"#,
            BASE64.encode([0xFFu8; 160])
        );
        assert_eq!(
            c.decode(Frame::Text(media)).unwrap(),
            MediaEvent::Audio {
                ulaw: vec![0xFF; 160],
                chunk: Some(3)
            }
        );
        assert_eq!(
            c.decode(Frame::Text(
                r#"{"event":"dtmf","dtmf":{"track":"inbound","digit":"0","timestamp":"1"}}"#.into()
            ))
            .unwrap(),
            MediaEvent::Dtmf('0')
        );
        assert_eq!(
            c.decode(Frame::Text(
                r#"{"event":"playedStream","streamId":"x","name":"greeting-1"}"#.into()
            ))
            .unwrap(),
            MediaEvent::Mark("greeting-1".into())
        );
        let Some(Frame::Text(mark)) = c.encode(Outgoing::Mark("m1")) else {
            panic!()
        };
        assert_eq!(
            mark,
            r#"{"event":"checkpoint","name":"m1","streamId":"20170ada-f610-433b-8758-c02a2aab3662"}"#
        );
        let Some(Frame::Text(play)) = c.encode(Outgoing::Audio(&[0xFF; 2])) else {
            panic!()
        };
        assert!(
            play.contains(r#""event":"playAudio""#)
                && play.contains(r#""contentType":"audio/x-mulaw""#)
        );
        assert_eq!(c.encode(Outgoing::Hangup), None);
    }

    #[test]
    fn linear_pcm_is_taken_and_other_formats_refused() {
        let mut c = Codec::default();
        let l16 = START.replace("audio/x-mulaw", "audio/x-l16");
        assert!(matches!(
            c.decode(Frame::Text(l16)).unwrap(),
            MediaEvent::Start(_)
        ));
        let media = format!(
            r#"{{"event":"media","media":{{"payload":"{}"}}}}"#,
            BASE64.encode([0u8; 320])
        );
        let MediaEvent::Audio { ulaw, .. } = c.decode(Frame::Text(media)).unwrap() else {
            panic!()
        };
        assert_eq!(ulaw.len(), 160);
        let mut c = Codec::default();
        let wide = START.replace("\"sampleRate\":8000", "\"sampleRate\":16000");
        assert_eq!(
            c.decode(Frame::Text(wide)).unwrap_err().kind,
            "unsupported_format"
        );
        assert_eq!(
            c.decode(Frame::Text("{}".into())).unwrap_err().kind,
            "missing_field"
        );
        assert_eq!(
            c.decode(Frame::Text(r#"{"event":"warp"}"#.into()))
                .unwrap_err()
                .kind,
            "unknown_event"
        );
    }
}
