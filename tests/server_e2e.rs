//! The real server, driven exactly as Twilio drives it, over real HTTP and WebSockets on
//! 127.0.0.1: a signed voice webhook, the media stream paced at 20 ms, marks echoed, a fake
//! Twilio REST API that checks basic auth and captures the transfer TwiML, and a webhook
//! receiver for the context card.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use warmline::replay::fixture::read_ulaw;
use warmline::server;
use warmline::telephony::twilio::signature;

const ACCOUNT: &str = "ACtest0000000000000000000000000000";
const TOKEN: &str = "test-auth-token";
/// Bearer token for the caller-data routes.
const API_TOKEN: &str = "e2e-api-token-0123456789";

/// What the fake Twilio saw.
#[derive(Default)]
struct Seen {
    /// (call sid, Twiml, when) of accepted call updates.
    updates: Vec<(String, String, Instant)>,
    /// Call-update attempts refused with 503 on purpose.
    refused: u32,
    bad_auth: u32,
    cards: Vec<Value>,
}

#[derive(Clone)]
struct Fake {
    seen: Arc<Mutex<Seen>>,
    /// Answer this many call updates with 503 first (the client must retry).
    fail_first: Arc<Mutex<u32>>,
}

async fn fake_update(
    State(f): State<Fake>,
    Path((acct, call)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, Json<Value>) {
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT}:{TOKEN}"))
    );
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != want || acct != ACCOUNT {
        f.seen.lock().unwrap().bad_auth += 1;
        return (StatusCode::UNAUTHORIZED, Json(json!({"code": 20003})));
    }
    {
        let mut left = f.fail_first.lock().unwrap();
        if *left > 0 {
            *left -= 1;
            f.seen.lock().unwrap().refused += 1;
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"code": 20500})),
            );
        }
    }
    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let call = call.trim_end_matches(".json").to_string();
    let twiml = form.get("Twiml").cloned().unwrap_or_default();
    f.seen
        .lock()
        .unwrap()
        .updates
        .push((call.clone(), twiml, Instant::now()));
    (
        StatusCode::OK,
        Json(json!({"sid": call, "status": "in-progress"})),
    )
}

async fn fake_handoff(State(f): State<Fake>, Json(card): Json<Value>) -> StatusCode {
    f.seen.lock().unwrap().cards.push(card);
    StatusCode::OK
}

struct Harness {
    base: String,
    fake: Fake,
    http: reqwest::Client,
    state: Arc<server::AppState>,
}

async fn start() -> Harness {
    let fake = Fake {
        seen: Arc::default(),
        fail_first: Arc::default(),
    };
    let fake_app = Router::new()
        .route(
            "/2010-04-01/Accounts/{acct}/Calls/{call}",
            post(fake_update),
        )
        .route("/handoff", post(fake_handoff))
        .with_state(fake.clone());
    let fake_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake_addr = fake_listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(fake_listener, fake_app).await.unwrap() });

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let data = tempfile::tempdir().unwrap().keep();
    let mut s = common::settings();
    s.listen = addr;
    s.public_url = format!("http://{addr}");
    s.data_dir = data;
    s.twilio_account_sid = Some(ACCOUNT.into());
    s.twilio_auth_token = Some(TOKEN.into());
    s.twilio_api_base = format!("http://{fake_addr}");
    s.handoff_webhook = Some(format!("http://{fake_addr}/handoff"));
    s.validate_signatures = true;
    s.api_tokens = vec![API_TOKEN.into()];
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    std::mem::forget(_stop_tx);
    let state = server::build_state(s, common::playbook(), stop_rx).unwrap();
    let _ = state.stt.set(common::stt());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    std::mem::forget(stop_tx);
    tokio::spawn(server::serve_listener(listener, state.clone(), stop_rx));
    Harness {
        base: format!("http://{addr}"),
        fake,
        http: reqwest::Client::new(),
        state,
    }
}

fn sign(url: &str, params: &[(&str, &str)]) -> String {
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    signature::compute(TOKEN, url, &owned)
}

impl Harness {
    async fn post_signed(&self, path: &str, params: &[(&str, &str)]) -> (u16, String) {
        let url = format!("{}{path}", self.base);
        let r = self
            .http
            .post(&url)
            .header("X-Twilio-Signature", sign(&url, params))
            .form(params)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// The voice webhook, then a connected media stream that has sent `start`.
    async fn open_call(&self, call_sid: &str) -> Call {
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
        call.send(json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
            .await;
        let start = json!({
            "event": "start", "sequenceNumber": "1", "streamSid": call.stream_sid,
            "start": {"streamSid": call.stream_sid, "accountSid": ACCOUNT, "callSid": call_sid,
                      "tracks": ["inbound"], "customParameters": params,
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}
        });
        call.send(start).await;
        call
    }

    fn updates_for(&self, call_sid: &str) -> Vec<(String, Instant)> {
        let seen = self.fake.seen.lock().unwrap();
        seen.updates
            .iter()
            .filter(|u| u.0 == call_sid)
            .map(|u| (u.1.clone(), u.2))
            .collect()
    }

    async fn wait_update(
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

fn attr(xml: &str, tag: &str, name: &str) -> String {
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

fn parameters(xml: &str) -> HashMap<String, String> {
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

fn text_of(xml: &str, tag: &str) -> String {
    let open = xml
        .find(&format!("<{tag}"))
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"));
    let s = xml[open..].find('>').unwrap() + open + 1;
    let e = xml[s..].find(&format!("</{tag}>")).unwrap() + s;
    xml[s..e].to_string()
}

struct Call {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    stream_sid: String,
    seq: u64,
    chunk: u64,
    /// Outbound events seen so far ("media", "mark", "clear").
    received: Vec<String>,
}

impl Call {
    async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    async fn send_raw(&mut self, text: &str) {
        let _ = self.ws.send(Message::Text(text.to_string().into())).await;
    }

    /// Reads whatever warmline sent, echoing marks as Twilio does once their audio played.
    async fn drain(&mut self) {
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
                let echo = json!({"event": "mark", "sequenceNumber": self.seq.to_string(),
                                  "streamSid": self.stream_sid, "mark": {"name": name}});
                self.send(echo).await;
            }
            self.received.push(ev);
        }
    }

    /// Sends one frame and reads replies; false once warmline has closed the stream.
    async fn try_frame(&mut self, payload: &[u8]) -> bool {
        self.seq += 1;
        self.chunk += 1;
        let msg = json!({"event": "media", "sequenceNumber": self.seq.to_string(), "streamSid": self.stream_sid,
                         "media": {"track": "inbound", "chunk": self.chunk.to_string(),
                                   "timestamp": (self.chunk * 20).to_string(),
                                   "payload": base64::engine::general_purpose::STANDARD.encode(payload)}});
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
                        let echo = json!({"event": "mark", "streamSid": self.stream_sid, "mark": v["mark"]});
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

    async fn frame(&mut self, payload: &[u8]) {
        self.seq += 1;
        self.chunk += 1;
        let msg = json!({"event": "media", "sequenceNumber": self.seq.to_string(), "streamSid": self.stream_sid,
                         "media": {"track": "inbound", "chunk": self.chunk.to_string(),
                                   "timestamp": (self.chunk * 20).to_string(),
                                   "payload": base64::engine::general_purpose::STANDARD.encode(payload)}});
        self.send(msg).await;
        self.drain().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    async fn silence(&mut self, frames: usize) {
        for _ in 0..frames {
            self.frame(&[0xFF; 160]).await;
        }
    }

    /// Speaks a fixture turn at real-time pace; returns when its last frame was sent.
    async fn speak(&mut self, fixture_audio: &str) -> Instant {
        let audio = read_ulaw(&common::root().join("fixtures/audio").join(fixture_audio)).unwrap();
        for f in audio.chunks(160) {
            self.frame(f).await;
        }
        Instant::now()
    }

    /// Waits (streaming silence) until a prompt has played and its mark came back.
    async fn until_prompt_done(&mut self, limit: Duration) {
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

    async fn stop(&mut self, call_sid: &str) {
        self.seq += 1;
        let stop = json!({"event": "stop", "sequenceNumber": self.seq.to_string(), "streamSid": self.stream_sid,
                          "stop": {"accountSid": ACCOUNT, "callSid": call_sid}});
        self.send(stop).await;
        let _ = self.ws.close(None).await;
    }
}

async fn get_json(h: &Harness, path: &str) -> (u16, Value) {
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
async fn metrics(h: &Harness) -> String {
    let r = h.http.get(format!("{}/metrics", h.base)).send().await;
    r.unwrap().text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_call_is_transferred_with_card_whisper_and_record() {
    let h = start().await;
    *h.fake.fail_first.lock().unwrap() = 2; // the REST API refuses twice: warmline must retry
    let sid = "CAe2ebilling000000000000000000001";
    let mut call = h.open_call(sid).await;
    call.until_prompt_done(Duration::from_secs(15)).await;
    call.silence(35).await;
    let spoke_until = call.speak("billing_refund_joe/0.wav").await;
    let (twiml, at) = h
        .wait_update(&mut call, sid, Duration::from_secs(20))
        .await
        .expect("a transfer request");
    let latency = at.duration_since(spoke_until);
    println!("end of caller audio → transfer request: {latency:?}");

    // The caller hears where they are going; the agent's leg first fetches the whisper.
    let say = text_of(&twiml, "Say");
    assert!(
        say.contains("billing") && say.contains("account number"),
        "{say}"
    );
    assert_eq!(text_of(&twiml, "Number"), "+15550100001", "{twiml}");
    let whisper_url = attr(&twiml, "Number", "url");
    assert!(
        whisper_url.starts_with(&format!("{}/twilio/agent-whisper/", h.base)),
        "{whisper_url}"
    );
    assert_eq!(h.fake.seen.lock().unwrap().refused, 2);
    assert_eq!(h.fake.seen.lock().unwrap().bad_auth, 0);

    call.stop(sid).await;

    let path = whisper_url.trim_start_matches(&h.base).to_string();
    let (status, whisper) = h
        .post_signed(&path, &[("CallSid", "CAchild"), ("ParentCallSid", sid)])
        .await;
    assert_eq!(status, 200, "{whisper}");
    let spoken = text_of(&whisper, "Say");
    assert!(
        spoken.contains("Billing call") && spoken.contains("4 4 7 1 9"),
        "{spoken}"
    );

    // The written card reached the webhook.
    let card = {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(c) = h.fake.seen.lock().unwrap().cards.first().cloned() {
                break c;
            }
            assert!(Instant::now() < until, "no card at the handoff webhook");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert_eq!(card["call_sid"], sid);
    assert_eq!(card["queue"], "billing");
    assert_eq!(card["target"], "+15550100001");
    assert_eq!(card["reason"], "dialplan");
    assert_eq!(card["facts"]["account_number"], "44719");
    assert_eq!(card["from"], "+15551230000");
    assert!(
        card["summary"].as_str().unwrap().contains("44719"),
        "{card}"
    );
    assert!(
        card["transcript"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["speaker"] == "caller"),
        "{card}"
    );

    // The stored record has the turns, the decision and the card.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, record) = get_json(&h, &format!("/api/calls/{sid}")).await;
    assert_eq!(status, 200, "{record}");
    let transcript = record["transcript"].as_array().unwrap();
    assert!(
        transcript
            .iter()
            .any(|l| l["speaker"] == "system" && l["text"].as_str().unwrap().contains("agent"))
    );
    assert!(
        transcript.iter().any(|l| l["speaker"] == "caller"
            && l["text"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("refund")),
        "{record}"
    );
    assert_eq!(record["handoff"]["queue"], "billing", "{record}");
    assert_eq!(record["outcome"], "transferred", "{record}");
    let (status, list) = get_json(&h, "/api/calls").await;
    assert_eq!(status, 200);
    assert!(list.to_string().contains(sid));

    let metrics = metrics(&h).await;
    assert!(
        metrics.contains("warmline_escalations_total{reason=\"dialplan\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_serve_call_ends_with_goodbye_not_transfer() {
    let h = start().await;
    let sid = "CAe2ehours0000000000000000000001";
    let mut call = h.open_call(sid).await;
    call.until_prompt_done(Duration::from_secs(15)).await;
    call.silence(35).await;
    call.speak("selfserve_hours_sunday_joe/0.wav").await;
    call.until_prompt_done(Duration::from_secs(20)).await;
    call.silence(35).await;
    call.speak("selfserve_hours_sunday_joe/1.wav").await;
    // warmline says goodbye and closes the stream itself; the caller's line stays open
    // (Twilio keeps sending silence) until it does.
    let until = Instant::now() + Duration::from_secs(20);
    let mut closed = false;
    while Instant::now() < until && !closed {
        closed = !call.try_frame(&[0xFF; 160]).await;
    }
    assert!(closed, "warmline did not end the call after the goodbye");
    assert!(
        h.updates_for(sid).is_empty(),
        "a self-serve call was transferred"
    );
    let (status, twiml) = h
        .post_signed(
            "/twilio/stream-ended",
            &[("CallSid", sid), ("AccountSid", ACCOUNT)],
        )
        .await;
    assert_eq!(status, 200);
    assert!(twiml.contains("<Hangup/>"), "{twiml}");
    let (_, record) = get_json(&h, &format!("/api/calls/{sid}")).await;
    let said: String = record["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["speaker"] == "system")
        .map(|l| l["text"].as_str().unwrap().to_string())
        .collect();
    assert!(said.contains("Sunday"), "{said}");
    assert_eq!(record["outcome"], "self_served", "{record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_talking_over_the_greeting_gets_clear() {
    let h = start().await;
    let sid = "CAe2ebargein00000000000000000001";
    let mut call = h.open_call(sid).await;
    call.silence(50).await; // one second into the greeting
    assert!(
        call.received.iter().any(|e| e == "media"),
        "no greeting audio"
    );
    call.speak("barge_in_agent_joe/0.wav").await;
    assert!(
        call.received.iter().any(|e| e == "clear"),
        "no clear on barge-in: {:?}",
        call.received
            .iter()
            .filter(|e| *e != "media")
            .collect::<Vec<_>>()
    );
    let (twiml, _) = h
        .wait_update(&mut call, sid, Duration::from_secs(20))
        .await
        .expect("a transfer");
    assert_eq!(text_of(&twiml, "Number"), "+15550100000", "{twiml}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signature_is_refused_and_garbage_does_not_hurt_other_calls() {
    let h = start().await;
    let r = h
        .http
        .post(format!("{}/twilio/voice", h.base))
        .header("X-Twilio-Signature", "bm90LXRoZS1yaWdodC1zaWduYXR1cmU=")
        .form(&[("CallSid", "CAbad"), ("From", "+1555")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // A stream without a valid token is closed before any audio.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("{}/twilio/media", h.base.replace("http", "ws")))
            .await
            .unwrap();
    let start = json!({"event": "start", "streamSid": "MZx", "start": {"streamSid": "MZx", "accountSid": ACCOUNT,
        "callSid": "CAforged", "tracks": ["inbound"], "customParameters": {"token": "nope"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}});
    ws.send(Message::Text(start.to_string().into()))
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
                Some(Ok(Message::Text(_))) => return false,
                _ => {}
            }
        }
    })
    .await
    .unwrap_or(false);
    assert!(closed, "forged stream was not closed");

    // Garbage on a real call: logged and counted, never fatal.
    let sid = "CAe2egarbage00000000000000000001";
    let mut call = h.open_call(sid).await;
    for junk in [
        "{not json",
        r#"{"event":"media","streamSid":"x","media":{"payload":"!!!notbase64"}}"#,
        r#"{"event":"teleport","streamSid":"x"}"#,
        r#"{"event":"dtmf","streamSid":"x","dtmf":{"digit":"ZZ"}}"#,
    ] {
        call.send_raw(junk).await;
    }
    let huge = json!({"event": "media", "streamSid": call.stream_sid,
                      "media": {"payload": base64::engine::general_purpose::STANDARD.encode(vec![0xFFu8; 20_000])}});
    call.send_raw(&huge.to_string()).await;
    call.silence(10).await;
    let metrics = metrics(&h).await;
    assert!(
        metrics.contains("warmline_wire_errors_total{kind=\"json\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("warmline_wire_errors_total{kind=\"bad_base64\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("warmline_wire_errors_total{kind=\"oversized\"}"),
        "{metrics}"
    );

    // The same call still works: pressing 0 reaches a person.
    call.seq += 1;
    let dtmf = json!({"event": "dtmf", "streamSid": call.stream_sid, "sequenceNumber": call.seq.to_string(),
                      "dtmf": {"track": "inbound_track", "digit": "0"}});
    call.send(dtmf).await;
    let (twiml, _) = h
        .wait_update(&mut call, sid, Duration::from_secs(10))
        .await
        .expect("dtmf 0 transfers");
    assert!(twiml.contains("<Dial>"), "{twiml}");
    let r = h
        .http
        .get(format!("{}/healthz", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_stream_fails_open_to_a_person() {
    let h = start().await;
    let sid = "CAe2edropped00000000000000000001";
    let mut call = h.open_call(sid).await;
    call.silence(10).await;
    drop(call); // the socket vanishes mid-greeting, no `stop`
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, twiml) = h
        .post_signed(
            "/twilio/stream-ended",
            &[("CallSid", sid), ("AccountSid", ACCOUNT)],
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        twiml.contains("<Dial>") && twiml.contains("+15550100000"),
        "{twiml}"
    );
    assert!(h.state.store.get_call(sid).unwrap().is_some());
}
