//! Plivo: the answer URL returns Plivo XML with a bidirectional `<Stream>`; media flows as
//! JSON over WebSocket (`playAudio`, `checkpoint`, `clearAudio` out; `media`, `dtmf`,
//! `playedStream` in); a transfer redirects the caller's leg (`aleg_url`) to a document
//! that speaks to them and dials the team, playing the agent the summary first
//! (`confirmSound`). Webhooks carry `X-Plivo-Signature-V3`.
//!
//! Sources: plivo.com docs `voice/audio-streaming`, `xml/the-stream-element`,
//! `api/call/transfer-a-call`, `xml/dial`; plivo-python `plivo/utils/signature_v3.py`
//! (read for the signature base string); ../shared/notes/telephony-providers.md §3.

pub mod codec;
pub mod routes;
pub mod signature;
pub mod xml;
