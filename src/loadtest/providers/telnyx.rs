//! Telnyx Call Control: a signed `call.initiated` webhook; warmline answers through the
//! (fake) Call Control API, and an `answer` with a `stream_url` is the stream to connect
//! (its `client_state` returned in `start`), one without is a caller sent to a person. The
//! transfer is the `transfer` command warmline decides on the live stream; when warmline
//! ends the stream itself, it hangs up (a goodbye) or transfers to its fallback queue.

use std::time::Duration;

use serde_json::Value;

use super::{AfterClose, Answer, Media, Transfer};
use crate::loadtest::calls::{CALLED, CallError, CallOutcome, Ctx, loopback_only, open_stream};
use crate::loadtest::fakes::MediaClient;
use crate::loadtest::fakes::telnyx::{self as fake, Command};

/// How long warmline has to act on a webhook through the Call Control API (it answers the
/// webhook at once and sends its commands in the background).
const COMMAND_WAIT: Duration = Duration::from_secs(15);

pub(super) async fn answer(ctx: &Ctx, out: &CallOutcome) -> Result<Answer, CallError> {
    let url = format!("{}/telnyx/call", ctx.base);
    loopback_only(&url)?;
    let from = out.caller_number();
    let body = fake::event(
        "call.initiated",
        fake::initiated_from(&out.call_sid, &from, CALLED),
    );
    let mut req = ctx
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(body.clone());
    for (k, v) in fake::sign(&fake::signing_key(), fake::unix_now(), &body) {
        req = req.header(k, v);
    }
    let response = req.send().await.map_err(|e| CallError::Http {
        url: url.clone(),
        detail: e.to_string(),
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(CallError::Status {
            url,
            status: status.as_u16(),
            body: response.text().await.unwrap_or_default(),
        });
    }
    let answered = ctx
        .cloud
        .telnyx
        .wait_for(&out.call_sid, "answer", COMMAND_WAIT)
        .await
        .ok_or_else(|| CallError::Answer(format!("no answer command within {COMMAND_WAIT:?}")))?;
    let Some(stream_url) = answered.body["stream_url"].as_str() else {
        return Ok(Answer::ToPerson);
    };
    let link = open_stream(stream_url).await?;
    let client_state = answered.body["client_state"].as_str().unwrap_or_default();
    let client = fake::MediaClient::new(&out.call_sid, client_state, &from, CALLED);
    Ok(Answer::Stream(Media {
        link,
        client: MediaClient::Telnyx(client),
        after: None,
    }))
}

pub(super) async fn transfer(ctx: &Ctx, call: &str) -> Transfer {
    let t = ctx
        .cloud
        .telnyx
        .next(call, Command::is_decided_transfer)
        .await;
    Transfer {
        at: t.at,
        to_person: true,
        what: t.body.to_string(),
    }
}

/// warmline's own end of the stream: a hang-up after the goodbye, or its fallback transfer.
pub(super) async fn after_close(ctx: &Ctx, out: &CallOutcome) -> Result<AfterClose, CallError> {
    let next = tokio::time::timeout(
        COMMAND_WAIT,
        ctx.cloud.telnyx.next(&out.call_sid, |c| {
            c.action == "hangup" || (c.action == "transfer" && !c.is_decided_transfer())
        }),
    )
    .await
    .map_err(|_| {
        CallError::AfterStream(format!(
            "warmline ended the stream but neither hung up nor transferred within {COMMAND_WAIT:?}"
        ))
    })?;
    match next.action.as_str() {
        "hangup" => Ok(AfterClose::Goodbye),
        _ if next.body["to"].as_str().is_some_and(|t| !t.is_empty()) => Ok(AfterClose::ToPerson),
        _ => Err(CallError::AfterStream(format!(
            "a fallback transfer to nobody: {}",
            Value::to_string(&next.body)
        ))),
    }
}
