//! Telnyx Call Control v2 commands: `POST /v2/calls/{call_control_id}/actions/{action}` with a
//! JSON body and `Authorization: Bearer {api key}`, sent through the shared REST client and its
//! retry policy. Every command carries a `command_id`, which Telnyx uses to ignore a repeat
//! for the same call, so a retried request (a timeout that did reach Telnyx) acts once.
//!
//! Sources: team-telnyx/telnyx-python `types/calls/action_{answer,transfer,speak,hangup,
//! stop_streaming}_params.py` (field names), developers.telnyx.com call-commands pages.

use serde_json::{Value, json};

use super::codec::{client_state_for, token_of_client_state};
use crate::telephony::twilio::rest::{RestError, TwilioRest, UpdateOk};

/// Seconds Telnyx rings the agent before the transfer gives up (Telnyx allows 5–600).
const TRANSFER_TIMEOUT_SECS: u32 = 60;

/// One command for one call.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub action: &'static str,
    pub body: Value,
}

impl Command {
    fn path(&self, call_control_id: &str) -> String {
        // call_control_id is Telnyx's (`v3:…`); it is put in a path segment, so anything that
        // could leave the segment is escaped.
        let id: String = form_urlencoded::byte_serialize(call_control_id.as_bytes()).collect();
        format!("/v2/calls/{id}/actions/{}", self.action)
    }

    pub async fn send(
        &self,
        rest: &TwilioRest,
        call_control_id: &str,
    ) -> Result<UpdateOk, RestError> {
        rest.post_json_retried(&self.path(call_control_id), &self.body)
            .await
    }
}

/// Answer and fork the caller's audio to `stream_url` both ways as 8 kHz μ-law; the token
/// rides in `client_state`, which the stream's `start` frame carries back.
pub fn answer(stream_url: &str, token: &str, command_id: &str) -> Command {
    Command {
        action: "answer",
        body: json!({
            "stream_url": stream_url,
            "stream_track": "inbound_track",
            "stream_codec": "PCMU",
            "stream_bidirectional_mode": "rtp",
            "stream_bidirectional_codec": "PCMU",
            "client_state": client_state_for(token),
            "command_id": command_id,
        }),
    }
}

/// Answer without a stream (the line is full or not ready: a person takes the call).
pub fn answer_plain(command_id: &str) -> Command {
    Command {
        action: "answer",
        body: json!({"command_id": command_id}),
    }
}

/// Tell the caller where they are going (Telnyx's own text-to-speech).
pub fn speak(text: &str, command_id: &str) -> Command {
    let text: String = text.chars().take(3000).collect();
    Command {
        action: "speak",
        body: json!({
            "payload": text,
            "voice": "female",
            "language": "en-US",
            "command_id": command_id,
        }),
    }
}

/// Marks the agent's leg: Telnyx puts `target_leg_client_state` on every webhook of the new
/// leg (developers.telnyx.com `call-commands/transfer-call`; telnyx-python
/// `action_transfer_params.py`), so its `call.hangup` names the caller it was dialled for.
const AGENT_LEG: &str = "warmline-agent:";

/// The `client_state` of the agent leg dialled for `caller`.
pub fn agent_leg_state(caller: &str) -> String {
    client_state_for(&format!("{AGENT_LEG}{caller}"))
}

/// The caller an agent leg was dialled for, if `client_state` is one warmline set.
pub fn caller_of_agent_leg(client_state: &str) -> Option<String> {
    token_of_client_state(client_state)?
        .strip_prefix(AGENT_LEG)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
}

/// Dial `to` (a number or a `sip:` URI) and bridge `caller` once it answers; `audio_url`
/// is played to the agent on answer, before bridging — the spoken summary. The new leg is
/// marked with the caller's id, so a leg that fails can be noticed (see the routes).
pub fn transfer(to: &str, audio_url: &str, command_id: &str, caller: &str) -> Command {
    let mut body = json!({
        "to": to,
        "timeout_secs": TRANSFER_TIMEOUT_SECS,
        "command_id": command_id,
        "target_leg_client_state": agent_leg_state(caller),
    });
    if !audio_url.is_empty() {
        body["audio_url"] = Value::String(audio_url.to_string());
    }
    Command {
        action: "transfer",
        body,
    }
}

/// Stop the media fork (Telnyx then sends `stop` and closes the socket). Whether a transfer
/// stops it by itself is unverified, so warmline asks explicitly.
pub fn streaming_stop(command_id: &str) -> Command {
    Command {
        action: "streaming_stop",
        body: json!({"command_id": command_id}),
    }
}

pub fn hangup(command_id: &str) -> Command {
    Command {
        action: "hangup",
        body: json!({"command_id": command_id}),
    }
}

/// The transfer of a live call warmline decided: what the caller hears, the agent's summary
/// URL, and where to dial.
#[derive(Debug, Clone)]
pub struct Transfer {
    pub say: String,
    pub target: String,
    pub whisper_url: String,
    /// Unique per handoff; the commands' ids derive from it.
    pub id: String,
    /// Whether a stream is still running that the transfer must stop.
    pub stop_stream: bool,
}

impl Transfer {
    /// Speaks to the caller (best effort: a failed prompt must not stop the transfer), then
    /// transfers (retried; its answer is the outcome), then stops the stream if one runs.
    pub async fn run(
        &self,
        rest: &TwilioRest,
        call_control_id: &str,
    ) -> Result<UpdateOk, RestError> {
        if !self.say.is_empty()
            && let Err(e) = speak(&self.say, &format!("{}-speak", self.id))
                .send(rest, call_control_id)
                .await
        {
            tracing::warn!(error = %e, "Telnyx speak before the transfer failed; transferring anyway");
        }
        let ok = transfer(
            &self.target,
            &self.whisper_url,
            &format!("{}-transfer", self.id),
            call_control_id,
        )
        .send(rest, call_control_id)
        .await?;
        if !self.stop_stream {
            return Ok(ok);
        }
        if let Err(e) = streaming_stop(&format!("{}-stop", self.id))
            .send(rest, call_control_id)
            .await
        {
            tracing::warn!(error = %e, "Telnyx streaming_stop after the transfer failed");
        }
        Ok(ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_carry_what_telnyx_documents() {
        let a = answer("wss://line.example/telnyx/media", "tok", "c1");
        assert_eq!(a.action, "answer");
        assert_eq!(a.body["stream_bidirectional_mode"], "rtp");
        assert_eq!(a.body["stream_bidirectional_codec"], "PCMU");
        assert_eq!(a.body["stream_track"], "inbound_track");
        assert_eq!(
            super::super::codec::token_of_client_state(a.body["client_state"].as_str().unwrap())
                .as_deref(),
            Some("tok")
        );
        let t = transfer(
            "+15550100000",
            "https://x/audio/summary/h1",
            "h1-transfer",
            "v3:caller",
        );
        assert_eq!(t.body["to"], "+15550100000");
        assert_eq!(
            caller_of_agent_leg(t.body["target_leg_client_state"].as_str().unwrap()).as_deref(),
            Some("v3:caller")
        );
        // The caller's own client_state (the stream token) is not an agent leg's.
        assert_eq!(caller_of_agent_leg(&client_state_for("tok")), None);
        assert_eq!(t.body["audio_url"], "https://x/audio/summary/h1");
        assert_eq!(
            t.path("v3:abc/def"),
            "/v2/calls/v3%3Aabc%2Fdef/actions/transfer"
        );
        assert!(
            transfer("sip:desk@pbx", "", "x", "v3:c")
                .body
                .get("audio_url")
                .is_none()
        );
        assert_eq!(
            streaming_stop("s").path("v3:a"),
            "/v2/calls/v3%3Aa/actions/streaming_stop"
        );
        assert_eq!(
            speak(&"a".repeat(5000), "s").body["payload"]
                .as_str()
                .unwrap()
                .len(),
            3000
        );
    }
}
