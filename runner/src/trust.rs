//! Trust roots and rustls client configurations. STUB: to be implemented.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;

use crate::executor::ExecutorError;

pub(crate) struct Trust {}

impl Trust {
    pub(crate) fn new() -> Result<Self, ExecutorError> {
        todo!()
    }

    /// The client configuration of HTTPS checks (ALPN http/1.1): verifying
    /// against the system roots plus the anchors in `ca_file`, or accepting
    /// any certificate when `verify` is false. Built once per distinct input.
    pub(crate) fn http_config(&self, ca_file: Option<&Path>, verify: bool) -> Result<Arc<ClientConfig>, String> {
        let _ = (ca_file, verify);
        todo!()
    }
}
