//! SignalWire: the Twilio-shaped line under `/signalwire/…` with the project's credentials;
//! its transfer is a LaML call update whose `Url=` SignalWire then fetches (signed), so the
//! call counts as transferred when that document dials a person.

use super::Transfer;
use super::twilio::{Line, fetch_signed};
use crate::loadtest::calls::{CallError, Ctx};
use crate::loadtest::fakes::signalwire as fake;

pub(super) fn line() -> Line {
    Line {
        prefix: "signalwire",
        account: fake::PROJECT.to_string(),
        signing_key: fake::SIGNING_KEY.to_string(),
        signature_header: fake::SIGNATURE_HEADER,
    }
}

pub(super) async fn transfer(ctx: &Ctx, call: &str) -> Result<Transfer, CallError> {
    let u = ctx.cloud.twilio.next_update(call).await;
    let url = u.url();
    let to_person = url.contains("/signalwire/transfer/")
        && fetch_signed(ctx, &line(), url, call)
            .await?
            .contains("<Dial");
    Ok(Transfer {
        at: u.at,
        to_person,
        what: format!("Url={url}"),
    })
}
