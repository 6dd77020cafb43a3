//! Call control: how a decided transfer reaches the provider. Either the live call is
//! redirected through the provider's REST API (Twilio, SignalWire), or the media connection
//! hands the call back to the PBX that sent it (Asterisk AudioSocket), whose dialplan then
//! asks warmline where to dial.

use crate::handoff::Handoff;
use crate::telephony::twilio::{rest::TwilioRest, twiml};

/// The route prefix a provider's callbacks live under (`/{prefix}/agent-whisper/{id}`).
pub type Prefix = &'static str;

#[derive(Debug, Clone)]
pub enum Control {
    /// Replace the call's document with `<Say>` + `<Dial>` through Twilio's REST API.
    TwilioTwiml {
        rest: Option<TwilioRest>,
        public_url: String,
        prefix: Prefix,
    },
    /// Point the call at warmline's transfer document URL (SignalWire documents `Url=`;
    /// its `Twiml=` is unverified).
    DocumentUrl {
        rest: Option<TwilioRest>,
        public_url: String,
        prefix: Prefix,
    },
    /// End the media connection; the PBX's dialplan continues and fetches the route.
    HandBack,
}

/// How a transfer proceeds.
pub enum Started<F> {
    /// A request is in flight; its answer decides the outcome.
    Request(F),
    /// Hang up the media connection now; that is the transfer.
    HandBack,
}

impl Control {
    /// The URL the agent's leg fetches the spoken summary from.
    pub fn whisper_url(&self, handoff_id: &str) -> Option<String> {
        match self {
            Control::TwilioTwiml {
                public_url, prefix, ..
            }
            | Control::DocumentUrl {
                public_url, prefix, ..
            } => Some(format!("{public_url}/{prefix}/agent-whisper/{handoff_id}")),
            Control::HandBack => None,
        }
    }

    /// Starts the transfer of `call_id` for `h`. The future resolves to the attempts the
    /// provider needed, or the failure's kind (for the metric) and description.
    pub fn transfer(
        &self,
        call_id: &str,
        h: &Handoff,
    ) -> Started<
        impl std::future::Future<Output = Result<u32, (&'static str, String)>> + Send + 'static,
    > {
        let (rest, doc_or_url, by_url) = match self {
            Control::HandBack => return Started::HandBack,
            Control::TwilioTwiml { rest, .. } => {
                let whisper = self.whisper_url(&h.id).unwrap_or_default();
                let doc = twiml::transfer(&h.caller_say, &h.card.target, h.sip, &whisper);
                (rest.clone(), doc, false)
            }
            Control::DocumentUrl {
                rest,
                public_url,
                prefix,
            } => (
                rest.clone(),
                format!("{public_url}/{prefix}/transfer/{}", h.id),
                true,
            ),
        };
        let call_id = call_id.to_string();
        Started::Request(async move {
            let Some(rest) = rest else {
                return Err((
                    "no_credentials",
                    "no provider REST credentials configured".to_string(),
                ));
            };
            let result = if by_url {
                rest.update_call_url(&call_id, &doc_or_url).await
            } else {
                rest.update_call_twiml(&call_id, &doc_or_url).await
            };
            result
                .map(|ok| ok.attempts)
                .map_err(|e| (e.kind(), e.to_string()))
        })
    }
}
