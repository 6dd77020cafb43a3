//! SignalWire end to end: cXML webhooks signed with the project's Signing Key in
//! `X-SignalWire-Signature`, the Twilio-compatible media stream under `/signalwire/media`,
//! and a transfer through SignalWire's LaML REST API with `Url=` pointing at warmline's
//! transfer document, whose `<Dial>` carries the agent whisper. The library's fake space
//! (`warmline::loadtest::fakes`) checks basic auth and records the call updates.

mod common;

use std::time::{Duration, Instant};

use common::twilio::*;
use warmline::loadtest::fakes::signalwire::{self as fake, PROJECT};
use warmline::loadtest::fakes::twilio::sign;

async fn post_sw(h: &Harness, path: &str, params: &[(&str, &str)]) -> (u16, String) {
    let url = format!("{}{path}", h.base);
    let r = h
        .http
        .post(&url)
        .header(
            fake::SIGNATURE_HEADER,
            fake::sign(&url, &warmline::loadtest::fakes::form(params)),
        )
        .form(params)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// warmline with SignalWire on; its space is the harness's fake (the LaML API is Twilio's
/// under `/api/laml`), which checks the project's basic auth and records the call updates.
async fn sw_line() -> Harness {
    start_with(|s| {
        let space = s.providers.twilio.api_base.clone();
        common::apply_env(s, &fake::server_env(&space));
    })
    .await
}

async fn sw_call(h: &Harness, sid: &str) -> Call {
    let (status, cxml) = post_sw(
        h,
        "/signalwire/voice",
        &[
            ("CallSid", sid),
            ("AccountSid", PROJECT),
            ("From", "+15551230000"),
            ("To", "+15550009000"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{cxml}");
    assert!(
        cxml.contains(&format!("{}/signalwire/stream-ended", h.base)),
        "{cxml}"
    );
    let url = attr(&cxml, "Stream", "url");
    assert!(url.ends_with("/signalwire/media"), "{url}");
    let params = parameters(&cxml);
    let (ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let mut call = Call {
        ws,
        stream_sid: format!("MZ{sid}"),
        seq: 0,
        chunk: 0,
        received: Vec::new(),
    };
    let start = warmline::loadtest::fakes::twilio::start(&call.stream_sid, PROJECT, sid, &params);
    call.send(start).await;
    call
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signalwire_call_is_transferred_by_url_with_the_whisper() {
    let h = sw_line().await;
    let sid = "CAsw0000000000000000000000000001";
    let mut call = sw_call(&h, sid).await;
    call.until_prompt_done(Duration::from_secs(15)).await;
    assert!(call.received.iter().any(|e| e == "media"));
    call.silence(10).await;
    call.speak("explicit_agent_kal/0.wav").await;
    let until = Instant::now() + Duration::from_secs(15);
    let update = loop {
        if let Some(u) = h.fake.seen.lock().unwrap().updates.first().cloned() {
            break u;
        }
        assert!(Instant::now() < until, "no LaML call update");
        call.silence(5).await;
    };
    assert_eq!(update.call, sid);
    assert_eq!(h.fake.seen.lock().unwrap().bad_auth, 0);
    let doc_url = update.form.get("Url").expect("Url= update").clone();
    assert!(doc_url.starts_with(&format!("{}/signalwire/transfer/", h.base)));
    // SignalWire fetches the document (signed), then the agent's leg fetches the whisper.
    let (status, doc) = post_sw(
        &h,
        doc_url.trim_start_matches(&h.base),
        &[("CallSid", sid), ("AccountSid", PROJECT)],
    )
    .await;
    assert_eq!(status, 200, "{doc}");
    assert!(doc.contains("<Dial>") && doc.contains("<Say>"), "{doc}");
    let whisper_url = attr(&doc, "Number", "url");
    assert!(
        whisper_url.starts_with(&format!("{}/signalwire/agent-whisper/", h.base)),
        "{whisper_url}"
    );
    let (status, whisper) = post_sw(
        &h,
        whisper_url.trim_start_matches(&h.base),
        &[("CallSid", "CAagent")],
    )
    .await;
    assert_eq!(status, 200, "{whisper}");
    assert!(text_of(&whisper, "Say").contains("call"), "{whisper}");
    call.stop(sid).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, rec) = get_json(&h, &format!("/api/calls/{sid}")).await;
    assert_eq!(rec["handoff"]["reason"], "explicit_request", "{rec}");
    assert_eq!(rec["from"], "+15551230000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signalwire_refuses_twilio_signatures_and_a_dropped_stream_fails_open() {
    let h = sw_line().await;
    // Signed with the Twilio auth token instead of the SignalWire signing key.
    let url = format!("{}/signalwire/voice", h.base);
    let params = [("CallSid", "CAforged"), ("AccountSid", PROJECT)];
    let r = h
        .http
        .post(&url)
        .header(
            fake::SIGNATURE_HEADER,
            sign(TOKEN, &url, &warmline::loadtest::fakes::form(&params)),
        )
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // Twilio's routes do not take SignalWire's signature either.
    let (status, _) = post_sw(&h, "/twilio/voice", &params).await;
    assert_eq!(status, 403);

    let sid = "CAsw0000000000000000000000000002";
    let mut call = sw_call(&h, sid).await;
    call.silence(10).await;
    drop(call);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, cxml) = post_sw(
        &h,
        "/signalwire/stream-ended",
        &[("CallSid", sid), ("AccountSid", PROJECT)],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        cxml.contains("<Dial>") && cxml.contains("/signalwire/agent-whisper/"),
        "{cxml}"
    );
}
