//! Understanding what a caller said: intent, requests for a person, tone, spoken facts.

pub mod agent_request;
pub mod feedback;
pub mod intent;
pub mod language;
pub mod numbers;
pub mod sentiment;
pub mod text;
pub mod tone;
