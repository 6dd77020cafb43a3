//! warmline with Telnyx on, talking to the library's fake Telnyx
//! (`warmline::loadtest::fakes::telnyx`: Call Control API, Ed25519 webhook signatures, the
//! streaming messages), and a media client that steps the stream frame by frame over a real
//! WebSocket, asserting on what warmline sends.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::SigningKey;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use super::twilio::{Harness, start_with};
use warmline::loadtest::fakes::telnyx as fake;
use warmline::replay::fixture::read_ulaw;

pub use warmline::loadtest::fakes::telnyx::{FakeTelnyx, event, initiated, signing_key, unix_now};

/// warmline with Telnyx on, its API pointed at a fresh fake.
pub async fn telnyx_line() -> (Harness, FakeTelnyx) {
    telnyx_line_with(|_| {}).await
}

pub async fn telnyx_line_with(
    configure: impl FnOnce(&mut warmline::config::Settings),
) -> (Harness, FakeTelnyx) {
    let fake = FakeTelnyx::default();
    let addr = fake.start(0).await.unwrap().detach();
    let h = start_with(|s| {
        super::apply_env(s, &fake::server_env(&format!("http://{addr}")));
        configure(s);
    })
    .await;
    (h, fake)
}

/// POSTs `body` to `/telnyx/call` signed with `key` at `timestamp`.
pub async fn post_signed(h: &Harness, body: &str, key: &SigningKey, timestamp: i64) -> u16 {
    let mut req = h
        .http
        .post(format!("{}/telnyx/call", h.base))
        .header("content-type", "application/json");
    for (name, value) in fake::sign(key, timestamp, body) {
        req = req.header(name, value);
    }
    req.body(body.to_string())
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
        s.send(fake::connected()).await;
        s.seq += 1;
        let start = fake::start(s.seq, call, client_state, "+15551230000", "+15550009000");
        s.send(start).await;
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
                    let name = v["mark"]["name"].as_str().unwrap_or_default().to_string();
                    self.seq += 1;
                    let echo = fake::mark(self.seq, &self.call, &name);
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
        let media = fake::media(self.seq, &self.call, self.chunk, ulaw);
        self.send(media).await;
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

    pub async fn dtmf(&mut self, digit: char) {
        self.seq += 1;
        let msg = fake::dtmf(self.seq, &self.call, digit);
        self.send(msg).await;
    }

    /// Telnyx ending the stream (after `streaming_stop`): `stop`, then the close.
    pub async fn stop(mut self) {
        self.seq += 1;
        let stop = fake::stop(self.seq, &self.call);
        self.send(stop).await;
        let _ = self.ws.close(None).await;
    }

    pub fn saw(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == event)
    }
}
