//! Telephony providers behind one seam.
//!
//! Each provider is a folder: its settings and the constructor that turns them into its
//! carrier, a sans-IO wire codec (its frames ⇄ [`media::MediaEvent`]), its call control
//! (transfer, hang up), its request authentication and its routes. The server sees only the
//! closed enums: [`Provider`] (the [`registry`]: what to mount and start) and, in the call
//! driver, [`WireCodec`] — the shape of str0m's pacer: no trait objects, every codec IO-free.
//! Adding a provider means one folder, its variants in those two lists, and the README.

pub mod asterisk;
pub mod control;
pub mod media;
pub mod plivo;
pub mod registry;
pub mod signalwire;
pub mod telnyx;
pub mod twilio;

use media::{Frame, MediaEvent, Outgoing, WireError};
pub use registry::{Provider, ProviderSettings};

/// The media protocols warmline speaks.
#[derive(Debug)]
pub enum WireCodec {
    /// Twilio Media Streams, and SignalWire's Twilio-compatible `<Stream>`.
    Twilio(twilio::codec::Codec),
    /// Plivo audio streaming (`<Stream bidirectional>`).
    Plivo(plivo::codec::Codec),
    /// Asterisk AudioSocket over TCP.
    AudioSocket(asterisk::audiosocket::Codec),
    /// Telnyx media streaming (bidirectional RTP mode, PCMU).
    Telnyx(telnyx::codec::Codec),
    /// Asterisk chan_websocket (`Dial(WebSocket/…)`).
    ChanWebsocket(asterisk::chan_websocket::Codec),
}

impl WireCodec {
    pub fn decode(&mut self, frame: Frame) -> Result<MediaEvent, WireError> {
        match self {
            WireCodec::Twilio(c) => c.decode(frame),
            WireCodec::Plivo(c) => c.decode(frame),
            WireCodec::AudioSocket(c) => c.decode(frame),
            WireCodec::Telnyx(c) => c.decode(frame),
            WireCodec::ChanWebsocket(c) => c.decode(frame),
        }
    }

    /// The frame to send, if the protocol has one for this (a Twilio hang-up is a close).
    pub fn encode(&mut self, out: Outgoing<'_>) -> Option<Frame> {
        match self {
            WireCodec::Twilio(c) => c.encode(out),
            WireCodec::Plivo(c) => c.encode(out),
            WireCodec::AudioSocket(c) => c.encode(out),
            WireCodec::Telnyx(c) => c.encode(out),
            WireCodec::ChanWebsocket(c) => c.encode(out),
        }
    }

    /// Whether the provider echoes marks itself. Where it does not, the driver emulates
    /// them from its own playout clock (the audio is paced in real time anyway).
    pub fn native_marks(&self) -> bool {
        match self {
            WireCodec::Twilio(_) | WireCodec::Plivo(_) | WireCodec::Telnyx(_) => true,
            // chan_websocket has MARK_MEDIA, but FLUSH_MEDIA drops queued marks unanswered.
            WireCodec::AudioSocket(_) | WireCodec::ChanWebsocket(_) => false,
        }
    }

    /// Whether the peer expects audio without gaps (AudioSocket treats two seconds without a
    /// frame as an error), so silence is sent between prompts. chan_websocket plays silence
    /// itself when nothing is queued.
    pub fn wants_continuous_audio(&self) -> bool {
        matches!(self, WireCodec::AudioSocket(_))
    }
}
