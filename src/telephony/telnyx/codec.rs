//! The Telnyx media-streaming wire codec: JSON text frames both ways.
//!
//! Inbound (`connected`, `start`, `media`, `dtmf`, `mark`, `error`, `stop`) and outbound
//! (`media`, `mark`, `clear`) shapes from Telnyx's AsyncAPI spec
//! (developers.telnyx.com `api-reference/websockets/stream-call-media-over-websocket`) and
//! pipecat `serializers/telnyx.py` (dtmf `{"dtmf":{"digit"}}`, outbound `{"media":{"payload"}}`,
//! `{"event":"clear"}`). A mark comes back once the audio before it has played, and a clear
//! returns the queued marks, as the driver expects of a native-mark provider.
//!
//! The stream token: the answer command's `client_state` (base64) is echoed in
//! `start.client_state` (same AsyncAPI example; micdrop's Telnyx transport reads the answer's
//! parameters back from it too), so warmline puts the token there. `stream_auth_token` (sent
//! as the `x-telnyx-streaming-auth-token` upgrade header) exists on `streaming_start` but not
//! on `answer` (telnyx-python `action_answer_params.py`), so it is not used.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::telephony::media::{Frame, MediaEvent, Outgoing, StreamStart, WireError};

/// Largest decoded media payload accepted in one message (one second of 8 kHz μ-law).
pub const MAX_PAYLOAD: usize = 8_000;
/// Telnyx caps `client_state`; a token longer than this is not one warmline minted.
const MAX_CLIENT_STATE: usize = 512;

#[derive(Debug, Default)]
pub struct Codec {
    started: bool,
}

#[derive(Deserialize)]
struct Raw {
    event: Option<String>,
    stream_id: Option<String>,
    start: Option<RawStart>,
    media: Option<RawMedia>,
    dtmf: Option<RawDtmf>,
    mark: Option<RawMark>,
    payload: Option<Value>,
}

#[derive(Deserialize)]
struct RawStart {
    call_control_id: Option<String>,
    user_id: Option<String>,
    client_state: Option<String>,
    media_format: Option<RawFormat>,
}

#[derive(Deserialize)]
struct RawFormat {
    encoding: Option<String>,
    sample_rate: Option<Value>,
}

#[derive(Deserialize)]
struct RawMedia {
    track: Option<String>,
    chunk: Option<Value>,
    payload: Option<String>,
}

#[derive(Deserialize)]
struct RawDtmf {
    digit: Option<String>,
}

#[derive(Deserialize)]
struct RawMark {
    name: Option<String>,
}

fn missing(field: &'static str) -> WireError {
    WireError::new("missing_field", format!("missing field {field}"))
}

/// Telnyx sends some numbers as strings (`"sequence_number":"1"`, `"chunk":"2"`).
fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The token inside a `client_state` warmline set: base64 of the token itself.
pub fn token_of_client_state(client_state: &str) -> Option<String> {
    if client_state.len() > MAX_CLIENT_STATE {
        return None;
    }
    let bytes = BASE64.decode(client_state.trim()).ok()?;
    String::from_utf8(bytes).ok()
}

/// The `client_state` that carries `token`.
pub fn client_state_for(token: &str) -> String {
    BASE64.encode(token)
}

/// The call a `start` frame names, for code that watches a stream without decoding it.
pub fn call_of_start(text: &str) -> Option<String> {
    let raw: Raw = serde_json::from_str(text).ok()?;
    if raw.event.as_deref() != Some("start") {
        return None;
    }
    raw.start?.call_control_id.filter(|c| c.len() <= 256)
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
            "connected" => Ok(MediaEvent::Nothing),
            "start" => {
                let s = raw.start.ok_or_else(|| missing("start"))?;
                if self.started {
                    return Ok(MediaEvent::DuplicateStart);
                }
                if let Some(f) = &s.media_format {
                    let enc = f.encoding.as_deref().unwrap_or("PCMU");
                    let rate = f.sample_rate.as_ref().and_then(number).unwrap_or(8000);
                    // warmline asks for PCMU (`stream_codec`); Telnyx transcodes PCMA to it.
                    if !enc.eq_ignore_ascii_case("PCMU") || rate != 8000 {
                        return Err(WireError::new(
                            "unsupported_format",
                            format!("{} at {rate}", enc.chars().take(20).collect::<String>()),
                        ));
                    }
                }
                let call_id = s
                    .call_control_id
                    .filter(|c| !c.is_empty() && c.len() <= 256)
                    .ok_or_else(|| missing("start.call_control_id"))?;
                self.started = true;
                Ok(MediaEvent::Start(StreamStart {
                    call_id,
                    stream_id: raw.stream_id.unwrap_or_default(),
                    account: s.user_id.unwrap_or_default(),
                    token: s.client_state.as_deref().and_then(token_of_client_state),
                }))
            }
            "media" => {
                let m = raw.media.ok_or_else(|| missing("media"))?;
                // Only the caller's side is asked for (`inbound_track`). The exact `track`
                // strings are unverified, so only a frame that says it is the outbound side
                // (warmline's own voice) is dropped; a wrong guess here would make calls deaf.
                if m.track
                    .as_deref()
                    .is_some_and(|t| t.starts_with("outbound"))
                {
                    return Ok(MediaEvent::Nothing);
                }
                let payload = m.payload.ok_or_else(|| missing("media.payload"))?;
                if payload.len() / 4 * 3 > MAX_PAYLOAD {
                    return Err(WireError::new("oversized", "media payload too large"));
                }
                let ulaw = BASE64
                    .decode(payload)
                    .map_err(|e| WireError::new("bad_base64", e.to_string()))?;
                Ok(MediaEvent::Audio {
                    ulaw,
                    chunk: m.chunk.as_ref().and_then(number),
                })
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
                    _ => Err(WireError::new(
                        "bad_digit",
                        d.chars().take(8).collect::<String>(),
                    )),
                }
            }
            "mark" => Ok(MediaEvent::Mark(
                raw.mark
                    .and_then(|m| m.name)
                    .ok_or_else(|| missing("mark.name"))?,
            )),
            "stop" => Ok(MediaEvent::Stop),
            "error" => Err(WireError::new(
                "provider_error",
                raw.payload
                    .map(|p| p.to_string())
                    .unwrap_or_default()
                    .chars()
                    .take(200)
                    .collect::<String>(),
            )),
            other => Err(WireError::new(
                "unknown_event",
                other.chars().take(40).collect::<String>(),
            )),
        }
    }

    pub fn encode(&mut self, out: Outgoing<'_>) -> Option<Frame> {
        let v = match out {
            // RTP mode with `stream_bidirectional_codec=PCMU`: raw μ-law, no RTP header.
            Outgoing::Audio(ulaw) => {
                json!({"event": "media", "media": {"payload": BASE64.encode(ulaw)}})
            }
            Outgoing::Mark(name) => json!({"event": "mark", "mark": {"name": name}}),
            Outgoing::Clear => json!({"event": "clear"}),
            // The stream ends through Call Control (`streaming_stop`, transfer, hangup).
            Outgoing::Hangup => return None,
        };
        Some(Frame::Text(v.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `connected` and `start` are Telnyx's AsyncAPI examples (stream-call-media-over-websocket),
    // client_state replaced by base64("tok-123"). The other frames follow the field names of
    // the AsyncAPI message descriptions and pipecat's reader (dtmf); the exact layout of the
    // `stop` body and the `error` payload is not shown there, and the codec reads neither.
    const CONNECTED: &str = r#"{"event":"connected","version":"1.0.0"}"#;
    const START: &str = r#"{"event":"start","sequence_number":"1","stream_id":"32DE0DEA-53CB-4B21-89A4-9E1819C043BC","start":{"user_id":"3E6F995F-85F7-4705-9741-53B116D28237","call_control_id":"v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ","call_session_id":"ff55a038-6f5d-11ef-9692-02420aeffb1f","from":"+13122010094","to":"+13122123456","tags":["TAG1","TAG2"],"client_state":"dG9rLTEyMw==","custom_parameters":{"customer_id":"customer_123"},"media_format":{"encoding":"PCMU","sample_rate":8000,"channels":1}}}"#;

    fn text(s: &str) -> Frame {
        Frame::Text(s.to_string())
    }

    #[test]
    fn decodes_telnyx_events_from_its_examples() {
        let mut c = Codec::default();
        assert_eq!(c.decode(text(CONNECTED)).unwrap(), MediaEvent::Nothing);
        let MediaEvent::Start(s) = c.decode(text(START)).unwrap() else {
            panic!("not a start")
        };
        assert_eq!(
            s.call_id,
            "v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ"
        );
        assert_eq!(s.stream_id, "32DE0DEA-53CB-4B21-89A4-9E1819C043BC");
        assert_eq!(s.token.as_deref(), Some("tok-123"));
        assert_eq!(c.decode(text(START)).unwrap(), MediaEvent::DuplicateStart);
        let media = format!(
            r#"{{"event":"media","sequence_number":"4","media":{{"track":"inbound","chunk":"2","timestamp":"5","payload":"{}"}},"stream_id":"32DE0DEA"}}"#,
            BASE64.encode([0x7Fu8; 160])
        );
        assert_eq!(
            c.decode(text(&media)).unwrap(),
            MediaEvent::Audio {
                ulaw: vec![0x7F; 160],
                chunk: Some(2)
            }
        );
        let named_otherwise = media.replace(r#""track":"inbound""#, r#""track":"inbound_track""#);
        assert!(matches!(
            c.decode(text(&named_otherwise)).unwrap(),
            MediaEvent::Audio { .. }
        ));
        let outbound = media.replace(r#""track":"inbound""#, r#""track":"outbound""#);
        assert_eq!(c.decode(text(&outbound)).unwrap(), MediaEvent::Nothing);
        assert_eq!(
            c.decode(text(
                r#"{"event":"dtmf","stream_id":"x","occurred_at":"2024-01-01T00:00:00Z","sequence_number":"5","dtmf":{"digit":"1"}}"#
            ))
            .unwrap(),
            MediaEvent::Dtmf('1')
        );
        assert_eq!(
            c.decode(text(
                r#"{"event":"mark","sequence_number":"6","stream_id":"x","mark":{"name":"greeting-1"}}"#
            ))
            .unwrap(),
            MediaEvent::Mark("greeting-1".into())
        );
        assert_eq!(
            c.decode(text(
                r#"{"event":"stop","sequence_number":"7","stop":{"user_id":"u","call_control_id":"v2:T0"},"stream_id":"x"}"#
            ))
            .unwrap(),
            MediaEvent::Stop
        );
        let err = c
            .decode(text(
                r#"{"event":"error","sequence_number":"8","stream_id":"x","payload":{"code":100002,"title":"unknown_error","detail":"An unknown error occurred"}}"#,
            ))
            .unwrap_err();
        assert_eq!(err.kind, "provider_error");
        assert!(err.detail.contains("100002"), "{}", err.detail);
    }

    #[test]
    fn encodes_media_mark_and_clear_as_telnyx_reads_them() {
        let mut c = Codec::default();
        let Some(Frame::Text(m)) = c.encode(Outgoing::Audio(&[0xFF, 0x7F])) else {
            panic!()
        };
        let v: Value = serde_json::from_str(&m).unwrap();
        assert_eq!(v, json!({"event": "media", "media": {"payload": "/38="}}));
        let Some(Frame::Text(m)) = c.encode(Outgoing::Mark("m1")) else {
            panic!()
        };
        assert_eq!(
            serde_json::from_str::<Value>(&m).unwrap(),
            json!({"event": "mark", "mark": {"name": "m1"}})
        );
        assert_eq!(
            c.encode(Outgoing::Clear),
            Some(Frame::Text(r#"{"event":"clear"}"#.into()))
        );
        assert_eq!(c.encode(Outgoing::Hangup), None);
    }

    #[test]
    fn bad_input_is_a_typed_error_never_a_panic() {
        let mut c = Codec::default();
        for (input, kind) in [
            ("not json", "json"),
            ("{}", "missing_field"),
            (r#"{"event":"warp"}"#, "unknown_event"),
            (r#"{"event":"start","start":{}}"#, "missing_field"),
            (
                r#"{"event":"media","media":{"payload":"!!"}}"#,
                "bad_base64",
            ),
            (r#"{"event":"dtmf","dtmf":{"digit":"12"}}"#, "bad_digit"),
            (r#"{"event":"mark","mark":{}}"#, "missing_field"),
        ] {
            assert_eq!(c.decode(text(input)).unwrap_err().kind, kind, "{input}");
        }
        let big = format!(
            r#"{{"event":"media","media":{{"payload":"{}"}}}}"#,
            BASE64.encode(vec![0u8; MAX_PAYLOAD + 100])
        );
        assert_eq!(c.decode(text(&big)).unwrap_err().kind, "oversized");
        assert_eq!(
            c.decode(Frame::Binary(vec![1, 2])).unwrap_err().kind,
            "binary"
        );
        let alaw = START.replace(r#""encoding":"PCMU""#, r#""encoding":"PCMA""#);
        assert_eq!(
            c.decode(text(&alaw)).unwrap_err().kind,
            "unsupported_format"
        );
        let wide = START.replace(r#""sample_rate":8000"#, r#""sample_rate":16000"#);
        assert_eq!(
            c.decode(text(&wide)).unwrap_err().kind,
            "unsupported_format"
        );
        // A client_state that is not base64 carries no token (the claim then fails).
        let forged = START.replace("dG9rLTEyMw==", "%%%");
        let MediaEvent::Start(s) = Codec::default().decode(text(&forged)).unwrap() else {
            panic!()
        };
        assert_eq!(s.token, None);
        assert_eq!(
            call_of_start(START).as_deref(),
            Some("v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ")
        );
        assert_eq!(call_of_start(CONNECTED), None);
    }
}
