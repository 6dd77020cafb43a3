//! Twilio, and the Twilio-shaped half of SignalWire: a signed voice webhook answered with
//! `<Connect action><Stream>`, the Media Streams client on the `<Stream>` URL, the transfer as
//! a REST call update, and `<Connect action>` asked (signed) when warmline ends the stream.

use super::{AfterClose, Answer, Media, Transfer};
use crate::loadtest::calls::{CALLED, CallError, CallOutcome, Ctx, open_stream};
use crate::loadtest::fakes::twilio::{self as fake, VoiceAnswer};
use crate::loadtest::fakes::{MediaClient, form};

/// What tells the Twilio-shaped lines apart.
pub(super) struct Line {
    /// Route prefix: `/{prefix}/voice`.
    pub(super) prefix: &'static str,
    /// The account webhooks name and the secret that signs them.
    pub(super) account: String,
    pub(super) signing_key: String,
    pub(super) signature_header: &'static str,
}

pub(super) fn line(ctx: &Ctx) -> Line {
    Line {
        prefix: "twilio",
        account: ctx.account_sid.clone(),
        signing_key: ctx.auth_token.clone(),
        signature_header: fake::SIGNATURE_HEADER,
    }
}

async fn signed_post(
    ctx: &Ctx,
    line: &Line,
    url: &str,
    params: &[(String, String)],
) -> Result<String, CallError> {
    let sig = fake::sign(&line.signing_key, url, params);
    ctx.post_form(url, params, &[(line.signature_header, sig)])
        .await
}

pub(super) async fn answer(ctx: &Ctx, out: &CallOutcome, line: &Line) -> Result<Answer, CallError> {
    let url = format!("{}/{}/voice", ctx.base, line.prefix);
    let from = out.caller_number();
    let params = form(&[
        ("AccountSid", &line.account),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", &out.call_sid),
        ("CallStatus", "ringing"),
        ("Called", CALLED),
        ("Caller", &from),
        ("Direction", "inbound"),
        ("From", &from),
        ("To", CALLED),
    ]);
    let body = signed_post(ctx, line, &url, &params).await?;
    let answer = VoiceAnswer::parse(&body);
    let Some(stream_url) = answer.stream_url else {
        if answer.dial {
            return Ok(Answer::ToPerson);
        }
        return Err(CallError::Answer(body));
    };
    let link = open_stream(&stream_url).await?;
    let client = fake::MediaClient::new(&line.account, &out.call_sid, answer.params);
    Ok(Answer::Stream(Media {
        link,
        client: MediaClient::Twilio(client),
        after: answer.action,
    }))
}

/// Twilio's REST call update; a transfer when its TwiML dials.
pub(super) async fn transfer(ctx: &Ctx, call: &str) -> Transfer {
    let u = ctx.cloud.twilio.next_update(call).await;
    Transfer {
        at: u.at,
        to_person: u.twiml().contains("<Dial"),
        what: u.twiml().to_string(),
    }
}

/// Twilio runs the `<Connect action>`: a goodbye answers `<Hangup/>`, anything else a
/// `<Dial>` to a person.
pub(super) async fn after_close(
    ctx: &Ctx,
    out: &CallOutcome,
    line: &Line,
    action: Option<&str>,
) -> Result<AfterClose, CallError> {
    let Some(action) = action else {
        return Err(CallError::AfterStream(
            "warmline closed the stream and the TwiML has no <Connect action>".into(),
        ));
    };
    let params = form(&[
        ("AccountSid", &line.account),
        ("CallSid", &out.call_sid),
        ("CallStatus", "in-progress"),
        ("Direction", "inbound"),
        ("From", &out.caller_number()),
        ("To", CALLED),
    ]);
    let body = signed_post(ctx, line, action, &params).await?;
    let next = VoiceAnswer::parse(&body);
    if next.hangup {
        Ok(AfterClose::Goodbye)
    } else if next.dial {
        Ok(AfterClose::ToPerson)
    } else {
        Err(CallError::AfterStream(format!(
            "stream-ended answered neither <Dial> nor <Hangup/>: {body}"
        )))
    }
}

/// A document the line fetches by URL (SignalWire's transfer document), POSTed with the
/// call's id and signed as the line signs its webhooks.
pub(super) async fn fetch_signed(
    ctx: &Ctx,
    line: &Line,
    url: &str,
    call: &str,
) -> Result<String, CallError> {
    let params = form(&[("AccountSid", &line.account), ("CallSid", call)]);
    signed_post(ctx, line, url, &params).await
}
