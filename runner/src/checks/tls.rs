//! The `tls` check. STUB: to be implemented.

use protocol::definition::TlsSpec;

use crate::executor::Executor;
use crate::outcome::{CheckOutcome, Progress};

pub async fn run(executor: &Executor, spec: &TlsSpec, progress: &Progress) -> CheckOutcome {
    let _ = (executor, spec, progress);
    todo!()
}
