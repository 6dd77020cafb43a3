//! The real server, driven exactly as Twilio drives it, over real HTTP and WebSockets on
//! 127.0.0.1: a signed voice webhook, the media stream paced at 20 ms, marks echoed, a fake
//! Twilio REST API that checks basic auth and captures the transfer TwiML, and a webhook
//! receiver for the context card.

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use common::twilio::*;

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
    assert!(h.state().store.get_call(sid).unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_this_build_cannot_name_fails_open_to_a_person() {
    let h = start().await;
    let sid = "CAe2eunknownoutcome00000000000001";
    let store = h.state().store.clone();
    store
        .begin_call(sid, "+15550001111", "+15550009000", "2026-01-01T09:00:00Z")
        .unwrap();
    // As a newer instance sharing the database might leave it.
    let db = h.state().settings.data_dir.join("warmline.sqlite");
    rusqlite::Connection::open(db)
        .unwrap()
        .execute(
            "UPDATE calls SET outcome = 'escalated_to_mars' WHERE call_sid = ?1",
            [sid],
        )
        .unwrap();
    assert!(store.outcome(sid).is_err());
    let (status, twiml) = h
        .post_signed(
            "/twilio/stream-ended",
            &[("CallSid", sid), ("AccountSid", ACCOUNT)],
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        twiml.contains("<Dial>") && twiml.contains("+15550100000"),
        "not known to be over, so the caller reaches a person: {twiml}"
    );
    // The record shows what is stored, and the metric label is the one dashboards read.
    let (_, record) = get_json(&h, &format!("/api/calls/{sid}")).await;
    assert_eq!(record["outcome"], "escalated_to_mars", "{record}");
    assert!(
        metrics(&h)
            .await
            .contains(r#"warmline_calls_total{outcome="stream_ended_to_human"} 1"#)
    );
}
