//! Asterisk, the PBX where many contact centres keep their agents, two ways in:
//! AudioSocket over TCP (`AudioSocket(${UUID},host:port)`) and chan_websocket
//! (`Dial(WebSocket/warmline/c(slin16)v(call=${UNIQUEID}),,g)`, Asterisk 20.16+). Either way a
//! transfer hands the channel back to the dialplan, which asks warmline where to send the
//! caller (`/asterisk/route/{uuid}`) and plays the agent the spoken summary before bridging.
//! See `examples/asterisk/`.

pub mod audiosocket;
pub mod chan_websocket;
pub mod routes;
pub mod settings;

use std::sync::Arc;

pub use settings::AsteriskSettings;

use crate::config::Settings;
use routes::AsteriskCarrier;

/// Always on: the route lookups answer 401 until the secret is set, and the AudioSocket
/// listener and chan_websocket report at startup whether they are on.
pub fn carrier(s: &Settings) -> anyhow::Result<Option<Arc<AsteriskCarrier>>> {
    Ok(Some(Arc::new(AsteriskCarrier {
        settings: s.providers.asterisk.clone(),
    })))
}
