//! picket's shared vocabulary: check definitions (the JSON files in git), the
//! messages roles exchange, the `Transport` they exchange them over, and the
//! metric names. It imports no HTTP, DNS or TLS client.

#![forbid(unsafe_code)]

pub mod definition;
pub mod duration;
pub mod message;
pub mod metrics;
pub mod silence;
pub mod transport;

pub use definition::{Catalog, CheckDefinition, CheckSpec};
pub use duration::HumanDuration;
pub use message::{CheckRequest, CheckResult, Keepalive, Status};

/// An error and its causes on one line (`outer: cause: root`): results and
/// log fields have one line for it, and the root cause is the useful part.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
