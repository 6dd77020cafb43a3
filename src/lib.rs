//! warmline: a voice line that answers a support number and never traps a caller.
//!
//! Data flows one way: socket → provider codec → call engine → actions → provider codec /
//! STT pool / REST client / store. The call engine ([`call`]) never touches a socket, a clock
//! or a file, so live calls and fixture replays share one brain.

pub mod analysis;
pub mod audio;
pub mod call;
pub mod config;
pub mod dialplan;
pub mod handoff;
pub mod http;
pub mod loadtest;
pub mod metrics;
pub mod procstat;
pub mod prompts;
pub mod recording;
pub mod replay;
pub mod server;
pub mod setup;
pub mod speech;
pub mod store;
pub mod stt;
pub mod telephony;
