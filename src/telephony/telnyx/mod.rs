//! Telnyx: Call Control answers the call with a bidirectional media stream (`stream_url`,
//! RTP mode, PCMU); media flows as JSON over WebSocket (`media`, `mark`, `clear` out; `start`,
//! `media`, `dtmf`, `mark`, `stop` in); a transfer is a Call Control `transfer` whose
//! `audio_url` plays warmline's spoken summary to the agent before bridging. Webhooks are
//! Ed25519-signed (`telnyx-signature-ed25519` over `timestamp|body`).
//!
//! Telnyx has no TwiML-style "after the stream" callback, so the fail-open path runs when the
//! stream ends here (the socket closes) or Telnyx reports `streaming.stopped`/`streaming.failed`
//! for a call this process is not driving (a restart): either way a caller who was neither
//! transferred nor said goodbye is transferred to the fallback queue with the card.
//!
//! Sources: developers.telnyx.com `api-reference/websockets/stream-call-media-over-websocket`,
//! call-commands pages; team-telnyx/telnyx-python `lib/webhook_verification.py`,
//! `types/calls/action_*_params.py`; pipecat `serializers/telnyx.py`;
//! ../shared/notes/telephony-providers.md §1.

pub mod call_control;
pub mod codec;
pub mod routes;
pub mod signature;
