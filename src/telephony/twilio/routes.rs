//! The HTTP side of the TwiML family — Twilio, and SignalWire's cXML, which speaks the same
//! webhooks, markup and Media Streams with its own signature header, key and REST host: the
//! voice webhook, the media WebSocket, the stream-ended fail-open path, the agent whisper and
//! the transfer document. Every callback is signature-checked when validation is on.

use crate::dialplan::Target;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::{signature, twiml};
use tracing::Instrument;

use crate::server::admission::{Form, Promised, field};
use crate::server::fail_open::{NO_SUMMARY, after_stream, fallback_queue, spoken_summary};
use crate::server::{AppState, driver};
use crate::telephony::WireCodec;
use crate::telephony::control::Control;

/// One carrier of the TwiML family.
#[derive(Debug)]
pub struct TwimlCarrier {
    /// Route prefix and name: `/{prefix}/voice`, `/{prefix}/media`, …
    pub prefix: &'static str,
    /// The account (Twilio AccountSid, SignalWire Project) whose calls are taken.
    pub account: Option<String>,
    /// The key callbacks are signed with (Twilio auth token, SignalWire Signing Key).
    pub signing_key: Option<String>,
    /// Headers that may carry the signature, in the order tried.
    pub signature_headers: &'static [&'static str],
    pub control: Control,
}

/// What every handler of one carrier sees.
#[derive(Clone)]
pub struct Carrier {
    pub app: Arc<AppState>,
    pub spec: Arc<TwimlCarrier>,
}

/// Largest callback body accepted.
const MAX_BODY: usize = 64 * 1024;

/// The carrier's routes, under `/{prefix}/`.
pub fn routes(app: Arc<AppState>, spec: Arc<TwimlCarrier>) -> Router {
    let p = spec.prefix;
    Router::new()
        .route(&format!("/{p}/voice"), post(voice))
        .route(&format!("/{p}/stream-ended"), post(stream_ended))
        .route(
            &format!("/{p}/agent-whisper/{{id}}"),
            post(agent_whisper).get(agent_whisper),
        )
        .route(
            &format!("/{p}/transfer/{{id}}"),
            post(transfer_document).get(transfer_document),
        )
        .route(&format!("/{p}/media"), get(media))
        .with_state(Carrier { app, spec })
}

fn xml(body: String) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Checks the carrier's signature over the public URL of this request and its form fields.
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
    let Some(key) = c.spec.signing_key.as_deref() else {
        tracing::warn!(path = %uri.path(), carrier = c.spec.prefix, "signature validation is on but the carrier's signing key is unset: refusing");
        return Err((
            StatusCode::FORBIDDEN,
            "signature validation needs the carrier's signing key",
        ));
    };
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let url = format!("{}{}", state.settings.public_url, path);
    let given = c
        .spec
        .signature_headers
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .unwrap_or("");
    if signature::validate(key, &url, form, given) {
        Ok(())
    } else {
        tracing::warn!(%url, carrier = c.spec.prefix, "bad request signature: refused");
        state.metrics.inc_wire_errors("bad_signature");
        Err((StatusCode::FORBIDDEN, "invalid request signature"))
    }
}

fn parse_form(body: &Bytes) -> Form {
    form_urlencoded::parse(body).into_owned().collect()
}

/// The form fields of a Twilio callback whose `X-Twilio-Signature` checked out. As an
/// extractor, no handler can forget the check.
pub struct SignedForm(pub Form);

impl FromRequest<Carrier> for SignedForm {
    type Rejection = (StatusCode, &'static str);

    async fn from_request(req: Request, state: &Carrier) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, MAX_BODY)
            .await
            .map_err(|_| (StatusCode::PAYLOAD_TOO_LARGE, "callback body too large"))?;
        // A GET carries its fields in the query string, which is already part of the signed URL.
        let form = if parts.method == axum::http::Method::GET {
            Vec::new()
        } else {
            parse_form(&body)
        };
        verify(state, &parts.headers, &parts.uri, &form)?;
        Ok(SignedForm(form))
    }
}

/// `POST /twilio/voice`: reserve a call slot and answer with `<Connect><Stream>`, or send the
/// caller straight to a human when the line cannot take the call (model still loading, at
/// capacity, shutting down).
pub async fn voice(State(c): State<Carrier>, SignedForm(form): SignedForm) -> Response {
    let state = &c.app;
    let call_sid = field(&form, "CallSid").unwrap_or_default();
    if call_sid.is_empty() || call_sid.len() > 64 {
        return (StatusCode::BAD_REQUEST, "missing or oversized CallSid").into_response();
    }
    let from = field(&form, "From").unwrap_or_default();
    let to = field(&form, "To").unwrap_or_default();
    let account_sid = field(&form, "AccountSid").unwrap_or_default();
    let span = tracing::info_span!("call", call_sid = %call_sid);
    let _g = span.enter();

    if let Some(ours) = c.spec.account.as_deref()
        && account_sid != ours
    {
        tracing::warn!(account_sid, "voice webhook for another account: refused");
        state.metrics.inc_wire_errors("wrong_account");
        return (StatusCode::FORBIDDEN, "wrong AccountSid").into_response();
    }
    let Ok(token) = state.admit_webhook(Promised::new(call_sid, account_sid, from, to)) else {
        return xml(fallback_dial(
            &c,
            "Connecting you to someone who can help.",
            None,
        ));
    };
    let public = &state.settings.public_url;
    let prefix = c.spec.prefix;
    tracing::info!(%from, %to, "answering with a media stream");
    // From/To go along as parameters for the contract's sake; the stream side trusts the
    // copies kept with the reservation, which came from this signed request.
    xml(twiml::connect_stream(
        &format!("{public}/{prefix}/stream-ended"),
        &state.settings.media_ws_url(prefix),
        &[("token", token.as_str()), ("From", from), ("To", to)],
    ))
}

/// `GET /{prefix}/media`: the Media Streams WebSocket, driven by the generic call driver.
pub async fn media(State(c): State<Carrier>, ws: axum::extract::ws::WebSocketUpgrade) -> Response {
    let session = driver::Session {
        codec: WireCodec::Twilio(Default::default()),
        control: c.spec.control.clone(),
        admit: driver::AdmitBy::Reservation,
    };
    driver::websocket(c.app, ws, session)
}

/// A `<Dial>` to the fallback queue, with the agent whisper when a handoff exists.
fn fallback_dial(c: &Carrier, say: &str, handoff_id: Option<&str>) -> String {
    let Some((_, target)) = fallback_queue(&c.app) else {
        return twiml::say(say);
    };
    let whisper = handoff_id
        .and_then(|id| c.spec.control.whisper_url(id))
        .unwrap_or_default();
    twiml::transfer(say, &Target::from_dialled(&target), &whisper)
}

/// `POST /twilio/stream-ended`: the `<Connect>` finished. A call warmline finished itself
/// hangs up; any other ending (dropped socket, restart, fault, a transfer the REST API
/// refused) dials a person with whatever context exists.
pub async fn stream_ended(State(c): State<Carrier>, SignedForm(form): SignedForm) -> Response {
    let call_sid = field(&form, "CallSid").unwrap_or_default().to_string();
    let span = tracing::info_span!("call", call_sid = %call_sid);
    let next = after_stream(&c.app, &call_sid).instrument(span).await;
    xml(next.render(
        |id| c.spec.control.whisper_url(id),
        twiml::hangup,
        twiml::transfer,
        twiml::say,
    ))
}

/// `POST|GET /twilio/agent-whisper/{id}`: what the agent hears before the caller is bridged.
pub async fn agent_whisper(
    State(c): State<Carrier>,
    Path(id): Path<String>,
    _signed: SignedForm,
) -> Response {
    match spoken_summary(&c.app, &id).await {
        Some(s) => xml(twiml::say(&s)),
        None => (StatusCode::NOT_FOUND, xml(twiml::say(NO_SUMMARY))).into_response(),
    }
}

/// `POST|GET /{prefix}/transfer/{id}`: the `<Say>` + `<Dial>` document a carrier fetches
/// after a REST update that named a URL rather than carrying the document (SignalWire).
pub async fn transfer_document(
    State(c): State<Carrier>,
    Path(id): Path<String>,
    _signed: SignedForm,
) -> Response {
    match c.spec.control.document(&id) {
        Some(doc) => xml(doc),
        // Unknown or expired: still a person, never silence.
        None => xml(fallback_dial(
            &c,
            "Let me connect you to someone who can help.",
            None,
        )),
    }
}
