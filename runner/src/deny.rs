//! Networks a check must never reach (`PICKET_DENY_CIDRS`): by default the
//! link-local ranges that hold the cloud metadata and ECS credential
//! endpoints, so a definition cannot turn a runner into a credential leak.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DenyList(Vec<IpNet>);

/// 169.254.0.0/16 (AWS/GCP/Azure metadata, ECS task credentials) and fe80::/10.
pub const DEFAULT_DENY_CIDRS: &str = "169.254.0.0/16,fe80::/10";

impl DenyList {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    /// The network that denies `ip`, if any. IPv4-mapped IPv6 addresses are
    /// judged as the IPv4 address they carry.
    pub fn denies(&self, ip: IpAddr) -> Option<&IpNet> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().find(|net| net.contains(&ip))
    }
}

impl Default for DenyList {
    fn default() -> Self {
        DEFAULT_DENY_CIDRS.parse().expect("default deny list parses")
    }
}

impl FromStr for DenyList {
    type Err = String;

    /// Comma-separated CIDRs; an empty string denies nothing.
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

    #[test]
    fn default_denies_metadata_endpoints() {
        let deny = DenyList::default();
        assert!(deny.denies("169.254.169.254".parse().unwrap()).is_some());
        assert!(deny.denies("169.254.170.2".parse().unwrap()).is_some());
        assert!(deny.denies("fe80::1".parse().unwrap()).is_some());
        assert!(deny.denies("::ffff:169.254.169.254".parse().unwrap()).is_some());
        assert!(deny.denies("127.0.0.1".parse().unwrap()).is_none());
    }

    #[test]
    fn parses_lists_and_rejects_garbage() {
        assert_eq!("".parse::<DenyList>().unwrap(), DenyList::new(vec![]));
        assert!("10.0.0.0/8, 127.0.0.2/32".parse::<DenyList>().is_ok());
        assert!("10.0.0.0/33".parse::<DenyList>().unwrap_err().contains("10.0.0.0/33"));
    }
}
