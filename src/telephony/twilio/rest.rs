//! Twilio REST client: the call update that transfers a live call.
//!
//! A transfer that fails is a caller left talking to a bot that already said "connecting
//! you", so transient failures (5xx, 429, timeouts, connection errors) are retried with
//! exponential backoff and every failure has a typed reason for the call record and metrics.

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;

use crate::http::{body_snippet, describe};

/// Twilio's error code for updating a call that has already ended.
const CALL_NOT_IN_PROGRESS: i64 = 21220;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries, including the first.
    pub attempts: u32,
    /// Wait before the second try; multiplied by `factor` for each further one.
    pub first_backoff: Duration,
    pub factor: u32,
    /// Per-request limit; a hung Twilio edge must not hold the caller in silence.
    pub request_timeout: Duration,
    /// All tries together, backoffs included. The caller hears nothing while this runs, and
    /// a shutdown drain must outlast it (see `Limits::drain_ms`), so it is kept short: after
    /// it the stream closes and the `<Connect action>` fallback dials a person.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            first_backoff: Duration::from_millis(200),
            factor: 2,
            request_timeout: Duration::from_secs(2),
            budget: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed try number `failed` (1-based).
    fn backoff(&self, failed: u32) -> Duration {
        let factor = self.factor.max(1).saturating_pow(failed.saturating_sub(1));
        self.first_backoff.saturating_mul(factor)
    }
}

#[derive(thiserror::Error, Debug)]
pub enum RestError {
    #[error("no Twilio account SID / auth token configured")]
    NoCredentials,
    #[error("Twilio rejected the credentials")]
    Unauthorized,
    #[error("the call is no longer in progress (Twilio 21220)")]
    CallNotInProgress,
    #[error("rejected with HTTP {status}: {body}")]
    Rejected { status: u16, body: String },
    #[error("gave up after {attempts} attempts; last: {last}")]
    Exhausted { attempts: u32, last: String },
    #[error("transport: {0}")]
    Transport(String),
}

impl RestError {
    /// Stable label for `transfer_failures_total{kind}` and the call record.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoCredentials => "no_credentials",
            Self::Unauthorized => "unauthorized",
            Self::CallNotInProgress => "call_not_in_progress",
            Self::Rejected { .. } => "rejected",
            Self::Exhausted { .. } => "exhausted",
            Self::Transport(_) => "transport",
        }
    }
}

/// A successful call update; `attempts` > 1 means Twilio needed retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateOk {
    pub attempts: u32,
}

/// What one try amounted to.
enum Try {
    Done,
    Final(RestError),
    /// Worth another try; the server may have said how long to wait first.
    Retry(String, Option<Duration>),
}

/// The longest a `Retry-After` is honoured: the caller is waiting for the transfer, so a
/// longer request is cut to this rather than obeyed or ignored.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct TwilioRest {
    client: reqwest::Client,
    api_base: String,
    account_sid: String,
    auth_token: String,
    policy: RetryPolicy,
    /// Telnyx takes its API key as a bearer token; the others use basic auth.
    bearer: bool,
}

/// Hand-written so the auth token never reaches a log line.
impl fmt::Debug for TwilioRest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioRest")
            .field("api_base", &self.api_base)
            .field("account_sid", &self.account_sid)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl TwilioRest {
    pub fn new(
        api_base: &str,
        account_sid: &str,
        auth_token: &str,
        policy: RetryPolicy,
    ) -> Result<Self, RestError> {
        if account_sid.trim().is_empty() || auth_token.trim().is_empty() {
            return Err(RestError::NoCredentials);
        }
        let client = reqwest::Client::builder()
            .timeout(policy.request_timeout)
            .build()
            .map_err(|e| RestError::Transport(e.to_string()))?;
        Ok(Self {
            client,
            api_base: api_base.trim_end_matches('/').to_owned(),
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
            policy,
            bearer: false,
        })
    }

    /// A client that sends `Authorization: Bearer {api_key}` (Telnyx API v2), with the same
    /// retry policy and failure kinds.
    pub fn bearer(api_base: &str, api_key: &str, policy: RetryPolicy) -> Result<Self, RestError> {
        let mut rest = Self::new(api_base, "bearer", api_key, policy)?;
        rest.account_sid.clear();
        rest.bearer = true;
        Ok(rest)
    }

    /// The underlying HTTP client, shareable for the handoff webhook.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    fn call_url(&self, call_sid: &str) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Calls/{}.json",
            self.api_base, self.account_sid, call_sid
        )
    }

    /// Replaces the live call's TwiML (Twilio abandons the running `<Connect><Stream>`).
    ///
    /// Retried on 5xx, 429, timeouts and connection errors; other 4xx are final. A timed-out
    /// try may still have reached Twilio, so a retry can re-run the TwiML; re-dialling the
    /// agent is the lesser harm than leaving the caller stranded.
    pub async fn update_call_twiml(
        &self,
        call_sid: &str,
        twiml: &str,
    ) -> Result<UpdateOk, RestError> {
        self.update_call(call_sid, &[("Twiml", twiml)]).await
    }

    /// Points the live call at a document URL instead (the form SignalWire documents).
    pub async fn update_call_url(
        &self,
        call_sid: &str,
        document_url: &str,
    ) -> Result<UpdateOk, RestError> {
        self.update_call(call_sid, &[("Url", document_url), ("Method", "POST")])
            .await
    }

    async fn update_call(
        &self,
        call_sid: &str,
        form: &[(&str, &str)],
    ) -> Result<UpdateOk, RestError> {
        let url = self.call_url(call_sid);
        self.post_retried(&url, Body::Form(form)).await
    }

    /// The account the client authenticates as (Plivo's auth id appears in its paths).
    pub fn account(&self) -> &str {
        &self.account_sid
    }

    /// POSTs a JSON body to `path` under the API base, with this client's basic auth and
    /// its retry policy (Plivo's call transfer).
    pub async fn post_json_retried(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<UpdateOk, RestError> {
        let url = format!("{}{path}", self.api_base);
        self.post_retried(&url, Body::Json(body)).await
    }

    async fn post_retried(&self, url: &str, body: Body<'_>) -> Result<UpdateOk, RestError> {
        let attempts = self.policy.attempts.max(1);
        let deadline = tokio::time::Instant::now() + self.policy.budget;
        let mut last = String::new();
        for attempt in 1..=attempts {
            let tried = tokio::time::timeout_at(deadline, self.try_update(url, body)).await;
            let Ok(tried) = tried else {
                last = format!("REST budget of {:?} spent", self.policy.budget);
                return Err(RestError::Exhausted {
                    attempts: attempt,
                    last,
                });
            };
            let wait = match tried {
                Try::Done => return Ok(UpdateOk { attempts: attempt }),
                Try::Final(err) => return Err(err),
                Try::Retry(why, after) => {
                    last = why;
                    after.map(|a| a.min(MAX_RETRY_AFTER))
                }
            };
            tracing::warn!(url, attempt, reason = %last, "provider call update failed");
            if attempt < attempts {
                let backoff = self.policy.backoff(attempt);
                let until = tokio::time::Instant::now() + wait.map_or(backoff, |w| w.max(backoff));
                if until >= deadline {
                    return Err(RestError::Exhausted {
                        attempts: attempt,
                        last,
                    });
                }
                tokio::time::sleep_until(until).await;
            }
        }
        Err(RestError::Exhausted { attempts, last })
    }

    async fn try_update(&self, url: &str, body: Body<'_>) -> Try {
        let request = self.client.post(url);
        let request = if self.bearer {
            request.bearer_auth(&self.auth_token)
        } else {
            request.basic_auth(&self.account_sid, Some(&self.auth_token))
        };
        let sent = match body {
            Body::Form(form) => request.form(form),
            Body::Json(json) => request.json(json),
        }
        .send()
        .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => return transport_failure(&e),
        };
        let status = response.status();
        if status.is_success() {
            return Try::Done;
        }
        let retry_after = retry_after(response.headers());
        let body = body_snippet(response).await;
        match classify_update_failure(status, body) {
            Try::Retry(why, _) => Try::Retry(why, retry_after),
            other => other,
        }
    }
}

/// What a retried POST carries.
#[derive(Clone, Copy)]
enum Body<'a> {
    Form(&'a [(&'a str, &'a str)]),
    Json(&'a serde_json::Value),
}

fn transport_failure(err: &reqwest::Error) -> Try {
    if err.is_builder() {
        Try::Final(RestError::Transport(err.to_string()))
    } else {
        Try::Retry(describe(err), None)
    }
}

/// `Retry-After` in seconds (Twilio sends it with 429); the HTTP-date form is not used there.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn classify_update_failure(status: StatusCode, body: String) -> Try {
    if is_transient(status) {
        return Try::Retry(format!("HTTP {}: {body}", status.as_u16()), None);
    }
    let err = match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RestError::Unauthorized,
        _ if twilio_code(&body) == Some(CALL_NOT_IN_PROGRESS) => RestError::CallNotInProgress,
        _ => RestError::Rejected {
            status: status.as_u16(),
            body,
        },
    };
    Try::Final(err)
}

fn is_transient(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

fn twilio_code(body: &str) -> Option<i64> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()?
        .get("code")?
        .as_i64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use axum::extract::{Path, State};
    use axum::http::HeaderMap;
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use axum::{Form, Json, Router};
    use base64::Engine as _;

    const SID: &str = "AC0123";
    const TOKEN: &str = "s3cret";
    const TWIML: &str = "<Response><Say>Hi &amp; bye</Say></Response>";

    /// What the fake does on each request, by request number (last one repeats).
    #[derive(Clone, Copy)]
    enum Reply {
        Status(u16),
        NotInProgress,
        Hang,
        TooMany { retry_after: u64 },
    }

    #[derive(Clone)]
    struct Fake {
        replies: Arc<Vec<Reply>>,
        hits: Arc<AtomicU32>,
    }

    fn auth_ok(headers: &HeaderMap) -> bool {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"))
        );
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str())
    }

    async fn update(
        State(fake): State<Fake>,
        Path((acct, call)): Path<(String, String)>,
        headers: HeaderMap,
        Form(form): Form<HashMap<String, String>>,
    ) -> Response {
        let n = fake.hits.fetch_add(1, Ordering::SeqCst) as usize;
        let shape_ok = acct == SID
            && call == "CA42.json"
            && form.get("Twiml").map(String::as_str) == Some(TWIML);
        if !shape_ok {
            // A teapot cannot be mistaken for any status the client handles on purpose.
            return axum::http::StatusCode::IM_A_TEAPOT.into_response();
        }
        if !auth_ok(&headers) {
            return (axum::http::StatusCode::UNAUTHORIZED, "{\"code\":20003}").into_response();
        }
        let reply = fake.replies[n.min(fake.replies.len() - 1)];
        match reply {
            Reply::Status(code) => {
                let status = axum::http::StatusCode::from_u16(code).unwrap();
                (status, Json(serde_json::json!({"status": code}))).into_response()
            }
            Reply::TooMany { retry_after } => (
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                [("Retry-After", retry_after.to_string())],
                Json(serde_json::json!({"status": 429})),
            )
                .into_response(),
            Reply::NotInProgress => (
                axum::http::StatusCode::BAD_REQUEST,
                Json(serde_json::json!({
                    "code": 21220,
                    "message": "Call is not in-progress. Cannot redirect.",
                    "status": 400
                })),
            )
                .into_response(),
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                axum::http::StatusCode::OK.into_response()
            }
        }
    }

    async fn serve(replies: Vec<Reply>) -> (String, Arc<AtomicU32>) {
        let hits = Arc::new(AtomicU32::new(0));
        let fake = Fake {
            replies: Arc::new(replies),
            hits: hits.clone(),
        };
        let app = Router::new()
            .route("/2010-04-01/Accounts/{acct}/Calls/{call}", post(update))
            .with_state(fake);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/"), hits)
    }

    fn fast_policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            first_backoff: Duration::from_millis(10),
            factor: 2,
            request_timeout: Duration::from_millis(300),
            budget: Duration::from_secs(5),
        }
    }

    fn client(base: &str, token: &str) -> TwilioRest {
        TwilioRest::new(base, SID, token, fast_policy()).unwrap()
    }

    #[tokio::test]
    async fn retries_503_then_succeeds() {
        let (base, hits) = serve(vec![
            Reply::Status(503),
            Reply::Status(503),
            Reply::Status(200),
        ])
        .await;
        let ok = client(&base, TOKEN)
            .update_call_twiml("CA42", TWIML)
            .await
            .unwrap();
        assert_eq!(ok, UpdateOk { attempts: 3 });
        assert_eq!(hits.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn retries_429() {
        let (base, hits) = serve(vec![Reply::Status(429), Reply::Status(200)]).await;
        let ok = client(&base, TOKEN)
            .update_call_twiml("CA42", TWIML)
            .await
            .unwrap();
        assert_eq!(ok.attempts, 2);
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn retry_after_is_honoured_up_to_a_cap() {
        let (base, hits) = serve(vec![
            Reply::TooMany { retry_after: 1 },
            Reply::TooMany { retry_after: 3600 },
            Reply::Status(200),
        ])
        .await;
        let started = std::time::Instant::now();
        let rest = client(&base, TOKEN);
        let ok = tokio::time::timeout(
            Duration::from_secs(60),
            rest.update_call_twiml("CA42", TWIML),
        )
        .await
        .expect("an hour-long Retry-After is cut to the cap")
        .unwrap();
        assert_eq!(ok.attempts, 3);
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        // 1 s as asked, then the 2 s cap, instead of the policy's 10 + 20 ms.
        assert!(started.elapsed() >= Duration::from_secs(1) + MAX_RETRY_AFTER);
    }

    #[tokio::test]
    async fn unauthorized_is_final() {
        let (base, hits) = serve(vec![Reply::Status(200)]).await;
        let err = client(&base, "wrong")
            .update_call_twiml("CA42", TWIML)
            .await
            .unwrap_err();
        assert!(matches!(err, RestError::Unauthorized), "{err:?}");
        assert_eq!(err.kind(), "unauthorized");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn call_not_in_progress_is_final() {
        let (base, hits) = serve(vec![Reply::NotInProgress]).await;
        let err = client(&base, TOKEN)
            .update_call_twiml("CA42", TWIML)
            .await
            .unwrap_err();
        assert!(matches!(err, RestError::CallNotInProgress), "{err:?}");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn other_4xx_is_rejected_without_retry() {
        let (base, hits) = serve(vec![Reply::Status(404)]).await;
        let err = client(&base, TOKEN)
            .update_call_twiml("CA42", TWIML)
            .await
            .unwrap_err();
        assert!(
            matches!(err, RestError::Rejected { status: 404, .. }),
            "{err:?}"
        );
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn hanging_server_exhausts_after_timeouts() {
        let (base, hits) = serve(vec![Reply::Hang]).await;
        let policy = RetryPolicy {
            attempts: 3,
            request_timeout: Duration::from_millis(150),
            ..fast_policy()
        };
        let rest = TwilioRest::new(&base, SID, TOKEN, policy).unwrap();
        let started = std::time::Instant::now();
        let err = rest.update_call_twiml("CA42", TWIML).await.unwrap_err();
        let RestError::Exhausted { attempts, last } = &err else {
            panic!("expected Exhausted, got {err:?}");
        };
        assert_eq!(*attempts, 3);
        assert!(last.contains("timeout"), "{last}");
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn the_whole_retry_sequence_stops_at_its_budget() {
        // Without a budget this policy would take 4 × 2 s plus backoffs on a hung API.
        let (base, hits) = serve(vec![Reply::Hang]).await;
        let policy = RetryPolicy {
            attempts: 4,
            request_timeout: Duration::from_secs(2),
            budget: Duration::from_millis(700),
            ..fast_policy()
        };
        let rest = TwilioRest::new(&base, SID, TOKEN, policy).unwrap();
        let started = std::time::Instant::now();
        let err = rest.update_call_twiml("CA42", TWIML).await.unwrap_err();
        let RestError::Exhausted { attempts, last } = &err else {
            panic!("expected Exhausted, got {err:?}");
        };
        assert_eq!(*attempts, 1, "{last}");
        assert!(last.contains("budget"), "{last}");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        // Ends at the budget, not at the request timeout.
        assert!(started.elapsed() < Duration::from_millis(1_900));
    }

    #[tokio::test]
    async fn refused_connection_exhausts() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let err = client(&base, TOKEN)
            .update_call_twiml("CA42", TWIML)
            .await
            .unwrap_err();
        assert!(
            matches!(err, RestError::Exhausted { attempts: 4, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn missing_credentials() {
        let err = TwilioRest::new("http://x", "", TOKEN, RetryPolicy::default()).unwrap_err();
        assert!(matches!(err, RestError::NoCredentials));
        let err = TwilioRest::new("http://x", SID, " ", RetryPolicy::default()).unwrap_err();
        assert_eq!(err.kind(), "no_credentials");
    }

    #[test]
    fn debug_hides_token() {
        let rest = TwilioRest::new("http://x", SID, TOKEN, RetryPolicy::default()).unwrap();
        assert!(!format!("{rest:?}").contains(TOKEN));
    }

    #[test]
    fn backoff_grows_by_factor() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_millis(200));
        assert_eq!(p.backoff(2), Duration::from_millis(400));
        assert_eq!(p.backoff(3), Duration::from_millis(800));
    }
}
