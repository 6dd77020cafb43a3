//! Outbound HTTP that belongs to no provider: the handoff webhook, and the error wording the
//! provider REST clients share with it.

use std::time::Duration;

/// The handoff webhook must not hold up the transfer; it is retried once on 5xx.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(3);
/// How much of an error body is kept: enough to read the peer's message, not a whole page.
const BODY_SNIPPET: usize = 512;

#[derive(thiserror::Error, Debug)]
pub enum WebhookError {
    #[error("rejected with HTTP {status}: {body}")]
    Rejected { status: u16, body: String },
    #[error("gave up after {attempts} attempts; last: {last}")]
    Exhausted { attempts: u32, last: String },
    #[error("transport: {0}")]
    Transport(String),
}

/// POSTs the context card to the handoff webhook; one retry on 5xx or a transport error,
/// because the card is also stored with the call and the transfer must not wait for it.
pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> Result<(), WebhookError> {
    let mut last = String::new();
    for _ in 0..2 {
        let sent = client
            .post(url)
            .timeout(WEBHOOK_TIMEOUT)
            .json(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if r.status().is_server_error() => {
                last = format!("HTTP {}: {}", r.status().as_u16(), body_snippet(r).await);
            }
            Ok(r) => {
                let status = r.status().as_u16();
                let body = body_snippet(r).await;
                return Err(WebhookError::Rejected { status, body });
            }
            Err(e) if e.is_builder() => return Err(WebhookError::Transport(e.to_string())),
            Err(e) => last = describe(&e),
        }
    }
    Err(WebhookError::Exhausted { attempts: 2, last })
}

/// reqwest's top-level message hides whether it was a timeout or a refused connection.
pub fn describe(err: &reqwest::Error) -> String {
    let what = if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "connect"
    } else {
        "transport"
    };
    let mut text = format!("{what}: {err}");
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// The start of an error response's body, for the log line and the call record.
pub async fn body_snippet(response: reqwest::Response) -> String {
    let text = response.text().await.unwrap_or_default();
    match text.char_indices().nth(BODY_SNIPPET) {
        Some((cut, _)) => text[..cut].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use axum::routing::post;
    use axum::{Json, Router};

    async fn webhook_server(statuses: Vec<u16>) -> (String, Arc<AtomicU32>) {
        let hits = Arc::new(AtomicU32::new(0));
        let counter = hits.clone();
        let app = Router::new().route(
            "/hook",
            post(move |Json(card): Json<serde_json::Value>| {
                let n = counter.fetch_add(1, Ordering::SeqCst) as usize;
                let code = statuses[n.min(statuses.len() - 1)];
                async move {
                    assert_eq!(card["call_sid"], "CA42");
                    axum::http::StatusCode::from_u16(code).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/hook"), hits)
    }

    #[tokio::test]
    async fn webhook_retries_once_on_5xx() {
        let card = serde_json::json!({"call_sid": "CA42"});
        let http = reqwest::Client::new();

        let (url, hits) = webhook_server(vec![500, 200]).await;
        post_json(&http, &url, &card).await.unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 2);

        let (url, hits) = webhook_server(vec![502]).await;
        let err = post_json(&http, &url, &card).await.unwrap_err();
        assert!(
            matches!(err, WebhookError::Exhausted { attempts: 2, .. }),
            "{err:?}"
        );
        assert_eq!(hits.load(Ordering::SeqCst), 2);

        let (url, hits) = webhook_server(vec![400]).await;
        let err = post_json(&http, &url, &card).await.unwrap_err();
        assert!(
            matches!(err, WebhookError::Rejected { status: 400, .. }),
            "{err:?}"
        );
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }
}
