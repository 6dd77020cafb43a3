//! A fake Telnyx: its Call Control REST API (a local axum server that records every command
//! and checks the bearer key), its Ed25519 webhook signatures (a test keypair), and its media
//! client speaking the streaming protocol over a real WebSocket.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::SigningKey;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::twilio::{Harness, start_with};
use warmline::replay::fixture::read_ulaw;
use warmline::telephony::telnyx::signature;

pub const API_KEY: &str = "KEY0123456789TELNYXTEST";

/// The account's webhook signing key (Telnyx holds the private half; warmline the public).
pub fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[42u8; 32])
}

pub fn public_key_b64() -> String {
    BASE64.encode(signing_key().verifying_key().to_bytes())
}

/// One Call Control command as the fake API received it.
#[derive(Debug, Clone)]
pub struct Command {
    pub call: String,
    pub action: String,
    pub body: Value,
}

#[derive(Clone, Default)]
pub struct FakeTelnyx {
    pub commands: Arc<Mutex<Vec<Command>>>,
    /// How many of the next `transfer` commands to refuse (422, as for a bad destination).
    pub refuse_transfers: Arc<Mutex<u32>>,
}

async fn action(
    State(f): State<FakeTelnyx>,
    Path((call, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, Json<Value>) {
    let want = format!("Bearer {API_KEY}");
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(want.as_str()) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"errors": []})));
    }
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let refuse = action == "transfer" && {
        let mut left = f.refuse_transfers.lock().unwrap();
        let refuse = *left > 0;
        *left = left.saturating_sub(1);
        refuse
    };
    f.commands
        .lock()
        .unwrap()
        .push(Command { call, action, body });
    if refuse {
        let err = json!({"errors": [{"code": "90046", "title": "Invalid destination"}]});
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(err));
    }
    (StatusCode::OK, Json(json!({"data": {"result": "ok"}})))
}

impl FakeTelnyx {
    pub fn commands_for(&self, call: &str) -> Vec<Command> {
        self.commands
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.call == call)
            .cloned()
            .collect()
    }

    pub fn actions_for(&self, call: &str) -> Vec<String> {
        self.commands_for(call)
            .into_iter()
            .map(|c| c.action)
            .collect()
    }

    /// The first `action` command for `call`, waiting up to `limit` for it.
    pub async fn wait_for(&self, call: &str, action: &str, limit: Duration) -> Option<Command> {
        let until = Instant::now() + limit;
        loop {
            if let Some(c) = self
                .commands_for(call)
                .into_iter()
                .find(|c| c.action == action)
            {
                return Some(c);
            }
            if Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// warmline with Telnyx on, its API pointed at a fresh fake.
pub async fn telnyx_line() -> (Harness, FakeTelnyx) {
    telnyx_line_with(|_| {}).await
}

pub async fn telnyx_line_with(
    configure: impl FnOnce(&mut warmline::config::Settings),
) -> (Harness, FakeTelnyx) {
    let fake = FakeTelnyx::default();
    let app = axum::Router::new()
        .route("/v2/calls/{call}/actions/{action}", post(action))
        .with_state(fake.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let h = start_with(|s| {
        s.providers.telnyx.api_key = Some(API_KEY.into());
        s.providers.telnyx.public_key = Some(public_key_b64());
        s.providers.telnyx.api_base = format!("http://{addr}");
        configure(s);
    })
    .await;
    (h, fake)
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A Call Control webhook body as Telnyx sends it.
pub fn event(event_type: &str, payload: Value) -> String {
    json!({
        "data": {
            "event_type": event_type,
            "id": "0ccc7b54-4df3-4bca-a65a-3da1ecc777f0",
            "occurred_at": "2026-12-02T11:00:00.000000Z",
            "payload": payload,
            "record_type": "event",
        },
        "meta": {"attempt": 1, "delivered_to": "https://line.example/telnyx/call"},
    })
    .to_string()
}

/// POSTs `body` to `/telnyx/call` signed with `key` at `timestamp`.
pub async fn post_signed(h: &Harness, body: &str, key: &SigningKey, timestamp: i64) -> u16 {
    let ts = timestamp.to_string();
    h.http
        .post(format!("{}/telnyx/call", h.base))
        .header("content-type", "application/json")
        .header("telnyx-timestamp", &ts)
        .header(
            "telnyx-signature-ed25519",
            signature::sign(key, &ts, body.as_bytes()),
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A correctly signed event, now.
pub async fn post_event(h: &Harness, event_type: &str, payload: Value) -> u16 {
    post_signed(h, &event(event_type, payload), &signing_key(), unix_now()).await
}

pub fn initiated(call: &str) -> Value {
    json!({
        "call_control_id": call,
        "call_leg_id": "b0e6224c-c81c-11f0-afbb-02420aef93a0",
        "call_session_id": "b0e6141e-c81c-11f0-abac-02420aef93a0",
        "client_state": null,
        "connection_id": "2811212257810187875",
        "direction": "incoming",
        "from": "+15551230000",
        "to": "+15550009000",
        "state": "parked",
    })
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Telnyx's media client for one call.
pub struct Stream {
    ws: Ws,
    pub call: String,
    /// What warmline sent: "media", "mark", "clear", and "closed" once it closed the socket.
    pub events: Vec<String>,
    seq: u64,
    chunk: u64,
}

impl Stream {
    /// The call arrives (signed `call.initiated`), warmline answers with a stream, and the
    /// media client connects to the `stream_url` with the `client_state` it was given.
    pub async fn open(h: &Harness, fake: &FakeTelnyx, call: &str) -> Stream {
        assert_eq!(post_event(h, "call.initiated", initiated(call)).await, 200);
        let answer = fake
            .wait_for(call, "answer", Duration::from_secs(5))
            .await
            .expect("warmline answers the call");
        assert_eq!(
            answer.body["stream_bidirectional_mode"], "rtp",
            "{answer:?}"
        );
        assert_eq!(answer.body["stream_bidirectional_codec"], "PCMU");
        let url = answer.body["stream_url"].as_str().unwrap().to_string();
        assert_eq!(
            url,
            format!("{}/telnyx/media", h.base.replace("http://", "ws://"))
        );
        let state = answer.body["client_state"].as_str().unwrap().to_string();
        Stream::connect(&url, call, &state).await
    }

    pub async fn connect(url: &str, call: &str, client_state: &str) -> Stream {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut s = Stream {
            ws,
            call: call.to_string(),
            events: Vec::new(),
            seq: 0,
            chunk: 0,
        };
        s.send(json!({"event": "connected", "version": "1.0.0"}))
            .await;
        s.seq += 1;
        s.send(
            json!({"event": "start", "sequence_number": s.seq.to_string(),
            "stream_id": format!("st-{call}"),
            "start": {"user_id": "3E6F995F-85F7-4705-9741-53B116D28237", "call_control_id": call,
                      "call_session_id": "ff55a038", "from": "+15551230000", "to": "+15550009000",
                      "client_state": client_state, "custom_parameters": {},
                      "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1}}}),
        )
        .await;
        s
    }

    pub async fn send(&mut self, v: Value) {
        let _ = self.ws.send(Message::Text(v.to_string().into())).await;
    }

    /// Reads what warmline sent; echoes each mark, as Telnyx does once its audio played.
    pub async fn drain(&mut self) {
        loop {
            let msg = match tokio::time::timeout(Duration::from_millis(1), self.ws.next()).await {
                Err(_) => return,
                Ok(Some(Ok(m))) => m,
                Ok(_) => {
                    self.events.push("closed".into());
                    return;
                }
            };
            let t = match msg {
                Message::Text(t) => t,
                Message::Close(_) => {
                    self.events.push("closed".into());
                    return;
                }
                _ => continue,
            };
            let v: Value = serde_json::from_str(&t).unwrap();
            let ev = v["event"].as_str().unwrap_or("").to_string();
            match ev.as_str() {
                "media" => {
                    let bytes = BASE64
                        .decode(v["media"]["payload"].as_str().unwrap())
                        .unwrap();
                    assert!(
                        !bytes.is_empty() && bytes.len() <= 1600,
                        "{} bytes",
                        bytes.len()
                    );
                }
                "mark" => {
                    let name = v["mark"]["name"].clone();
                    self.seq += 1;
                    let echo = json!({"event": "mark", "sequence_number": self.seq.to_string(),
                                      "stream_id": format!("st-{}", self.call), "mark": {"name": name}});
                    self.send(echo).await;
                }
                "clear" => {}
                other => panic!("unexpected event {other}: {t}"),
            }
            self.events.push(ev);
        }
    }

    /// One 20 ms frame of caller audio, then whatever warmline sent back.
    pub async fn frame(&mut self, ulaw: &[u8]) {
        self.seq += 1;
        self.chunk += 1;
        self.send(
            json!({"event": "media", "sequence_number": self.seq.to_string(),
            "stream_id": format!("st-{}", self.call),
            "media": {"track": "inbound", "chunk": self.chunk.to_string(),
                      "timestamp": (self.chunk * 20).to_string(), "payload": BASE64.encode(ulaw)}}),
        )
        .await;
        self.drain().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    pub async fn silence(&mut self, n: usize) {
        for _ in 0..n {
            self.frame(&[0xFF; 160]).await;
        }
    }

    pub async fn speak(&mut self, fixture: &str) {
        let audio = read_ulaw(&super::root().join("fixtures/audio").join(fixture)).unwrap();
        for f in audio.chunks(160) {
            self.frame(f).await;
        }
    }

    pub async fn dtmf(&mut self, digit: &str) {
        self.seq += 1;
        self.send(
            json!({"event": "dtmf", "sequence_number": self.seq.to_string(),
            "stream_id": format!("st-{}", self.call), "dtmf": {"digit": digit}}),
        )
        .await;
    }

    /// Telnyx ending the stream (after `streaming_stop`): `stop`, then the close.
    pub async fn stop(mut self) {
        self.seq += 1;
        self.send(
            json!({"event": "stop", "sequence_number": self.seq.to_string(),
            "stream_id": format!("st-{}", self.call),
            "stop": {"user_id": "3E6F995F", "call_control_id": self.call}}),
        )
        .await;
        let _ = self.ws.close(None).await;
    }

    pub fn saw(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == event)
    }
}
