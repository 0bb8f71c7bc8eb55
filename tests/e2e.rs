//! End-to-end tests of the `picket` binary: one test binary, one module per
//! area, so everything links once.

mod alerting;
mod api;
mod broker;
mod cli;
mod cluster;
mod compat;
mod containers;
mod fleet;
mod grouping;
mod outage;
mod page;
mod prometheus;
mod reload;
mod silences;
mod standalone;
mod support;
