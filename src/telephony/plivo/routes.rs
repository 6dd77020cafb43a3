//! Plivo's HTTP side: the answer URL, the media WebSocket, the fail-open redirect after the
//! stream, the transfer document (`aleg_url`) and the agent's confirm sound. Every callback
//! is checked against `X-Plivo-Signature-V3` when validation is on.

use crate::dialplan::Target;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tracing::Instrument;

use super::{signature, xml};
use crate::server::admission::{Form, Promised, field};
use crate::server::audio::summary_url;
use crate::server::fail_open::{NO_SUMMARY, after_stream, spoken_summary};
use crate::server::{AppState, driver};
use crate::telephony::WireCodec;
use crate::telephony::control::Control;

/// Plivo's side of the server.
#[derive(Debug)]
pub struct PlivoCarrier {
    pub auth_id: String,
    pub auth_token: String,
    pub control: Control,
}

#[derive(Clone)]
pub struct Carrier {
    pub app: Arc<AppState>,
    pub spec: Arc<PlivoCarrier>,
}

const MAX_BODY: usize = 64 * 1024;

pub fn routes(app: Arc<AppState>, spec: Arc<PlivoCarrier>) -> Router {
    Router::new()
        .route("/plivo/answer", post(answer))
        .route("/plivo/media", get(media))
        .route("/plivo/stream-ended", post(stream_ended))
        .route("/plivo/transfer/{id}", post(transfer_document))
        .route("/plivo/agent-whisper/{id}", post(agent_whisper))
        .with_state(Carrier { app, spec })
}

fn xml_response(body: String) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/xml; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

fn verify(
    c: &Carrier,
    headers: &HeaderMap,
    uri: &Uri,
    form: &Form,
) -> Result<(), (StatusCode, &'static str)> {
    let state = &c.app;
    if !state.settings.validate_signatures {
        return Ok(());
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let nonce = header("x-plivo-signature-v3-nonce");
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let url = format!("{}{}", state.settings.public_url, path);
    let token = &c.spec.auth_token;
    let ok = ["x-plivo-signature-v3", "x-plivo-signature-ma-v3"]
        .iter()
        .any(|h| signature::validate(token, &url, form, nonce, header(h)));
    if ok {
        Ok(())
    } else {
        tracing::warn!(%url, "bad X-Plivo-Signature-V3: refused");
        state.metrics.inc_wire_errors("bad_signature");
        Err((StatusCode::FORBIDDEN, "invalid X-Plivo-Signature-V3"))
    }
}

/// The form fields of a Plivo callback whose signature checked out.
pub struct SignedForm(pub Form);

impl FromRequest<Carrier> for SignedForm {
    type Rejection = (StatusCode, &'static str);

    async fn from_request(req: Request, c: &Carrier) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let body: Bytes = axum::body::to_bytes(body, MAX_BODY)
            .await
            .map_err(|_| (StatusCode::PAYLOAD_TOO_LARGE, "callback body too large"))?;
        let form: Form = form_urlencoded::parse(&body).into_owned().collect();
        verify(c, &parts.headers, &parts.uri, &form)?;
        Ok(SignedForm(form))
    }
}

/// A `<Dial>` to the fallback queue.
fn fallback(c: &Carrier, say: &str) -> String {
    match crate::server::fail_open::fallback_queue(&c.app) {
        Some((_, target)) => xml::transfer(say, &Target::from_dialled(&target), ""),
        None => xml::speak(say),
    }
}

/// `POST /plivo/answer`: reserve a slot and stream, or straight to a person.
pub async fn answer(State(c): State<Carrier>, SignedForm(form): SignedForm) -> Response {
    let state = &c.app;
    let call_uuid = field(&form, "CallUUID").unwrap_or_default();
    if call_uuid.is_empty() || call_uuid.len() > 64 {
        return (StatusCode::BAD_REQUEST, "missing or oversized CallUUID").into_response();
    }
    let span = tracing::info_span!("call", call_sid = %call_uuid);
    let _g = span.enter();
    // Plivo's answer request names no account; the signature is the proof.
    let promised = Promised::new(
        call_uuid,
        "",
        field(&form, "From").unwrap_or_default(),
        field(&form, "To").unwrap_or_default(),
    );
    let Ok(token) = state.admit_webhook(promised) else {
        return xml_response(fallback(&c, "Connecting you to someone who can help."));
    };
    let public = &state.settings.public_url;
    xml_response(xml::answer_stream(
        &state.settings.media_ws_url("plivo"),
        &token,
        &format!("{public}/plivo/stream-ended"),
    ))
}

/// `GET /plivo/media`: the audio stream, driven by the generic call driver.
pub async fn media(State(c): State<Carrier>, ws: axum::extract::ws::WebSocketUpgrade) -> Response {
    let session = driver::Session {
        codec: WireCodec::Plivo(Default::default()),
        control: c.spec.control.clone(),
        admit: driver::AdmitBy::Reservation,
    };
    driver::websocket(c.app, ws, session)
}

/// `POST /plivo/stream-ended`: the `<Redirect>` after the stream (keepCallAlive).
pub async fn stream_ended(State(c): State<Carrier>, SignedForm(form): SignedForm) -> Response {
    let call_uuid = field(&form, "CallUUID").unwrap_or_default().to_string();
    let span = tracing::info_span!("call", call_sid = %call_uuid);
    let next = after_stream(&c.app, &call_uuid).instrument(span).await;
    xml_response(next.render(
        |id| c.spec.control.whisper_url(id),
        xml::hangup,
        xml::transfer,
        xml::speak,
    ))
}

/// `POST /plivo/transfer/{id}`: where the transfer sends the caller's leg.
pub async fn transfer_document(
    State(c): State<Carrier>,
    Path(id): Path<String>,
    _signed: SignedForm,
) -> Response {
    match c.spec.control.document(&id) {
        Some(doc) => xml_response(doc),
        None => xml_response(fallback(&c, "Let me connect you to someone who can help.")),
    }
}

/// `POST /plivo/agent-whisper/{id}`: the confirm sound the agent hears on answer — the
/// spoken summary in warmline's own voice (`/audio/summary/{id}.wav`), then how to take the
/// call. Without a stored summary there is nothing to play, and Plivo speaks the fallback.
pub async fn agent_whisper(
    State(c): State<Carrier>,
    Path(id): Path<String>,
    _signed: SignedForm,
) -> Response {
    const TAKE: &str = "Press 1 to take the call.";
    match spoken_summary(&c.app, &id).await {
        Some(_) => xml_response(xml::play_then_speak(
            &summary_url(&c.app.settings.public_url, &id),
            TAKE,
        )),
        None => xml_response(xml::speak(&format!("{NO_SUMMARY} {TAKE}"))),
    }
}
