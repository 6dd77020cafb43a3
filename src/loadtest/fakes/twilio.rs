//! A fake Twilio: the REST call-update endpoint (basic auth checked, every update recorded
//! with its arrival time) and the handoff webhook; webhooks signed with the auth token in
//! `X-Twilio-Signature`; the TwiML answer read as Twilio reads it; and the Media Streams
//! client (`connected`, `start` with the `<Parameter>`s, `media`, `dtmf`, `mark` echoes,
//! `stop`).
//!
//! SignalWire's LaML API is Twilio's under `/api/laml`, so the same fake serves it (see
//! [`super::signalwire`] for its credentials and signature header).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::{LineEvent, Served, basic_auth, lock, text, xml_attr};
use crate::telephony::media::Frame;
use crate::telephony::twilio::signature;

/// The account the fakes accept by default (and the load generator's in-process server uses).
pub const ACCOUNT_SID: &str = "ACtest0000000000000000000000000000";
pub const AUTH_TOKEN: &str = "test-auth-token";
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// The call-update routes: Twilio's, and SignalWire's LaML mirror of it.
pub const UPDATE_ROUTE: &str = "/2010-04-01/Accounts/{acct}/Calls/{call}";
pub const LAML_UPDATE_ROUTE: &str = "/api/laml/2010-04-01/Accounts/{acct}/Calls/{call}";

/// One accepted call update.
#[derive(Debug, Clone)]
pub struct Update {
    pub call: String,
    pub form: HashMap<String, String>,
    /// Stamped before anything else: the moment the transfer reached "Twilio".
    pub at: Instant,
}

impl Update {
    /// The TwiML Twilio's transfer carries (empty for a `Url=` update).
    pub fn twiml(&self) -> &str {
        self.form.get("Twiml").map_or("", String::as_str)
    }

    /// The document URL of a `Url=` update (SignalWire's transfer).
    pub fn url(&self) -> &str {
        self.form.get("Url").map_or("", String::as_str)
    }
}

/// What the fake saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub updates: Vec<Update>,
    /// Call-update attempts refused with 503 on purpose (`fail_first`).
    pub refused: u32,
    pub bad_auth: u32,
    /// Cards the handoff webhook received.
    pub cards: Vec<Value>,
}

/// The fake REST API and handoff webhook. Clones share everything.
#[derive(Clone)]
pub struct Fake {
    pub seen: Arc<Mutex<Seen>>,
    /// Answer this many call updates with 503 first (the client must retry).
    pub fail_first: Arc<Mutex<u32>>,
    /// Hold every call update this long before answering (a hung REST edge).
    pub hang: Arc<Mutex<Option<Duration>>>,
    /// Hold the handoff webhook this long (a hung CRM).
    pub hang_handoff: Arc<Mutex<Option<Duration>>>,
    /// (account, expected `Authorization`) pairs.
    accounts: Arc<Vec<(String, String)>>,
    changed: Arc<Notify>,
}

impl Default for Fake {
    /// Twilio's test account and SignalWire's test project.
    fn default() -> Fake {
        Fake::new(&[
            (ACCOUNT_SID, AUTH_TOKEN),
            (super::signalwire::PROJECT, super::signalwire::API_TOKEN),
        ])
    }
}

impl Fake {
    /// A fake accepting these (account, token) pairs' basic auth.
    pub fn new(accounts: &[(&str, &str)]) -> Fake {
        Fake {
            seen: Arc::default(),
            fail_first: Arc::default(),
            hang: Arc::default(),
            hang_handoff: Arc::default(),
            accounts: Arc::new(
                accounts
                    .iter()
                    .map(|(a, t)| (a.to_string(), basic_auth(a, t)))
                    .collect(),
            ),
            changed: Arc::new(Notify::new()),
        }
    }

    /// The call-update routes and `POST /handoff`.
    pub fn router(&self) -> Router {
        Router::new()
            .route(UPDATE_ROUTE, post(update))
            .route(LAML_UPDATE_ROUTE, post(update))
            .route("/handoff", post(handoff))
            .with_state(self.clone())
    }

    /// Serves [`Fake::router`] on 127.0.0.1:`port`.
    pub async fn start(&self, port: u16) -> std::io::Result<Served> {
        super::serve(self.router(), port).await
    }

    pub fn updates_for(&self, call: &str) -> Vec<Update> {
        lock(&self.seen)
            .updates
            .iter()
            .filter(|u| u.call == call)
            .cloned()
            .collect()
    }

    /// The first update for `call`, as soon as it arrives.
    pub async fn next_update(&self, call: &str) -> Update {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(u) = self.updates_for(call).into_iter().next() {
                return u;
            }
            notified.await;
        }
    }

    pub fn cards(&self) -> Vec<Value> {
        lock(&self.seen).cards.clone()
    }

    /// The last card the webhook received for `call`.
    pub fn card(&self, call: &str) -> Option<Value> {
        lock(&self.seen)
            .cards
            .iter()
            .rev()
            .find(|c| c["call_sid"] == call)
            .cloned()
    }
}

async fn update(
    State(f): State<Fake>,
    Path((acct, call)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, Json<Value>) {
    let at = Instant::now();
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    let known = f
        .accounts
        .iter()
        .any(|(a, want)| *a == acct && auth == Some(want.as_str()));
    if !known {
        lock(&f.seen).bad_auth += 1;
        return (StatusCode::UNAUTHORIZED, Json(json!({"code": 20003})));
    }
    let hang = *lock(&f.hang);
    if let Some(d) = hang {
        tokio::time::sleep(d).await;
    }
    {
        let mut left = lock(&f.fail_first);
        if *left > 0 {
            *left -= 1;
            lock(&f.seen).refused += 1;
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"code": 20500})),
            );
        }
    }
    let call = call.trim_end_matches(".json").to_string();
    let form = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    lock(&f.seen).updates.push(Update {
        call: call.clone(),
        form,
        at,
    });
    f.changed.notify_waiters();
    (
        StatusCode::OK,
        Json(json!({"sid": call, "status": "in-progress"})),
    )
}

async fn handoff(State(f): State<Fake>, Json(card): Json<Value>) -> StatusCode {
    let hang = *lock(&f.hang_handoff);
    if let Some(d) = hang {
        tokio::time::sleep(d).await;
    }
    lock(&f.seen).cards.push(card);
    f.changed.notify_waiters();
    StatusCode::OK
}

/// The settings (by their documented environment names) that point warmline's Twilio side
/// and its handoff webhook at a fake on `fake_base`.
pub fn server_env(account: &str, token: &str, fake_base: &str) -> Vec<(&'static str, String)> {
    vec![
        ("TWILIO_ACCOUNT_SID", account.into()),
        ("TWILIO_AUTH_TOKEN", token.into()),
        ("WARMLINE_TWILIO_API_BASE", fake_base.into()),
        ("WARMLINE_HANDOFF_WEBHOOK", format!("{fake_base}/handoff")),
    ]
}

/// `X-Twilio-Signature` for a POST of `params` to `url`, signed with `auth_token`.
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    signature::compute(auth_token, url, params)
}

/// What a voice webhook (or stream-ended callback) answered, as Twilio reads the TwiML.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct VoiceAnswer {
    pub stream_url: Option<String>,
    /// `<Connect action>`: where Twilio asks what next when the stream ends.
    pub action: Option<String>,
    /// The `<Stream>`'s `<Parameter>`s, in order.
    pub params: Vec<(String, String)>,
    /// A `<Dial>`: the caller goes to a person.
    pub dial: bool,
    pub hangup: bool,
}

impl VoiceAnswer {
    pub fn parse(xml: &str) -> VoiceAnswer {
        let mut params = Vec::new();
        let mut rest = xml;
        while let Some(i) = rest.find("<Parameter ") {
            rest = &rest[i..];
            if let (Some(k), Some(v)) = (
                xml_attr(rest, "Parameter", "name"),
                xml_attr(rest, "Parameter", "value"),
            ) {
                params.push((k, v));
            }
            rest = &rest[1..];
        }
        VoiceAnswer {
            stream_url: xml_attr(xml, "Stream", "url"),
            action: xml_attr(xml, "Connect", "action"),
            params,
            dial: xml.contains("<Dial"),
            hangup: xml.contains("<Hangup"),
        }
    }
}

// Media Streams messages from Twilio's side. Sequence numbers and chunks are strings, as
// Twilio sends them.

pub fn connected() -> Value {
    json!({"event": "connected", "protocol": "Call", "version": "1.0.0"})
}

pub fn start<'a>(
    stream_sid: &str,
    account: &str,
    call_sid: &str,
    params: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Value {
    let custom: serde_json::Map<String, Value> = params
        .into_iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({
        "event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
        "start": {"streamSid": stream_sid, "accountSid": account, "callSid": call_sid,
                  "tracks": ["inbound"], "customParameters": custom,
                  "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}
    })
}

pub fn media(seq: u64, stream_sid: &str, chunk: u64, ulaw: &[u8]) -> Value {
    json!({"event": "media", "sequenceNumber": seq.to_string(), "streamSid": stream_sid,
           "media": {"track": "inbound", "chunk": chunk.to_string(),
                     "timestamp": (chunk * 20).to_string(), "payload": BASE64.encode(ulaw)}})
}

pub fn mark(seq: u64, stream_sid: &str, name: &str) -> Value {
    json!({"event": "mark", "sequenceNumber": seq.to_string(), "streamSid": stream_sid,
           "mark": {"name": name}})
}

pub fn dtmf(seq: u64, stream_sid: &str, digit: char) -> Value {
    json!({"event": "dtmf", "sequenceNumber": seq.to_string(), "streamSid": stream_sid,
           "dtmf": {"track": "inbound_track", "digit": digit.to_string()}})
}

pub fn stop(seq: u64, stream_sid: &str, account: &str, call_sid: &str) -> Value {
    json!({"event": "stop", "sequenceNumber": seq.to_string(), "streamSid": stream_sid,
           "stop": {"accountSid": account, "callSid": call_sid}})
}

/// What warmline sent on the media stream.
pub fn read(text: &str) -> LineEvent {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return LineEvent::Other("not JSON".into());
    };
    match v["event"].as_str() {
        Some("media") => {
            let payload = v["media"]["payload"].as_str().unwrap_or_default();
            LineEvent::Audio(BASE64.decode(payload).unwrap_or_default())
        }
        Some("mark") => LineEvent::Mark(v["mark"]["name"].as_str().unwrap_or_default().into()),
        Some("clear") => LineEvent::Clear,
        other => LineEvent::Other(other.unwrap_or_default().to_string()),
    }
}

/// Twilio's side of one media stream.
#[derive(Debug)]
pub struct MediaClient {
    pub stream_sid: String,
    pub account: String,
    pub call_sid: String,
    /// The `<Parameter>`s of the answer, returned in `start.customParameters`.
    pub params: Vec<(String, String)>,
    seq: u64,
    chunk: u64,
}

impl MediaClient {
    pub fn new(account: &str, call_sid: &str, params: Vec<(String, String)>) -> MediaClient {
        let tail = call_sid.strip_prefix("CA").unwrap_or(call_sid);
        MediaClient {
            stream_sid: format!("MZ{tail}"),
            account: account.to_string(),
            call_sid: call_sid.to_string(),
            params,
            seq: 1,
            chunk: 0,
        }
    }

    fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub fn hello(&mut self) -> Vec<Frame> {
        let start = start(
            &self.stream_sid,
            &self.account,
            &self.call_sid,
            self.params.iter().map(|(k, v)| (k, v)),
        );
        vec![text(connected()), text(start)]
    }

    pub fn audio(&mut self, ulaw: &[u8]) -> Frame {
        let seq = self.next();
        self.chunk += 1;
        text(media(seq, &self.stream_sid, self.chunk, ulaw))
    }

    pub fn dtmf(&mut self, digit: char) -> Frame {
        let seq = self.next();
        text(dtmf(seq, &self.stream_sid, digit))
    }

    pub fn played(&mut self, name: &str) -> Frame {
        let seq = self.next();
        text(mark(seq, &self.stream_sid, name))
    }

    pub fn stop(&mut self) -> Frame {
        let seq = self.next();
        text(stop(seq, &self.stream_sid, &self.account, &self.call_sid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voice_answer_yields_stream_action_and_parameters() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect action="http://127.0.0.1:1/twilio/stream-ended"><Stream url="ws://127.0.0.1:1/twilio/media"><Parameter name="token" value="a&amp;b"/><Parameter name="From" value="+1555"/></Stream></Connect></Response>"#;
        let a = VoiceAnswer::parse(xml);
        assert_eq!(
            a.stream_url.as_deref(),
            Some("ws://127.0.0.1:1/twilio/media")
        );
        assert_eq!(
            a.action.as_deref(),
            Some("http://127.0.0.1:1/twilio/stream-ended")
        );
        assert_eq!(
            a.params,
            super::super::form(&[("token", "a&b"), ("From", "+1555")])
        );
        assert!(!a.dial && !a.hangup);
        let dial =
            VoiceAnswer::parse("<Response><Say>x</Say><Dial><Number>+1</Number></Dial></Response>");
        assert!(dial.dial && dial.stream_url.is_none());
    }

    #[test]
    fn the_media_client_speaks_as_twilio_and_reads_what_warmline_sends() {
        let mut c = MediaClient::new(ACCOUNT_SID, "CA01", vec![("token".into(), "t".into())]);
        let hello = c.hello();
        let Frame::Text(start) = &hello[1] else {
            panic!()
        };
        let start: Value = serde_json::from_str(start).unwrap();
        assert_eq!(start["start"]["customParameters"]["token"], "t");
        assert_eq!(start["streamSid"], "MZ01");
        let Frame::Text(m) = c.audio(&[0xFF; 160]) else {
            panic!()
        };
        let m: Value = serde_json::from_str(&m).unwrap();
        assert_eq!(
            (m["sequenceNumber"].as_str(), m["media"]["chunk"].as_str()),
            (Some("2"), Some("1"))
        );
        assert_eq!(
            read(r#"{"event":"mark","streamSid":"MZ01","mark":{"name":"p1"}}"#),
            LineEvent::Mark("p1".into())
        );
        assert_eq!(
            read(r#"{"event":"clear","streamSid":"MZ01"}"#),
            LineEvent::Clear
        );
        assert_eq!(
            read(r#"{"event":"media","media":{"payload":"/w=="}}"#),
            LineEvent::Audio(vec![0xFF])
        );
    }
}
