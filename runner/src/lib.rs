//! picket's runner: executes checks (HTTP, DNS, TLS) and, in [`pool`], consumes
//! requests from a transport and publishes their results. It never notifies.

#![forbid(unsafe_code)]

pub mod checks;
pub mod deny;
pub mod executor;
pub mod outcome;
pub mod pool;
mod resolve;
pub mod secrets;
#[cfg(test)]
pub(crate) mod test_pki;
mod trust;

pub use deny::DenyList;
pub use executor::{Executor, ExecutorError};
pub use outcome::CheckOutcome;
pub use pool::{RunnerConfig, RunnerPool};
pub use secrets::CheckSecrets;
