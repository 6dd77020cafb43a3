//! Asterisk AudioSocket end to end: a fake PBX connects over real TCP exactly as
//! `AudioSocket(${UUID},host:port)` does — the UUID frame, slin 8 kHz audio in 20 ms frames,
//! DTMF — hears the greeting as slin, is handed back with a hang-up frame, and then asks
//! `/asterisk/route/{uuid}` where to send the caller and `/asterisk/handoff/{uuid}` which
//! summary to play the agent (`/audio/summary/{id}.wav`, fetched and checked here), as
//! examples/asterisk/extensions.conf does. The PBX's frames are the library's fake Asterisk
//! (`warmline::loadtest::fakes::asterisk`), which the load generator drives too.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::speech;
use common::twilio::*;
use warmline::audio::ulaw;
use warmline::loadtest::fakes::asterisk as pbx;
use warmline::telephony::asterisk::audiosocket::{self, KIND_HANGUP, KIND_SLIN8};

const PBX_TOKEN: &str = "pbx-route-secret-123";

async fn start_pbx_line() -> (Harness, SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let h = start_with(|s| {
        common::apply_env(
            s,
            &[
                ("WARMLINE_AUDIOSOCKET_LISTEN", port.to_string()),
                ("WARMLINE_ASTERISK_TOKEN", PBX_TOKEN.to_string()),
            ],
        )
    })
    .await;
    // The listener starts with the HTTP server; wait for it.
    let until = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(port).await.is_err() {
        assert!(Instant::now() < until, "AudioSocket listener not up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (h, port)
}

/// The PBX side of one AudioSocket call.
struct Pbx {
    stream: TcpStream,
    uuid: String,
    /// Frames warmline sent: true for audio with sound in it, false for silence.
    heard: Vec<bool>,
    hung_up: bool,
}

impl Pbx {
    async fn call(addr: SocketAddr, n: u8) -> Pbx {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let id = [n; 16];
        stream.write_all(&pbx::uuid_frame(&id)).await.unwrap();
        Pbx {
            stream,
            uuid: audiosocket::uuid_text(&id),
            heard: Vec::new(),
            hung_up: false,
        }
    }

    /// Reads whatever warmline has sent so far.
    async fn read_available(&mut self) {
        loop {
            let mut header = [0u8; 3];
            match tokio::time::timeout(
                Duration::from_millis(1),
                self.stream.read_exact(&mut header),
            )
            .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => {
                    self.hung_up = true;
                    return;
                }
                Err(_) => return,
            }
            let len = usize::from(u16::from_be_bytes([header[1], header[2]]));
            let mut payload = vec![0u8; len];
            if self.stream.read_exact(&mut payload).await.is_err() {
                self.hung_up = true;
                return;
            }
            match header[0] {
                KIND_HANGUP => self.hung_up = true,
                KIND_SLIN8 => {
                    assert_eq!(len, 320, "a 20 ms slin frame");
                    let loud = payload
                        .chunks_exact(2)
                        .any(|s| i16::from_le_bytes([s[0], s[1]]).unsigned_abs() > 300);
                    self.heard.push(loud);
                }
                other => panic!("warmline sent frame kind {other:#04x}"),
            }
        }
    }

    /// One 20 ms frame of caller audio (μ-law from the fixtures, sent as slin), paced.
    async fn frame(&mut self, ulaw_frame: &[u8]) {
        let _ = self.stream.write_all(&pbx::slin_frame(ulaw_frame)).await;
        self.read_available().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    async fn silence(&mut self, frames: usize) {
        for _ in 0..frames {
            self.frame(&[0xFF; 160]).await;
            if self.hung_up {
                return;
            }
        }
    }

    async fn speak(&mut self, fixture: &str) {
        let audio = warmline::replay::fixture::read_ulaw(
            &common::root().join("fixtures/audio").join(fixture),
        )
        .unwrap();
        for f in audio.chunks(160) {
            self.frame(f).await;
        }
    }

    /// Streams silence until warmline hands the call back, or `limit` passes.
    async fn until_hangup(&mut self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while !self.hung_up && Instant::now() < until {
            self.silence(5).await;
        }
        self.hung_up
    }
}

async fn route(h: &Harness, uuid: &str, token: &str) -> (u16, String) {
    let r = h
        .http
        .get(pbx::route_url(&h.base, uuid, token))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The billing caller (account 44719) was handed back: the dialplan's route lookup says
/// billing, the agent's whisper tells the story, and the summary WAV that warmline-whisper in
/// extensions.conf plays to the agent says the same.
async fn billing_handed_back(h: &Harness, uuid: &str) {
    let (status, queue) = route(h, uuid, PBX_TOKEN).await;
    assert_eq!((status, queue.as_str()), (200, "billing"));
    let r = h
        .http
        .get(format!(
            "{}/asterisk/whisper/{uuid}?token={PBX_TOKEN}",
            h.base
        ))
        .send()
        .await
        .unwrap();
    let whisper = r.text().await.unwrap();
    assert!(
        whisper.contains("Billing call") && whisper.contains("4 4 7 1 9"),
        "{whisper}"
    );
    let handoff = handoff_id(h, uuid).await;
    let url = format!("{}/audio/summary/{handoff}.wav", h.base);
    speech::assert_summary_wav(&h.http, &url, &whisper).await;
}

/// `/asterisk/handoff/{uuid}`, as warmline-whisper asks it: the handoff id (128 bits, hex).
async fn handoff_id(h: &Harness, uuid: &str) -> String {
    let r = h
        .http
        .get(format!(
            "{}/asterisk/handoff/{uuid}?token={PBX_TOKEN}",
            h.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let id = r.text().await.unwrap();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id:?}"
    );
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pbx_call_is_greeted_heard_and_handed_back_to_the_right_queue() {
    let (h, addr) = start_pbx_line().await;
    let mut pbx = Pbx::call(addr, 1).await;
    // The greeting arrives as slin, then silence keeps the channel fed.
    pbx.silence(100).await;
    assert!(
        pbx.heard.iter().filter(|&&loud| loud).count() > 50,
        "no greeting audio"
    );
    pbx.silence(300).await;
    let before = pbx.heard.len();
    pbx.speak("billing_refund_joe/0.wav").await;
    assert!(
        pbx.until_hangup(Duration::from_secs(15)).await,
        "not handed back"
    );
    assert!(
        pbx.heard.len() > before,
        "audio stopped while the caller spoke"
    );
    billing_handed_back(&h, &pbx.uuid).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, rec) = get_json(&h, &format!("/api/calls/{}", pbx.uuid)).await;
    assert_eq!(rec["handoff"]["facts"]["account_number"], "44719", "{rec}");
    assert_eq!(rec["transfer"]["status"], "accepted", "{rec}");
    assert_eq!(rec["outcome"], "transferred", "{rec}");
    // The CRM got the written card.
    let cards = h.fake.seen.lock().unwrap().cards.clone();
    assert!(cards.iter().any(|c| c["call_sid"] == pbx.uuid.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn talking_over_the_greeting_stops_it_and_zero_reaches_a_person() {
    let (h, addr) = start_pbx_line().await;
    let mut pbx = Pbx::call(addr, 2).await;
    pbx.silence(25).await;
    pbx.speak("barge_in_agent_joe/0.wav").await;
    pbx.silence(10).await;
    // After the caller talked over it, the greeting is gone: only silence or the handback.
    let tail = &pbx.heard[pbx.heard.len().saturating_sub(10)..];
    assert!(
        pbx.hung_up || tail.iter().all(|&loud| !loud),
        "greeting still playing after barge-in"
    );
    if !pbx.hung_up {
        pbx.stream.write_all(&pbx::dtmf_frame('0')).await.unwrap();
        assert!(pbx.until_hangup(Duration::from_secs(5)).await);
    }
    let (status, queue) = route(&h, &pbx.uuid, PBX_TOKEN).await;
    assert_eq!(status, 200);
    assert_eq!(queue, "general");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_pbx_connection_still_routes_with_what_was_said_and_routes_need_the_secret() {
    let (h, addr) = start_pbx_line().await;
    let mut pbx = Pbx::call(addr, 3).await;
    pbx.silence(350).await;
    pbx.speak("selfserve_hours_sunday_joe/0.wav").await;
    pbx.silence(60).await;
    let uuid = pbx.uuid.clone();
    drop(pbx); // the socket vanishes mid-answer
    tokio::time::sleep(Duration::from_millis(300)).await;
    for bad in ["", "wrong-secret-0000000"] {
        assert_eq!(route(&h, &uuid, bad).await.0, 401);
    }
    let (status, queue) = route(&h, &uuid, PBX_TOKEN).await;
    assert_eq!((status, queue.as_str()), (200, "general"));
    let r = h
        .http
        .get(format!(
            "{}/asterisk/whisper/{uuid}?token={PBX_TOKEN}",
            h.base
        ))
        .send()
        .await
        .unwrap();
    let whisper = r.text().await.unwrap();
    assert!(whisper.starts_with("General call"), "{whisper}");
    let handoff = handoff_id(&h, &uuid).await;
    speech::assert_summary_wav(
        &h.http,
        &format!("{}/audio/summary/{handoff}.wav", h.base),
        &whisper,
    )
    .await;
    speech::assert_unknown_summary_is_404(&h.http, &h.base).await;
    let r = h
        .http
        .get(format!(
            "{}/asterisk/handoff/{uuid}?token=wrong-secret-0000000",
            h.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (_, rec) = get_json(&h, &format!("/api/calls/{uuid}")).await;
    assert_eq!(rec["handoff"]["reason"], "system_fault", "{rec}");
    assert!(
        rec["handoff"]["transcript"]
            .to_string()
            .to_lowercase()
            .contains("sunday"),
        "the card lost what the caller said: {rec}"
    );
    // An unknown call still gets somewhere to go.
    assert_eq!(
        route(&h, "00000000-0000-0000-0000-000000000000", PBX_TOKEN).await,
        (200, "general".to_string())
    );
    // Junk on the AudioSocket port is cut off without harming the line.
    let mut junk = TcpStream::connect(addr).await.unwrap();
    let _ = junk.write_all(&[0x42; 4096]).await;
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(5), junk.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "junk connection not closed"
    );
}

// ---------------------------------------------------------------------------------------
// chan_websocket: a fake Asterisk connects to `/asterisk/media` as
// examples/asterisk/websocket_client.conf and extensions.conf make it do — Basic auth with
// the shared secret, `?call=<the caller's UNIQUEID>` from `v(call=…)`, `MEDIA_START` first,
// then raw audio in BINARY messages and control in TEXT ones.

mod ws {
    use super::*;
    use base64::Engine as _;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    pub type Ws = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    pub async fn start_ws_line() -> Harness {
        start_with(|s| common::apply_env(s, &[("WARMLINE_ASTERISK_TOKEN", PBX_TOKEN.to_string())]))
            .await
    }

    pub fn basic(password: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("warmline:{password}"));
        format!("Basic {b64}")
    }

    /// Opens the media socket; `Err(status)` when warmline refuses the upgrade.
    pub async fn connect(h: &Harness, query: &str, authorization: Option<&str>) -> Result<Ws, u16> {
        let url = format!(
            "{}/asterisk/media?{query}",
            h.base.replace("http://", "ws://")
        );
        let mut req = url.into_client_request().unwrap();
        if let Some(a) = authorization {
            req.headers_mut()
                .insert("authorization", a.parse().unwrap());
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => Ok(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
            Err(e) => panic!("connect: {e}"),
        }
    }

    /// The PBX side of one chan_websocket call.
    pub struct Ast {
        pub ws: Ws,
        pub uniqueid: String,
        pub json: bool,
        /// 8 kHz μ-law (`ulaw`) or 16 kHz slin (`slin16`).
        pub slin16: bool,
        /// BINARY messages warmline sent: true for audio with sound in it.
        pub heard: Vec<bool>,
        /// How many caller frames had been sent when each of `heard` arrived.
        pub heard_at: Vec<usize>,
        /// TEXT commands warmline sent, by name, with the caller frames sent before it.
        pub commands: Vec<String>,
        pub command_at: Vec<usize>,
        pub sent: usize,
        pub closed: bool,
    }

    impl Ast {
        pub async fn call(h: &Harness, uniqueid: &str, slin16: bool, json: bool) -> Ast {
            let ws = connect(h, &format!("call={uniqueid}"), Some(&basic(PBX_TOKEN)))
                .await
                .expect("upgrade accepted");
            let mut a = Ast {
                ws,
                uniqueid: uniqueid.to_string(),
                json,
                slin16,
                heard: Vec::new(),
                heard_at: Vec::new(),
                commands: Vec::new(),
                command_at: Vec::new(),
                sent: 0,
                closed: false,
            };
            let (format, size) = if slin16 {
                ("slin16", 640)
            } else {
                ("ulaw", 160)
            };
            // As chan_websocket.c `_create_event_MEDIA_START` writes it.
            let start = if json {
                serde_json::json!({"event": "MEDIA_START",
                    "connection_id": "e226e283-c90a-4ea9-9e37-389000b9ef47",
                    "channel": "WebSocket/warmline/0x7f0a1c003a40",
                    "channel_id": "1733150000.99", "format": format,
                    "optimal_frame_size": size, "ptime": 20,
                    "channel_variables": {"MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE": size.to_string()}})
                .to_string()
            } else {
                format!(
                    "MEDIA_START connection_id:e226e283-c90a-4ea9-9e37-389000b9ef47 \
                     channel:WebSocket/warmline/0x7f0a1c003a40 channel_id:1733150000.99 \
                     format:{format} optimal_frame_size:{size} ptime:20"
                )
            };
            a.ws.send(Message::Text(start.into())).await.unwrap();
            a
        }

        pub async fn read_available(&mut self) {
            while let Ok(next) =
                tokio::time::timeout(Duration::from_millis(1), self.ws.next()).await
            {
                match next {
                    Some(Ok(Message::Binary(b))) => {
                        let size = if self.slin16 { 640 } else { 160 };
                        assert_eq!(b.len(), size, "whole 20 ms frames only");
                        let loud = if self.slin16 {
                            b.chunks_exact(2)
                                .any(|s| i16::from_le_bytes([s[0], s[1]]).unsigned_abs() > 300)
                        } else {
                            b.iter().any(|&x| ulaw::decode(x).unsigned_abs() > 300)
                        };
                        self.heard.push(loud);
                        self.heard_at.push(self.sent);
                    }
                    Some(Ok(Message::Text(t))) => {
                        let name = if self.json {
                            let v: serde_json::Value = serde_json::from_str(&t)
                                .unwrap_or_else(|_| panic!("plain text on a JSON channel: {t}"));
                            v["command"].as_str().unwrap().to_string()
                        } else {
                            assert!(!t.starts_with('{'), "JSON on a plain-text channel: {t}");
                            t.to_string()
                        };
                        assert!(t.len() <= 128, "Asterisk ignores longer commands");
                        self.commands.push(name);
                        self.command_at.push(self.sent);
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        self.closed = true;
                        return;
                    }
                    Some(Ok(_)) => {}
                }
            }
        }

        pub async fn frame(&mut self, ulaw_frame: &[u8]) {
            let bytes: Vec<u8> = if self.slin16 {
                ulaw_frame
                    .iter()
                    .flat_map(|&b| {
                        let s = ulaw::decode(b).to_le_bytes();
                        [s[0], s[1], s[0], s[1]]
                    })
                    .collect()
            } else {
                ulaw_frame.to_vec()
            };
            if !self.closed {
                let _ = self.ws.send(Message::Binary(bytes.into())).await;
                self.sent += 1;
            }
            self.read_available().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        pub async fn text(&mut self, t: String) {
            self.ws.send(Message::Text(t.into())).await.unwrap();
        }

        pub async fn silence(&mut self, frames: usize) {
            for _ in 0..frames {
                self.frame(&[0xFF; 160]).await;
                if self.closed {
                    return;
                }
            }
        }

        pub async fn speak(&mut self, fixture: &str) {
            let audio = warmline::replay::fixture::read_ulaw(
                &common::root().join("fixtures/audio").join(fixture),
            )
            .unwrap();
            for f in audio.chunks(160) {
                self.frame(f).await;
            }
        }

        pub fn hung_up(&self) -> bool {
            self.commands.iter().any(|c| c == "HANGUP")
        }

        /// Feeds silence until warmline sends HANGUP, or `limit` passes.
        pub async fn until_hangup(&mut self, limit: Duration) -> bool {
            let until = Instant::now() + limit;
            while !self.hung_up() && !self.closed && Instant::now() < until {
                self.silence(5).await;
            }
            self.hung_up()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chan_websocket_call_is_greeted_in_slin16_and_handed_back_to_the_right_queue() {
    let h = ws::start_ws_line().await;
    let mut a = ws::Ast::call(&h, "1733149999.11", true, false).await;
    a.silence(100).await;
    assert!(
        a.heard.iter().filter(|&&loud| loud).count() > 50,
        "no greeting audio"
    );
    a.silence(300).await;
    a.speak("billing_refund_joe/0.wav").await;
    assert!(
        a.until_hangup(Duration::from_secs(15)).await,
        "not handed back: {:?}",
        a.commands
    );
    // HANGUP is the last thing warmline says; Asterisk's Dial(…,g) continues the dialplan.
    assert_eq!(a.commands.last().map(String::as_str), Some("HANGUP"));
    billing_handed_back(&h, &a.uniqueid).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, rec) = get_json(&h, &format!("/api/calls/{}", a.uniqueid)).await;
    assert_eq!(rec["handoff"]["facts"]["account_number"], "44719", "{rec}");
    assert_eq!(rec["transfer"]["status"], "accepted", "{rec}");
    assert_eq!(rec["outcome"], "transferred", "{rec}");
    let cards = h.fake.seen.lock().unwrap().cards.clone();
    assert!(cards.iter().any(|c| c["call_sid"] == a.uniqueid.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chan_websocket_barge_in_flushes_the_greeting_and_dtmf_reaches_a_person_in_json() {
    let h = ws::start_ws_line().await;
    let mut a = ws::Ast::call(&h, "1733149999.12", false, true).await;
    a.silence(25).await;
    assert!(a.heard.iter().any(|&l| l), "greeting not playing");
    let speech_from = a.sent;
    a.speak("barge_in_agent_joe/0.wav").await;
    let speech_to = a.sent;
    a.silence(10).await;
    let flush = a.commands.iter().position(|c| c == "FLUSH_MEDIA");
    let Some(flush) = flush else {
        panic!("no FLUSH_MEDIA on barge-in: {:?}", a.commands)
    };
    // The greeting is flushed soon after the caller starts talking over it…
    let flush_at = a.command_at[flush];
    assert!(
        flush_at > speech_from && flush_at < speech_from + 75,
        "FLUSH_MEDIA after {} caller frames of speech",
        flush_at.saturating_sub(speech_from)
    );
    // …and nothing more is played while they go on talking.
    let played_over = a
        .heard
        .iter()
        .zip(&a.heard_at)
        .filter(|&(&loud, &at)| loud && at > flush_at + 5 && at < speech_to)
        .count();
    assert_eq!(
        played_over, 0,
        "audio played over the caller after the flush"
    );
    if !a.hung_up() {
        a.text(r#"{"event":"DTMF_END","channel_id":"1733150000.99","digit":"0"}"#.into())
            .await;
        assert!(a.until_hangup(Duration::from_secs(5)).await);
    }
    let (status, queue) = route(&h, &a.uniqueid, PBX_TOKEN).await;
    assert_eq!((status, queue.as_str()), (200, "general"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chan_websocket_dropped_socket_fails_open_and_the_upgrade_needs_the_secret() {
    let h = ws::start_ws_line().await;
    // Refused before any call exists: no credentials, the wrong password, a wrong bearer.
    for auth in [
        None,
        Some(ws::basic("wrong-secret-0000000")),
        Some("Bearer wrong-secret-0000000".to_string()),
        Some(format!("Digest {PBX_TOKEN}")),
    ] {
        assert_eq!(
            ws::connect(&h, "call=1733149999.13", auth.as_deref())
                .await
                .err(),
            Some(401),
            "{auth:?}"
        );
    }
    assert_eq!(
        ws::connect(&h, "call=1733149999.13&token=nope-nope-nope", None)
            .await
            .err(),
        Some(401)
    );
    // A bearer token and the v(token=…) query form are accepted.
    let bearer = format!("Bearer {PBX_TOKEN}");
    assert!(
        ws::connect(&h, "call=1733149999.14", Some(&bearer))
            .await
            .is_ok()
    );
    assert!(
        ws::connect(&h, &format!("call=1733149999.15&token={PBX_TOKEN}"), None)
            .await
            .is_ok()
    );
    assert_eq!(
        ws::connect(&h, "call=../x", Some(&ws::basic(PBX_TOKEN)))
            .await
            .err(),
        Some(400)
    );

    let mut a = ws::Ast::call(&h, "1733149999.16", true, false).await;
    a.silence(350).await;
    a.speak("selfserve_hours_sunday_joe/0.wav").await;
    a.silence(60).await;
    let uuid = a.uniqueid.clone();
    drop(a); // the socket vanishes mid-answer
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, queue) = route(&h, &uuid, PBX_TOKEN).await;
    assert_eq!((status, queue.as_str()), (200, "general"));
    let r = h
        .http
        .get(format!(
            "{}/asterisk/whisper/{uuid}?token={PBX_TOKEN}",
            h.base
        ))
        .send()
        .await
        .unwrap();
    let whisper = r.text().await.unwrap();
    assert!(whisper.starts_with("General call"), "{whisper}");
    let (_, rec) = get_json(&h, &format!("/api/calls/{uuid}")).await;
    assert_eq!(rec["handoff"]["reason"], "system_fault", "{rec}");
    assert!(
        rec["handoff"]["transcript"]
            .to_string()
            .to_lowercase()
            .contains("sunday"),
        "the card lost what the caller said: {rec}"
    );

    // Without the secret configured, the endpoint does not exist.
    let off = start_with(|s| s.providers.asterisk.token = None).await;
    assert_eq!(
        ws::connect(&off, "call=1733149999.17", Some(&ws::basic(PBX_TOKEN)))
            .await
            .err(),
        Some(404)
    );
}
