//! The attack suite, in process: what an outsider with the binary and the README tried, each
//! asserting the outcome — caller data stays private, tokens cannot be replayed, admission
//! holds its limit, bad frames and floods are bounded and counted, a peer that stops reading
//! or a REST API that hangs still ends with the caller at a person, and a shutdown finishes
//! what is in flight. Everything on 127.0.0.1 and bounded in time.
//!
//! The attacks that need their own process (a lowered fd limit, kill -9, SIGTERM, a full
//! disk) are in `tests/attack_process.rs`.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};

use common::twilio::*;

/// The voice webhook's answer for a call: the stream URL and the `<Parameter>`s.
async fn answer(h: &Harness, sid: &str, from: &str) -> (String, HashMap<String, String>) {
    let (status, twiml) = h
        .post_signed(
            "/twilio/voice",
            &[
                ("CallSid", sid),
                ("AccountSid", ACCOUNT),
                ("From", from),
                ("To", "+15550009000"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{twiml}");
    assert!(twiml.contains("<Stream "), "no stream offered: {twiml}");
    (attr(&twiml, "Stream", "url"), parameters(&twiml))
}

/// A media stream that has sent `start` with the given parameters and account.
async fn connect(url: &str, sid: &str, params: &HashMap<String, String>, account: &str) -> Call {
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut call = Call {
        ws,
        stream_sid: format!("MZ{sid}"),
        seq: 0,
        chunk: 0,
        received: Vec::new(),
    };
    let start = json!({
        "event": "start", "sequenceNumber": "1", "streamSid": call.stream_sid,
        "start": {"streamSid": call.stream_sid, "accountSid": account, "callSid": sid,
                  "tracks": ["inbound"], "customParameters": params,
                  "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}
    });
    call.send(start).await;
    call
}

/// Whether the server closes this socket within `limit` without sending it any audio.
async fn closed_without_audio(ws: &mut common::twilio::Ws, limit: Duration) -> bool {
    tokio::time::timeout(limit, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
                Some(Ok(Message::Text(_))) => return false,
                _ => {}
            }
        }
    })
    .await
    .unwrap_or(false)
}

async fn record(h: &Harness, sid: &str) -> Value {
    let (status, record) = get_json(h, &format!("/api/calls/{sid}")).await;
    assert_eq!(status, 200, "{record}");
    record
}

fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Streams silence until the fake Twilio saw a transfer for `sid`, or `limit` passes.
async fn transfer_of(h: &Harness, call: &mut Call, sid: &str, limit: Duration) -> Option<String> {
    h.wait_update(call, sid, limit).await.map(|(t, _)| t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_data_needs_a_token_and_health_does_not() {
    let h = start().await;
    let sid = "CAatkprivate0000000000000000001";
    let mut call = h.open_call(sid).await;
    call.silence(10).await;
    call.stop(sid).await;

    for (path, auth) in [
        ("/api/calls".to_string(), None),
        ("/api/calls?limit=1000".to_string(), None),
        (format!("/api/calls/{sid}"), None),
        (
            format!("/api/calls/{sid}"),
            Some("Bearer wrong-token-123456"),
        ),
        (format!("/api/calls/{sid}"), Some(API_TOKEN)), // no scheme
    ] {
        let mut req = h.http.get(format!("{}{path}", h.base));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path} with {auth:?}");
        assert!(r.headers().contains_key("www-authenticate"));
        let body = r.text().await.unwrap();
        assert!(
            !body.contains("+1555") && !body.contains(sid),
            "401 leaked caller data: {body}"
        );
    }
    let (status, list) = get_json(&h, "/api/calls").await;
    assert_eq!(status, 200);
    assert_eq!(list["calls"][0]["call_sid"], sid);
    for open in ["/healthz", "/metrics"] {
        let r = h
            .http
            .get(format!("{}{open}", h.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{open}");
    }
    let m = metrics(&h).await;
    assert!(metric(&m, "warmline_auth_failures_total") >= 5, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_token_is_single_use_bound_to_its_call_and_expires() {
    let h = start_with(|s| s.limits.stream_connect_ms = 1_500).await;
    let sid = "CAatkreplay00000000000000000001";
    let (url, params) = answer(&h, sid, "+15551230000").await;
    let mut call = connect(&url, sid, &params, ACCOUNT).await;
    call.silence(10).await;
    call.stop(sid).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = record(&h, sid).await;
    assert_eq!(before["outcome"], "caller_hangup", "{before}");

    // Replaying the ended call's start with its token: refused before any audio, the record
    // unchanged, no transfer requested.
    let mut replay = connect(&url, sid, &params, ACCOUNT).await;
    assert!(closed_without_audio(&mut replay.ws, Duration::from_secs(5)).await);
    for _ in 0..20 {
        let _ = replay.try_frame(&[0x00; 160]).await;
    }
    let after = record(&h, sid).await;
    assert_eq!(before["transcript"], after["transcript"]);
    assert_eq!(after["outcome"], "caller_hangup");
    assert!(h.updates_for(sid).is_empty());

    // Another call's token does not open this call, and the try uses that token up.
    let other = "CAatkreplay00000000000000000002";
    let (_, other_params) = answer(&h, other, "+15551230001").await;
    let third = "CAatkreplay00000000000000000003";
    let _ = answer(&h, third, "+15551230002").await;
    let mut wrong = connect(&url, third, &other_params, ACCOUNT).await;
    assert!(closed_without_audio(&mut wrong.ws, Duration::from_secs(5)).await);

    // An answered call whose stream comes too late is refused; the slot is free again.
    let late = "CAatkreplay00000000000000000004";
    let (_, late_params) = answer(&h, late, "+15551230003").await;
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    let mut too_late = connect(&url, late, &late_params, ACCOUNT).await;
    assert!(closed_without_audio(&mut too_late.ws, Duration::from_secs(5)).await);

    let m = metrics(&h).await;
    assert!(
        metric(&m, "warmline_wire_errors_total{kind=\"bad_stream_token\"}") >= 3,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_identity_comes_from_the_signed_webhook_and_the_account_must_match() {
    let h = start().await;
    // customParameters claiming another caller are ignored.
    let sid = "CAatkspoof000000000000000000001";
    let (url, mut params) = answer(&h, sid, "+15551230000").await;
    params.insert("From".into(), "\"<script>alert(1)</script>".into());
    let mut call = connect(&url, sid, &params, ACCOUNT).await;
    call.silence(10).await;
    call.stop(sid).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(record(&h, sid).await["from"], "+15551230000");

    // A start from another account, even with a valid token, is refused.
    let sid = "CAatkspoof000000000000000000002";
    let (url, params) = answer(&h, sid, "+15551230000").await;
    let mut foreign = connect(&url, sid, &params, "ACsomeoneelse000000000000000000000").await;
    assert!(closed_without_audio(&mut foreign.ws, Duration::from_secs(5)).await);

    // A webhook for another account is refused outright.
    let (status, _) = h
        .post_signed(
            "/twilio/voice",
            &[
                ("CallSid", "CAx"),
                ("AccountSid", "ACother"),
                ("From", "+1"),
            ],
        )
        .await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_webhooks_cannot_exceed_max_calls() {
    let h = start_with(|s| s.max_calls = 3).await;
    let h = std::sync::Arc::new(h);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            let sid = format!("CAatkrace{i:022}");
            h.post_signed(
                "/twilio/voice",
                &[
                    ("CallSid", &sid),
                    ("AccountSid", ACCOUNT),
                    ("From", "+1555"),
                ],
            )
            .await
        }));
    }
    let mut streams = 0;
    let mut dials = 0;
    for t in tasks {
        let (status, twiml) = t.await.unwrap();
        assert_eq!(status, 200);
        if twiml.contains("<Stream ") {
            streams += 1;
        } else {
            assert!(twiml.contains("<Dial>"), "{twiml}");
            dials += 1;
        }
    }
    assert_eq!((streams, dials), (3, 37));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_before_start_are_bounded_per_socket() {
    let h = start().await;
    let url = format!("{}/twilio/media", h.base.replace("http://", "ws://"));
    let mut sockets = Vec::new();
    for _ in 0..10 {
        let (ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        sockets.push(ws);
    }
    let mut sent = 0u32;
    for ws in &mut sockets {
        for i in 0..500 {
            let junk = if i % 2 == 0 {
                "{not json".to_string()
            } else {
                json!({"event": "media", "media": {"payload": "AAAA"}}).to_string()
            };
            if ws.send(Message::Text(junk.into())).await.is_err() {
                break;
            }
            sent += 1;
        }
    }
    for ws in &mut sockets {
        assert!(closed_without_audio(ws, Duration::from_secs(5)).await);
    }
    let m = metrics(&h).await;
    assert_eq!(
        metric(
            &m,
            "warmline_wire_errors_total{kind=\"too_many_bad_frames\"}"
        ),
        10,
        "{m}"
    );
    // Each socket was cut off after the allowance, not after all it sent.
    let counted = metric(&m, "warmline_wire_errors_total{kind=\"json\"}")
        + metric(&m, "warmline_wire_errors_total{kind=\"before_start\"}");
    let allowed = u64::from(h.state().settings.limits.bad_frames_before_start) + 1;
    assert!(counted <= 10 * allowed, "{counted} counted of {sent} sent");
}

/// A frame with raw bytes, as a misbehaving peer would send: tungstenite's own `Text`
/// message cannot hold invalid UTF-8.
fn raw_text_frame(payload: Vec<u8>) -> Message {
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Text),
        is_final: true,
        ..FrameHeader::default()
    };
    Message::Frame(Frame::from_payload(header, payload.into()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_non_utf8_and_nested_frames_are_counted_and_the_caller_reaches_a_person() {
    let h = start().await;
    // Deeply nested JSON: refused by the parser, the call goes on.
    let sid = "CAatkframes00000000000000000001";
    let mut call = h.open_call(sid).await;
    let nested = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    call.send_raw(&nested).await;
    call.silence(5).await;
    call.seq += 1;
    call.send(json!({"event": "dtmf", "streamSid": call.stream_sid, "dtmf": {"digit": "0"}}))
        .await;
    let twiml = transfer_of(&h, &mut call, sid, Duration::from_secs(10))
        .await
        .expect("the call survives nested JSON");
    assert!(twiml.contains("<Dial>"));

    for (n, frame) in [
        (2, Message::Text("x".repeat(200_000).into())),
        (3, raw_text_frame(vec![b'{', 0xFF, 0xFE, b'}'])),
    ] {
        let sid = format!("CAatkframes0000000000000000000{n}");
        let mut call = h.open_call(&sid).await;
        call.silence(10).await;
        let _ = call.ws.send(frame).await;
        // The socket is gone; Twilio then asks stream-ended, which dials a person with the
        // card the dropped stream left behind.
        assert!(closed_within(&mut call.ws, Duration::from_secs(5)).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (status, twiml) = h
            .post_signed(
                "/twilio/stream-ended",
                &[("CallSid", &sid), ("AccountSid", ACCOUNT)],
            )
            .await;
        assert_eq!(status, 200);
        assert!(twiml.contains("<Dial>"), "{twiml}");
        let rec = record(&h, &sid).await;
        assert_eq!(rec["handoff"]["reason"], "system_fault", "{rec}");
    }
    let m = metrics(&h).await;
    assert!(
        metric(&m, "warmline_wire_errors_total{kind=\"json\"}") >= 1,
        "{m}"
    );
    assert_eq!(
        metric(&m, "warmline_wire_errors_total{kind=\"oversized_frame\"}"),
        1,
        "{m}"
    );
    assert_eq!(
        metric(&m, "warmline_wire_errors_total{kind=\"non_utf8_text\"}"),
        1,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_flood_does_not_starve_another_callers_request() {
    let h = start().await;
    let audio = warmline::replay::fixture::read_ulaw(
        &common::root().join("fixtures/audio/billing_refund_joe/0.wav"),
    )
    .unwrap();
    // The flooder: speech at far above real time, for ten seconds.
    let flood_sid = "CAatkflood0000000000000000000001";
    let mut flooder = h.open_call(flood_sid).await;
    let flood = tokio::spawn(async move {
        let until = Instant::now() + Duration::from_secs(10);
        let mut chunk = 0u64;
        while Instant::now() < until {
            for f in audio.chunks(160) {
                chunk += 1;
                let msg = json!({"event": "media", "streamSid": flooder.stream_sid,
                    "media": {"chunk": chunk.to_string(),
                              "payload": base64::engine::general_purpose::STANDARD.encode(f)}});
                if flooder
                    .ws
                    .send(Message::Text(msg.to_string().into()))
                    .await
                    .is_err()
                {
                    return chunk;
                }
                if chunk.is_multiple_of(50) {
                    // 50 frames (1 s of audio) every 20 ms: 50× real time.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        chunk
    });
    let sid = "CAatkflood0000000000000000000002";
    let mut call = h.open_call(sid).await;
    call.until_prompt_done(Duration::from_secs(15)).await;
    call.silence(10).await;
    call.speak("explicit_agent_kal/0.wav").await;
    let twiml = transfer_of(&h, &mut call, sid, Duration::from_secs(15))
        .await
        .expect("the caller asking for an agent is transferred");
    assert!(twiml.contains("<Dial>"));
    let sent = flood.await.unwrap();
    assert!(sent > 2_000, "the flood sent only {sent} frames");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rec = record(&h, sid).await;
    assert_eq!(rec["handoff"]["reason"], "explicit_request", "{rec}");
    let m = metrics(&h).await;
    assert!(
        metric(&m, "warmline_wire_errors_total{kind=\"media_too_fast\"}") > 1_000,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bogus_chunk_number_does_not_make_the_call_deaf() {
    let h = start().await;
    let sid = "CAatkchunk0000000000000000000001";
    let mut call = h.open_call(sid).await;
    let bogus = json!({"event": "media", "streamSid": call.stream_sid,
        "media": {"chunk": u64::MAX.to_string(), "payload": base64::engine::general_purpose::STANDARD.encode([0xFFu8; 160])}});
    call.send(bogus).await;
    call.until_prompt_done(Duration::from_secs(15)).await;
    call.silence(10).await;
    call.speak("explicit_agent_kal/0.wav").await;
    transfer_of(&h, &mut call, sid, Duration::from_secs(15))
        .await
        .expect("the caller is still heard after chunk u64::MAX");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        record(&h, sid).await["handoff"]["reason"],
        "explicit_request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_is_handed_to_a_person() {
    let h = start_with(|s| s.limits.send_ms = 1_000).await;
    let sid = "CAatkstall0000000000000000000001";
    let (url, params) = answer(&h, sid, "+15551230000").await;
    // A small receive window, and never a read: the greeting fills the buffers.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(&url, tcp).await.unwrap();
    let (mut tx, _rx_never_read) = ws.split();
    let start = json!({
        "event": "start", "streamSid": "MZstall",
        "start": {"streamSid": "MZstall", "accountSid": ACCOUNT, "callSid": sid,
                  "tracks": ["inbound"], "customParameters": params,
                  "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}
    });
    tx.send(Message::Text(start.to_string().into()))
        .await
        .unwrap();
    let started = Instant::now();
    let mut update = None;
    while started.elapsed() < Duration::from_secs(30) {
        let frame = json!({"event": "media", "streamSid": "MZstall",
            "media": {"payload": base64::engine::general_purpose::STANDARD.encode([0xFFu8; 160])}});
        let _ = tx.send(Message::Text(frame.to_string().into())).await;
        if let Some(u) = h.updates_for(sid).into_iter().next() {
            update = Some(u);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (twiml, _) = update.expect("a stalled peer's caller is transferred by REST");
    assert!(twiml.contains("<Dial>"), "{twiml}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rec = record(&h, sid).await;
    assert_eq!(rec["handoff"]["reason"], "system_fault", "{rec}");
    let m = metrics(&h).await;
    assert!(
        metric(&m, "warmline_wire_errors_total{kind=\"peer_not_reading\"}") >= 1,
        "{m}"
    );
    // The call ended and released its slot.
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.state().admission.live() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(h.state().admission.live(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_rest_api_fails_open_within_the_budget_and_a_hung_crm_delays_nothing() {
    let h = start().await;
    *h.fake.hang_handoff.lock().unwrap() = Some(Duration::from_secs(3600));
    // The CRM webhook hangs: the transfer still goes at once.
    let sid = "CAatkhang00000000000000000000001";
    let mut call = h.open_call(sid).await;
    call.silence(5).await;
    call.seq += 1;
    call.send(json!({"event": "dtmf", "streamSid": call.stream_sid, "dtmf": {"digit": "0"}}))
        .await;
    let pressed = Instant::now();
    let (_, at) = h
        .wait_update(&mut call, sid, Duration::from_secs(5))
        .await
        .expect("transfer despite the hung CRM");
    assert!(at.duration_since(pressed) < Duration::from_secs(2));
    call.stop(sid).await;

    // The REST API hangs: the stream is closed within the budget so Twilio's
    // <Connect action> runs, and stream-ended dials the card's own team.
    *h.fake.hang.lock().unwrap() = Some(Duration::from_secs(3600));
    let sid = "CAatkhang00000000000000000000002";
    let mut call = h.open_call(sid).await;
    call.silence(5).await;
    call.seq += 1;
    call.send(json!({"event": "dtmf", "streamSid": call.stream_sid, "dtmf": {"digit": "0"}}))
        .await;
    let pressed = Instant::now();
    assert!(
        closed_within(&mut call.ws, Duration::from_secs(10)).await,
        "stream not closed"
    );
    let silent_for = pressed.elapsed();
    assert!(silent_for < Duration::from_secs(7), "{silent_for:?}");
    let (status, twiml) = h
        .post_signed(
            "/twilio/stream-ended",
            &[("CallSid", sid), ("AccountSid", ACCOUNT)],
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        twiml.contains("<Dial>") && twiml.contains("agent-whisper"),
        "{twiml}"
    );
    let rec = record(&h, sid).await;
    assert_eq!(rec["outcome"], "transfer_failed", "{rec}");
    assert_eq!(rec["transfer"]["status"], "failed", "{rec}");
}

/// Reads (discarding whatever audio comes) until the server closes the socket.
async fn closed_within(ws: &mut common::twilio::Ws, limit: Duration) -> bool {
    tokio::time::timeout(limit, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
                _ => {}
            }
        }
    })
    .await
    .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_admitting_and_finishes_transfers_in_flight() {
    let h = start_with(|s| s.limits.drain_ms = 12_000).await;
    *h.fake.hang.lock().unwrap() = Some(Duration::from_secs(3600));
    let sid = "CAatkdrain0000000000000000000001";
    let mut call = h.open_call(sid).await;
    call.silence(10).await;
    let shutdown = h.shutdown.lock().unwrap().take().unwrap();
    let started = Instant::now();
    let drain = {
        let state = h.state().clone();
        tokio::spawn(async move { warmline::server::drain(&state, shutdown).await })
    };
    // A webhook during the drain is sent to a person, not given a stream.
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.assert_newcomer_goes_to_a_person("CAlate").await;
    // The live call is handed over; its transfer (hanging) runs to its budget, then the
    // stream closes so the provider dials; the drain ends when the call does.
    assert!(closed_within(&mut call.ws, Duration::from_secs(10)).await);
    drain.await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "drain took {took:?}");
    // The listener is closed now; read what was stored.
    h.state().records.flush();
    let rec = h.state().store.get_call(sid).unwrap().expect("record");
    assert_eq!(rec["handoff"]["reason"], "system_fault", "{rec}");
    assert_eq!(rec["transfer"]["status"], "failed", "{rec}");
    assert_eq!(rec["outcome"], "transfer_failed", "{rec}");
    let decisions = rec["decisions"].to_string();
    assert!(decisions.contains("server shutting down"), "{decisions}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_hanging_up_is_recorded_as_a_decision() {
    let h = start().await;
    let sid = "CAatkhangup000000000000000000001";
    let mut call = h.open_call(sid).await;
    call.silence(10).await;
    call.stop(sid).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rec = record(&h, sid).await;
    let names: Vec<&str> = rec["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["decision"].as_str())
        .collect();
    assert_eq!(names, ["caller_hangup"], "{rec}");
}
