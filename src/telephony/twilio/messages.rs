//! Twilio Media Streams wire codec (bidirectional `<Connect><Stream>`).
//!
//! The only place that knows the JSON shape of Twilio's frames: inbound frames become
//! [`Inbound`], outbound `media` / `mark` / `clear` frames are built by the `*_out` functions.
//! Unknown fields are ignored so Twilio can add some; unknown events are an error the caller
//! counts and skips, so one odd frame never ends a call.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value, json};

/// The only audio Twilio streams; anything else would be decoded as noise.
const MULAW: &str = "audio/x-mulaw";
const MULAW_RATE: u32 = 8000;

/// A decoded frame from Twilio.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Connected,
    Start(Start),
    Media(Media),
    Dtmf { digit: char },
    Mark { name: String },
    Stop,
}

/// The `start` frame: who the call is and what the audio looks like.
#[derive(Debug, Clone, PartialEq)]
pub struct Start {
    pub stream_sid: String,
    pub call_sid: String,
    pub account_sid: String,
    pub custom_parameters: HashMap<String, String>,
    pub encoding: String,
    pub sample_rate: u32,
}

/// One `media` frame (normally 20 ms / 160 bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct Media {
    /// Decoded μ-law bytes.
    pub payload: Vec<u8>,
    pub chunk: Option<u64>,
    /// Milliseconds since the stream started, as Twilio counts them.
    pub timestamp_ms: Option<u64>,
    pub track: Option<String>,
}

#[derive(thiserror::Error, Debug)]
pub enum WireError {
    #[error("malformed JSON frame: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unknown event {0:?}")]
    UnknownEvent(String),
    #[error("missing field {0}")]
    MissingField(&'static str),
    #[error("media payload is not base64: {0}")]
    BadBase64(#[from] base64::DecodeError),
    #[error("media payload of {bytes} bytes exceeds {max}")]
    Oversized { bytes: usize, max: usize },
    #[error("invalid DTMF digit {0:?}")]
    BadDigit(String),
    #[error("unsupported media format {0}")]
    UnsupportedFormat(String),
    #[error("field {field} is not a non-negative integer: {value}")]
    BadNumber { field: &'static str, value: String },
}

impl WireError {
    /// Stable label for `wire_errors_total{kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Json(_) => "json",
            Self::UnknownEvent(_) => "unknown_event",
            Self::MissingField(_) => "missing_field",
            Self::BadBase64(_) => "bad_base64",
            Self::Oversized { .. } => "oversized",
            Self::BadDigit(_) => "bad_digit",
            Self::UnsupportedFormat(_) => "unsupported_format",
            Self::BadNumber { .. } => "bad_number",
        }
    }
}

// Raw shapes: every field optional so a missing one becomes a named `MissingField` rather
// than an opaque serde message, and numbers stay `Value` because Twilio sends them as strings.

#[derive(Deserialize)]
struct RawFrame {
    event: Option<String>,
    #[serde(rename = "streamSid")]
    stream_sid: Option<String>,
    start: Option<RawStart>,
    media: Option<RawMedia>,
    dtmf: Option<RawDtmf>,
    mark: Option<RawMark>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStart {
    stream_sid: Option<String>,
    call_sid: Option<String>,
    account_sid: Option<String>,
    #[serde(default)]
    custom_parameters: HashMap<String, Value>,
    media_format: Option<RawFormat>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawFormat {
    encoding: Option<String>,
    sample_rate: Option<Value>,
    channels: Option<Value>,
}

#[derive(Deserialize)]
struct RawMedia {
    payload: Option<String>,
    chunk: Option<Value>,
    timestamp: Option<Value>,
    track: Option<String>,
}

#[derive(Deserialize)]
struct RawDtmf {
    digit: Option<String>,
}

#[derive(Deserialize)]
struct RawMark {
    name: Option<String>,
}

/// Parses one text frame. `max_payload_bytes` bounds the decoded audio of a `media` frame.
pub fn parse_inbound(text: &str, max_payload_bytes: usize) -> Result<Inbound, WireError> {
    let frame: RawFrame = serde_json::from_str(text)?;
    let event = frame.event.ok_or(WireError::MissingField("event"))?;
    match event.as_str() {
        "connected" => Ok(Inbound::Connected),
        "start" => parse_start(frame.start, frame.stream_sid).map(Inbound::Start),
        "media" => parse_media(frame.media, max_payload_bytes).map(Inbound::Media),
        "dtmf" => parse_dtmf(frame.dtmf),
        "mark" => parse_mark(frame.mark),
        "stop" => Ok(Inbound::Stop),
        _ => Err(WireError::UnknownEvent(event)),
    }
}

fn parse_start(raw: Option<RawStart>, outer_sid: Option<String>) -> Result<Start, WireError> {
    let raw = raw.ok_or(WireError::MissingField("start"))?;
    let (encoding, sample_rate) = parse_format(raw.media_format)?;
    Ok(Start {
        stream_sid: raw
            .stream_sid
            .or(outer_sid)
            .ok_or(WireError::MissingField("streamSid"))?,
        call_sid: raw
            .call_sid
            .ok_or(WireError::MissingField("start.callSid"))?,
        account_sid: raw
            .account_sid
            .ok_or(WireError::MissingField("start.accountSid"))?,
        custom_parameters: stringify_values(raw.custom_parameters),
        encoding,
        sample_rate,
    })
}

/// A missing `mediaFormat` means Twilio's only format; a present one must be exactly it,
/// because the audio path assumes 8 kHz mono μ-law.
fn parse_format(raw: Option<RawFormat>) -> Result<(String, u32), WireError> {
    let Some(raw) = raw else {
        return Ok((MULAW.to_owned(), MULAW_RATE));
    };
    let encoding = raw.encoding.unwrap_or_else(|| MULAW.to_owned());
    let rate = opt_u64(raw.sample_rate.as_ref(), "start.mediaFormat.sampleRate")?
        .unwrap_or(u64::from(MULAW_RATE));
    let channels = opt_u64(raw.channels.as_ref(), "start.mediaFormat.channels")?.unwrap_or(1);
    if encoding != MULAW || rate != u64::from(MULAW_RATE) || channels != 1 {
        return Err(WireError::UnsupportedFormat(format!(
            "{encoding} {rate} Hz {channels} ch"
        )));
    }
    Ok((encoding, MULAW_RATE))
}

/// Parameters are strings in TwiML, but a hand-built `start` may carry other JSON values.
fn stringify_values(map: HashMap<String, Value>) -> HashMap<String, String> {
    map.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect()
}

fn parse_media(raw: Option<RawMedia>, max: usize) -> Result<Media, WireError> {
    let raw = raw.ok_or(WireError::MissingField("media"))?;
    let encoded = raw
        .payload
        .ok_or(WireError::MissingField("media.payload"))?;
    Ok(Media {
        payload: decode_payload(&encoded, max)?,
        chunk: opt_u64(raw.chunk.as_ref(), "media.chunk")?,
        timestamp_ms: opt_u64(raw.timestamp.as_ref(), "media.timestamp")?,
        track: raw.track,
    })
}

/// Rejects on the encoded length so an oversized frame is never decoded at all.
fn decode_payload(encoded: &str, max: usize) -> Result<Vec<u8>, WireError> {
    let bytes = decoded_len(encoded);
    if bytes > max {
        return Err(WireError::Oversized { bytes, max });
    }
    Ok(BASE64.decode(encoded)?)
}

/// Exact for well-formed padded base64; malformed input fails in the decoder anyway.
fn decoded_len(encoded: &str) -> usize {
    let padding = encoded.bytes().rev().take(2).filter(|&b| b == b'=').count();
    (encoded.len() / 4 * 3).saturating_sub(padding)
}

fn parse_dtmf(raw: Option<RawDtmf>) -> Result<Inbound, WireError> {
    let digit = raw
        .and_then(|d| d.digit)
        .ok_or(WireError::MissingField("dtmf.digit"))?;
    let mut chars = digit.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if is_dtmf(c) => Ok(Inbound::Dtmf { digit: c }),
        _ => Err(WireError::BadDigit(digit)),
    }
}

/// The 16 DTMF tones; A–D exist on some handsets and PBXs.
fn is_dtmf(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D')
}

fn parse_mark(raw: Option<RawMark>) -> Result<Inbound, WireError> {
    let name = raw
        .and_then(|m| m.name)
        .ok_or(WireError::MissingField("mark.name"))?;
    Ok(Inbound::Mark { name })
}

/// Twilio sends counters as strings ("1"); tests and other tools send numbers.
fn opt_u64(value: Option<&Value>, field: &'static str) -> Result<Option<u64>, WireError> {
    let bad = |v: &Value| WireError::BadNumber {
        field,
        value: v.to_string(),
    };
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| bad(&Value::Number(n.clone()))),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| bad(&Value::String(s.clone()))),
        Some(other) => Err(bad(other)),
    }
}

/// Outbound audio: raw 8 kHz mono μ-law, no header.
pub fn media_out(stream_sid: &str, ulaw: &[u8]) -> String {
    json!({
        "event": "media",
        "streamSid": stream_sid,
        "media": { "payload": BASE64.encode(ulaw) },
    })
    .to_string()
}

/// Twilio echoes this mark once the audio sent before it has played (or was cleared).
pub fn mark_out(stream_sid: &str, name: &str) -> String {
    json!({ "event": "mark", "streamSid": stream_sid, "mark": { "name": name } }).to_string()
}

/// Drops all outbound audio Twilio has buffered (barge-in).
pub fn clear_out(stream_sid: &str) -> String {
    json!({ "event": "clear", "streamSid": stream_sid }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 8000;

    fn parse(text: &str) -> Result<Inbound, WireError> {
        parse_inbound(text, MAX)
    }

    #[test]
    fn connected() {
        let f = parse(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#).unwrap();
        assert_eq!(f, Inbound::Connected);
    }

    #[test]
    fn start_with_parameters() {
        let text = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ11",
            "start":{"streamSid":"MZ11","accountSid":"AC22","callSid":"CA33",
                     "tracks":["inbound"],
                     "customParameters":{"token":"t0k","From":"+15550001111"},
                     "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;
        let Inbound::Start(s) = parse(text).unwrap() else {
            panic!("not a start frame");
        };
        assert_eq!(s.stream_sid, "MZ11");
        assert_eq!(s.account_sid, "AC22");
        assert_eq!(s.call_sid, "CA33");
        assert_eq!(s.custom_parameters["token"], "t0k");
        assert_eq!(s.custom_parameters["From"], "+15550001111");
        assert_eq!(s.encoding, "audio/x-mulaw");
        assert_eq!(s.sample_rate, 8000);
    }

    #[test]
    fn start_without_stream_sid_is_missing_field() {
        let text = r#"{"event":"start","sequenceNumber":"1",
            "start":{"accountSid":"AC22","callSid":"CA33",
                     "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;
        let err = parse(text).unwrap_err();
        assert!(
            matches!(err, WireError::MissingField("streamSid")),
            "{err:?}"
        );
        assert_eq!(err.kind(), "missing_field");
    }

    #[test]
    fn start_takes_outer_stream_sid_when_inner_is_absent() {
        let text = r#"{"event":"start","streamSid":"MZ9",
            "start":{"accountSid":"AC22","callSid":"CA33"}}"#;
        let Inbound::Start(s) = parse(text).unwrap() else {
            panic!("not a start frame");
        };
        assert_eq!(s.stream_sid, "MZ9");
        assert_eq!(s.sample_rate, 8000);
    }

    #[test]
    fn start_with_other_format_is_unsupported() {
        let text = r#"{"event":"start","streamSid":"MZ1",
            "start":{"streamSid":"MZ1","accountSid":"AC2","callSid":"CA3",
                     "mediaFormat":{"encoding":"audio/l16","sampleRate":"16000","channels":1}}}"#;
        let err = parse(text).unwrap_err();
        assert!(matches!(err, WireError::UnsupportedFormat(_)), "{err:?}");
    }

    #[test]
    fn media_with_string_counters() {
        let payload = BASE64.encode([0xffu8; 160]);
        let text = format!(
            r#"{{"event":"media","sequenceNumber":"3","streamSid":"MZ1",
                "media":{{"track":"inbound","chunk":"1","timestamp":"5","payload":"{payload}"}}}}"#
        );
        let Inbound::Media(m) = parse(&text).unwrap() else {
            panic!("not a media frame");
        };
        assert_eq!(m.payload, vec![0xff; 160]);
        assert_eq!(m.chunk, Some(1));
        assert_eq!(m.timestamp_ms, Some(5));
        assert_eq!(m.track.as_deref(), Some("inbound"));
    }

    #[test]
    fn media_with_numeric_counters() {
        let text = r#"{"event":"media","streamSid":"MZ1",
            "media":{"chunk":7,"timestamp":140,"payload":"AAEC"}}"#;
        let Inbound::Media(m) = parse(text).unwrap() else {
            panic!("not a media frame");
        };
        assert_eq!(m.payload, vec![0, 1, 2]);
        assert_eq!(m.chunk, Some(7));
        assert_eq!(m.timestamp_ms, Some(140));
        assert_eq!(m.track, None);
    }

    #[test]
    fn media_with_garbage_counter_is_bad_number() {
        let text = r#"{"event":"media","media":{"chunk":"x1","payload":"AAEC"}}"#;
        let err = parse(text).unwrap_err();
        assert!(
            matches!(
                err,
                WireError::BadNumber {
                    field: "media.chunk",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn media_bad_base64() {
        let text = r#"{"event":"media","streamSid":"MZ1","media":{"payload":"!!not base64!!"}}"#;
        let err = parse(text).unwrap_err();
        assert!(matches!(err, WireError::BadBase64(_)), "{err:?}");
        assert_eq!(err.kind(), "bad_base64");
    }

    #[test]
    fn media_oversized_payload() {
        let payload = BASE64.encode(vec![0u8; 400]);
        let text = format!(r#"{{"event":"media","media":{{"payload":"{payload}"}}}}"#);
        let err = parse_inbound(&text, 320).unwrap_err();
        assert!(
            matches!(
                err,
                WireError::Oversized {
                    bytes: 400,
                    max: 320
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.kind(), "oversized");
    }

    #[test]
    fn media_exactly_at_limit_is_accepted() {
        let payload = BASE64.encode(vec![0u8; 161]);
        let text = format!(r#"{{"event":"media","media":{{"payload":"{payload}"}}}}"#);
        assert!(parse_inbound(&text, 161).is_ok());
        let err = parse_inbound(&text, 160).unwrap_err();
        assert!(
            matches!(
                err,
                WireError::Oversized {
                    bytes: 161,
                    max: 160
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn media_without_payload() {
        let err = parse(r#"{"event":"media","media":{"chunk":"1"}}"#).unwrap_err();
        assert!(
            matches!(err, WireError::MissingField("media.payload")),
            "{err:?}"
        );
    }

    #[test]
    fn dtmf() {
        let text = r#"{"event":"dtmf","streamSid":"MZ1","sequenceNumber":"5",
            "dtmf":{"track":"inbound_track","digit":"1"}}"#;
        assert_eq!(parse(text).unwrap(), Inbound::Dtmf { digit: '1' });
        let star = r##"{"event":"dtmf","dtmf":{"digit":"#"}}"##;
        assert_eq!(parse(star).unwrap(), Inbound::Dtmf { digit: '#' });
    }

    #[test]
    fn dtmf_bad_digit() {
        for digit in ["12", "x", ""] {
            let text = format!(r#"{{"event":"dtmf","dtmf":{{"digit":"{digit}"}}}}"#);
            let err = parse(&text).unwrap_err();
            assert!(matches!(err, WireError::BadDigit(_)), "{digit}: {err:?}");
        }
    }

    #[test]
    fn mark() {
        let text =
            r#"{"event":"mark","sequenceNumber":"4","streamSid":"MZ1","mark":{"name":"utt-17"}}"#;
        assert_eq!(
            parse(text).unwrap(),
            Inbound::Mark {
                name: "utt-17".into()
            }
        );
    }

    #[test]
    fn stop() {
        let text = r#"{"event":"stop","sequenceNumber":"5","streamSid":"MZ1",
            "stop":{"accountSid":"AC1","callSid":"CA1"}}"#;
        assert_eq!(parse(text).unwrap(), Inbound::Stop);
    }

    #[test]
    fn malformed_json() {
        let err = parse(r#"{"event":"media","#).unwrap_err();
        assert!(matches!(err, WireError::Json(_)), "{err:?}");
        assert_eq!(err.kind(), "json");
        assert!(matches!(parse("[1,2]").unwrap_err(), WireError::Json(_)));
    }

    #[test]
    fn unknown_event() {
        let err = parse(r#"{"event":"wibble","streamSid":"MZ1"}"#).unwrap_err();
        assert!(
            matches!(&err, WireError::UnknownEvent(e) if e == "wibble"),
            "{err:?}"
        );
        assert_eq!(err.kind(), "unknown_event");
    }

    #[test]
    fn missing_event() {
        let err = parse(r#"{"streamSid":"MZ1"}"#).unwrap_err();
        assert!(matches!(err, WireError::MissingField("event")), "{err:?}");
    }

    #[test]
    fn outbound_frames() {
        let media: Value = serde_json::from_str(&media_out("MZ1", &[0xff, 0x7f])).unwrap();
        assert_eq!(
            media,
            json!({"event":"media","streamSid":"MZ1","media":{"payload":"/38="}})
        );
        let mark: Value = serde_json::from_str(&mark_out("MZ1", "utt-\"1\"")).unwrap();
        assert_eq!(
            mark,
            json!({"event":"mark","streamSid":"MZ1","mark":{"name":"utt-\"1\""}})
        );
        let clear: Value = serde_json::from_str(&clear_out("MZ1")).unwrap();
        assert_eq!(clear, json!({"event":"clear","streamSid":"MZ1"}));
    }

    #[test]
    fn outbound_media_round_trips_through_parser() {
        let audio: Vec<u8> = (0..=255).collect();
        let text = media_out("MZ1", &audio);
        let Inbound::Media(m) = parse(&text).unwrap() else {
            panic!("not a media frame");
        };
        assert_eq!(m.payload, audio);
    }
}
