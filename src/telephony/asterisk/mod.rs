//! Asterisk, the PBX where many contact centres keep their agents: AudioSocket over TCP.
//! The call comes to warmline from the dialplan (`AudioSocket(${UUID},host:port)`); a
//! transfer hands the channel back to the dialplan, which asks warmline where to send the
//! caller (`/asterisk/route/{uuid}`) and plays the agent the spoken summary before bridging.
//! See `examples/asterisk/`.

pub mod audiosocket;
pub mod routes;
