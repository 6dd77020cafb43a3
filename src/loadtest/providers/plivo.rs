//! Plivo: the answer URL (signed V3) answered with a bidirectional `<Stream>` and a
//! `<Redirect>` after it; the stream on the `<Stream>` URL with the token from
//! `extraHeaders`; the transfer as Plivo's call transfer (`legs=aleg`, `aleg_url`), counted
//! when the document Plivo then fetches (signed) dials a person; when warmline ends the stream
//! itself, Plivo runs the `<Redirect>`.

use super::{AfterClose, Answer, Media, Transfer};
use crate::loadtest::calls::{CALLED, CallError, CallOutcome, Ctx, open_stream};
use crate::loadtest::fakes::plivo::{self as fake, AUTH_TOKEN};
use crate::loadtest::fakes::{MediaClient, form};

async fn signed_post(
    ctx: &Ctx,
    url: &str,
    params: &[(String, String)],
) -> Result<String, CallError> {
    let nonce = fake::nonce();
    let headers = fake::sign(AUTH_TOKEN, url, params, &nonce);
    ctx.post_form(url, params, &headers).await
}

fn call_params(out: &CallOutcome, status: &str) -> Vec<(String, String)> {
    form(&[
        ("CallUUID", &out.call_sid),
        ("CallStatus", status),
        ("Direction", "inbound"),
        ("From", &out.caller_number()),
        ("To", CALLED),
    ])
}

pub(super) async fn answer(ctx: &Ctx, out: &CallOutcome) -> Result<Answer, CallError> {
    let url = format!("{}/plivo/answer", ctx.base);
    let body = signed_post(ctx, &url, &call_params(out, "ringing")).await?;
    let answer = fake::Answer::parse(&body);
    let Some(stream_url) = answer.stream_url else {
        if answer.dial {
            return Ok(Answer::ToPerson);
        }
        return Err(CallError::Answer(body));
    };
    let link = open_stream(&stream_url).await?;
    let client = fake::MediaClient::new(
        &out.call_sid,
        answer.extra_headers.as_deref().unwrap_or_default(),
    );
    Ok(Answer::Stream(Media {
        link,
        client: MediaClient::Plivo(client),
        after: answer.redirect,
    }))
}

pub(super) async fn transfer(ctx: &Ctx, call: &str) -> Result<Transfer, CallError> {
    let t = ctx.cloud.plivo.next_transfer(call).await;
    let to_person = match t.aleg_url().filter(|_| t.moves_the_caller()) {
        Some(url) => {
            let doc = signed_post(ctx, url, &form(&[("CallUUID", call)])).await?;
            doc.contains("<Dial")
        }
        None => false,
    };
    Ok(Transfer {
        at: t.at,
        to_person,
        what: t.body.to_string(),
    })
}

/// `keepCallAlive`: Plivo runs the `<Redirect>` after the stream, whose document hangs up
/// after a goodbye and dials a person otherwise.
pub(super) async fn after_close(
    ctx: &Ctx,
    out: &CallOutcome,
    redirect: Option<&str>,
) -> Result<AfterClose, CallError> {
    let Some(url) = redirect else {
        return Err(CallError::AfterStream(
            "warmline closed the stream and the answer has no <Redirect>".into(),
        ));
    };
    let body = signed_post(ctx, url, &call_params(out, "in-progress")).await?;
    let next = fake::Answer::parse(&body);
    if next.hangup {
        Ok(AfterClose::Goodbye)
    } else if next.dial {
        Ok(AfterClose::ToPerson)
    } else {
        Err(CallError::AfterStream(format!(
            "the <Redirect> answered neither <Dial> nor <Hangup/>: {body}"
        )))
    }
}
