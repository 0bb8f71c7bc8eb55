//! The `http` check.

use protocol::definition::HttpSpec;

use crate::executor::Executor;
use crate::outcome::{CheckOutcome, Progress};

pub async fn run(executor: &Executor, spec: &HttpSpec, progress: &Progress) -> CheckOutcome {
    let _ = (executor, spec, progress);
    todo!()
}
