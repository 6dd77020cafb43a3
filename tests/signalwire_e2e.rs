//! SignalWire end to end: cXML webhooks signed with the project's Signing Key in
//! `X-SignalWire-Signature`, the Twilio-compatible media stream under `/signalwire/media`,
//! and a transfer through SignalWire's LaML REST API with `Url=` pointing at warmline's
//! transfer document, whose `<Dial>` carries the agent whisper. A fake SignalWire space on
//! loopback checks basic auth and records the call updates.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine as _;
use serde_json::json;

use common::twilio::*;
use warmline::telephony::twilio::signature;

const PROJECT: &str = "b6a6d1e4-0000-4000-8000-000000000001";
const API_TOKEN_SW: &str = "PTsignalwire-api-token";
const SIGNING_KEY: &str = "PSKsigning-key-for-webhooks";

/// A call update: the call and its form fields.
type Update = (String, HashMap<String, String>);

#[derive(Clone, Default)]
struct Space {
    updates: Arc<Mutex<Vec<Update>>>,
    bad_auth: Arc<Mutex<u32>>,
}

async fn laml_update(
    State(space): State<Space>,
    Path((project, call)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, axum::Json<serde_json::Value>) {
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{PROJECT}:{API_TOKEN_SW}"))
    );
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(want.as_str()) || project != PROJECT {
        *space.bad_auth.lock().unwrap() += 1;
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({})));
    }
    let form = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let call = call.trim_end_matches(".json").to_string();
    space.updates.lock().unwrap().push((call.clone(), form));
    (StatusCode::OK, axum::Json(json!({"sid": call})))
}

async fn start_space() -> (Space, SocketAddr) {
    let space = Space::default();
    let app = axum::Router::new()
        .route(
            "/api/laml/2010-04-01/Accounts/{project}/Calls/{call}",
            post(laml_update),
        )
        .with_state(space.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (space, addr)
}

async fn post_sw(h: &Harness, path: &str, params: &[(&str, &str)]) -> (u16, String) {
    let url = format!("{}{path}", h.base);
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let r = h
        .http
        .post(&url)
        .header(
            "X-SignalWire-Signature",
            signature::compute(SIGNING_KEY, &url, &owned),
        )
        .form(params)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn sw_line() -> (Harness, Space) {
    let (space, addr) = start_space().await;
    let h = start_with(|s| {
        s.providers.signalwire.project = Some(PROJECT.into());
        s.providers.signalwire.token = Some(API_TOKEN_SW.into());
        s.providers.signalwire.signing_key = Some(SIGNING_KEY.into());
        s.providers.signalwire.space_url = Some(format!("http://{addr}"));
    })
    .await;
    (h, space)
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
    call.send(json!({"event": "start", "streamSid": call.stream_sid,
        "start": {"streamSid": call.stream_sid, "accountSid": PROJECT, "callSid": sid,
                  "tracks": ["inbound"], "customParameters": params,
                  "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
        .await;
    call
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signalwire_call_is_transferred_by_url_with_the_whisper() {
    let (h, space) = sw_line().await;
    let sid = "CAsw0000000000000000000000000001";
    let mut call = sw_call(&h, sid).await;
    call.until_prompt_done(Duration::from_secs(15)).await;
    assert!(call.received.iter().any(|e| e == "media"));
    call.silence(10).await;
    call.speak("explicit_agent_kal/0.wav").await;
    let until = Instant::now() + Duration::from_secs(15);
    let update = loop {
        if let Some(u) = space.updates.lock().unwrap().first().cloned() {
            break u;
        }
        assert!(Instant::now() < until, "no LaML call update");
        call.silence(5).await;
    };
    assert_eq!(update.0, sid);
    assert_eq!(*space.bad_auth.lock().unwrap(), 0);
    let doc_url = update.1.get("Url").expect("Url= update").clone();
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
    let (h, _space) = sw_line().await;
    // Signed with the Twilio auth token instead of the SignalWire signing key.
    let url = format!("{}/signalwire/voice", h.base);
    let params = [("CallSid", "CAforged"), ("AccountSid", PROJECT)];
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let r = h
        .http
        .post(&url)
        .header(
            "X-SignalWire-Signature",
            signature::compute(TOKEN, &url, &owned),
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
