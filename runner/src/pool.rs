//! The consume loop. STUB.
pub struct RunnerConfig;
pub struct RunnerPool;
