//! Call control: how a decided transfer reaches the provider. Either the live call is
//! redirected through the provider's REST API (Twilio, SignalWire), or the media connection
//! hands the call back to the PBX that sent it (Asterisk AudioSocket), whose dialplan then
//! asks warmline where to dial.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::handoff::Handoff;
use crate::telephony::twilio::{rest::TwilioRest, twiml};

/// Transfer documents waiting for the carrier to fetch them (it does so within a second of
/// the REST update; ten minutes covers any retry). Bounded: the oldest go first.
#[derive(Debug, Default)]
pub struct Documents {
    inner: Mutex<VecDeque<(String, Instant, String)>>,
}

const DOCUMENTS_KEPT: usize = 4096;
const DOCUMENT_TTL: Duration = Duration::from_secs(600);

impl Documents {
    fn put(&self, id: &str, doc: String) {
        let mut q = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        q.retain(|(_, at, _)| at.elapsed() < DOCUMENT_TTL);
        while q.len() >= DOCUMENTS_KEPT {
            q.pop_front();
        }
        q.push_back((id.to_string(), Instant::now(), doc));
    }

    fn get(&self, id: &str) -> Option<String> {
        let q = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        q.iter()
            .rev()
            .find(|(k, at, _)| k == id && at.elapsed() < DOCUMENT_TTL)
            .map(|(_, _, d)| d.clone())
    }
}

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
        docs: Arc<Documents>,
    },
    /// Plivo: redirect the caller's leg (`aleg_url`) to warmline's transfer document.
    Plivo {
        rest: Option<TwilioRest>,
        public_url: String,
        docs: Arc<Documents>,
    },
    /// End the media connection; the PBX's dialplan continues and fetches the route.
    HandBack,
    /// Telnyx Call Control: speak to the caller, `transfer` with the spoken summary as the
    /// agent's `audio_url`, then `streaming_stop`.
    Telnyx {
        rest: Option<TwilioRest>,
        public_url: String,
    },
}

/// Which request a REST transfer makes.
enum How {
    Twiml,
    Url,
    PlivoAleg,
    Telnyx(Box<crate::telephony::telnyx::call_control::Transfer>),
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
            Control::Plivo { public_url, .. } => {
                Some(format!("{public_url}/plivo/agent-whisper/{handoff_id}"))
            }
            // The summary as audio, rendered by warmline (8 kHz WAV; see the audio routes).
            Control::Telnyx { public_url, .. } => {
                Some(format!("{public_url}/audio/summary/{handoff_id}.wav"))
            }
            Control::HandBack => None,
        }
    }

    /// The transfer document for a handoff, for carriers that fetch it by URL.
    pub fn document(&self, handoff_id: &str) -> Option<String> {
        match self {
            Control::DocumentUrl { docs, .. } | Control::Plivo { docs, .. } => docs.get(handoff_id),
            _ => None,
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
        let (rest, doc_or_url, how) = match self {
            Control::HandBack => return Started::HandBack,
            Control::TwilioTwiml { rest, .. } => {
                let whisper = self.whisper_url(&h.id).unwrap_or_default();
                let doc = twiml::transfer(&h.caller_say, &h.target, &whisper);
                (rest.clone(), doc, How::Twiml)
            }
            Control::DocumentUrl {
                rest,
                public_url,
                prefix,
                docs,
            } => {
                let whisper = self.whisper_url(&h.id).unwrap_or_default();
                docs.put(&h.id, twiml::transfer(&h.caller_say, &h.target, &whisper));
                (
                    rest.clone(),
                    format!("{public_url}/{prefix}/transfer/{}", h.id),
                    How::Url,
                )
            }
            Control::Plivo {
                rest,
                public_url,
                docs,
            } => {
                let whisper = self.whisper_url(&h.id).unwrap_or_default();
                docs.put(
                    &h.id,
                    crate::telephony::plivo::xml::transfer(&h.caller_say, &h.target, &whisper),
                );
                (
                    rest.clone(),
                    format!("{public_url}/plivo/transfer/{}", h.id),
                    How::PlivoAleg,
                )
            }
            Control::Telnyx { rest, .. } => {
                let t = crate::telephony::telnyx::call_control::Transfer {
                    say: h.caller_say.clone(),
                    target: h.target.as_str().to_string(),
                    whisper_url: self.whisper_url(&h.id).unwrap_or_default(),
                    id: h.id.clone(),
                    stop_stream: true,
                };
                (rest.clone(), String::new(), How::Telnyx(Box::new(t)))
            }
        };
        let call_id = call_id.to_string();
        Started::Request(async move {
            let Some(rest) = rest else {
                return Err((
                    "no_credentials",
                    "no provider REST credentials configured".to_string(),
                ));
            };
            let result = match how {
                How::Url => rest.update_call_url(&call_id, &doc_or_url).await,
                How::Twiml => rest.update_call_twiml(&call_id, &doc_or_url).await,
                How::PlivoAleg => {
                    // Source: plivo.com api/call/transfer-a-call (answers 202).
                    let path = format!("/v1/Account/{}/Call/{call_id}/", rest.account());
                    let body = serde_json::json!({
                        "legs": "aleg", "aleg_url": doc_or_url, "aleg_method": "POST",
                    });
                    rest.post_json_retried(&path, &body).await
                }
                How::Telnyx(t) => t.run(&rest, &call_id).await,
            };
            result
                .map(|ok| ok.attempts)
                .map_err(|e| (e.kind(), e.to_string()))
        })
    }
}
