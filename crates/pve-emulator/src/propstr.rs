//! Proxmox property strings (`name=eth0,bridge=vmbr0,ip=dhcp`): parsing and
//! the key sets of the LXC formats the emulator interprets.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Clone, Copy)]
enum Kt {
    Bool,
    Int(Option<i64>, Option<i64>),
    Num,
    /// A regex the whole value must match.
    Re(&'static str),
    Ip4Cidr,
    Ip6Cidr,
    Ip4,
    Ip6,
    Any,
}

struct Key {
    name: &'static str,
    kt: Kt,
    required: bool,
}

const fn k(name: &'static str, kt: Kt) -> Key {
    Key {
        name,
        kt,
        required: false,
    }
}
const fn r(name: &'static str, kt: Kt) -> Key {
    Key {
        name,
        kt,
        required: true,
    }
}

const WORD: &str = r"^[-_.\w\d]+$";
const MOUNTOPTS: &str = r"^(discard|lazytime|noatime|nodev|noexec|nosuid)(;(discard|lazytime|noatime|nodev|noexec|nosuid))*$";
const DISKSIZE: &str = r"^\d+(\.\d+)?[KMGT]?$";

const NET: &[Key] = &[
    r("name", Kt::Re(WORD)),
    k("bridge", Kt::Re(WORD)),
    k("firewall", Kt::Bool),
    k("gw", Kt::Ip4),
    k("gw6", Kt::Ip6),
    k("host-managed", Kt::Bool),
    k(
        "hwaddr",
        Kt::Re(r"^[0-9a-fA-F][02468aAcCeE](:[0-9a-fA-F]{2}){5}$"),
    ),
    k("ip", Kt::Ip4Cidr),
    k("ip6", Kt::Ip6Cidr),
    k("link_down", Kt::Bool),
    k("mtu", Kt::Int(Some(64), Some(65535))),
    k("rate", Kt::Num),
    k("tag", Kt::Int(Some(1), Some(4094))),
    k("trunks", Kt::Re(r"^\d+(;\d+)*$")),
    k("type", Kt::Re("^veth$")),
];
const ROOTFS: &[Key] = &[
    r("volume", Kt::Any),
    k("acl", Kt::Bool),
    k("mountoptions", Kt::Re(MOUNTOPTS)),
    k("quota", Kt::Bool),
    k("replicate", Kt::Bool),
    k("ro", Kt::Bool),
    k("shared", Kt::Bool),
    k("size", Kt::Re(DISKSIZE)),
];
const MP: &[Key] = &[
    r("volume", Kt::Any),
    r("mp", Kt::Re(r"^/.*$")),
    k("acl", Kt::Bool),
    k("backup", Kt::Bool),
    k("keepattrs", Kt::Bool),
    k("mountoptions", Kt::Re(MOUNTOPTS)),
    k("quota", Kt::Bool),
    k("replicate", Kt::Bool),
    k("ro", Kt::Bool),
    k("shared", Kt::Bool),
    k("size", Kt::Re(DISKSIZE)),
];
const FEATURES: &[Key] = &[
    k("force_rw_sys", Kt::Bool),
    k("fuse", Kt::Bool),
    k("keyctl", Kt::Bool),
    k("mknod", Kt::Bool),
    k("mount", Kt::Re(r"^[a-zA-Z0-9_; ]+$")),
    k("nesting", Kt::Bool),
];
const DEV: &[Key] = &[
    k("path", Kt::Re(r"^/dev/.+$")),
    k("deny-write", Kt::Bool),
    k("gid", Kt::Int(Some(0), None)),
    k("mode", Kt::Re(r"^0[0-7]{3}$")),
    k("uid", Kt::Int(Some(0), None)),
];
const UNUSED: &[Key] = &[r("volume", Kt::Any)];

fn spec(format: &str) -> Option<(&'static [Key], Option<&'static str>)> {
    Some(match format {
        "lxc-net" => (NET, None),
        "lxc-rootfs" => (ROOTFS, Some("volume")),
        "lxc-mp" => (MP, Some("volume")),
        "lxc-features" => (FEATURES, None),
        "lxc-dev" => (DEV, Some("path")),
        "lxc-unused" => (UNUSED, Some("volume")),
        _ => return None,
    })
}

/// Splits a property string into its keys; a value without a key is the
/// default key's (only as the first item).
pub fn parse(v: &str, default_key: Option<&str>) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (i, item) in v.split(',').enumerate() {
        if item.is_empty() {
            continue;
        }
        let (key, val) = match item.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => match default_key {
                Some(d) if i == 0 => (d.to_string(), item.to_string()),
                _ => {
                    return Err(format!(
                        "value without key, but schema does not define a default key: '{item}'"
                    ))
                }
            },
        };
        if out.insert(key.clone(), val).is_some() {
            return Err(format!(
                "duplicate key in comma-separated list property: {key}"
            ));
        }
    }
    Ok(out)
}

/// Parses with the default key of a known LXC format (for handlers).
pub fn parse_lxc(format: &str, v: &str) -> Result<BTreeMap<String, String>, String> {
    let dk = spec(format).and_then(|s| s.1);
    parse(v, dk)
}

fn ip4_cidr(v: &str) -> bool {
    match v.split_once('/') {
        Some((a, p)) => a.parse::<Ipv4Addr>().is_ok() && p.parse::<u8>().is_ok_and(|p| p <= 32),
        None => false,
    }
}
fn ip6_cidr(v: &str) -> bool {
    match v.split_once('/') {
        Some((a, p)) => a.parse::<Ipv6Addr>().is_ok() && p.parse::<u8>().is_ok_and(|p| p <= 128),
        None => false,
    }
}

/// Checks a property string of `format` (see [`spec`]); QEMU formats are
/// only parsed (keys are kept as given: a QEMU guest never runs here).
pub fn check(_path: &str, format: &str, v: &str) -> Result<(), String> {
    let Some((keys, dk)) = spec(format) else {
        let dk = if format == "qm-memory" {
            Some("current")
        } else {
            Some("file")
        };
        if format.starts_with("qm-") {
            let m = parse(v, dk)?;
            if format == "qm-memory" {
                if let Some(c) = m.get("current") {
                    if !c.bytes().all(|b| b.is_ascii_digit()) || c.is_empty() {
                        return Err(format!(
                            "current: type check ('integer') failed - got '{c}'"
                        ));
                    }
                }
            }
        }
        return Ok(());
    };
    let m = parse(v, dk)?;
    for (key, val) in &m {
        let Some(spec) = keys.iter().find(|k| k.name == key) else {
            return Err(format!("{key}: property is not defined in schema"));
        };
        let ok = match spec.kt {
            Kt::Bool => val == "0" || val == "1",
            Kt::Int(min, max) => val
                .parse::<i64>()
                .is_ok_and(|n| min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m)),
            Kt::Num => val.parse::<f64>().is_ok(),
            Kt::Re(re) => regex::Regex::new(re).expect("static regex").is_match(val),
            Kt::Ip4Cidr => val == "dhcp" || val == "manual" || ip4_cidr(val),
            Kt::Ip6Cidr => matches!(val.as_str(), "dhcp" | "manual" | "auto") || ip6_cidr(val),
            Kt::Ip4 => val.parse::<Ipv4Addr>().is_ok(),
            Kt::Ip6 => val.parse::<Ipv6Addr>().is_ok(),
            Kt::Any => !val.is_empty(),
        };
        if !ok {
            return Err(format!("{key}: invalid value '{val}'"));
        }
    }
    for spec in keys {
        if spec.required && !m.contains_key(spec.name) {
            return Err(format!(
                "{}: property is missing and it is not optional",
                spec.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_strings() {
        assert!(check(
            "",
            "lxc-net",
            "name=eth0,bridge=vmbr0,ip=10.0.0.2/24,gw=10.0.0.1"
        )
        .is_ok());
        assert!(check("", "lxc-net", "name=eth0,ip=dhcp,tag=5").is_ok());
        assert!(check("", "lxc-net", "bridge=vmbr0").is_err());
        assert!(check("", "lxc-net", "name=eth0,tag=5000").is_err());
        assert!(check("", "lxc-net", "name=eth0,bogus=1").is_err());
        assert!(check("", "lxc-net", "name=eth0,firewall=true").is_err());
        assert!(check("", "lxc-rootfs", "local:8").is_ok());
        assert!(check("", "lxc-rootfs", "volume=local:subvol-100-disk-0,size=8G").is_ok());
        assert!(check("", "lxc-features", "nesting=1,keyctl=1").is_ok());
        assert!(check("", "lxc-mp", "/srv,mp=/mnt").is_ok());
        assert!(check("", "lxc-mp", "/srv").is_err());
    }
}
