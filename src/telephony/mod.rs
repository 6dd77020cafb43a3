//! Telephony providers. Each provider keeps its wire format, TwiML-like markup, request
//! signing and REST calls behind its own module so the call engine never sees them.

pub mod twilio;
