//! Asterisk AudioSocket end to end: a fake PBX connects over real TCP exactly as
//! `AudioSocket(${UUID},host:port)` does — the UUID frame, slin 8 kHz audio in 20 ms frames,
//! DTMF — hears the greeting as slin, is handed back with a hang-up frame, and then asks
//! `/asterisk/route/{uuid}` where to send the caller and `/asterisk/handoff/{uuid}` which
//! summary to play the agent (`/audio/summary/{id}.wav`, fetched and checked here), as
//! examples/asterisk/extensions.conf does.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::speech;
use common::twilio::*;
use warmline::audio::ulaw;
use warmline::telephony::asterisk::audiosocket::{
    self, KIND_DTMF, KIND_HANGUP, KIND_SLIN8, KIND_UUID,
};

const PBX_TOKEN: &str = "pbx-route-secret-123";

async fn start_pbx_line() -> (Harness, SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let h = start_with(|s| {
        s.audiosocket_listen = Some(port);
        s.asterisk_token = Some(PBX_TOKEN.into());
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
        stream
            .write_all(&audiosocket::frame(KIND_UUID, &id))
            .await
            .unwrap();
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
        let pcm: Vec<u8> = ulaw_frame
            .iter()
            .flat_map(|&b| ulaw::decode(b).to_le_bytes())
            .collect();
        let _ = self
            .stream
            .write_all(&audiosocket::frame(KIND_SLIN8, &pcm))
            .await;
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
        .get(format!("{}/asterisk/route/{uuid}?token={token}", h.base))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
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
    let (status, queue) = route(&h, &pbx.uuid, PBX_TOKEN).await;
    assert_eq!((status, queue.as_str()), (200, "billing"));
    let r = h
        .http
        .get(format!(
            "{}/asterisk/whisper/{}?token={PBX_TOKEN}",
            h.base, pbx.uuid
        ))
        .send()
        .await
        .unwrap();
    let whisper = r.text().await.unwrap();
    assert!(
        whisper.contains("Billing call") && whisper.contains("4 4 7 1 9"),
        "{whisper}"
    );
    // What warmline-whisper in extensions.conf plays to the agent.
    let handoff = handoff_id(&h, &pbx.uuid).await;
    let url = format!("{}/audio/summary/{handoff}.wav", h.base);
    speech::assert_summary_wav(&h.http, &url, &whisper).await;
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
        pbx.stream
            .write_all(&audiosocket::frame(KIND_DTMF, b"0"))
            .await
            .unwrap();
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
