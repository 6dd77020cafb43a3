//! A fake Plivo: the transfer API (`POST /v1/Account/{auth_id}/Call/{call_uuid}/`, basic
//! auth, answered 202 as Plivo does), callbacks signed with `X-Plivo-Signature-V3` and its
//! nonce, the answer XML read as Plivo reads it (`<Stream>` URL and `extraHeaders`, the
//! `<Redirect>` it runs when the stream ends), and the audio-streaming client (`start` with
//! `extra_headers`, `media`, `dtmf`, `playedStream` for each `checkpoint`, `clearedAudio`).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::{Journal, LineEvent, Served, basic_auth, text, xml_attr, xml_text};
use crate::telephony::media::Frame;
use crate::telephony::plivo::signature;

pub const AUTH_ID: &str = "MAPLIVOTESTACCOUNT01";
pub const AUTH_TOKEN: &str = "plivo-auth-token-for-tests";
pub const SIGNATURE_HEADER: &str = "X-Plivo-Signature-V3";
pub const NONCE_HEADER: &str = "X-Plivo-Signature-V3-Nonce";

/// One transfer request the fake accepted.
#[derive(Debug, Clone)]
pub struct Transfer {
    pub call: String,
    /// The JSON body (`legs`, `aleg_url`, `aleg_method`).
    pub body: Value,
    pub at: Instant,
}

impl Transfer {
    /// The caller's leg was sent to a document: Plivo's transfer.
    pub fn moves_the_caller(&self) -> bool {
        self.body["legs"] == "aleg" && self.aleg_url().is_some_and(|u| !u.is_empty())
    }

    pub fn aleg_url(&self) -> Option<&str> {
        self.body["aleg_url"].as_str()
    }
}

/// The fake transfer API. Clones share everything.
#[derive(Clone, Default)]
pub struct FakePlivo {
    pub transfers: Arc<Journal<Transfer>>,
}

impl FakePlivo {
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/Account/{id}/Call/{call}/", post(transfer))
            .with_state(self.clone())
    }

    pub async fn start(&self, port: u16) -> std::io::Result<Served> {
        super::serve(self.router(), port).await
    }

    pub fn transfers_for(&self, call: &str) -> Vec<Transfer> {
        self.transfers.matching(|t| t.call == call)
    }

    /// The first transfer of `call`, as soon as it arrives.
    pub async fn next_transfer(&self, call: &str) -> Transfer {
        self.transfers.wait(|t| t.call == call).await
    }
}

async fn transfer(
    State(f): State<FakePlivo>,
    Path((id, call)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let at = Instant::now();
    let want = basic_auth(AUTH_ID, AUTH_TOKEN);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(want.as_str())
        || id != AUTH_ID
    {
        return StatusCode::UNAUTHORIZED;
    }
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    f.transfers.push(Transfer { call, body, at });
    StatusCode::ACCEPTED
}

/// The settings (by their documented environment names) that point warmline's Plivo side at
/// a fake on `fake_base`.
pub fn server_env(fake_base: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PLIVO_AUTH_ID", AUTH_ID.into()),
        ("PLIVO_AUTH_TOKEN", AUTH_TOKEN.into()),
        ("WARMLINE_PLIVO_API_BASE", fake_base.into()),
    ]
}

/// A fresh nonce, as Plivo sends one per request.
pub fn nonce() -> String {
    let mut n = [0u8; 8];
    rand::fill(&mut n);
    u64::from_le_bytes(n).to_string()
}

/// The signature headers of a callback POSTing `params` to `url`, signed with `auth_token`.
pub fn sign(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    nonce: &str,
) -> [(&'static str, String); 2] {
    [
        (
            SIGNATURE_HEADER,
            signature::compute(auth_token, url, params, nonce),
        ),
        (NONCE_HEADER, nonce.to_string()),
    ]
}

/// What an answer (or `<Redirect>`) document told Plivo to do.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Answer {
    pub stream_url: Option<String>,
    /// `extraHeaders`, handed back in the stream's `start` as `extra_headers`.
    pub extra_headers: Option<String>,
    /// Where Plivo goes when the stream ends (`keepCallAlive` then `<Redirect>`).
    pub redirect: Option<String>,
    pub dial: bool,
    pub hangup: bool,
}

impl Answer {
    pub fn parse(xml: &str) -> Answer {
        Answer {
            stream_url: xml_text(xml, "Stream"),
            extra_headers: xml_attr(xml, "Stream", "extraHeaders"),
            redirect: xml_text(xml, "Redirect"),
            dial: xml.contains("<Dial"),
            hangup: xml.contains("<Hangup"),
        }
    }
}

fn epoch_ms() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
        .to_string()
}

pub fn start(seq: u64, call_uuid: &str, stream_id: &str, extra_headers: &str) -> Value {
    json!({"event": "start", "sequenceNumber": seq,
           "start": {"callId": call_uuid, "streamId": stream_id, "accountId": AUTH_ID,
                     "tracks": ["inbound"],
                     "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000}},
           "extra_headers": extra_headers})
}

pub fn media(seq: u64, stream_id: &str, chunk: u64, ulaw: &[u8]) -> Value {
    json!({"event": "media", "sequenceNumber": seq, "streamId": stream_id,
           "media": {"track": "inbound", "timestamp": epoch_ms(), "chunk": chunk,
                     "payload": BASE64.encode(ulaw)}})
}

pub fn dtmf(seq: u64, stream_id: &str, digit: char) -> Value {
    json!({"event": "dtmf", "sequenceNumber": seq, "streamId": stream_id,
           "dtmf": {"track": "inbound", "digit": digit.to_string(), "timestamp": epoch_ms()}})
}

pub fn played_stream(seq: u64, stream_id: &str, name: &str) -> Value {
    json!({"event": "playedStream", "sequenceNumber": seq, "streamId": stream_id, "name": name})
}

pub fn cleared_audio(seq: u64, stream_id: &str) -> Value {
    json!({"event": "clearedAudio", "sequenceNumber": seq, "streamId": stream_id})
}

/// What warmline sent on the stream.
pub fn read(text: &str) -> LineEvent {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return LineEvent::Other("not JSON".into());
    };
    match v["event"].as_str() {
        Some("playAudio") if v["media"]["contentType"] == "audio/x-mulaw" => {
            let payload = v["media"]["payload"].as_str().unwrap_or_default();
            LineEvent::Audio(BASE64.decode(payload).unwrap_or_default())
        }
        Some("playAudio") => LineEvent::Other(format!(
            "playAudio as {}",
            v["media"]["contentType"].as_str().unwrap_or("?")
        )),
        Some("checkpoint") => LineEvent::Mark(v["name"].as_str().unwrap_or_default().into()),
        Some("clearAudio") => LineEvent::Clear,
        other => LineEvent::Other(other.unwrap_or_default().to_string()),
    }
}

/// Plivo's side of one stream.
#[derive(Debug)]
pub struct MediaClient {
    pub call_uuid: String,
    pub stream_id: String,
    extra_headers: String,
    seq: u64,
    chunk: u64,
}

impl MediaClient {
    pub fn new(call_uuid: &str, extra_headers: &str) -> MediaClient {
        MediaClient {
            call_uuid: call_uuid.to_string(),
            stream_id: format!("st-{call_uuid}"),
            extra_headers: extra_headers.to_string(),
            seq: 0,
            chunk: 0,
        }
    }

    fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub fn hello(&mut self) -> Vec<Frame> {
        let seq = self.next();
        vec![text(start(
            seq,
            &self.call_uuid,
            &self.stream_id,
            &self.extra_headers,
        ))]
    }

    pub fn audio(&mut self, ulaw: &[u8]) -> Frame {
        let seq = self.next();
        self.chunk += 1;
        text(media(seq, &self.stream_id, self.chunk, ulaw))
    }

    pub fn dtmf(&mut self, digit: char) -> Frame {
        let seq = self.next();
        text(dtmf(seq, &self.stream_id, digit))
    }

    pub fn played(&mut self, name: &str) -> Frame {
        let seq = self.next();
        text(played_stream(seq, &self.stream_id, name))
    }

    pub fn cleared(&mut self) -> Frame {
        let seq = self.next();
        text(cleared_audio(seq, &self.stream_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_documents_are_read_as_plivo_reads_them() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?><Response><Stream bidirectional="true" keepCallAlive="true" audioTrack="inbound" contentType="audio/x-mulaw;rate=8000" extraHeaders="token=a&amp;b">ws://127.0.0.1:1/plivo/media</Stream><Redirect method="POST">http://127.0.0.1:1/plivo/stream-ended</Redirect></Response>"#;
        let a = Answer::parse(xml);
        assert_eq!(
            a.stream_url.as_deref(),
            Some("ws://127.0.0.1:1/plivo/media")
        );
        assert_eq!(a.extra_headers.as_deref(), Some("token=a&b"));
        assert_eq!(
            a.redirect.as_deref(),
            Some("http://127.0.0.1:1/plivo/stream-ended")
        );
        assert!(!a.dial);
        let full =
            Answer::parse("<Response><Speak>x</Speak><Dial><Number>+1</Number></Dial></Response>");
        assert!(full.dial && full.stream_url.is_none());
    }

    #[test]
    fn stream_events_both_ways() {
        let mut c = MediaClient::new("uuid-1", "token=t");
        let Frame::Text(start) = &c.hello()[0] else {
            panic!()
        };
        let start: Value = serde_json::from_str(start).unwrap();
        assert_eq!(
            (
                start["start"]["callId"].as_str(),
                start["extra_headers"].as_str()
            ),
            (Some("uuid-1"), Some("token=t"))
        );
        assert_eq!(
            read(r#"{"event":"checkpoint","streamId":"s","name":"p1"}"#),
            LineEvent::Mark("p1".into())
        );
        assert_eq!(
            read(r#"{"event":"clearAudio","streamId":"s"}"#),
            LineEvent::Clear
        );
        assert_eq!(
            read(
                r#"{"event":"playAudio","media":{"contentType":"audio/x-mulaw","sampleRate":8000,"payload":"/w=="}}"#
            ),
            LineEvent::Audio(vec![0xFF])
        );
        let t = Transfer {
            call: "c".into(),
            body: json!({"legs": "aleg", "aleg_url": "http://x/plivo/transfer/1"}),
            at: Instant::now(),
        };
        assert!(t.moves_the_caller());
    }
}
