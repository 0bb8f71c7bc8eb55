//! picket's handler: consumes results and dead letters from a transport and
//! hands them to a [`ResultSink`]. It never probes a target.

#![forbid(unsafe_code)]

pub mod alerting;
pub mod console;
pub mod consumer;
pub mod event;
pub mod group;
pub mod json_log;
pub mod notify;
pub mod series;
pub mod silence;
pub mod state;
pub mod store;

pub use console::Console;
pub use consumer::{Accept, Both, HandlerError, ResultSink, SinkHealth, consume};
pub use event::{Event, EventKind};
pub use silence::{Expiry, Silence, SilenceState, Silencers};
