//! The `dns` check. STUB: to be implemented.

use std::time::Duration;

use protocol::definition::DnsSpec;

use crate::executor::Executor;
use crate::outcome::{CheckOutcome, Progress};

pub async fn run(executor: &Executor, spec: &DnsSpec, timeout: Duration, progress: &Progress) -> CheckOutcome {
    let _ = (executor, spec, timeout, progress);
    todo!()
}
