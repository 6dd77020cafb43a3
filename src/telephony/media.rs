//! Provider-neutral media events: what every carrier's wire codec turns its frames into, and
//! what the call driver asks it to send. No IO and no clock here or in any codec: a codec is
//! a pure translation, tested from the provider's documented example messages.

use std::collections::HashMap;

/// One message on a media connection, either direction: a WebSocket text or binary
/// message, or one TLV frame of a TCP protocol (AudioSocket) carried as `Binary`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
}

/// A media stream announcing which call it carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamStart {
    /// The provider's id for the call (Twilio CallSid, AudioSocket UUID).
    pub call_id: String,
    /// The provider's id for this stream, echoed on outbound messages where it needs one.
    pub stream_id: String,
    /// The provider account the stream belongs to, where the protocol names one.
    pub account: String,
    /// The single-use token warmline handed out when it answered the call, if the provider
    /// carries one back (Twilio `customParameters.token`).
    pub token: Option<String>,
}

/// What a frame meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// Protocol chatter with nothing for the call (Twilio `connected`).
    Nothing,
    Start(StreamStart),
    /// Caller audio as 8 kHz μ-law (codecs for linear PCM convert at the edge).
    Audio {
        ulaw: Vec<u8>,
        chunk: Option<u64>,
    },
    Dtmf(char),
    /// The provider played everything queued before this mark.
    Mark(String),
    /// The provider ended the stream (the caller hung up, or a transfer took the call).
    Stop,
    /// A second start on a running stream.
    DuplicateStart,
}

/// What the driver sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outgoing<'a> {
    /// One 20 ms frame of 8 kHz μ-law.
    Audio(&'a [u8]),
    Mark(&'a str),
    /// Drop all queued audio (barge-in).
    Clear,
    /// End the media connection from our side (AudioSocket hands the channel back this way).
    Hangup,
}

/// A frame that could not be understood. `kind` is the stable label for
/// `wire_errors_total{kind}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct WireError {
    pub kind: &'static str,
    pub detail: String,
}

impl WireError {
    pub fn new(kind: &'static str, detail: impl Into<String>) -> WireError {
        WireError {
            kind,
            detail: detail.into(),
        }
    }
}

/// Parameters a provider echoes from the call setup, as strings.
pub type Params = HashMap<String, String>;
