//! Plivo end to end over real sockets: a signed answer URL (`X-Plivo-Signature-V3`) answered
//! with a bidirectional `<Stream>`; the stream spoken as Plivo speaks it (`start` with
//! `extra_headers`, `media`, `dtmf`, `playedStream` for each `checkpoint`, `clearedAudio`);
//! a transfer through a fake Plivo REST API (`legs=aleg`, `aleg_url`), whose document speaks
//! to the caller and dials with the agent's confirm sound (which plays the spoken summary's
//! WAV from `/audio/summary/{id}.wav`, fetched and checked here); the stream dropping and the
//! `<Redirect>` failing open; forged signatures refused. The fake Plivo (its API, signatures
//! and stream messages) is the library's, `warmline::loadtest::fakes::plivo`.

mod common;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use common::speech;
use common::twilio::{API_TOKEN, Harness, attr, get_json, start_with, text_of};
use warmline::loadtest::fakes::plivo::{self as fake, AUTH_TOKEN, FakePlivo};
use warmline::replay::fixture::read_ulaw;

async fn plivo_line() -> (Harness, FakePlivo) {
    let fake = FakePlivo::default();
    let addr = fake.start(0).await.unwrap().detach();
    let h =
        start_with(|s| common::apply_env(s, &fake::server_env(&format!("http://{addr}")))).await;
    (h, fake)
}

async fn post_plivo(h: &Harness, path: &str, params: &[(&str, &str)], key: &str) -> (u16, String) {
    let url = format!("{}{path}", h.base);
    let owned = warmline::loadtest::fakes::form(params);
    let mut req = h.http.post(&url).form(params);
    for (name, value) in fake::sign(key, &url, &owned, "28376478236478236") {
        req = req.header(name, value);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Plivo's side of one stream.
struct Stream {
    ws: Ws,
    events: Vec<String>,
    stream_id: String,
    seq: u64,
    chunk: u64,
}

impl Stream {
    async fn open(h: &Harness, uuid: &str) -> Stream {
        let (status, answer) = post_plivo(
            h,
            "/plivo/answer",
            &[
                ("CallUUID", uuid),
                ("From", "+15551230000"),
                ("To", "+15550009000"),
            ],
            AUTH_TOKEN,
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer.contains(r#"bidirectional="true""#), "{answer}");
        let read = fake::Answer::parse(&answer);
        let url = read.stream_url.expect("a <Stream> URL");
        let token = attr(&answer, "Stream", "extraHeaders");
        let (ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        let mut s = Stream {
            ws,
            events: Vec::new(),
            stream_id: format!("st-{uuid}"),
            seq: 1,
            chunk: 0,
        };
        s.send(fake::start(1, uuid, &s.stream_id.clone(), &token))
            .await;
        s
    }

    async fn send(&mut self, v: Value) {
        let _ = self.ws.send(Message::Text(v.to_string().into())).await;
    }

    /// One 20 ms frame; answers checkpoints as Plivo does once their audio played.
    async fn frame(&mut self, ulaw: &[u8]) {
        self.seq += 1;
        self.chunk += 1;
        let media = fake::media(self.seq, &self.stream_id, self.chunk, ulaw);
        self.send(media).await;
        while let Ok(Some(Ok(Message::Text(t)))) =
            tokio::time::timeout(Duration::from_millis(1), self.ws.next()).await
        {
            let v: Value = serde_json::from_str(&t).unwrap();
            let ev = v["event"].as_str().unwrap_or("").to_string();
            match ev.as_str() {
                "checkpoint" => {
                    let name = v["name"].as_str().unwrap_or_default().to_string();
                    self.seq += 1;
                    let played = fake::played_stream(self.seq, &self.stream_id, &name);
                    self.send(played).await;
                }
                "clearAudio" => {
                    self.seq += 1;
                    let cleared = fake::cleared_audio(self.seq, &self.stream_id);
                    self.send(cleared).await
                }
                "playAudio" => assert_eq!(v["media"]["contentType"], "audio/x-mulaw"),
                other => panic!("unexpected event {other}: {t}"),
            }
            self.events.push(ev);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    async fn silence(&mut self, n: usize) {
        for _ in 0..n {
            self.frame(&[0xFF; 160]).await;
        }
    }

    async fn speak(&mut self, fixture: &str) {
        let audio = read_ulaw(&common::root().join("fixtures/audio").join(fixture)).unwrap();
        for f in audio.chunks(160) {
            self.frame(f).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plivo_call_barges_in_and_is_transferred_with_the_confirm_sound() {
    let (h, fake) = plivo_line().await;
    let uuid = "d1c0a7e2-0000-4000-8000-000000000001";
    let mut s = Stream::open(&h, uuid).await;
    s.silence(50).await;
    assert!(s.events.iter().any(|e| e == "playAudio"), "{:?}", s.events);
    // Talking over the greeting clears it.
    s.speak("barge_in_agent_joe/0.wav").await;
    assert!(
        s.events.iter().any(|e| e == "clearAudio"),
        "no clearAudio: {:?}",
        s.events
            .iter()
            .filter(|e| *e != "playAudio")
            .collect::<Vec<_>>()
    );
    let until = Instant::now() + Duration::from_secs(15);
    let (call, body) = loop {
        if let Some(t) = fake.transfers.first(|_| true) {
            break (t.call, t.body);
        }
        assert!(Instant::now() < until, "no transfer");
        s.silence(5).await;
    };
    assert_eq!(call, uuid);
    assert_eq!(body["legs"], "aleg");
    let doc_url = body["aleg_url"].as_str().unwrap().to_string();
    let (status, doc) = post_plivo(
        &h,
        doc_url.trim_start_matches(&h.base),
        &[("CallUUID", uuid)],
        AUTH_TOKEN,
    )
    .await;
    assert_eq!(status, 200, "{doc}");
    assert!(
        doc.contains("<Speak>") && doc.contains("<Number>+15550100000</Number>"),
        "{doc}"
    );
    let confirm = attr(&doc, "Dial", "confirmSound");
    let (status, whisper) = post_plivo(
        &h,
        confirm.trim_start_matches(&h.base),
        &[("CallUUID", "agent-leg")],
        AUTH_TOKEN,
    )
    .await;
    assert_eq!(status, 200);
    // The agent hears the summary in warmline's voice, then how to take the call.
    assert!(
        whisper.contains("<Play>") && whisper.contains("<Speak>Press 1"),
        "{whisper}"
    );
    let audio_url = text_of(&whisper, "Play");
    assert!(
        audio_url.starts_with(&format!("{}/audio/summary/", h.base)) && audio_url.ends_with(".wav"),
        "{audio_url}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, rec) = get_json(&h, &format!("/api/calls/{uuid}")).await;
    let spoken = rec["handoff"]["spoken_summary"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(spoken.contains("call"), "{spoken}");
    speech::assert_summary_wav(&h.http, &audio_url, &spoken).await;
    speech::assert_unknown_summary_is_404(&h.http, &h.base).await;
    assert_eq!(rec["handoff"]["reason"], "explicit_request", "{rec}");
    assert_eq!(rec["from"], "+15551230000");
    let _ = API_TOKEN;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plivo_dtmf_a_dropped_stream_and_forged_signatures() {
    let (h, fake) = plivo_line().await;
    // Forged: signed with the wrong token, or not at all.
    let (status, _) = post_plivo(&h, "/plivo/answer", &[("CallUUID", "x")], "not-the-token").await;
    assert_eq!(status, 403);
    let r = h
        .http
        .post(format!("{}/plivo/answer", h.base))
        .form(&[("CallUUID", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    let uuid = "d1c0a7e2-0000-4000-8000-000000000002";
    let mut s = Stream::open(&h, uuid).await;
    s.silence(5).await;
    s.seq += 1;
    let zero = fake::dtmf(s.seq, &s.stream_id, '0');
    s.send(zero).await;
    let until = Instant::now() + Duration::from_secs(5);
    while fake.transfers.all().is_empty() {
        assert!(Instant::now() < until, "DTMF 0 did not transfer");
        s.silence(2).await;
    }

    // A dropped stream: the <Redirect> after <Stream> reaches a person with the card.
    let uuid = "d1c0a7e2-0000-4000-8000-000000000003";
    let mut s = Stream::open(&h, uuid).await;
    s.silence(10).await;
    drop(s);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, doc) =
        post_plivo(&h, "/plivo/stream-ended", &[("CallUUID", uuid)], AUTH_TOKEN).await;
    assert_eq!(status, 200);
    assert!(
        doc.contains("<Dial") && doc.contains("/plivo/agent-whisper/"),
        "{doc}"
    );
}
