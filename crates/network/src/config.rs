//! `[network.<name>]`: what a network is, checked before anything uses it.
use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetworkError {
    #[error("network {name:?}: {problem}")]
    Invalid { name: String, problem: String },
    #[error("networks {a:?} and {b:?} overlap ({sa} and {sb}); give each network its own subnet")]
    Overlap {
        a: String,
        b: String,
        sa: IpNet,
        sb: IpNet,
    },
    #[error("network {0:?} is not configured (see [network.<name>] in the config file)")]
    Unknown(String),
    #[error("network {name:?}: no free address in {range} ({leased} leased)")]
    Exhausted {
        name: String,
        range: String,
        leased: usize,
    },
    #[error("network {name:?}: {addr} is {why}")]
    Address {
        name: String,
        addr: IpAddr,
        why: String,
    },
    #[error("{what}: {reason}")]
    Host { what: String, reason: String },
    #[error("IPAM {path}: {reason}")]
    Store { path: String, reason: String },
}

/// One network, as written in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// The Linux bridge (Proxmox: `vmbrN`).
    pub bridge: String,
    /// IPv4 and/or IPv6 subnets (`"10.88.0.0/24"` or a list).
    #[serde(deserialize_with = "one_or_many")]
    pub subnet: Vec<IpNet>,
    /// Gateways, one per subnet family at most (default: none).
    #[serde(default, deserialize_with = "one_or_many_opt")]
    pub gateway: Vec<IpAddr>,
    /// The part of a subnet handed out, `"10.88.0.100-10.88.0.199"`, or a
    /// CIDR inside the subnet (default: the whole subnet).
    #[serde(default, deserialize_with = "one_or_many_opt")]
    pub range: Vec<String>,
    /// 802.1Q tag of the container's port.
    #[serde(default)]
    pub vlan: Option<u16>,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    #[serde(default)]
    pub search: Vec<String>,
    /// No traffic to other networks.
    #[serde(default)]
    pub isolated: bool,
    /// A container may send only from its own MAC and addresses.
    #[serde(default = "yes")]
    pub port_security: bool,
    /// Allocate through this Proxmox SDN vnet's IPAM instead.
    #[serde(default)]
    pub sdn_vnet: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(x) => vec![x],
        OneOrMany::Many(v) => v,
    })
}

fn one_or_many_opt<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    one_or_many(d)
}

/// A network name: also a file name and a CT tag part.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !name.starts_with(['-', '_'])
}

/// A Linux interface name (what `ip link` and LXC accept safely).
pub fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s != "."
        && s != ".."
}

/// A DNS name: dot-separated labels of letters, digits and '-'.
pub fn valid_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

impl Network {
    /// Check one network; `name` is its key in the config file.
    pub fn validate(&self, name: &str) -> Result<(), NetworkError> {
        let bad = |problem: String| NetworkError::Invalid {
            name: name.to_string(),
            problem,
        };
        if !valid_name(name) {
            return Err(bad(
                "a network name is 1-32 of [a-z0-9_-], starting with a letter or digit".into(),
            ));
        }
        if !valid_ifname(&self.bridge) {
            return Err(bad(format!(
                "bridge {:?} is not an interface name (1-15 of [A-Za-z0-9._-])",
                self.bridge
            )));
        }
        if self.subnet.is_empty() {
            return Err(bad("subnet: at least one (e.g. \"10.88.0.0/24\")".into()));
        }
        for (i, s) in self.subnet.iter().enumerate() {
            if s.trunc() != *s {
                return Err(bad(format!(
                    "subnet {s} has host bits set; did you mean {}?",
                    s.trunc()
                )));
            }
            if self.subnet[..i]
                .iter()
                .any(|o| o.contains(&s.network()) || s.contains(&o.network()))
            {
                return Err(bad(format!("subnet {s} overlaps another subnet of it")));
            }
            if host_count(s) < 1 {
                return Err(bad(format!("subnet {s} has no host addresses")));
            }
        }
        for g in &self.gateway {
            let Some(s) = self.subnet.iter().find(|s| s.contains(g)) else {
                return Err(bad(format!("gateway {g} is outside every subnet")));
            };
            if *g == s.network() || (s.addr().is_ipv4() && *g == s.broadcast()) {
                return Err(bad(format!("gateway {g} is not a host address of {s}")));
            }
        }
        for (i, g) in self.gateway.iter().enumerate() {
            if self.gateway[..i].iter().any(|o| o.is_ipv4() == g.is_ipv4()) {
                return Err(bad("gateway: at most one per address family".into()));
            }
        }
        for r in &self.range {
            self.parse_range(r).map_err(bad)?;
        }
        if let Some(v) = self.vlan {
            if !(1..=4094).contains(&v) {
                return Err(bad(format!("vlan {v}: a tag is 1-4094")));
            }
        }
        if let Some(m) = self.mtu {
            if !(576..=65520).contains(&m) {
                return Err(bad(format!("mtu {m}: use 576-65520")));
            }
        }
        if let Some(d) = self.search.iter().find(|d| !valid_domain(d)) {
            return Err(bad(format!("search domain {d:?} is not a domain name")));
        }
        if let Some(v) = &self.sdn_vnet {
            if v.is_empty()
                || v.len() > 8
                || !v.bytes().all(|b| b.is_ascii_alphanumeric())
                || !v.as_bytes()[0].is_ascii_alphabetic()
            {
                return Err(bad(format!(
                    "sdn_vnet {v:?}: a Proxmox vnet id is 1-8 letters/digits, starting with a letter"
                )));
            }
        }
        Ok(())
    }

    /// A range as (subnet, first, last), inside one of the subnets.
    pub(crate) fn parse_range(&self, r: &str) -> Result<(IpNet, IpAddr, IpAddr), String> {
        let (first, last) = if let Some((a, b)) = r.split_once('-') {
            let a: IpAddr = a
                .trim()
                .parse()
                .map_err(|_| format!("range {r:?}: bad address"))?;
            let b: IpAddr = b
                .trim()
                .parse()
                .map_err(|_| format!("range {r:?}: bad address"))?;
            (a, b)
        } else {
            let n: IpNet = r
                .parse()
                .map_err(|_| format!("range {r:?}: use \"FIRST-LAST\" or a CIDR"))?;
            (n.network(), n.broadcast())
        };
        let s = self
            .subnet
            .iter()
            .find(|s| s.contains(&first) && s.contains(&last))
            .ok_or_else(|| format!("range {r:?} is not inside one subnet"))?;
        if ord(first) > ord(last) {
            return Err(format!("range {r:?}: the first address is after the last"));
        }
        Ok((*s, first, last))
    }

    /// The ranges handed out: as configured, or every subnet whole.
    pub(crate) fn ranges(&self) -> Vec<(IpNet, IpAddr, IpAddr)> {
        if self.range.is_empty() {
            self.subnet
                .iter()
                .map(|s| (*s, s.network(), s.broadcast()))
                .collect()
        } else {
            self.range
                .iter()
                .filter_map(|r| self.parse_range(r).ok())
                .collect()
        }
    }

    /// The gateway of the subnet `addr` is in.
    pub fn gateway_for(&self, addr: IpAddr) -> Option<IpAddr> {
        let s = self.subnet_of(addr)?;
        self.gateway.iter().copied().find(|g| s.contains(g))
    }

    pub fn subnet_of(&self, addr: IpAddr) -> Option<IpNet> {
        self.subnet.iter().copied().find(|s| s.contains(&addr))
    }
}

fn host_count(s: &IpNet) -> u128 {
    let bits = s.max_prefix_len() - s.prefix_len();
    let n = if bits >= 128 {
        u128::MAX
    } else {
        1u128 << bits
    };
    if s.addr().is_ipv4() && bits >= 2 {
        n - 2
    } else if s.addr().is_ipv4() {
        n
    } else {
        n.saturating_sub(1)
    }
}

pub(crate) fn ord(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u32::from(v) as u128,
        IpAddr::V6(v) => u128::from(v),
    }
}

/// Check every network and that no two overlap.
pub fn validate_all(nets: &BTreeMap<String, Network>) -> Result<(), NetworkError> {
    for (name, n) in nets {
        n.validate(name)?;
    }
    let all: Vec<(&String, &IpNet)> = nets
        .iter()
        .flat_map(|(name, n)| n.subnet.iter().map(move |s| (name, s)))
        .collect();
    for (i, (a, sa)) in all.iter().enumerate() {
        for (b, sb) in &all[..i] {
            if a != b && (sa.contains(&sb.network()) || sb.contains(&sa.network())) {
                return Err(NetworkError::Overlap {
                    a: (*b).clone(),
                    b: (*a).clone(),
                    sa: **sb,
                    sb: **sa,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(toml_text: &str) -> BTreeMap<String, Network> {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn a_good_network() {
        let n = nets(
            r#"
            [blue]
            bridge = "vmbr1"
            subnet = ["10.88.0.0/24", "fd00:88::/64"]
            gateway = ["10.88.0.1", "fd00:88::1"]
            range = "10.88.0.100-10.88.0.199"
            vlan = 20
            mtu = 1450
            dns = ["10.88.0.1"]
            search = ["blue.example"]
            "#,
        );
        validate_all(&n).unwrap();
        let b = &n["blue"];
        assert!(b.port_security);
        assert_eq!(
            b.gateway_for("10.88.0.150".parse().unwrap()),
            Some("10.88.0.1".parse().unwrap())
        );
    }

    #[test]
    fn bad_networks_are_refused_with_the_reason() {
        for (text, want) in [
            (
                r#"[Bad] 
bridge = "br0"
subnet = "10.0.0.0/24""#,
                "network name",
            ),
            (
                r#"[a]
bridge = "br0; rm -rf /"
subnet = "10.0.0.0/24""#,
                "interface name",
            ),
            (
                r#"[a]
bridge = "br0"
subnet = "10.0.0.1/24""#,
                "host bits",
            ),
            (
                r#"[a]
bridge = "br0"
subnet = "10.0.0.0/24"
gateway = "10.0.1.1""#,
                "outside",
            ),
            (
                r#"[a]
bridge = "br0"
subnet = "10.0.0.0/24"
range = "10.0.0.200-10.0.0.100""#,
                "after the last",
            ),
            (
                r#"[a]
bridge = "br0"
subnet = "10.0.0.0/24"
range = "10.0.1.0/28""#,
                "not inside",
            ),
            (
                r#"[a]
bridge = "br0"
subnet = "10.0.0.0/24"
vlan = 5000"#,
                "1-4094",
            ),
            (
                r#"[a]
bridge = "br0"
subnet = "10.0.0.0/24"
search = ["bad domain"]"#,
                "domain",
            ),
            (
                r#"[a]
bridge = "br0"
subnet = "10.0.0.0/24"
[b]
bridge = "br1"
subnet = "10.0.0.128/25""#,
                "overlap",
            ),
        ] {
            let err = validate_all(&nets(text)).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_cidrs_do_not_parse() {
        assert!(toml::from_str::<BTreeMap<String, Network>>(
            "[a]\nbridge = \"b\"\nsubnet = \"10.0.0.0/33\""
        )
        .is_err());
        assert!(toml::from_str::<BTreeMap<String, Network>>(
            "[a]\nbridge = \"b\"\nsubnet = \"10.0.0.0/24\"\nvlans = 3"
        )
        .is_err());
    }
}
