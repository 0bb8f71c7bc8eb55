//! Name resolution for HTTP and TLS targets, with the deny list applied to
//! every address before any connection is made.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{LookupIpStrategy, ResolveHosts};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::{DnsError, NetError, NoRecords};
use hickory_resolver::proto::op::ResponseCode;
use protocol::definition::IpFamily;

use crate::executor::{Executor, ExecutorError};
use crate::outcome::{CheckOutcome, Progress, ms};

/// The runner's resolver from the system configuration (`/etc/resolv.conf`
/// and the hosts file, so `localhost` resolves), with its cache off: the
/// `dns` timing of every run measures a real lookup, and a changed record is
/// seen at the next run rather than when a TTL runs out.
pub(crate) struct SystemResolver {
    inner: TokioResolver,
}

impl SystemResolver {
    pub(crate) fn new() -> Result<Self, ExecutorError> {
        let mut builder = TokioResolver::builder_tokio().map_err(|e| ExecutorError::Resolver(e.to_string()))?;
        let options = builder.options_mut();
        options.cache_size = 0;
        options.use_hosts_file = ResolveHosts::Always;
        // Both families in parallel, IPv4 first: every address a name has is
        // judged by the deny list, and IPv4 is tried first because the
        // runner's containers often have no IPv6 route.
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        let inner = builder.build().map_err(|e| ExecutorError::Resolver(e.to_string()))?;
        Ok(Self { inner })
    }

    /// The addresses of `name` of `family`, in the resolver's order.
    async fn lookup(&self, name: &str, family: IpFamily) -> Result<Vec<IpAddr>, String> {
        let lookup: Lookup = match family {
            IpFamily::Any => self.inner.lookup_ip(name).await.map(Lookup::from),
            IpFamily::Ipv4 => self.inner.ipv4_lookup(name).await,
            IpFamily::Ipv6 => self.inner.ipv6_lookup(name).await,
        }
        .map_err(|e| lookup_error(&e))?;
        Ok(lookup.answers().iter().filter_map(|record| record.data.ip_addr()).collect())
    }
}

/// A lookup failure in a few words (hickory's own message for an empty answer
/// is the debug form of the whole query).
fn lookup_error(error: &NetError) -> String {
    match error {
        NetError::Dns(DnsError::NoRecordsFound(NoRecords { response_code, .. })) => match response_code {
            ResponseCode::NXDomain => "the name does not exist (NXDOMAIN)".to_owned(),
            ResponseCode::NoError => "the name has no address records".to_owned(),
            other => format!("the resolver answered {}", crate::checks::dns::rcode_name(*other)),
        },
        other => other.to_string(),
    }
}

/// What `family` asks for, in a failure message.
fn family_name(family: IpFamily) -> &'static str {
    match family {
        IpFamily::Any => "address",
        IpFamily::Ipv4 => "IPv4 address",
        IpFamily::Ipv6 => "IPv6 address",
    }
}

impl Executor {
    /// Resolves `host` (a name or an IP literal, IPv6 possibly bracketed) to
    /// the addresses to try, in order, records the `dns` timing in `progress`,
    /// and refuses targets in a denied network with an UNKNOWN outcome (a
    /// failed lookup is CRITICAL). A name is refused when any of its addresses
    /// is denied, so a name cannot smuggle a denied address behind an allowed one.
    pub(crate) async fn resolve_target(
        &self,
        host: &str,
        port: u16,
        family: IpFamily,
        progress: &Progress,
    ) -> Result<Vec<SocketAddr>, CheckOutcome> {
        let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if let Ok(ip) = literal.parse::<IpAddr>() {
            if let Some(net) = self.deny.denies(ip) {
                return Err(CheckOutcome::unknown(format!("{ip} is in denied network {net} (PICKET_DENY_CIDRS)")));
            }
            if !family.admits(ip) {
                return Err(CheckOutcome::critical(format!(
                    "cannot resolve {host}: {ip} is not an {}",
                    family_name(family)
                )));
            }
            return Ok(vec![SocketAddr::new(ip, port)]);
        }

        progress.phase("dns");
        let started = Instant::now();
        let looked_up = self.resolver.lookup(host, family).await;
        progress.metric("dns", ms(started.elapsed()));
        let ips = looked_up.map_err(|e| CheckOutcome::critical(format!("cannot resolve {host}: {e}")))?;

        if let Some((ip, net)) = ips.iter().find_map(|&ip| self.deny.denies(ip).map(|net| (ip, net))) {
            return Err(CheckOutcome::unknown(format!(
                "{host} resolves to {ip}, in denied network {net} (PICKET_DENY_CIDRS)"
            )));
        }
        let addrs: Vec<SocketAddr> =
            ips.into_iter().filter(|&ip| family.admits(ip)).map(|ip| SocketAddr::new(ip, port)).collect();
        if addrs.is_empty() {
            return Err(CheckOutcome::critical(format!("cannot resolve {host}: no {}", family_name(family))));
        }
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use protocol::Status;

    use super::*;
    use crate::deny::DenyList;

    fn executor(deny: &str) -> Executor {
        Executor::new(deny.parse::<DenyList>().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn ip_literal_in_denied_network_is_unknown() {
        let exec = executor("169.254.0.0/16,fe80::/10");
        let progress = Progress::default();
        let err = exec.resolve_target("169.254.169.254", 80, IpFamily::Any, &progress).await.unwrap_err();
        assert_eq!(err.status, Status::Unknown);
        assert_eq!(err.output, "169.254.169.254 is in denied network 169.254.0.0/16 (PICKET_DENY_CIDRS)");
        let err = exec.resolve_target("[fe80::1]", 80, IpFamily::Any, &progress).await.unwrap_err();
        assert_eq!(err.status, Status::Unknown);
        assert!(err.output.contains("fe80::/10"), "{}", err.output);
    }

    #[tokio::test]
    async fn name_resolving_into_denied_network_is_unknown() {
        let exec = executor("127.0.0.0/8,::1/128");
        let progress = Progress::default();
        let err = exec.resolve_target("localhost", 443, IpFamily::Any, &progress).await.unwrap_err();
        assert_eq!(err.status, Status::Unknown);
        assert!(err.output.starts_with("localhost resolves to "), "{}", err.output);
        assert!(
            err.output.contains("in denied network 127.0.0.0/8 (PICKET_DENY_CIDRS)")
                || err.output.contains("in denied network ::1/128 (PICKET_DENY_CIDRS)"),
            "{}",
            err.output
        );
    }

    #[tokio::test]
    async fn allowed_name_resolves_with_timing() {
        let exec = executor("");
        let progress = Progress::default();
        let addrs = exec.resolve_target("localhost", 8080, IpFamily::Any, &progress).await.unwrap();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 8080), "{addrs:?}");
        let timed_out = progress.timed_out(std::time::Duration::from_secs(1));
        assert!(timed_out.output.ends_with("while resolving the name"), "{}", timed_out.output);
        assert!(timed_out.metrics.contains_key("dns"));

        let v4 = exec.resolve_target("localhost", 80, IpFamily::Ipv4, &progress).await.unwrap();
        assert_eq!(v4, vec![SocketAddr::from(([127, 0, 0, 1], 80))]);
    }

    #[tokio::test]
    async fn literal_of_the_wrong_family_is_critical() {
        let exec = executor("");
        let progress = Progress::default();
        let err = exec.resolve_target("127.0.0.1", 80, IpFamily::Ipv6, &progress).await.unwrap_err();
        assert_eq!(err.status, Status::Critical);
        assert_eq!(err.output, "cannot resolve 127.0.0.1: 127.0.0.1 is not an IPv6 address");
        let ok = exec.resolve_target("[::1]", 80, IpFamily::Ipv6, &progress).await.unwrap();
        assert_eq!(ok, vec!["[::1]:80".parse().unwrap()]);
    }
}
