//! picket's handler: consumes results and dead letters from a transport and
//! hands them to a [`ResultSink`]. It never probes a target.

#![forbid(unsafe_code)]

pub mod console;
pub mod consumer;
pub mod event;
pub mod json_log;
pub mod notify;

pub use console::Console;
pub use consumer::{Accept, HandlerError, ResultSink, consume};
pub use event::{Event, EventKind};
