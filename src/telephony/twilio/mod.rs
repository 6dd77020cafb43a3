//! Twilio: Media Streams codec, TwiML builders, webhook signatures and the REST client.

pub mod codec;
pub mod messages;
pub mod rest;
pub mod routes;
pub mod signature;
pub mod twiml;
