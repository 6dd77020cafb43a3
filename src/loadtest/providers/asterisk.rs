//! Asterisk over AudioSocket: the PBX connects to warmline's AudioSocket listener, sends the
//! channel's UUID and the caller's audio. There is no webhook and no REST API: warmline's
//! transfer is its hang-up frame handing the channel back to the dialplan, which then asks
//! `/asterisk/route/{uuid}` where to send the caller. A hand-back on a live call routed to a
//! queue is a transfer; `hangup` is a goodbye; a connection refused or dropped without a word
//! and routed to a queue is the fail-open path.

use super::{AfterClose, Answer, Media, Transfer};
use crate::loadtest::caller::WireEnd;
use crate::loadtest::calls::{CallError, CallOutcome, Ctx, loopback_only};
use crate::loadtest::fakes::asterisk::{self as fake, Route};
use crate::loadtest::fakes::{MediaClient, MediaLink};

pub(super) async fn answer(ctx: &Ctx, out: &CallOutcome) -> Result<Answer, CallError> {
    let addr = ctx.audiosocket.ok_or_else(|| {
        CallError::Media("no AudioSocket listener to call (--audiosocket)".into())
    })?;
    let link = MediaLink::tcp(addr)
        .await
        .map_err(|e| CallError::Media(format!("AudioSocket {addr}: {e}")))?;
    Ok(Answer::Stream(Media {
        link,
        client: MediaClient::AudioSocket(fake::MediaClient::new(out.id)),
        after: None,
    }))
}

/// The dialplan continues after `AudioSocket()` returns and looks the call up.
pub(super) async fn after_close(
    ctx: &Ctx,
    out: &mut CallOutcome,
    end: &WireEnd,
) -> Result<AfterClose, CallError> {
    let url = fake::route_url(&ctx.base, &out.call_sid, fake::TOKEN);
    loopback_only(&url)?;
    let response = ctx
        .http
        .get(&url)
        .send()
        .await
        .map_err(|e| CallError::Http {
            url: url.clone(),
            detail: e.to_string(),
        })?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(CallError::Status {
            url,
            status: status.as_u16(),
            body,
        });
    }
    let route = Route::parse(&body)
        .ok_or_else(|| CallError::AfterStream(format!("route lookup answered {body:?}")))?;
    Ok(match (route, end.hung_up_at) {
        (Route::Hangup, _) => AfterClose::Goodbye,
        (Route::Queue(queue), Some(at)) if end.heard_voice => AfterClose::Transferred(Transfer {
            at,
            to_person: true,
            what: format!("hand-back, route {queue}"),
        }),
        (Route::Queue(_), at) => {
            // Hung up on before a word: the line could not take the call.
            out.overload |= at.is_some() && !end.heard_voice;
            AfterClose::ToPerson
        }
    })
}
