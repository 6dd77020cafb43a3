//! `GET /audio/summary/{handoff_id}`: the agent's spoken summary as a WAV, for carriers that
//! play a URL or a file to the agent (Plivo's confirm sound, Asterisk's `Playback()`, Telnyx's
//! transfer audio) instead of speaking text in their own voice.
//!
//! The handoff id is 128 random bits (`fail_open::random_id`), unguessable, and is the
//! route's only credential — as for `/twilio/agent-whisper/{id}`. Unknown ids get 404. The
//! work per request is bounded: one indexed store read and a composition capped in length
//! (`speech::plan::MAX_TEXT_CHARS`, `speech::compose::MAX_MS`). The audio is a caller's
//! data, so no one may cache it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::fail_open::spoken_summary;

/// The route's path prefix; see [`summary_url`].
pub const SUMMARY_PATH: &str = "/audio/summary";

/// The URL a carrier fetches for `handoff_id`'s spoken summary. It ends in `.wav` because
/// Asterisk's media cache takes the file type from the URL's tail before the Content-Type
/// (asterisk res/res_http_media_cache.c, `bucket_file_set_extension`), and older Asterisk
/// versions look only at the tail.
pub fn summary_url(public_url: &str, handoff_id: &str) -> String {
    format!("{public_url}{SUMMARY_PATH}/{handoff_id}.wav")
}

/// Handoff ids are 32 hex digits; anything much longer or odder is not one.
fn plausible_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub async fn summary(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let id = id.strip_suffix(".wav").unwrap_or(&id);
    if !plausible_id(id) {
        return not_found();
    }
    let Some(text) = spoken_summary(&state, id).await else {
        return not_found();
    };
    let speech = state.speech.clone();
    // A few hundred microseconds of copying; off the reactor anyway, as the store read was.
    let wav = tokio::task::spawn_blocking(move || speech.summary_text_audio(&text).to_wav()).await;
    match wav {
        Ok(wav) => (
            [
                (header::CONTENT_TYPE, "audio/wav"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            wav,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "composing the spoken summary failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CACHE_CONTROL, "no-store")],
        "no such handoff\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bounded_and_plain() {
        assert!(plausible_id("0123456789abcdef0123456789abcdef"));
        assert!(!plausible_id(""));
        assert!(!plausible_id(&"a".repeat(65)));
        assert!(!plausible_id("../etc/passwd"));
        assert!(!plausible_id("a b"));
        assert_eq!(
            summary_url("https://w.example", "abc"),
            "https://w.example/audio/summary/abc.wav"
        );
    }
}
