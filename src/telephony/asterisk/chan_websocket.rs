//! The chan_websocket protocol (Asterisk 20.16+/21.11+/22.6+/23): BINARY WebSocket messages
//! carry raw audio in the channel's codec, TEXT messages carry control — events from
//! Asterisk (`MEDIA_START`, `DTMF_END`, `MEDIA_XOFF`, …) and commands to it (`HANGUP`,
//! `FLUSH_MEDIA`, `MARK_MEDIA`, …), either as plain text (`MEDIA_START connection_id:… …`)
//! or, with the dial option `f(json)` / `chan_websocket.conf` `control_message_format=json`
//! (20.18/22.8/23.2+), as JSON (`{"event":"MEDIA_START",…}`, `{"command":"HANGUP"}`).
//! warmline answers in the form the `MEDIA_START` arrived in.
//!
//! Sources (re-read for this codec):
//! - asterisk/asterisk `channels/chan_websocket.c` @0607f2cb: the event and command names
//!   (`#define MARK_MEDIA "MARK_MEDIA"` …), the exact plain and JSON shapes of `MEDIA_START`
//!   (`connection_id channel channel_id format optimal_frame_size ptime` + JSON-only
//!   `channel_variables`), `DTMF_END` (plain `DTMF_END digit:5 channel_id:…`, JSON
//!   `{"event","channel_id","digit"}`), `ERROR` (`error_text`), `MEDIA_MARK_PROCESSED`
//!   (`correlation_id`); commands are case-sensitive, JSON ones read `command` and
//!   `correlation_id`; a TEXT message longer than 128 bytes is ignored
//!   (`MAX_TEXT_MESSAGE_LEN`); BINARY data is cut into `optimal_frame_size` frames and a
//!   remainder is dropped unless media buffering is on.
//! - asterisk/documentation `Configuration/Channel-Drivers/WebSocket.md`: `FLUSH_MEDIA`
//!   drops queued media ("an automated agent detects the caller is speaking"), ulaw is 160
//!   bytes per 20 ms, the driver times the frames itself and plays silence when none came.
//!
//! Marks are emulated by the driver (`native_marks() == false`): `FLUSH_MEDIA` discards a
//! queued `MARK_MEDIA` without answering it (chan_websocket.c, `FLUSH_MEDIA` empties the frame
//! queue, marks included), and the engine must get every mark back after a barge-in. The
//! driver paces audio in real time anyway, so a flush drops at most its 80 ms lead.
//!
//! UNVERIFIED: that `slin`/`slin16` payloads are little-endian. Asterisk's signed linear is
//! host byte order and every PBX host we know of is little-endian (x86-64, arm64).

use serde::Deserialize;
use serde_json::{Value, json};

use crate::audio::{FRAME_SAMPLES_8K, ulaw};
use crate::telephony::media::{Frame, MediaEvent, Outgoing, StreamStart, WireError};

/// Largest TEXT message chan_websocket sends that warmline reads (`MEDIA_START` with the
/// channel's variables can be a few kilobytes).
pub const MAX_TEXT: usize = 16 * 1024;

/// The audio formats warmline takes, named as Asterisk names them in `c(…)` and in
/// `MEDIA_START format:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// G.711 μ-law, 8 kHz: 160 bytes per 20 ms.
    Ulaw,
    /// Signed linear 16-bit, 8 kHz: 320 bytes per 20 ms.
    Slin,
    /// Signed linear 16-bit, 16 kHz: 640 bytes per 20 ms.
    Slin16,
}

impl Format {
    fn parse(name: &str) -> Option<Format> {
        match name {
            "ulaw" => Some(Format::Ulaw),
            "slin" => Some(Format::Slin),
            "slin16" => Some(Format::Slin16),
            _ => None,
        }
    }

    /// Bytes in one 20 ms frame: chan_websocket's `optimal_frame_size` at ptime 20.
    pub fn frame_bytes(self) -> usize {
        match self {
            Format::Ulaw => FRAME_SAMPLES_8K,
            Format::Slin => FRAME_SAMPLES_8K * 2,
            Format::Slin16 => FRAME_SAMPLES_8K * 4,
        }
    }
}

/// How control messages are written, following what Asterisk sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Control {
    #[default]
    Plain,
    Json,
}

#[derive(Debug, Default)]
pub struct Codec {
    /// The caller's channel id the dialplan put in the URL (`v(call=${UNIQUEID})`): the key
    /// its `/asterisk/route/{uuid}` lookup uses after warmline hangs up.
    call_id: String,
    format: Option<Format>,
    control: Control,
}

/// A control message, from either form.
#[derive(Debug, Default, PartialEq, Eq)]
struct Event {
    name: String,
    fields: Vec<(String, String)>,
}

impl Event {
    fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Deserialize)]
struct RawJson {
    event: Option<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

/// `NAME key:value key:value` — values never hold spaces in the events warmline reads
/// (channel names such as `WebSocket/warmline/0x7f…` have none).
fn parse_plain(text: &str) -> Event {
    let mut words = text.split_ascii_whitespace();
    let name = words.next().unwrap_or_default().to_string();
    let fields = words
        .filter_map(|w| w.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Event { name, fields }
}

fn parse_json(text: &str) -> Result<Event, WireError> {
    let raw: RawJson =
        serde_json::from_str(text).map_err(|e| WireError::new("json", e.to_string()))?;
    let name = raw
        .event
        .ok_or_else(|| WireError::new("missing_field", "missing field event"))?;
    let fields = raw
        .rest
        .into_iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k, s)),
            Value::Number(n) => Some((k, n.to_string())),
            Value::Bool(b) => Some((k, b.to_string())),
            _ => None,
        })
        .collect();
    Ok(Event { name, fields })
}

/// Whether a call id is safe to use as a record key and in the dialplan's route URL.
pub fn valid_call_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

impl Codec {
    /// `call_id` is the caller channel's id from the connection URL; when it is empty the
    /// WebSocket channel's own `channel_id` is used (the dialplan then cannot look the route
    /// up by it and gets the fallback queue).
    pub fn new(call_id: &str) -> Codec {
        Codec {
            call_id: call_id.to_string(),
            ..Codec::default()
        }
    }

    pub fn format(&self) -> Option<Format> {
        self.format
    }

    pub fn decode(&mut self, frame: Frame) -> Result<MediaEvent, WireError> {
        match frame {
            Frame::Binary(bytes) => self.audio(&bytes),
            Frame::Text(text) => {
                if text.len() > MAX_TEXT {
                    return Err(WireError::new("too_long", format!("{} bytes", text.len())));
                }
                let text = text.trim();
                let (event, control) = if text.starts_with('{') {
                    (parse_json(text)?, Control::Json)
                } else {
                    (parse_plain(text), Control::Plain)
                };
                self.event(event, control)
            }
        }
    }

    fn event(&mut self, e: Event, control: Control) -> Result<MediaEvent, WireError> {
        match e.name.as_str() {
            "MEDIA_START" => {
                if self.format.is_some() {
                    return Ok(MediaEvent::DuplicateStart);
                }
                let name = e.get("format").unwrap_or_default();
                let format = Format::parse(name).ok_or_else(|| {
                    WireError::new(
                        "unsupported_format",
                        format!("{name:?}: dial with c(slin16), c(slin) or c(ulaw)"),
                    )
                })?;
                // A ptime other than 20 ms changes the frame size; whole 20 ms frames would
                // then be cut and the remainder dropped by Asterisk, so refuse (fail open).
                let size = e.get("optimal_frame_size").unwrap_or_default();
                if size != format.frame_bytes().to_string() {
                    return Err(WireError::new(
                        "unsupported_format",
                        format!("{name} with optimal_frame_size {size:?}"),
                    ));
                }
                let channel_id = e.get("channel_id").unwrap_or_default();
                let call_id = if self.call_id.is_empty() {
                    channel_id.to_string()
                } else {
                    self.call_id.clone()
                };
                if !valid_call_id(&call_id) {
                    return Err(WireError::new("bad_call_id", format!("{call_id:?}")));
                }
                self.format = Some(format);
                self.control = control;
                Ok(MediaEvent::Start(StreamStart {
                    call_id,
                    stream_id: e.get("connection_id").unwrap_or_default().to_string(),
                    ..StreamStart::default()
                }))
            }
            "DTMF_END" => match e.get("digit").map(str::as_bytes) {
                Some([d]) if d.is_ascii_digit() || matches!(d, b'*' | b'#' | b'A'..=b'D') => {
                    Ok(MediaEvent::Dtmf(char::from(*d)))
                }
                other => Err(WireError::new("bad_digit", format!("{other:?}"))),
            },
            "ERROR" => Err(WireError::new(
                "provider_error",
                format!(
                    "Asterisk: {}",
                    e.get("error_text").unwrap_or("(no error_text)")
                ),
            )),
            // Flow control and acknowledgements: warmline keeps a few frames ahead of real
            // time, so the queue never nears XOFF (900 frames) and nothing waits on an ack.
            "MEDIA_XOFF"
            | "MEDIA_XON"
            | "STATUS"
            | "QUEUE_DRAINED"
            | "MEDIA_BUFFERING_COMPLETED"
            | "MEDIA_MARK_PROCESSED" => Ok(MediaEvent::Nothing),
            other => Err(WireError::new(
                "unknown_event",
                other.chars().take(40).collect::<String>(),
            )),
        }
    }

    fn audio(&mut self, bytes: &[u8]) -> Result<MediaEvent, WireError> {
        let Some(format) = self.format else {
            return Err(WireError::new("before_start", "audio before MEDIA_START"));
        };
        if bytes.is_empty() || bytes.len() > 8 * format.frame_bytes() {
            return Err(WireError::new(
                "bad_audio",
                format!("{} bytes", bytes.len()),
            ));
        }
        let ulaw = match format {
            Format::Ulaw => bytes.to_vec(),
            Format::Slin => {
                if !bytes.len().is_multiple_of(2) {
                    return Err(WireError::new("bad_audio", "odd slin length"));
                }
                bytes
                    .chunks_exact(2)
                    .map(|s| ulaw::encode(i16::from_le_bytes([s[0], s[1]])))
                    .collect()
            }
            Format::Slin16 => {
                if !bytes.len().is_multiple_of(4) {
                    return Err(WireError::new("bad_audio", "slin16 not whole sample pairs"));
                }
                // 16 → 8 kHz by averaging each pair: a two-tap low-pass, enough for the VAD
                // and Whisper (which works at 16 kHz from an 8 kHz telephone band anyway).
                bytes
                    .chunks_exact(4)
                    .map(|s| {
                        let a = i32::from(i16::from_le_bytes([s[0], s[1]]));
                        let b = i32::from(i16::from_le_bytes([s[2], s[3]]));
                        ulaw::encode(((a + b) / 2) as i16)
                    })
                    .collect()
            }
        };
        Ok(MediaEvent::Audio { ulaw, chunk: None })
    }

    fn command(&self, name: &str) -> Frame {
        match self.control {
            Control::Plain => Frame::Text(name.to_string()),
            Control::Json => Frame::Text(json!({ "command": name }).to_string()),
        }
    }

    pub fn encode(&mut self, out: Outgoing<'_>) -> Option<Frame> {
        match out {
            Outgoing::Audio(frame) => {
                let format = self.format?;
                // Whole 20 ms frames only: Asterisk drops a remainder shorter than
                // optimal_frame_size, so a prompt's short tail is padded with silence.
                let mut samples: Vec<i16> = frame.iter().map(|&b| ulaw::decode(b)).collect();
                let whole = samples.len().div_ceil(FRAME_SAMPLES_8K).max(1) * FRAME_SAMPLES_8K;
                samples.resize(whole, 0);
                let bytes = match format {
                    Format::Ulaw => samples.iter().map(|&s| ulaw::encode(s)).collect(),
                    Format::Slin => samples.iter().flat_map(|s| s.to_le_bytes()).collect(),
                    Format::Slin16 => upsample(&samples),
                };
                Some(Frame::Binary(bytes))
            }
            // Emulated by the driver; see the module comment.
            Outgoing::Mark(_) => None,
            Outgoing::Clear => Some(self.command("FLUSH_MEDIA")),
            // Hangs the WebSocket channel up; `Dial(…,g)` then continues the caller's dialplan.
            Outgoing::Hangup => Some(self.command("HANGUP")),
        }
    }
}

/// 8 → 16 kHz, linear interpolation, as little-endian bytes.
fn upsample(samples: &[i16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() * 4);
    for (i, &s) in samples.iter().enumerate() {
        let next = samples.get(i + 1).copied().unwrap_or(s);
        let mid = ((i32::from(s) + i32::from(next)) / 2) as i16;
        out.extend_from_slice(&s.to_le_bytes());
        out.extend_from_slice(&mid.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // The plain-text examples as chan_websocket.c formats them (`_create_event_*`).
    const START_PLAIN: &str = "MEDIA_START connection_id:e226e283-c90a-4ea9-9e37-389000b9ef47 \
        channel:WebSocket/warmline/0x7f0a1c003a40 channel_id:1733150000.42 format:slin16 \
        optimal_frame_size:640 ptime:20";
    const START_JSON: &str = r#"{"event":"MEDIA_START","connection_id":"e226e283-c90a-4ea9-9e37-389000b9ef47","channel":"WebSocket/warmline/0x7f0a1c003a40","channel_id":"1733150000.42","format":"ulaw","optimal_frame_size":160,"ptime":20,"channel_variables":{"MEDIA_WEBSOCKET_CONNECTION_ID":"e226e283-c90a-4ea9-9e37-389000b9ef47"}}"#;

    #[test]
    fn plain_text_start_audio_dtmf_and_commands() {
        let mut c = Codec::new("1733149999.7");
        let MediaEvent::Start(s) = c.decode(Frame::Text(START_PLAIN.into())).unwrap() else {
            panic!("not a start")
        };
        assert_eq!(s.call_id, "1733149999.7", "the caller's id from the URL");
        assert_eq!(s.stream_id, "e226e283-c90a-4ea9-9e37-389000b9ef47");
        assert_eq!(c.format(), Some(Format::Slin16));
        // 20 ms of slin16 → 160 μ-law bytes at 8 kHz.
        let MediaEvent::Audio { ulaw, .. } = c.decode(Frame::Binary(vec![0; 640])).unwrap() else {
            panic!("not audio")
        };
        assert_eq!(ulaw.len(), 160);
        assert_eq!(
            c.decode(Frame::Text(
                "DTMF_END digit:0 channel_id:1733150000.42".into()
            ))
            .unwrap(),
            MediaEvent::Dtmf('0')
        );
        for quiet in [
            "MEDIA_XOFF",
            "MEDIA_XON",
            "QUEUE_DRAINED",
            "MEDIA_MARK_PROCESSED m1",
            "STATUS channel_id:1 queue_length:43 xon_level:800 xoff_level:900 queue_full:false bulk_media:true media_paused:false",
        ] {
            assert_eq!(
                c.decode(Frame::Text(quiet.into())).unwrap(),
                MediaEvent::Nothing
            );
        }
        assert_eq!(
            c.encode(Outgoing::Clear),
            Some(Frame::Text("FLUSH_MEDIA".into()))
        );
        assert_eq!(
            c.encode(Outgoing::Hangup),
            Some(Frame::Text("HANGUP".into()))
        );
        assert_eq!(c.encode(Outgoing::Mark("m")), None);
        assert_eq!(
            c.decode(Frame::Text(START_PLAIN.into())).unwrap(),
            MediaEvent::DuplicateStart
        );
    }

    #[test]
    fn json_start_is_answered_in_json() {
        let mut c = Codec::new("");
        let MediaEvent::Start(s) = c.decode(Frame::Text(START_JSON.into())).unwrap() else {
            panic!("not a start")
        };
        assert_eq!(s.call_id, "1733150000.42", "no URL id: the channel's own");
        assert_eq!(c.format(), Some(Format::Ulaw));
        assert_eq!(
            c.decode(Frame::Text(
                r##"{"event":"DTMF_END","channel_id":"1733150000.42","digit":"#"}"##.into()
            ))
            .unwrap(),
            MediaEvent::Dtmf('#')
        );
        let Some(Frame::Text(flush)) = c.encode(Outgoing::Clear) else {
            panic!()
        };
        assert_eq!(
            serde_json::from_str::<Value>(&flush).unwrap(),
            json!({"command": "FLUSH_MEDIA"})
        );
        let Some(Frame::Text(hangup)) = c.encode(Outgoing::Hangup) else {
            panic!()
        };
        assert_eq!(
            serde_json::from_str::<Value>(&hangup).unwrap(),
            json!({"command": "HANGUP"})
        );
        let err = c
            .decode(Frame::Text(
                r#"{"event":"ERROR","channel_id":"1","error_text":"Unable to parse JSON command"}"#
                    .into(),
            ))
            .unwrap_err();
        assert_eq!(err.kind, "provider_error");
        assert!(err.detail.contains("Unable to parse"));
    }

    #[test]
    fn outbound_audio_is_whole_frames_in_the_channel_format() {
        for (start, bytes) in [
            (START_PLAIN.to_string(), 640),
            (
                START_PLAIN.replace("slin16", "slin").replace("640", "320"),
                320,
            ),
            (START_JSON.to_string(), 160),
        ] {
            let mut c = Codec::new("x");
            assert_eq!(
                c.encode(Outgoing::Audio(&[0xFF; 160])),
                None,
                "no format yet"
            );
            c.decode(Frame::Text(start)).unwrap();
            let Some(Frame::Binary(f)) = c.encode(Outgoing::Audio(&[0x80; 160])) else {
                panic!()
            };
            assert_eq!(f.len(), bytes);
            let Some(Frame::Binary(tail)) = c.encode(Outgoing::Audio(&[0x00; 8])) else {
                panic!()
            };
            assert_eq!(tail.len(), bytes, "a prompt's tail is padded to 20 ms");
        }
        // A loud μ-law sample survives the round trip through slin16 and back.
        let mut c = Codec::new("x");
        c.decode(Frame::Text(START_PLAIN.into())).unwrap();
        let Some(Frame::Binary(f)) = c.encode(Outgoing::Audio(&[0x10; 160])) else {
            panic!()
        };
        let MediaEvent::Audio { ulaw, .. } = c.decode(Frame::Binary(f)).unwrap() else {
            panic!()
        };
        assert!(ulaw.iter().all(|&b| b == 0x10), "{ulaw:?}");
    }

    #[test]
    fn what_warmline_cannot_take_is_a_typed_error() {
        let mut c = Codec::new("x");
        assert_eq!(
            c.decode(Frame::Binary(vec![0; 160])).unwrap_err().kind,
            "before_start"
        );
        for (start, kind) in [
            (START_PLAIN.replace("slin16", "opus"), "unsupported_format"),
            (START_PLAIN.replace("640", "1280"), "unsupported_format"),
            ("{not json".to_string(), "json"),
            (r#"{"channel_id":"1"}"#.to_string(), "missing_field"),
            ("SOMETHING_NEW a:b".to_string(), "unknown_event"),
            ("DTMF_END digit:x".to_string(), "bad_digit"),
        ] {
            assert_eq!(c.decode(Frame::Text(start)).unwrap_err().kind, kind);
        }
        let mut bad_id = Codec::new("../../etc");
        assert_eq!(
            bad_id
                .decode(Frame::Text(START_PLAIN.into()))
                .unwrap_err()
                .kind,
            "bad_call_id"
        );
        c.decode(Frame::Text(START_PLAIN.into())).unwrap();
        assert_eq!(
            c.decode(Frame::Binary(vec![0; 642])).unwrap_err().kind,
            "bad_audio"
        );
    }
}
