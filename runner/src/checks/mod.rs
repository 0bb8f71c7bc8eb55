//! The check executors, one module per `type`.

pub mod dns;
pub mod http;
pub mod tls;
