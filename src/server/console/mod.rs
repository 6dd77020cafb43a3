//! The web console at `/console`: a live board, context cards, history and trends for the
//! people who take and run the calls, behind its own login.
//!
//! Everything is served from this binary (the assets are embedded); the pages hold no data
//! themselves and fetch it from `/console/api/*`, which answers 401 without a session. The
//! board follows calls over Server-Sent Events fed by the record writer ([`live`]), so it
//! shows only what the store already holds and costs the call path nothing.

pub mod live;
pub mod session;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Form, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use crate::config::ConsoleRole;
use crate::store::CallFilter;
use session::{COOKIE, LoginError, Session};

pub use session::{Sessions, hash_password};

const INDEX_HTML: &str = include_str!("assets/index.html");
const LOGIN_HTML: &str = include_str!("assets/login.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// The console's routes, all under `/console`.
pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/console", get(index))
        .route("/console/", get(index))
        .route("/console/login", get(login_page).post(login))
        .route("/console/logout", post(logout))
        .route("/console/assets/{file}", get(asset))
        .route("/console/api/me", get(me))
        .route("/console/api/live", get(live_events))
        .route("/console/api/calls", get(search_calls))
        .route("/console/api/calls/{call_sid}", get(get_call))
        .route("/console/api/calls/{call_sid}/fixture", get(call_fixture))
        .route("/console/api/trends", get(trends))
        .route("/console/api/users", get(users))
        .route("/console/api/users/{name}/revoke", post(revoke))
        .layer(axum::middleware::from_fn_with_state(state, guard))
}

/// Headers for every console response: nothing from elsewhere runs in these pages, they
/// are never framed, and caller data is never cached. Cross-site state changes are refused
/// before any handler runs.
async fn guard(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if request.method() != axum::http::Method::GET
        && request.method() != axum::http::Method::HEAD
        && !same_origin(&state, request.headers())
    {
        return (StatusCode::FORBIDDEN, "cross-site request refused\n").into_response();
    }
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: with it browsers send `Origin: null` on form posts, and the
    // same-origin check above needs the real one.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// A browser says where a request comes from (`Origin`, or `Sec-Fetch-Site`); it must be
/// this console. Clients that send neither are not browsers, and carry no ambient cookie
/// a forged form could ride on.
fn same_origin(state: &AppState, headers: &HeaderMap) -> bool {
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let public = &state.settings.public_url;
        let scheme = if public.starts_with("https://") {
            "https"
        } else {
            "http"
        };
        let own = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(|host| format!("{scheme}://{host}"));
        return origin == origin_of(public) || Some(origin.to_string()) == own;
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some(site) => site == "same-origin" || site == "none",
        None => true,
    }
}

fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

fn session_of(state: &AppState, headers: &HeaderMap) -> Option<Session> {
    let cookie = headers.get(header::COOKIE).and_then(|v| v.to_str().ok());
    state.console.from_cookie_header(cookie)
}

/// A request with a live session; anything else gets 401 and no data.
struct Authed(Session);

impl FromRequestParts<Arc<AppState>> for Authed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        match session_of(state, &parts.headers) {
            Some(s) => Ok(Authed(s)),
            None => {
                state.metrics.inc_auth_failures();
                Err((
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"error": "log in at /console/login"})),
                )
                    .into_response())
            }
        }
    }
}

/// An admin's session; an agent gets 403.
struct Admin(Session);

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let Authed(s) = Authed::from_request_parts(parts, state).await?;
        if s.role == ConsoleRole::Admin {
            Ok(Admin(s))
        } else {
            Err((StatusCode::FORBIDDEN, Json(json!({"error": "admins only"}))).into_response())
        }
    }
}

async fn index(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if session_of(&state, &headers).is_none() {
        return Redirect::to("/console/login").into_response();
    }
    html(StatusCode::OK, INDEX_HTML.to_string())
}

async fn login_page(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if session_of(&state, &headers).is_some() {
        return Redirect::to("/console").into_response();
    }
    let note = if state.console.has_users() {
        ""
    } else {
        "No console users are set up yet: add them under [console] in the settings file \
         (see the README, “The console”)."
    };
    login_html(StatusCode::OK, note)
}

fn login_html(status: StatusCode, message: &str) -> Response {
    let body = LOGIN_HTML.replace(
        "{{message}}",
        &if message.is_empty() {
            String::new()
        } else {
            format!("<p class=\"error\" role=\"alert\">{}</p>", escape(message))
        },
    );
    html(status, body)
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    password: String,
}

static LOGIN_LOG: super::log_limit::LogLimit = super::log_limit::LogLimit::new();

async fn login(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let client = client_ip(&request);
    let Ok(Form(form)) = Form::<LoginForm>::from_request(request, &state).await else {
        return login_html(StatusCode::BAD_REQUEST, "Enter a name and a password.");
    };
    if form.name.len() > 256 || form.password.len() > 1024 {
        return login_html(StatusCode::BAD_REQUEST, "Wrong name or password.");
    }
    match state
        .console
        .login(client, &form.name, &form.password)
        .await
    {
        Ok((token, session)) => {
            tracing::info!(user = %session.user, "console login");
            let secure = if state.console.secure { "; Secure" } else { "" };
            let cookie = format!(
                "{COOKIE}={token}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
                state.console.lifetime().as_secs()
            );
            (
                StatusCode::SEE_OTHER,
                [
                    (header::SET_COOKIE, cookie),
                    (header::LOCATION, "/console".to_string()),
                ],
            )
                .into_response()
        }
        Err(LoginError::Refused) => {
            state.metrics.inc_auth_failures();
            if let Some(suppressed) = LOGIN_LOG.permit() {
                tracing::warn!(?client, suppressed, "console login refused");
            }
            login_html(StatusCode::UNAUTHORIZED, "Wrong name or password.")
        }
        Err(LoginError::Wait(wait)) => {
            let mut r = login_html(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "Too many failed logins from here. Try again in {} s.",
                    wait.as_secs().max(1)
                ),
            );
            if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
    }
}

use axum::extract::FromRequest as _;

fn client_ip(request: &Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

#[derive(Deserialize)]
struct LogoutForm {
    csrf: String,
}

async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    let Some(session) = session_of(&state, &headers) else {
        return Redirect::to("/console/login").into_response();
    };
    if !session::constant_time_str_eq(&session.csrf, &form.csrf) {
        return (StatusCode::FORBIDDEN, "stale form: reload the page\n").into_response();
    }
    state
        .console
        .logout(headers.get(header::COOKIE).and_then(|v| v.to_str().ok()));
    let secure = if state.console.secure { "; Secure" } else { "" };
    (
        StatusCode::SEE_OTHER,
        [
            (
                header::SET_COOKIE,
                format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
            ),
            (header::LOCATION, "/console/login".to_string()),
        ],
    )
        .into_response()
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            // Embedded in the binary: they change only with it.
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        body,
    )
        .into_response()
}

async fn me(Authed(s): Authed) -> Json<Value> {
    Json(json!({
        "user": s.user,
        "role": s.role,
        "csrf": s.csrf,
    }))
}

/// The board: the live calls as stored, then every event as it is stored.
async fn live_events(State(state): State<Arc<AppState>>, Authed(s): Authed) -> Response {
    let Some(snapshot) = state.records.live_snapshot().await else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "call records are unavailable\n",
        )
            .into_response();
    };
    let first = Event::default()
        .event("snapshot")
        .data(json!({ "calls": snapshot.calls }).to_string());
    let until = tokio::time::Instant::now()
        + s.expires
            .saturating_duration_since(std::time::Instant::now());
    let follow = Follow {
        first: Some(first),
        events: snapshot.events,
        until,
        shutdown: state.shutdown.clone(),
        state: state.clone(),
        session: s,
        ended: false,
    };
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        let event = f.next().await?;
        Some((Ok::<_, Infallible>(event), f))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
        .into_response()
}

struct Follow {
    first: Option<Event>,
    events: tokio::sync::broadcast::Receiver<Arc<live::LiveEvent>>,
    until: tokio::time::Instant,
    shutdown: tokio::sync::watch::Receiver<bool>,
    state: Arc<AppState>,
    session: Session,
    ended: bool,
}

impl Follow {
    /// The next event for the browser, or `None` to end the stream: the session expired or
    /// was revoked, the server is shutting down, or this console fell too far behind (it
    /// is told to reload, and reconnects from a fresh snapshot).
    async fn next(&mut self) -> Option<Event> {
        use tokio::sync::broadcast::error::RecvError;
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        if self.ended {
            return None;
        }
        let mut recheck = tokio::time::interval(Duration::from_secs(5));
        recheck.tick().await;
        loop {
            tokio::select! {
                e = self.events.recv() => return match e {
                    Ok(ev) => Some(
                        Event::default()
                            .event("call")
                            .data(serde_json::to_string(&*ev).unwrap_or_default()),
                    ),
                    Err(RecvError::Lagged(_)) => {
                        self.ended = true;
                        Some(Event::default().event("resync").data("{}"))
                    }
                    Err(RecvError::Closed) => None,
                },
                _ = tokio::time::sleep_until(self.until) => return None,
                _ = self.shutdown.wait_for(|s| *s) => return None,
                _ = recheck.tick() => {
                    if !self.state.console.is_live(&self.session.user, &self.session.csrf) {
                        return None;
                    }
                }
            }
        }
    }
}

#[derive(Deserialize, Default)]
struct SearchParams {
    outcome: Option<String>,
    reason: Option<String>,
    queue: Option<String>,
    priority: Option<String>,
    since: Option<String>,
    until: Option<String>,
    q: Option<String>,
    limit: Option<usize>,
}

fn nonempty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.len() <= 200)
}

/// A `YYYY-MM-DD` date, or nothing: anything else would compare oddly against stored times.
fn day(v: Option<String>) -> Option<String> {
    nonempty(v).filter(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok())
}

async fn search_calls(
    State(state): State<Arc<AppState>>,
    Authed(_): Authed,
    Query(p): Query<SearchParams>,
) -> Response {
    let filter = CallFilter {
        outcome: nonempty(p.outcome),
        reason: nonempty(p.reason),
        queue: nonempty(p.queue),
        priority: nonempty(p.priority),
        since: day(p.since),
        until: day(p.until),
        text: nonempty(p.q),
        limit: p.limit.unwrap_or(100),
    };
    read(&state, move |store| {
        Ok(json!({ "calls": store.search_calls(&filter)? }))
    })
    .await
}

async fn get_call(
    State(state): State<Arc<AppState>>,
    Authed(_): Authed,
    Path(call_sid): Path<String>,
) -> Response {
    read(&state, move |store| {
        Ok(store.get_call(&call_sid)?.unwrap_or(Value::Null))
    })
    .await
}

/// The recorded call as a fixture zip (admins: it carries the caller's voice).
async fn call_fixture(
    State(state): State<Arc<AppState>>,
    Admin(_): Admin,
    path: Path<String>,
    query: Query<super::api::FixtureParams>,
) -> Response {
    super::api::call_fixture(State(state), path, query).await
}

#[derive(Deserialize)]
struct TrendParams {
    days: Option<u32>,
}

async fn trends(
    State(state): State<Arc<AppState>>,
    Admin(_): Admin,
    Query(p): Query<TrendParams>,
) -> Response {
    let days = p.days.unwrap_or(14).clamp(1, 90);
    // Two days or less read better by the hour.
    let bucket_chars = if days <= 2 { 13 } else { 10 };
    let since = (chrono::Utc::now() - chrono::Duration::days(i64::from(days)))
        .format("%Y-%m-%dT%H")
        .to_string();
    let metrics = state.metrics.render();
    let latency = histogram(&metrics, "warmline_decision_latency_seconds");
    let overload = counter(&metrics, "warmline_overload_handoffs_total");
    read(&state, move |store| {
        Ok(json!({
            "days": days,
            "bucket": if bucket_chars == 13 { "hour" } else { "day" },
            "counts": store.call_counts(&since, bucket_chars)?,
            "decision_latency": latency,
            "overload_handoffs": overload,
        }))
    })
    .await
}

/// A Prometheus histogram from our own `/metrics` text, as per-bucket (not cumulative)
/// counts: `[{le, count}]`.
fn histogram(text: &str, name: &str) -> Value {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut out = Vec::new();
    let mut previous = 0u64;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let Some((le, value)) = rest.split_once("\"} ") else {
            continue;
        };
        let cumulative: u64 = value.trim().parse().unwrap_or(previous);
        out.push(json!({ "le": le, "count": cumulative.saturating_sub(previous) }));
        previous = cumulative;
    }
    Value::Array(out)
}

fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(name))
        .filter_map(|rest| rest.trim().parse::<u64>().ok())
        .sum()
}

async fn users(State(state): State<Arc<AppState>>, Admin(_): Admin) -> Json<Value> {
    let users: Vec<Value> = state
        .console
        .users()
        .into_iter()
        .map(|(name, role, sessions)| json!({"name": name, "role": role, "sessions": sessions}))
        .collect();
    Json(json!({ "users": users }))
}

async fn revoke(
    State(state): State<Arc<AppState>>,
    Admin(s): Admin,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let given = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !session::constant_time_str_eq(&s.csrf, given) {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"error": "bad CSRF token"})),
        )
            .into_response();
    }
    let ended = state.console.revoke(&name);
    tracing::info!(by = %s.user, user = %name, ended, "console sessions revoked");
    Json(json!({ "ended": ended })).into_response()
}

/// Runs a store read off the runtime, after what call tasks queued is written.
async fn read<F>(state: &AppState, f: F) -> Response
where
    F: FnOnce(&crate::store::Store) -> Result<Value, crate::store::StoreError> + Send + 'static,
{
    let (store, records) = (state.store.clone(), state.records.clone());
    let result = tokio::task::spawn_blocking(move || {
        records.flush();
        f(&store)
    })
    .await;
    match result {
        Ok(Ok(Value::Null)) => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such call"})),
        )
            .into_response(),
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "console: reading call records failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": "reading call records failed"})),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "console: reader task failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::call::Outcome;

    /// The history filter's choices are written out in the page script; an outcome added
    /// to the enum but not there could never be filtered on.
    #[test]
    fn the_outcome_filter_offers_every_outcome() {
        let line = super::APP_JS
            .lines()
            .find(|l| l.starts_with("const OUTCOMES = "))
            .expect("app.js lists the outcomes");
        let listed: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
        let all: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(listed, all, "{line}");
    }
}
