//! Operator endpoints: readiness, Prometheus metrics, call records.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;

/// 200 when the line can take calls and keep their records. A failing store is reported
/// (503) so a load balancer sends new calls to an instance that can keep them; calls already
/// here go on regardless.
pub async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    if !state.ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "loading the model\n").into_response()
    } else if !state.metrics.store_ok() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "degraded: call records cannot be written (see warmline_store_errors_total)\n",
        )
            .into_response()
    } else if state.admission.draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        (StatusCode::OK, "ready\n").into_response()
    }
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        state.metrics.render(),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct ListParams {
    limit: Option<usize>,
}

pub async fn list_calls(
    State(state): State<Arc<AppState>>,
    Query(p): Query<ListParams>,
) -> Response {
    let (store, records) = (state.store.clone(), state.records.clone());
    let limit = p.limit.unwrap_or(100).min(1000);
    let read = move || {
        records.flush();
        store.list_calls(limit)
    };
    match tokio::task::spawn_blocking(read).await {
        Ok(Ok(calls)) => Json(serde_json::json!({ "calls": calls })).into_response(),
        Ok(Err(e)) => internal(&e.to_string()),
        Err(e) => internal(&e.to_string()),
    }
}

pub async fn get_call(
    State(state): State<Arc<AppState>>,
    Path(call_sid): Path<String>,
) -> Response {
    let (store, records) = (state.store.clone(), state.records.clone());
    let read = move || {
        records.flush();
        store.get_call(&call_sid)
    };
    match tokio::task::spawn_blocking(read).await {
        Ok(Ok(Some(call))) => Json(call).into_response(),
        Ok(Ok(None)) => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": "no such call"})),
        )
            .into_response(),
        Ok(Err(e)) => internal(&e.to_string()),
        Err(e) => internal(&e.to_string()),
    }
}

fn internal(e: &str) -> Response {
    tracing::error!(error = e, "reading call records failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(serde_json::json!({"error": e})),
    )
        .into_response()
}

/// `DELETE /api/calls/{call_sid}`: a caller's right to be forgotten — the call record and
/// its recording go. 404 when there was neither; 409 while the call is still being recorded.
pub async fn delete_call(
    State(state): State<Arc<AppState>>,
    Path(call_sid): Path<String>,
) -> Response {
    if state.recorder.is_live(&call_sid) {
        return conflict("the call is still in progress; delete it once it has ended");
    }
    let sid = call_sid.clone();
    let st = state.clone();
    let work = move || {
        // Records still queued for this call would bring the row back after the delete.
        st.records.flush();
        let record = st.store.delete_call(&sid).map_err(|e| e.to_string())?;
        let audio = match st.recorder.delete(&sid) {
            Ok(deleted) => deleted,
            // No recording can exist under an id that cannot name one.
            Err(crate::recording::RecordingError::BadCallSid(_)) => false,
            Err(e) => return Err(e.to_string()),
        };
        Ok::<_, String>((record, audio))
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok((false, false))) => not_found("no such call"),
        Ok(Ok((record, audio))) => {
            tracing::info!(call_sid = %call_sid, record, audio, "call deleted on request");
            Json(serde_json::json!({
                "call_sid": call_sid, "record_deleted": record, "audio_deleted": audio
            }))
            .into_response()
        }
        Ok(Err(e)) => internal(&e),
        Err(e) => internal(&e.to_string()),
    }
}

#[derive(Deserialize)]
pub struct FixtureParams {
    redact: Option<bool>,
}

/// `GET /api/calls/{call_sid}/fixture`: the recorded call as a fixture, zipped the way
/// `fixtures/` is laid out. Numbers are masked when the settings say so, or `?redact=true`.
pub async fn call_fixture(
    State(state): State<Arc<AppState>>,
    Path(call_sid): Path<String>,
    Query(p): Query<FixtureParams>,
) -> Response {
    use crate::recording::{RecordingError, export};
    if state.recorder.is_live(&call_sid) {
        return conflict("the call is still being recorded");
    }
    let redact = state.settings.recording.redact_numbers || p.redact.unwrap_or(false);
    let st = state.clone();
    let sid = call_sid.clone();
    let work = move || {
        let name = export::default_name(&sid);
        let out = export::export(
            &st.settings.data_dir,
            &sid,
            &name,
            &st.book.frontend,
            redact,
        )?;
        let zip = out.zip().map_err(|e| RecordingError::Invalid {
            path: st.settings.data_dir.clone(),
            message: e.to_string(),
        })?;
        Ok::<_, RecordingError>((name, zip))
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok((name, zip))) => (
            [
                (
                    axum::http::header::CONTENT_TYPE,
                    "application/zip".to_string(),
                ),
                (
                    axum::http::header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}.zip\""),
                ),
            ],
            zip,
        )
            .into_response(),
        Ok(Err(RecordingError::NotFound(_) | RecordingError::BadCallSid(_))) => {
            not_found("no recording of this call (is WARMLINE_RECORD_CALLS on?)")
        }
        Ok(Err(e)) => internal(&e.to_string()),
        Err(e) => internal(&e.to_string()),
    }
}

/// Enforces the recordings' age and size limits every `recording.sweep_seconds` until `stop`.
pub async fn sweep_recordings(state: Arc<AppState>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let every = std::time::Duration::from_secs(state.settings.recording.sweep_seconds.max(1));
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let st = state.clone();
        match tokio::task::spawn_blocking(move || st.recorder.sweep()).await {
            Ok(Ok(s)) if !s.too_old.is_empty() || !s.over_size.is_empty() => tracing::info!(
                too_old = s.too_old.len(),
                over_size = s.over_size.len(),
                kept = s.kept,
                kept_bytes = s.kept_bytes,
                "recordings swept"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "recording sweep failed"),
            Err(e) => tracing::warn!(error = %e, "recording sweep panicked"),
        }
    }
}

fn not_found(why: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({"error": why})),
    )
        .into_response()
}

fn conflict(why: &str) -> Response {
    (
        StatusCode::CONFLICT,
        Json(serde_json::json!({"error": why})),
    )
        .into_response()
}
