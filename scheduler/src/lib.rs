//! picket's scheduler: turns the catalog into check requests on absolute
//! slots (DESIGN.md §6) and publishes them over a transport.

#![forbid(unsafe_code)]

pub mod publisher;
pub mod slots;

pub use publisher::{Scheduler, SchedulerConfig};
pub use slots::Slot;
