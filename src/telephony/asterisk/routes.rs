//! Asterisk: the AudioSocket listener (calls arrive over TCP from the PBX's dialplan), the
//! chan_websocket endpoint (`GET /asterisk/media`, Asterisk dials warmline as a WebSocket
//! client), and the HTTP routes the dialplan asks, after warmline hands the channel back,
//! where the caller goes and what the agent should hear.
//!
//! AudioSocket has no authentication of its own; the listener belongs on the PBX's private
//! network (loopback or a VLAN behind ACLs). The chan_websocket upgrade and the route
//! endpoints take the shared secret `WARMLINE_ASTERISK_TOKEN`; without it they answer 401.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::config::Limits;
use crate::server::auth::constant_time_eq;
use crate::server::driver::{self, AdmitBy, Session};
use crate::server::fail_open::AfterStream;
use crate::server::log_limit::LogLimit;
use crate::server::{AppState, transport};
use crate::telephony::WireCodec;
use crate::telephony::asterisk::{AsteriskSettings, chan_websocket};
use crate::telephony::control::Control;

static REFUSED_LOG: LogLimit = LogLimit::new();

/// Asterisk's side of the server. Always on: without the secret its route lookups answer 401
/// and chan_websocket and AudioSocket stay off.
#[derive(Debug)]
pub struct AsteriskCarrier {
    pub settings: AsteriskSettings,
}

/// What every handler sees.
#[derive(Clone)]
pub struct Carrier {
    pub app: Arc<AppState>,
    pub spec: Arc<AsteriskCarrier>,
}

/// Starts the AudioSocket listener when it is configured; a listener that cannot start is
/// logged and the HTTP side keeps serving.
pub async fn listen(spec: &AsteriskCarrier, state: &Arc<AppState>, stop: &watch::Receiver<bool>) {
    match bind(&spec.settings).await {
        Ok(Some(listener)) => {
            tokio::spawn(serve_audiosocket(listener, state.clone(), stop.clone()));
        }
        Ok(None) => {}
        Err(e) => tracing::error!(error = %format!("{e:#}"), "Asterisk AudioSocket not started"),
    }
}

/// Accepts AudioSocket connections until `stop`; each one is a call.
pub async fn serve_audiosocket(
    listener: TcpListener,
    state: Arc<AppState>,
    mut stop: watch::Receiver<bool>,
) {
    // A PBX opens one connection per call; anything beyond twice the call limit is refused
    // before it costs more than a descriptor.
    let slots = Arc::new(Semaphore::new(
        state.settings.max_calls.saturating_mul(2).max(4),
    ));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                state.metrics.inc_connections("accept_error");
                if let Some(suppressed) = REFUSED_LOG.permit() {
                    tracing::error!(error = %e, suppressed, "AudioSocket accept failed");
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            state.metrics.inc_connections("refused");
            if let Some(suppressed) = REFUSED_LOG.permit() {
                tracing::warn!(%peer, suppressed, "AudioSocket connection cap reached: refusing");
            }
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let link = transport::tlv(
                stream,
                Limits::ms(state.settings.limits.send_ms),
                state.metrics.clone(),
            );
            let session = Session {
                codec: WireCodec::AudioSocket(Default::default()),
                control: Control::HandBack,
                admit: AdmitBy::Direct,
            };
            driver::run(state, link, session).await;
        });
    }
}

/// Binds the AudioSocket listener when it is configured with its route secret.
async fn bind(s: &AsteriskSettings) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = s.audiosocket_listen else {
        tracing::info!(
            "Asterisk AudioSocket off (set WARMLINE_AUDIOSOCKET_LISTEN and WARMLINE_ASTERISK_TOKEN)"
        );
        return Ok(None);
    };
    if s.usable_token().is_none() {
        anyhow::bail!(
            "WARMLINE_AUDIOSOCKET_LISTEN is set but WARMLINE_ASTERISK_TOKEN (8+ characters) is not: \
             the dialplan's route lookups would be unauthenticated"
        );
    }
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "AudioSocket has no authentication of its own: keep this address on the PBX's private network");
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the AudioSocket listener on {addr}: {e}"))?;
    let local: SocketAddr = listener.local_addr()?;
    tracing::info!(addr = %local, "Asterisk AudioSocket listening");
    Ok(Some(listener))
}

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

#[derive(Deserialize)]
pub struct MediaQuery {
    /// The caller channel's `${UNIQUEID}`, from the dial string's `v(call=…)`.
    call: Option<String>,
    token: Option<String>,
}

/// Whether the upgrade carries the secret: as the password of HTTP Basic auth (what
/// `websocket_client.conf` `username`/`password` are for), a Bearer token, or `?token=` (the
/// dial string's `v(token=…)`, for a PBX that cannot set the client's credentials).
fn media_authorized(c: &Carrier, headers: &HeaderMap, q: &MediaQuery) -> bool {
    use base64::Engine as _;
    let Some(want) = c.spec.settings.token.as_deref() else {
        return false;
    };
    let matches = |given: &[u8]| constant_time_eq(want.as_bytes(), given);
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(b64) = auth.strip_prefix("Basic ") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .unwrap_or_default();
            let password = decoded
                .iter()
                .position(|&b| b == b':')
                .map(|i| &decoded[i + 1..])
                .unwrap_or_default();
            return matches(password);
        }
        if let Some(token) = auth.strip_prefix("Bearer ") {
            return matches(token.trim().as_bytes());
        }
        return false;
    }
    q.token.as_deref().is_some_and(|t| matches(t.as_bytes()))
}

/// `GET /asterisk/media?call=${UNIQUEID}`: Asterisk's chan_websocket connecting as a client
/// (`websocket_client.conf`, `Dial(WebSocket/warmline/…,,g)`). Refused without the secret;
/// each accepted connection is one call, admitted directly (no webhook came first).
pub async fn media(
    State(c): State<Carrier>,
    headers: HeaderMap,
    Query(q): Query<MediaQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let state = c.app.clone();
    if !media_authorized(&c, &headers, &q) {
        return unauthorized(&state);
    }
    let call = q.call.unwrap_or_default();
    if !call.is_empty() && !chan_websocket::valid_call_id(&call) {
        state.metrics.inc_wire_errors("bad_call_id");
        return (StatusCode::BAD_REQUEST, "bad call id\n").into_response();
    }
    let session = Session {
        codec: WireCodec::ChanWebsocket(chan_websocket::Codec::new(&call)),
        control: Control::HandBack,
        admit: AdmitBy::Direct,
    };
    // Asterisk offers the `media` subprotocol when `protocols = media` is configured.
    driver::websocket(state, ws.protocols(["media"]), session)
}

/// The Asterisk HTTP routes: the dialplan's lookups, and the chan_websocket endpoint when
/// the shared secret is set (without one it does not exist).
pub fn routes(app: Arc<AppState>, spec: Arc<AsteriskCarrier>) -> axum::Router {
    use axum::routing::get;
    let mut r = axum::Router::new()
        .route("/asterisk/route/{uuid}", get(route))
        .route("/asterisk/whisper/{uuid}", get(whisper))
        .route("/asterisk/handoff/{uuid}", get(handoff));
    if spec.settings.usable_token().is_some() {
        tracing::info!("Asterisk chan_websocket on at /asterisk/media");
        r = r.route("/asterisk/media", get(media));
    } else {
        tracing::info!("Asterisk chan_websocket off (set WARMLINE_ASTERISK_TOKEN, 8+ characters)");
    }
    r.with_state(Carrier { app, spec })
}

fn authorized(c: &Carrier, q: &TokenQuery) -> bool {
    match (&c.spec.settings.token, &q.token) {
        (Some(want), Some(given)) => constant_time_eq(want.as_bytes(), given.as_bytes()),
        _ => false,
    }
}

fn unauthorized(state: &AppState) -> Response {
    state.metrics.inc_auth_failures();
    (StatusCode::UNAUTHORIZED, "bad or missing token\n").into_response()
}

/// `GET /asterisk/route/{uuid}?token=…`: one word for the dialplan — the queue to dial, or
/// `hangup` after a goodbye. A call with no card (the connection dropped, the process died)
/// gets the fallback queue and a card built from what the store holds.
pub async fn route(
    State(c): State<Carrier>,
    Path(uuid): Path<String>,
    Query(q): Query<TokenQuery>,
) -> Response {
    let state = &c.app;
    if !authorized(&c, &q) {
        return unauthorized(state);
    }
    let next = crate::server::fail_open::after_stream(state, &uuid).await;
    let word = match next {
        AfterStream::Hangup => "hangup".to_string(),
        AfterStream::Dial { queue, .. } if !queue.is_empty() => queue,
        AfterStream::Dial { .. } => "general".to_string(),
    };
    (StatusCode::OK, word).into_response()
}

/// The call's latest stored card, once the records written so far have reached the store.
async fn latest_card(state: &AppState, uuid: String) -> Option<serde_json::Value> {
    let (store, records) = (state.store.clone(), state.records.clone());
    tokio::task::spawn_blocking(move || {
        records.flush();
        store.handoff_for_call(&uuid).ok().flatten()
    })
    .await
    .ok()
    .flatten()
}

/// `GET /asterisk/whisper/{uuid}?token=…`: the spoken summary as text, for a PBX that
/// speaks it to the agent before bridging.
pub async fn whisper(
    State(c): State<Carrier>,
    Path(uuid): Path<String>,
    Query(q): Query<TokenQuery>,
) -> Response {
    let state = &c.app;
    if !authorized(&c, &q) {
        return unauthorized(state);
    }
    let card = latest_card(state, uuid).await;
    match card.and_then(|c| c["spoken_summary"].as_str().map(str::to_string)) {
        Some(s) => (StatusCode::OK, s).into_response(),
        None => (StatusCode::OK, crate::server::fail_open::NO_SUMMARY).into_response(),
    }
}

/// `GET /asterisk/handoff/{uuid}?token=…`: the id of the call's latest handoff (one word, or
/// empty when there is none), so the dialplan can play the agent the spoken summary from
/// `/audio/summary/{id}.wav` with `Playback()`. Asked after `/asterisk/route/{uuid}`, which
/// stores a card for a call cut before any decision, so every routed call has one.
pub async fn handoff(
    State(c): State<Carrier>,
    Path(uuid): Path<String>,
    Query(q): Query<TokenQuery>,
) -> Response {
    let state = &c.app;
    if !authorized(&c, &q) {
        return unauthorized(state);
    }
    let card = latest_card(state, uuid).await;
    let id = card
        .and_then(|c| c["handoff_id"].as_str().map(str::to_string))
        .unwrap_or_default();
    (StatusCode::OK, id).into_response()
}
