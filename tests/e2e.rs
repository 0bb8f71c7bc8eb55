//! End-to-end tests of the `picket` binary: one test binary, one module per
//! area, so everything links once.

mod alerting;
mod broker;
mod cli;
mod compat;
mod containers;
mod fleet;
mod outage;
mod prometheus;
mod standalone;
mod support;
