//! Name resolution for HTTP and TLS targets, with the deny list applied to
//! every address before any connection is made. STUB: to be implemented.

use std::net::SocketAddr;

use protocol::definition::IpFamily;

use crate::executor::{Executor, ExecutorError};
use crate::outcome::{CheckOutcome, Progress};

/// The runner's resolver from the system configuration, cache off.
pub(crate) struct SystemResolver {}

impl SystemResolver {
    pub(crate) fn new() -> Result<Self, ExecutorError> {
        todo!()
    }
}

impl Executor {
    /// Resolves `host` (a name or an IP literal) to the addresses to try, in
    /// order, records the `dns` timing in `progress`, and refuses targets in a
    /// denied network with an UNKNOWN outcome (a failed lookup is CRITICAL).
    pub(crate) async fn resolve_target(
        &self,
        host: &str,
        port: u16,
        family: IpFamily,
        progress: &Progress,
    ) -> Result<Vec<SocketAddr>, CheckOutcome> {
        let _ = (host, port, family, progress, &self.deny, &self.resolver);
        todo!()
    }
}
