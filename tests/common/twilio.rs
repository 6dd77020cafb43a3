//! The real server in this process (or another) with the library's fake Twilio
//! (`warmline::loadtest::fakes::twilio`: REST API, handoff webhook, signatures, Media Streams
//! messages), and a scripted Twilio caller that steps the media stream frame by frame at
//! 20 ms, echoing marks as Twilio echoes them and asserting on what warmline sends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use warmline::loadtest::fakes::twilio as fake;
use warmline::replay::fixture::read_ulaw;
use warmline::server;

pub use warmline::loadtest::fakes::twilio::Fake;

pub const ACCOUNT: &str = fake::ACCOUNT_SID;
pub const TOKEN: &str = fake::AUTH_TOKEN;
/// Bearer token for the caller-data routes.
pub const API_TOKEN: &str = "e2e-api-token-0123456789";

pub struct Harness {
    pub base: String,
    pub fake: Fake,
    pub fake_addr: SocketAddr,
    pub http: reqwest::Client,
    /// The in-process server's state; `None` when the server is another process.
    pub server: Option<Arc<server::AppState>>,
    /// The drain and stop switches, for tests that shut the server down.
    pub shutdown: Mutex<Option<server::Shutdown>>,
}

/// The library's fake Twilio REST API and handoff-webhook receiver (also SignalWire's LaML
/// API) on loopback, running until the test ends.
pub async fn start_fake() -> (Fake, SocketAddr) {
    let fake = Fake::default();
    let addr = fake.start(0).await.unwrap().detach();
    (fake, addr)
}

/// Settings for a server on `addr` that talks to the fake at `fake_addr`.
pub fn settings_for(addr: SocketAddr, fake_addr: SocketAddr) -> warmline::config::Settings {
    let mut s = super::settings();
    let data_dir = tempfile::tempdir().unwrap().keep();
    let mut env = vec![
        ("WARMLINE_LISTEN", addr.to_string()),
        ("WARMLINE_PUBLIC_URL", format!("http://{addr}")),
        ("WARMLINE_DATA_DIR", data_dir.display().to_string()),
        ("WARMLINE_VALIDATE_SIGNATURES", "true".to_string()),
        ("WARMLINE_API_TOKENS", API_TOKEN.to_string()),
    ];
    env.extend(fake::server_env(
        ACCOUNT,
        TOKEN,
        &format!("http://{fake_addr}"),
    ));
    super::apply_env(&mut s, &env);
    s
}

pub async fn start() -> Harness {
    start_with(|_| {}).await
}

/// The real server in this process, through the same bounded listener `serve` uses.
pub async fn start_with(configure: impl FnOnce(&mut warmline::config::Settings)) -> Harness {
    let (fake, fake_addr) = start_fake().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let mut s = settings_for(addr, fake_addr);
    configure(&mut s);
    let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let state = server::build_state(s, super::playbook(), drain_rx).unwrap();
    let _ = state.stt.set(super::stt());
    tokio::spawn(server::serve_listener(listener, state.clone(), stop_rx));
    Harness {
        base: format!("http://{addr}"),
        fake,
        fake_addr,
        http: reqwest::Client::new(),
        server: Some(state),
        shutdown: Mutex::new(Some(server::Shutdown {
            drain: drain_tx,
            stop: stop_tx,
        })),
    }
}

impl Harness {
    /// The in-process server's state.
    pub fn state(&self) -> &Arc<server::AppState> {
        self.server.as_ref().expect("an in-process server")
    }

    /// A harness for a server running as another process at `base`.
    pub fn remote(base: String, fake: Fake, fake_addr: SocketAddr) -> Harness {
        Harness {
            base,
            fake,
            fake_addr,
            // A provider opens a fresh connection per callback; a pooled one could be
            // closed under it by the server's connection limits mid-test.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            server: None,
            shutdown: Mutex::new(None),
        }
    }
}

pub fn sign(url: &str, params: &[(&str, &str)]) -> String {
    fake::sign(TOKEN, url, &warmline::loadtest::fakes::form(params))
}

impl Harness {
    pub async fn post_signed(&self, path: &str, params: &[(&str, &str)]) -> (u16, String) {
        let url = format!("{}{path}", self.base);
        let r = self
            .http
            .post(&url)
            .header(fake::SIGNATURE_HEADER, sign(&url, params))
            .form(params)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// A new call's webhook is answered with a `<Dial>` to a person, not a stream (the
    /// server is shutting down or full).
    pub async fn assert_newcomer_goes_to_a_person(&self, call_sid: &str) {
        let (status, twiml) = self
            .post_signed(
                "/twilio/voice",
                &[
                    ("CallSid", call_sid),
                    ("AccountSid", ACCOUNT),
                    ("From", "+1"),
                ],
            )
            .await;
        assert_eq!(status, 200);
        assert!(
            twiml.contains("<Dial>") && !twiml.contains("<Stream"),
            "{twiml}"
        );
    }

    /// The voice webhook, then a connected media stream that has sent `start`.
    pub async fn open_call(&self, call_sid: &str) -> Call {
        let (status, twiml) = self
            .post_signed(
                "/twilio/voice",
                &[
                    ("CallSid", call_sid),
                    ("AccountSid", ACCOUNT),
                    ("From", "+15551230000"),
                    ("To", "+15550009000"),
                ],
            )
            .await;
        assert_eq!(status, 200, "{twiml}");
        assert!(
            twiml.contains(&format!(
                "<Connect action=\"{}/twilio/stream-ended\"",
                self.base
            )),
            "{twiml}"
        );
        let url = attr(&twiml, "Stream", "url");
        assert_eq!(
            url,
            format!("{}/twilio/media", self.base.replace("http://", "ws://"))
        );
        let params = parameters(&twiml);
        assert_eq!(params.get("From").map(String::as_str), Some("+15551230000"));
        let (ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        let mut call = Call {
            ws,
            stream_sid: format!("MZ{call_sid}"),
            seq: 0,
            chunk: 0,
            received: Vec::new(),
        };
        call.send(fake::connected()).await;
        let start = fake::start(&call.stream_sid, ACCOUNT, call_sid, &params);
        call.send(start).await;
        call
    }

    /// The TwiML of each call update for `call_sid`, with its arrival time.
    pub fn updates_for(&self, call_sid: &str) -> Vec<(String, Instant)> {
        self.fake
            .updates_for(call_sid)
            .into_iter()
            .map(|u| (u.twiml().to_string(), u.at))
            .collect()
    }

    pub async fn wait_update(
        &self,
        call: &mut Call,
        call_sid: &str,
        limit: Duration,
    ) -> Option<(String, Instant)> {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if let Some(u) = self.updates_for(call_sid).into_iter().next() {
                return Some(u);
            }
            call.silence(5).await;
        }
        None
    }
}

pub fn attr(xml: &str, tag: &str, name: &str) -> String {
    let at = xml
        .find(&format!("<{tag} "))
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"));
    let rest = &xml[at..];
    let key = format!("{name}=\"");
    let s = rest
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} on <{tag}> in {xml}"))
        + key.len();
    let e = rest[s..].find('"').unwrap() + s;
    rest[s..e].replace("&amp;", "&")
}

pub fn parameters(xml: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = xml;
    while let Some(i) = rest.find("<Parameter ") {
        rest = &rest[i..];
        out.insert(
            attr(rest, "Parameter", "name"),
            attr(rest, "Parameter", "value"),
        );
        rest = &rest[1..];
    }
    out
}

pub fn text_of(xml: &str, tag: &str) -> String {
    let open = xml
        .find(&format!("<{tag}"))
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"));
    let s = xml[open..].find('>').unwrap() + open + 1;
    let e = xml[s..].find(&format!("</{tag}>")).unwrap() + s;
    xml[s..e].to_string()
}

/// A media WebSocket as Twilio's side holds it.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Call {
    pub ws: Ws,
    pub stream_sid: String,
    pub seq: u64,
    pub chunk: u64,
    /// Outbound events seen so far ("media", "mark", "clear").
    pub received: Vec<String>,
}

impl Call {
    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn send_raw(&mut self, text: &str) {
        let _ = self.ws.send(Message::Text(text.to_string().into())).await;
    }

    /// Reads whatever warmline sent, echoing marks as Twilio does once their audio played.
    pub async fn drain(&mut self) {
        while let Ok(Some(Ok(msg))) =
            tokio::time::timeout(Duration::from_millis(1), self.ws.next()).await
        {
            let Message::Text(t) = msg else { continue };
            let v: Value = serde_json::from_str(&t).unwrap();
            let ev = v["event"].as_str().unwrap_or("").to_string();
            assert_eq!(
                v["streamSid"].as_str(),
                Some(self.stream_sid.as_str()),
                "{t}"
            );
            if ev == "media" {
                let payload = v["media"]["payload"].as_str().unwrap();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(payload)
                    .unwrap();
                assert!(
                    !bytes.is_empty() && bytes.len() <= 160 * 10,
                    "media frame of {} bytes",
                    bytes.len()
                );
            }
            if ev == "mark" {
                let name = v["mark"]["name"].as_str().unwrap().to_string();
                self.seq += 1;
                let echo = fake::mark(self.seq, &self.stream_sid, &name);
                self.send(echo).await;
            }
            self.received.push(ev);
        }
    }

    /// Sends one frame and reads replies; false once warmline has closed the stream.
    pub async fn try_frame(&mut self, payload: &[u8]) -> bool {
        self.seq += 1;
        self.chunk += 1;
        let msg = fake::media(self.seq, &self.stream_sid, self.chunk, payload);
        if self
            .ws
            .send(Message::Text(msg.to_string().into()))
            .await
            .is_err()
        {
            return false;
        }
        loop {
            match tokio::time::timeout(Duration::from_millis(1), self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["event"] == "mark" {
                        self.seq += 1;
                        let name = v["mark"]["name"].as_str().unwrap_or_default();
                        let echo = fake::mark(self.seq, &self.stream_sid, name);
                        if self
                            .ws
                            .send(Message::Text(echo.to_string().into()))
                            .await
                            .is_err()
                        {
                            return false;
                        }
                    }
                    self.received
                        .push(v["event"].as_str().unwrap_or("").to_string());
                }
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return false,
                Ok(Some(Ok(_))) => {}
                Err(_) => break,
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        true
    }

    pub async fn frame(&mut self, payload: &[u8]) {
        self.seq += 1;
        self.chunk += 1;
        let msg = fake::media(self.seq, &self.stream_sid, self.chunk, payload);
        self.send(msg).await;
        self.drain().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    pub async fn silence(&mut self, frames: usize) {
        for _ in 0..frames {
            self.frame(&[0xFF; 160]).await;
        }
    }

    /// Speaks a fixture turn at real-time pace; returns when its last frame was sent.
    pub async fn speak(&mut self, fixture_audio: &str) -> Instant {
        let audio = read_ulaw(&super::root().join("fixtures/audio").join(fixture_audio)).unwrap();
        for f in audio.chunks(160) {
            self.frame(f).await;
        }
        Instant::now()
    }

    /// Waits (streaming silence) until a prompt has played and its mark came back.
    pub async fn until_prompt_done(&mut self, limit: Duration) {
        let until = Instant::now() + limit;
        let marks = self.received.iter().filter(|e| *e == "mark").count();
        while Instant::now() < until
            && self.received.iter().filter(|e| *e == "mark").count() == marks
        {
            self.silence(5).await;
        }
        assert!(
            Instant::now() < until,
            "no prompt finished within {limit:?}"
        );
    }

    pub async fn stop(&mut self, call_sid: &str) {
        self.seq += 1;
        let stop = fake::stop(self.seq, &self.stream_sid, ACCOUNT, call_sid);
        self.send(stop).await;
        let _ = self.ws.close(None).await;
    }
}

pub async fn get_json(h: &Harness, path: &str) -> (u16, Value) {
    let r = h
        .http
        .get(format!("{}{path}", h.base))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The Prometheus text of `/metrics`.
pub async fn metrics(h: &Harness) -> String {
    let r = h.http.get(format!("{}/metrics", h.base)).send().await;
    r.unwrap().text().await.unwrap()
}
