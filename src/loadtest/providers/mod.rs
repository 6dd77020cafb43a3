//! The carriers a load test can play, and how each one places a call, hands it to a person
//! and ends it. The shared driver (`calls.rs`) asks the provider three things: how the call
//! was answered (a media connection, or straight to a person), when the provider's transfer
//! arrived, and what happened once warmline ended the media connection itself. Everything
//! provider-specific on the wire comes from the fakes (`fakes/`), which the end-to-end tests
//! use too.

use std::net::SocketAddr;
use std::time::Instant;

use serde::Serialize;

use super::caller::WireEnd;
use super::calls::{CallError, CallOutcome, Ctx};
use super::fakes::{self, MediaClient, MediaLink, Served};

mod asterisk;
mod plivo;
mod signalwire;
mod telnyx;
#[cfg(test)]
mod tests;
mod twilio;

/// `--provider`: whose protocol the simulated callers speak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Twilio Media Streams, TwiML webhooks signed with the auth token, REST call updates.
    #[default]
    Twilio,
    /// Twilio's media protocol under `/signalwire/…`, cXML signed with the Signing Key, the
    /// transfer as a LaML REST update with `Url=` (warmline's transfer document).
    Signalwire,
    /// Plivo XML answer signed with X-Plivo-Signature-V3, `<Stream bidirectional>` media
    /// (checkpoints, clearAudio), the transfer as Plivo's REST call transfer (`aleg_url`).
    Plivo,
    /// Telnyx Call Control: Ed25519-signed `call.initiated`, `answer` with a bidirectional
    /// stream, the transfer as the Call Control `transfer` command.
    Telnyx,
    /// Asterisk over AudioSocket (TCP, slin 8 kHz; not chan_websocket): the transfer is
    /// warmline's hang-up frame handing the channel back, then the dialplan's
    /// `/asterisk/route/{uuid}` lookup naming the queue.
    Asterisk,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Twilio => "twilio",
            Provider::Signalwire => "signalwire",
            Provider::Plivo => "plivo",
            Provider::Telnyx => "telnyx",
            Provider::Asterisk => "asterisk",
        }
    }

    /// Whether warmline reaches this provider's cloud (so `--url` needs `--fake-port`).
    pub fn has_rest_api(self) -> bool {
        self != Provider::Asterisk
    }

    /// The provider's id for a new call, from 16 random bytes.
    pub(super) fn call_id(self, id: &[u8; 16]) -> String {
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        match self {
            Provider::Twilio | Provider::Signalwire => format!("CA{hex}"),
            Provider::Plivo | Provider::Asterisk => {
                crate::telephony::asterisk::audiosocket::uuid_text(id)
            }
            Provider::Telnyx => format!("v3:{hex}"),
        }
    }

    /// The settings (by their documented environment names) that connect warmline to this
    /// provider's fake; Twilio's (and the handoff webhook) are set for every provider.
    pub(super) fn server_env(
        self,
        fake_base: &str,
        audiosocket: Option<SocketAddr>,
    ) -> Vec<(&'static str, String)> {
        match self {
            Provider::Twilio => Vec::new(),
            Provider::Signalwire => fakes::signalwire::server_env(fake_base),
            Provider::Plivo => fakes::plivo::server_env(fake_base),
            Provider::Telnyx => fakes::telnyx::server_env(fake_base),
            Provider::Asterisk => audiosocket
                .map(fakes::asterisk::server_env)
                .unwrap_or_default(),
        }
    }

    /// The call arrives: the provider asks warmline what to do, and connects the media.
    pub(super) async fn answer(self, ctx: &Ctx, out: &CallOutcome) -> Result<Answer, CallError> {
        match self {
            Provider::Twilio => twilio::answer(ctx, out, &twilio::line(ctx)).await,
            Provider::Signalwire => twilio::answer(ctx, out, &signalwire::line()).await,
            Provider::Plivo => plivo::answer(ctx, out).await,
            Provider::Telnyx => telnyx::answer(ctx, out).await,
            Provider::Asterisk => asterisk::answer(ctx, out).await,
        }
    }

    /// Resolves when the provider's transfer of `call` arrives (checked as the provider
    /// would act on it). Asterisk's is on the media connection: see [`Provider::after_close`].
    pub(super) async fn transfer(self, ctx: &Ctx, call: &str) -> Result<Transfer, CallError> {
        match self {
            Provider::Twilio => Ok(twilio::transfer(ctx, call).await),
            Provider::Signalwire => signalwire::transfer(ctx, call).await,
            Provider::Plivo => plivo::transfer(ctx, call).await,
            Provider::Telnyx => Ok(telnyx::transfer(ctx, call).await),
            Provider::Asterisk => std::future::pending().await,
        }
    }

    /// warmline ended the media connection: what the provider does next.
    pub(super) async fn after_close(
        self,
        ctx: &Ctx,
        out: &mut CallOutcome,
        after: Option<&str>,
        end: &WireEnd,
    ) -> Result<AfterClose, CallError> {
        match self {
            Provider::Twilio => twilio::after_close(ctx, out, &twilio::line(ctx), after).await,
            Provider::Signalwire => twilio::after_close(ctx, out, &signalwire::line(), after).await,
            Provider::Plivo => plivo::after_close(ctx, out, after).await,
            Provider::Telnyx => telnyx::after_close(ctx, out).await,
            Provider::Asterisk => asterisk::after_close(ctx, out, end).await,
        }
    }
}

/// How the provider's question about a new call was answered.
pub(super) enum Answer {
    /// Straight to a person: warmline could not take the call.
    ToPerson,
    Stream(Media),
}

/// A connected media stream and what the provider does when it ends.
pub(super) struct Media {
    pub(super) link: MediaLink,
    pub(super) client: MediaClient,
    /// Where the provider asks what next once the stream ends without a transfer (Twilio's
    /// `<Connect action>`, Plivo's `<Redirect>`).
    pub(super) after: Option<String>,
}

/// The provider's transfer, as it arrived.
#[derive(Debug, Clone)]
pub(super) struct Transfer {
    pub(super) at: Instant,
    /// What the request said (for a failure's reason).
    pub(super) what: String,
    /// It moves the caller to a person (a `<Dial>`, a transfer to a number, a queue).
    pub(super) to_person: bool,
}

/// What the provider did after warmline ended the media connection.
pub(super) enum AfterClose {
    /// The call ended with a goodbye (`<Hangup/>`, a hang-up command, `hangup` route).
    Goodbye,
    /// A person, through the provider's fail-open path.
    ToPerson,
    /// The end of the connection was the transfer itself (Asterisk's hand-back).
    Transferred(Transfer),
}

/// All the fakes of a run on one port (`--fake-port`): Twilio's REST API (with SignalWire's
/// LaML mirror) and the handoff webhook, Plivo's transfer API, Telnyx's Call Control.
pub(crate) struct Cloud {
    pub(crate) twilio: fakes::twilio::Fake,
    pub(crate) plivo: fakes::plivo::FakePlivo,
    pub(crate) telnyx: fakes::telnyx::FakeTelnyx,
    served: Served,
}

impl Cloud {
    pub(crate) async fn start(
        port: u16,
        account_sid: &str,
        auth_token: &str,
    ) -> std::io::Result<Cloud> {
        let twilio = fakes::twilio::Fake::new(&[
            (account_sid, auth_token),
            (fakes::signalwire::PROJECT, fakes::signalwire::API_TOKEN),
        ]);
        let plivo = fakes::plivo::FakePlivo::default();
        let telnyx = fakes::telnyx::FakeTelnyx::default();
        let app = twilio.router().merge(plivo.router()).merge(telnyx.router());
        let served = fakes::serve(app, port).await?;
        Ok(Cloud {
            twilio,
            plivo,
            telnyx,
            served,
        })
    }

    /// What warmline is configured with as the providers' API base.
    pub(crate) fn base(&self) -> String {
        format!("http://{}", self.served.addr)
    }
}
