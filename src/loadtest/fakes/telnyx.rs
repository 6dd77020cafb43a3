//! A fake Telnyx: its Call Control API (`POST /v2/calls/{id}/actions/{action}`, bearer key
//! checked, every command recorded with its arrival time), its Ed25519 webhook signatures (a
//! fixed test keypair: Telnyx holds the private half, warmline is given the public one), the
//! Call Control events it posts, and its media-streaming client (`connected`, `start` with
//! the answer's `client_state`, `media`, `dtmf`, `mark` echoes, `stop`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};

use super::{Journal, LineEvent, Served, lock, text};
use crate::telephony::media::Frame;
use crate::telephony::telnyx::signature::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};

pub const API_KEY: &str = "KEY0123456789TELNYXTEST";

/// The `command_id` prefix of the transfers warmline makes when the stream is over (its
/// fail-open path, or a caller it could not take), as opposed to a decided transfer.
pub const FALLBACK_COMMAND: &str = "warmline-fallback";

/// The account's webhook signing key.
pub fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[42u8; 32])
}

/// Its public half, as warmline is configured with it (`TELNYX_PUBLIC_KEY`).
pub fn public_key_b64() -> String {
    BASE64.encode(signing_key().verifying_key().to_bytes())
}

/// The settings (by their documented environment names) that point warmline's Telnyx side
/// at a fake on `fake_base`.
pub fn server_env(fake_base: &str) -> Vec<(&'static str, String)> {
    vec![
        ("TELNYX_API_KEY", API_KEY.into()),
        ("TELNYX_PUBLIC_KEY", public_key_b64()),
        ("WARMLINE_TELNYX_API_BASE", fake_base.into()),
    ]
}

/// One Call Control command as the fake API received it.
#[derive(Debug, Clone)]
pub struct Command {
    pub call: String,
    pub action: String,
    pub body: Value,
    pub at: Instant,
}

impl Command {
    pub fn command_id(&self) -> &str {
        self.body["command_id"].as_str().unwrap_or_default()
    }

    /// A transfer warmline decided on a live stream (not its fallback).
    pub fn is_decided_transfer(&self) -> bool {
        self.action == "transfer"
            && !self.command_id().starts_with(FALLBACK_COMMAND)
            && self.body["to"].as_str().is_some_and(|t| !t.is_empty())
    }
}

/// The fake Call Control API. Clones share everything.
#[derive(Clone, Default)]
pub struct FakeTelnyx {
    pub commands: Arc<Journal<Command>>,
    /// How many of the next `transfer` commands to refuse (422, as for a bad destination).
    pub refuse_transfers: Arc<Mutex<u32>>,
}

impl FakeTelnyx {
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v2/calls/{call}/actions/{action}", post(action))
            .with_state(self.clone())
    }

    pub async fn start(&self, port: u16) -> std::io::Result<Served> {
        super::serve(self.router(), port).await
    }

    pub fn commands_for(&self, call: &str) -> Vec<Command> {
        self.commands.matching(|c| c.call == call)
    }

    pub fn actions_for(&self, call: &str) -> Vec<String> {
        self.commands_for(call)
            .into_iter()
            .map(|c| c.action)
            .collect()
    }

    /// The first `action` command for `call`, waiting up to `limit` for it.
    pub async fn wait_for(&self, call: &str, action: &str, limit: Duration) -> Option<Command> {
        self.commands
            .wait_for(|c| c.call == call && c.action == action, limit)
            .await
    }

    /// The first command for `call` that `pred` accepts, as soon as it arrives.
    pub async fn next(&self, call: &str, pred: impl Fn(&Command) -> bool) -> Command {
        self.commands.wait(|c| c.call == call && pred(c)).await
    }
}

async fn action(
    State(f): State<FakeTelnyx>,
    Path((call, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, Json<Value>) {
    let at = Instant::now();
    let want = format!("Bearer {API_KEY}");
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(want.as_str()) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"errors": []})));
    }
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let refuse = action == "transfer" && {
        let mut left = lock(&f.refuse_transfers);
        let refuse = *left > 0;
        *left = left.saturating_sub(1);
        refuse
    };
    f.commands.push(Command {
        call,
        action,
        body,
        at,
    });
    if refuse {
        let err = json!({"errors": [{"code": "90046", "title": "Invalid destination"}]});
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(err));
    }
    (StatusCode::OK, Json(json!({"data": {"result": "ok"}})))
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A Call Control webhook body as Telnyx sends it.
pub fn event(event_type: &str, payload: Value) -> String {
    json!({
        "data": {
            "event_type": event_type,
            "id": "0ccc7b54-4df3-4bca-a65a-3da1ecc777f0",
            "occurred_at": "2026-12-02T11:00:00.000000Z",
            "payload": payload,
            "record_type": "event",
        },
        "meta": {"attempt": 1, "delivered_to": "https://line.example/telnyx/call"},
    })
    .to_string()
}

/// `call.initiated`'s payload for an incoming call from `from` to `to`.
pub fn initiated_from(call: &str, from: &str, to: &str) -> Value {
    json!({
        "call_control_id": call,
        "call_leg_id": "b0e6224c-c81c-11f0-afbb-02420aef93a0",
        "call_session_id": "b0e6141e-c81c-11f0-abac-02420aef93a0",
        "client_state": null,
        "connection_id": "2811212257810187875",
        "direction": "incoming",
        "from": from,
        "to": to,
        "state": "parked",
    })
}

pub fn initiated(call: &str) -> Value {
    initiated_from(call, "+15551230000", "+15550009000")
}

/// The signature headers for `body` sent at `timestamp`, signed with `key`.
pub fn sign(key: &SigningKey, timestamp: i64, body: &str) -> [(&'static str, String); 2] {
    let ts = timestamp.to_string();
    [
        (SIGNATURE_HEADER, signature::sign(key, &ts, body.as_bytes())),
        (TIMESTAMP_HEADER, ts),
    ]
}

fn stream_id(call: &str) -> String {
    format!("st-{call}")
}

pub fn connected() -> Value {
    json!({"event": "connected", "version": "1.0.0"})
}

pub fn start(seq: u64, call: &str, client_state: &str, from: &str, to: &str) -> Value {
    json!({"event": "start", "sequence_number": seq.to_string(), "stream_id": stream_id(call),
           "start": {"user_id": "3E6F995F-85F7-4705-9741-53B116D28237", "call_control_id": call,
                     "call_session_id": "ff55a038", "from": from, "to": to,
                     "client_state": client_state, "custom_parameters": {},
                     "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1}}})
}

pub fn media(seq: u64, call: &str, chunk: u64, ulaw: &[u8]) -> Value {
    json!({"event": "media", "sequence_number": seq.to_string(), "stream_id": stream_id(call),
           "media": {"track": "inbound", "chunk": chunk.to_string(),
                     "timestamp": (chunk * 20).to_string(), "payload": BASE64.encode(ulaw)}})
}

pub fn mark(seq: u64, call: &str, name: &str) -> Value {
    json!({"event": "mark", "sequence_number": seq.to_string(), "stream_id": stream_id(call),
           "mark": {"name": name}})
}

pub fn dtmf(seq: u64, call: &str, digit: char) -> Value {
    json!({"event": "dtmf", "sequence_number": seq.to_string(), "stream_id": stream_id(call),
           "dtmf": {"digit": digit.to_string()}})
}

pub fn stop(seq: u64, call: &str) -> Value {
    json!({"event": "stop", "sequence_number": seq.to_string(), "stream_id": stream_id(call),
           "stop": {"user_id": "3E6F995F", "call_control_id": call}})
}

/// What warmline sent on the stream.
pub fn read(text: &str) -> LineEvent {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return LineEvent::Other("not JSON".into());
    };
    match v["event"].as_str() {
        Some("media") => {
            let payload = v["media"]["payload"].as_str().unwrap_or_default();
            LineEvent::Audio(BASE64.decode(payload).unwrap_or_default())
        }
        Some("mark") => LineEvent::Mark(v["mark"]["name"].as_str().unwrap_or_default().into()),
        Some("clear") => LineEvent::Clear,
        other => LineEvent::Other(other.unwrap_or_default().to_string()),
    }
}

/// Telnyx's media client for one call.
#[derive(Debug)]
pub struct MediaClient {
    pub call: String,
    client_state: String,
    from: String,
    to: String,
    seq: u64,
    chunk: u64,
}

impl MediaClient {
    pub fn new(call: &str, client_state: &str, from: &str, to: &str) -> MediaClient {
        MediaClient {
            call: call.to_string(),
            client_state: client_state.to_string(),
            from: from.to_string(),
            to: to.to_string(),
            seq: 0,
            chunk: 0,
        }
    }

    fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub fn hello(&mut self) -> Vec<Frame> {
        let seq = self.next();
        let start = start(seq, &self.call, &self.client_state, &self.from, &self.to);
        vec![text(connected()), text(start)]
    }

    pub fn audio(&mut self, ulaw: &[u8]) -> Frame {
        let seq = self.next();
        self.chunk += 1;
        text(media(seq, &self.call, self.chunk, ulaw))
    }

    pub fn dtmf(&mut self, digit: char) -> Frame {
        let seq = self.next();
        text(dtmf(seq, &self.call, digit))
    }

    pub fn played(&mut self, name: &str) -> Frame {
        let seq = self.next();
        text(mark(seq, &self.call, name))
    }

    pub fn stop(&mut self) -> Frame {
        let seq = self.next();
        text(stop(seq, &self.call))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telephony::telnyx::signature::PublicKey;

    #[test]
    fn webhooks_verify_with_the_public_key_warmline_is_given() {
        let body = event("call.initiated", initiated("v3:c"));
        let now = unix_now();
        let [(_, sig), (_, ts)] = sign(&signing_key(), now, &body);
        // The README gives this key for a `--url` server; it must stay the fake's.
        assert_eq!(
            public_key_b64(),
            "GX9rI+FshTLGq8g4+s1ep4m+DHaykgM0A5v6iz02jWE="
        );
        let key = PublicKey::from_base64(&public_key_b64()).unwrap();
        assert!(
            key.verify(Some(&ts), Some(&sig), body.as_bytes(), now)
                .is_ok()
        );
    }

    #[test]
    fn a_fallback_transfer_is_told_from_a_decided_one() {
        let cmd = |id: &str| Command {
            call: "c".into(),
            action: "transfer".into(),
            body: json!({"to": "+1555", "command_id": id}),
            at: Instant::now(),
        };
        assert!(cmd("3f2a-transfer").is_decided_transfer());
        assert!(!cmd("warmline-fallback-transfer").is_decided_transfer());
    }
}
