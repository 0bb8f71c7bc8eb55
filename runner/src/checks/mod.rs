//! The check executors, one module per `type`.

pub mod dns;
pub mod http;
#[cfg(test)]
mod reasons_tests;
pub mod tls;
pub(crate) mod words;
