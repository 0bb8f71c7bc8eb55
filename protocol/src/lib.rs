//! picket's shared vocabulary: check definitions (the JSON files in git), the
//! messages roles exchange, the `Transport` they exchange them over, and the
//! metric names. It imports no HTTP, DNS or TLS client.

#![forbid(unsafe_code)]

pub mod definition;
pub mod duration;
pub mod message;
pub mod metrics;
pub mod transport;

pub use definition::{Catalog, CheckDefinition, CheckSpec};
pub use duration::HumanDuration;
pub use message::{CheckRequest, CheckResult, Keepalive, Status};
