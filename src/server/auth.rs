//! Access control for caller data: bearer tokens for `/api/calls*`.
//!
//! Tokens are kept only as SHA-256 digests, and a presented token is hashed and compared
//! with every digest in constant time, so neither memory dumps nor response timing give a
//! token away. With no tokens configured, caller-data routes answer 401 to everyone: the
//! safe default is closed, not open.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::AppState;
use super::log_limit::LogLimit;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("API token entry {index}: `sha256:` must be followed by 64 hex digits")]
    BadDigest { index: usize },
    #[error("API token entry {index} is shorter than 8 characters; use a long random token")]
    TooShort { index: usize },
}

/// The digests of the configured API tokens.
pub struct ApiTokens {
    digests: Vec<[u8; 32]>,
}

impl ApiTokens {
    /// From settings entries: a plain token, or `sha256:<hex>` of one.
    pub fn new(entries: &[String]) -> Result<ApiTokens, TokenError> {
        let mut digests = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let digest = match entry.strip_prefix("sha256:") {
                Some(hex) => parse_hex32(hex).ok_or(TokenError::BadDigest { index })?,
                None if entry.len() < 8 => return Err(TokenError::TooShort { index }),
                None => Sha256::digest(entry.as_bytes()).into(),
            };
            digests.push(digest);
        }
        Ok(ApiTokens { digests })
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether an `Authorization` header value carries a configured bearer token.
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        let Some(token) = authorization.and_then(bearer) else {
            return false;
        };
        let given: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Every digest is compared in full, whether or not an earlier one matched.
        self.digests
            .iter()
            .fold(false, |ok, d| ok | constant_time_eq(d, &given))
    }
}

fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Compares two byte strings without stopping at the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

static DENIED_LOG: LogLimit = LogLimit::new();

/// Middleware for every route that shows caller data.
pub async fn require_api_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if state.api_tokens.allows(given) {
        return next.run(request).await;
    }
    state.metrics.inc_auth_failures();
    if let Some(suppressed) = DENIED_LOG.permit() {
        tracing::warn!(
            path = %request.uri().path(),
            suppressed,
            configured = !state.api_tokens.is_empty(),
            "caller-data request without a valid API token: 401"
        );
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"warmline\"")],
        axum::Json(serde_json::json!({
            "error": "this route shows caller data: send Authorization: Bearer <a token from WARMLINE_API_TOKENS>"
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef-token";

    #[test]
    fn plain_and_hashed_entries_accept_the_token_and_nothing_else() {
        let hex: String = Sha256::digest(TOKEN.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        for entry in [TOKEN.to_string(), format!("sha256:{hex}")] {
            let t = ApiTokens::new(&[entry]).unwrap();
            assert!(t.allows(Some(&format!("Bearer {TOKEN}"))));
            assert!(t.allows(Some(&format!("bearer  {TOKEN} "))));
            assert!(!t.allows(Some(&format!("Bearer {TOKEN}x"))));
            assert!(!t.allows(Some(TOKEN)));
            assert!(!t.allows(Some(&format!("Basic {TOKEN}"))));
            assert!(!t.allows(Some("Bearer ")));
            assert!(!t.allows(None));
        }
    }

    #[test]
    fn no_tokens_configured_means_nobody_gets_in() {
        let t = ApiTokens::new(&[]).unwrap();
        assert!(t.is_empty());
        assert!(!t.allows(Some("Bearer anything-at-all-1234")));
        assert!(!t.allows(Some("Bearer ")));
    }

    #[test]
    fn weak_or_malformed_entries_are_refused_with_their_position() {
        assert_eq!(
            ApiTokens::new(&["long-enough-token-1".into(), "short".into()]).err(),
            Some(TokenError::TooShort { index: 1 })
        );
        assert_eq!(
            ApiTokens::new(&["sha256:zz".into()]).err(),
            Some(TokenError::BadDigest { index: 0 })
        );
    }
}
