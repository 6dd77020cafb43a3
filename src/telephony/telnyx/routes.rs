//! Telnyx's HTTP side: one Call Control webhook (`POST /telnyx/call`, every event, Ed25519
//! signed) and the media WebSocket (`GET /telnyx/media`).
//!
//! `call.initiated` (incoming) reserves a slot and answers with the stream, or — full, not
//! ready — answers and transfers the caller to a person. The fail-open path runs once per
//! call when its stream ends without a transfer Telnyx accepted: when the socket closes here,
//! or on `streaming.stopped`/`streaming.failed` for a call this process is not driving.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::call_control::{self, Transfer};
use super::codec;
use super::signature::{PublicKey, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::config::Limits;
use crate::server::admission::Promised;
use crate::server::fail_open::{AfterStream, after_stream, fallback_queue};
use crate::server::transport::{self, Incoming, Link};
use crate::server::{AppState, driver};
use crate::telephony::WireCodec;
use crate::telephony::control::Control;
use crate::telephony::media::Frame;
use crate::telephony::twilio::rest::TwilioRest;

/// Largest webhook body read (Telnyx events are a few kilobytes).
const MAX_BODY: usize = 64 * 1024;
/// Largest WebSocket message a media stream may send (a 20 ms frame is a few hundred bytes).
const MAX_MESSAGE: usize = 64 * 1024;
/// Calls whose fail-open decision is remembered, so the socket and the webhook act once.
const DECIDED_KEPT: usize = 4096;

/// Telnyx's side of the server.
#[derive(Debug)]
pub struct TelnyxCarrier {
    pub public_key: PublicKey,
    pub rest: TwilioRest,
    pub control: Control,
    calls: Calls,
}

impl TelnyxCarrier {
    pub fn new(public_key: PublicKey, rest: TwilioRest, public_url: &str) -> TelnyxCarrier {
        TelnyxCarrier {
            public_key,
            control: Control::Telnyx {
                rest: Some(rest.clone()),
                public_url: public_url.to_string(),
            },
            rest,
            calls: Calls::default(),
        }
    }
}

/// Which calls have a stream in this process, and which have had their fail-open decision.
#[derive(Debug, Default)]
struct Calls {
    inner: Mutex<CallsInner>,
}

#[derive(Debug, Default)]
struct CallsInner {
    /// Streams naming each call (a forged second stream must not unmark the real one).
    live: HashMap<String, u32>,
    decided: VecDeque<String>,
    /// Callers whose agent leg answered (or was bridged): its later hang-up is the end of
    /// a conversation, not a failed transfer.
    agent_answered: VecDeque<String>,
    /// Callers who hung up: nothing more is done for them.
    caller_gone: VecDeque<String>,
    /// Callers already re-transferred once after a failed agent leg (no loops).
    retried: VecDeque<String>,
}

/// Adds `call` to a bounded list; true if it was not there yet.
fn remember(list: &mut VecDeque<String>, call: &str) -> bool {
    if list.iter().any(|c| c == call) {
        return false;
    }
    if list.len() >= DECIDED_KEPT {
        list.pop_front();
    }
    list.push_back(call.to_string());
    true
}

impl Calls {
    fn lock(&self) -> std::sync::MutexGuard<'_, CallsInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stream_began(&self, call: &str) {
        *self.lock().live.entry(call.to_string()).or_default() += 1;
    }

    fn stream_ended(&self, call: &str) {
        let mut g = self.lock();
        if let Some(n) = g.live.get_mut(call) {
            *n -= 1;
            if *n == 0 {
                g.live.remove(call);
            }
        }
    }

    fn is_live(&self, call: &str) -> bool {
        self.lock().live.contains_key(call)
    }

    /// True the first time only.
    fn decide_once(&self, call: &str) -> bool {
        remember(&mut self.lock().decided, call)
    }

    fn agent_answered(&self, caller: &str) {
        remember(&mut self.lock().agent_answered, caller);
    }

    fn caller_hung_up(&self, caller: &str) {
        remember(&mut self.lock().caller_gone, caller);
    }

    /// Whether a failed agent leg for `caller` should be retried: the caller is still there,
    /// no agent leg answered, and this is the first failure.
    fn retry_after_failed_leg(&self, caller: &str) -> bool {
        let mut g = self.lock();
        let answered = g.agent_answered.iter().any(|c| c == caller);
        let gone = g.caller_gone.iter().any(|c| c == caller);
        !answered && !gone && remember(&mut g.retried, caller)
    }
}

#[derive(Clone)]
pub struct Carrier {
    pub app: Arc<AppState>,
    pub spec: Arc<TelnyxCarrier>,
}

pub fn routes(app: Arc<AppState>, spec: Arc<TelnyxCarrier>) -> Router {
    Router::new()
        .route("/telnyx/call", post(webhook))
        .route("/telnyx/media", get(media))
        .with_state(Carrier { app, spec })
}

/// The parts of a Call Control webhook warmline reads.
#[derive(Deserialize)]
struct Webhook {
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    event_type: String,
    #[serde(default)]
    payload: Payload,
}

#[derive(Deserialize, Default)]
struct Payload {
    #[serde(default)]
    call_control_id: String,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    direction: Option<String>,
    #[serde(default)]
    client_state: Option<String>,
    #[serde(default)]
    hangup_cause: Option<String>,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn verify(c: &Carrier, headers: &HeaderMap, body: &[u8]) -> Result<(), (StatusCode, &'static str)> {
    if !c.app.settings.validate_signatures {
        return Ok(());
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    c.spec
        .public_key
        .verify(
            header(TIMESTAMP_HEADER),
            header(SIGNATURE_HEADER),
            body,
            unix_now(),
        )
        .map_err(|e| {
            tracing::warn!(error = %e, "bad Telnyx webhook signature: refused");
            c.app.metrics.inc_wire_errors("bad_signature");
            (StatusCode::FORBIDDEN, "invalid telnyx-signature-ed25519")
        })
}

/// `POST /telnyx/call`: every Call Control event. Answered at once; the commands it leads to
/// run in the background, so a slow API never makes Telnyx retry the webhook.
pub async fn webhook(State(c): State<Carrier>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "webhook body too large").into_response();
    };
    if let Err(refused) = verify(&c, &parts.headers, &body) {
        return refused.into_response();
    }
    let Ok(event) = serde_json::from_slice::<Webhook>(&body) else {
        return (StatusCode::BAD_REQUEST, "not a Call Control event").into_response();
    };
    let p = event.data.payload;
    let call = p.call_control_id;
    if call.is_empty() || call.len() > 256 {
        return StatusCode::OK.into_response();
    }
    // The agent's leg of a transfer (its client_state names the caller it was dialled for).
    if let Some(caller) = p
        .client_state
        .as_deref()
        .and_then(call_control::caller_of_agent_leg)
    {
        let span = tracing::info_span!("call", call_sid = %caller);
        match event.data.event_type.as_str() {
            "call.answered" | "call.bridged" => c.spec.calls.agent_answered(&caller),
            "call.hangup" => {
                let cause = p.hangup_cause.unwrap_or_default();
                tokio::spawn(
                    async move { agent_leg_ended(&c, &caller, &cause).await }.instrument(span),
                );
            }
            _ => {}
        }
        return StatusCode::OK.into_response();
    }
    let span = tracing::info_span!("call", call_sid = %call);
    match event.data.event_type.as_str() {
        "call.initiated" if p.direction.as_deref() == Some("incoming") => {
            let from = p.from.unwrap_or_default();
            let to = p.to.unwrap_or_default();
            tokio::spawn(async move { initiated(&c, &call, &from, &to).await }.instrument(span));
        }
        // The caller is gone: nothing is left to fail open for this call.
        "call.hangup" => {
            c.spec.calls.decide_once(&call);
            c.spec.calls.caller_hung_up(&call);
        }
        // The caller's leg bridged to the agent's: the transfer reached a person.
        "call.bridged" => c.spec.calls.agent_answered(&call),
        "streaming.stopped" | "streaming.failed" => {
            tokio::spawn(async move { stream_ended(&c, &call, false).await }.instrument(span));
        }
        _ => {}
    }
    StatusCode::OK.into_response()
}

/// A new call: answered with the stream, or sent to a person when warmline cannot take it.
async fn initiated(c: &Carrier, call: &str, from: &str, to: &str) {
    let state = &c.app;
    // The webhook names no account the stream repeats; the signature is the proof.
    let Ok(token) = state.admit_webhook(Promised::new(call, "", from, to)) else {
        let answered = call_control::answer_plain("warmline-answer")
            .send(&c.spec.rest, call)
            .await;
        if let Err(e) = answered {
            tracing::error!(error = %e, "Telnyx answer failed");
        }
        to_person(c, call, "Connecting you to someone who can help.", None).await;
        return;
    };
    let stream_url = state.settings.media_ws_url("telnyx");
    if let Err(e) = call_control::answer(&stream_url, &token, "warmline-answer")
        .send(&c.spec.rest, call)
        .await
    {
        // The reservation expires on its own; Telnyx keeps ringing until the caller gives up
        // or a retry of the webhook gets through.
        tracing::error!(error = %e, "Telnyx answer with stream failed");
    }
}

/// Transfers the caller to the fallback queue (or just speaks, when the dialplan has none).
async fn to_person(c: &Carrier, call: &str, say: &str, handoff_id: Option<&str>) {
    let rest = &c.spec.rest;
    let result = match fallback_queue(&c.app) {
        Some((_, target)) => {
            transfer_to(c, call, say, &target, handoff_id).await;
            return;
        }
        None => {
            call_control::speak(say, "warmline-fallback-speak")
                .send(rest, call)
                .await
        }
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "Telnyx fallback speak failed");
    }
}

async fn transfer_to(c: &Carrier, call: &str, say: &str, target: &str, handoff_id: Option<&str>) {
    let t = Transfer {
        say: say.to_string(),
        target: target.to_string(),
        whisper_url: handoff_id
            .and_then(|id| c.spec.control.whisper_url(id))
            .unwrap_or_default(),
        id: "warmline-fallback".to_string(),
        // The fallback runs once the stream is gone (or never existed).
        stop_stream: false,
    };
    match t.run(&c.spec.rest, call).await {
        Ok(_) => tracing::info!(target, "fallback transfer accepted by Telnyx"),
        Err(e) => {
            c.app.metrics.inc_transfer_failures(e.kind());
            tracing::error!(error = %e, "fallback transfer failed");
        }
    }
}

/// The agent's leg hung up. Before anyone answered, the transfer failed (no answer, busy,
/// rejected): Telnyx keeps the caller's leg up ("the original call will remain active",
/// developers.telnyx.com `call-commands/transfer-call`), so the caller is transferred once
/// more, to the fallback queue, with the same card's spoken summary for whoever answers.
async fn agent_leg_ended(c: &Carrier, caller: &str, cause: &str) {
    if !c.spec.calls.retry_after_failed_leg(caller) {
        return;
    }
    tracing::warn!(
        cause,
        "the agent's leg ended before anyone answered: trying the fallback queue"
    );
    let (store, records) = (c.app.store.clone(), c.app.records.clone());
    let sid = caller.to_string();
    let card = tokio::task::spawn_blocking(move || {
        records.flush();
        store.handoff_for_call(&sid).ok().flatten()
    })
    .await
    .ok()
    .flatten();
    let handoff_id = card.and_then(|c| c["handoff_id"].as_str().map(str::to_string));
    if let Some(id) = &handoff_id {
        c.app
            .records
            .send(crate::server::records::Op::TransferStatus {
                handoff_id: id.clone(),
                status: crate::call::TransferStatus::Failed,
                detail: format!(
                    "the agent's leg ended unanswered ({cause}); fallback queue dialled"
                ),
            });
    }
    c.app.metrics.inc_transfer_failures("agent_leg");
    to_person(
        c,
        caller,
        "Sorry, nobody picked up there. Connecting you to someone else who can help.",
        handoff_id.as_deref(),
    )
    .await;
}

/// A call's stream ended (its socket here closed, or Telnyx said so). Unless Telnyx took the
/// transfer or the caller hung up, the caller goes to a person with whatever card exists; a
/// caller who had their goodbye is hung up on.
async fn stream_ended(c: &Carrier, call: &str, from_socket: bool) {
    // The socket's own end decides for a call driven here; the webhook is for the rest
    // (a stream that never connected, or one a restarted process lost).
    if !from_socket && c.spec.calls.is_live(call) {
        return;
    }
    let (store, records) = (c.app.store.clone(), c.app.records.clone());
    let sid = call.to_string();
    let outcome = tokio::task::spawn_blocking(move || {
        records.flush();
        store.outcome(&sid).ok().flatten()
    })
    .await
    .ok()
    .flatten();
    // A socket whose call never got past admission proves nothing about the call.
    if from_socket && outcome.is_none() {
        return;
    }
    if !c.spec.calls.decide_once(call) {
        return;
    }
    if matches!(
        outcome,
        Some(crate::call::Outcome::Transferred | crate::call::Outcome::CallerHangup)
    ) {
        return;
    }
    match after_stream(&c.app, call).await {
        AfterStream::Hangup => {
            if let Err(e) = call_control::hangup("warmline-hangup")
                .send(&c.spec.rest, call)
                .await
            {
                tracing::warn!(error = %e, "Telnyx hangup after the goodbye failed");
            }
        }
        AfterStream::Dial {
            say,
            target,
            handoff_id,
            ..
        } if !target.is_empty() => {
            transfer_to(c, call, say, &target, handoff_id.as_deref()).await;
        }
        AfterStream::Dial { say, .. } => to_person(c, call, say, None).await,
    }
}

/// `GET /telnyx/media`: the audio stream, driven by the generic call driver; when it ends,
/// the fail-open check runs for the call it named.
pub async fn media(State(c): State<Carrier>, ws: axum::extract::ws::WebSocketUpgrade) -> Response {
    ws.max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| async move {
            let state = c.app.clone();
            let link = transport::websocket(
                socket,
                Limits::ms(state.settings.limits.send_ms),
                state.metrics.clone(),
            );
            let (link, named) = watch_start(link, c.spec.clone());
            let session = driver::Session {
                codec: WireCodec::Telnyx(Default::default()),
                control: c.spec.control.clone(),
                admit: driver::AdmitBy::Reservation,
            };
            driver::run(state, link, session).await;
            if let Some(call) = named.get() {
                c.spec.calls.stream_ended(call);
                let span = tracing::info_span!("call", call_sid = %call);
                stream_ended(&c, call, true).instrument(span).await;
            }
        })
}

/// Passes the link's frames through unchanged, noting the call its `start` names.
fn watch_start(link: Link, spec: Arc<TelnyxCarrier>) -> (Link, Arc<OnceLock<String>>) {
    let Link { mut rx, tx } = link;
    let (fwd, out) = mpsc::channel(8);
    let named = Arc::new(OnceLock::new());
    let seen = named.clone();
    tokio::spawn(async move {
        while let Some(incoming) = rx.recv().await {
            if seen.get().is_none()
                && let Incoming::Frame(Frame::Text(t)) = &incoming
                && let Some(call) = codec::call_of_start(t)
            {
                spec.calls.stream_began(&call);
                let _ = seen.set(call);
            }
            if fwd.send(incoming).await.is_err() {
                break;
            }
        }
    });
    (Link { rx: out, tx }, named)
}
