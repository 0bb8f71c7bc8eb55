//! Networks a check must never reach (`PICKET_DENY_CIDRS`): by default the
//! metadata and credential endpoints of the major clouds, over IPv4 and IPv6,
//! so a definition cannot turn a runner into a credential leak. The
//! unspecified addresses (which reach the host itself) are denied whatever
//! the setting says.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::LazyLock;

use ipnet::IpNet;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DenyList(Vec<IpNet>);

/// The default list; README ("Deny list") says whose each one is.
pub const DEFAULT_DENY_CIDRS: &str = concat!(
    // Link-local: AWS IMDS, ECS task metadata (.170.2), EKS Pod Identity
    // (.170.23), GCP, Azure IMDS, Oracle OCI, DigitalOcean, Hetzner, OpenStack
    // and Tencent (169.254.0.23) metadata all live here.
    "169.254.0.0/16,",
    // IPv6 link-local (OpenStack's fe80::a9fe:a9fe).
    "fe80::/10,",
    // AWS IMDS over IPv6 (Nitro instances).
    "fd00:ec2::254/128,",
    // EKS Pod Identity agent over IPv6.
    "fd00:ec2::23/128,",
    // GCP metadata server over IPv6.
    "fd20:ce::254/128,",
    // Azure WireServer (host node; outside link-local).
    "168.63.129.16/32,",
    // Alibaba Cloud ECS metadata, IPv4 and IPv6.
    "100.100.100.200/32,",
    "fd00:100::100:200/128,",
    // Oracle Cloud@Customer / OCI Classic metadata.
    "192.0.0.192/32",
);

/// Denied even when `PICKET_DENY_CIDRS` leaves them out: a connection to an
/// unspecified address lands on the host itself.
static ALWAYS_DENIED: LazyLock<[IpNet; 2]> =
    LazyLock::new(|| ["0.0.0.0/8".parse().expect("CIDR"), "::/128".parse().expect("CIDR")]);

/// The well-known NAT64 prefix (RFC 6052): `64:ff9b::a.b.c.d` reaches
/// `a.b.c.d` through a NAT64 gateway.
const NAT64: Ipv6Addr = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0);

impl DenyList {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    /// The network that denies `ip`, if any. IPv4-mapped and NAT64 IPv6
    /// addresses are judged as the IPv4 address they carry.
    pub fn denies(&self, ip: IpAddr) -> Option<&IpNet> {
        let ip = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ALWAYS_DENIED.iter().chain(&self.0).find(|net| net.contains(&ip))
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    (s[..6] == NAT64.segments()[..6]).then(|| {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    })
}

impl Default for DenyList {
    fn default() -> Self {
        DEFAULT_DENY_CIDRS.parse().expect("default deny list parses")
    }
}

impl FromStr for DenyList {
    type Err = String;

    /// Comma-separated CIDRs; an empty string denies only the unspecified addresses.
    fn from_str(s: &str) -> Result<Self, String> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| p.parse::<IpNet>().map_err(|e| format!("{p:?} is not a CIDR: {e}")))
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl fmt::Display for DenyList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_default_cidr_is_denied() {
        let deny = DenyList::default();
        let defaults: Vec<IpNet> = DEFAULT_DENY_CIDRS.split(',').map(|c| c.parse().unwrap()).collect();
        assert_eq!(defaults.len(), 9);
        for net in &defaults {
            for probe in [net.network(), net.broadcast()] {
                assert_eq!(deny.denies(probe), Some(net), "{probe} in {net}");
            }
        }
        for endpoint in [
            "169.254.169.254",
            "169.254.170.2",
            "169.254.170.23",
            "168.63.129.16",
            "100.100.100.200",
            "192.0.0.192",
            "fd00:ec2::254",
            "fd00:ec2::23",
            "fd20:ce::254",
            "fd00:100::100:200",
            "fe80::a9fe:a9fe",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::168.63.129.16",
        ] {
            assert!(deny.denies(ip(endpoint)).is_some(), "{endpoint} must be denied");
        }
        for allowed in ["127.0.0.1", "::1", "168.63.129.17", "100.100.100.201", "fd00:ec2::253", "8.8.8.8"] {
            assert_eq!(deny.denies(ip(allowed)), None, "{allowed} must be allowed");
        }
    }

    #[test]
    fn unspecified_addresses_are_denied_whatever_the_setting() {
        let nothing: DenyList = "".parse().unwrap();
        for unspecified in ["0.0.0.0", "0.1.2.3", "::", "::ffff:0.0.0.0", "64:ff9b::0.0.0.0"] {
            assert!(nothing.denies(ip(unspecified)).is_some(), "{unspecified}");
        }
        assert_eq!(nothing.denies(ip("169.254.169.254")), None, "an empty list denies only those");
    }

    #[test]
    fn parses_lists_and_rejects_garbage() {
        assert_eq!("".parse::<DenyList>().unwrap(), DenyList::new(vec![]));
        assert!("10.0.0.0/8, 127.0.0.2/32".parse::<DenyList>().is_ok());
        assert!("10.0.0.0/33".parse::<DenyList>().unwrap_err().contains("10.0.0.0/33"));
    }
}
