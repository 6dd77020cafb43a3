//! SignalWire (cXML): Twilio-compatible media streams and markup, its own signature header
//! and signing key, and its own REST host. The wire codec is Twilio's.
