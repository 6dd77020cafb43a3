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
