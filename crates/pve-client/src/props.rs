//! Builders for Proxmox property strings (`net[n]`, `rootfs`, `mp[n]`,
//! `features`). A property string is `key=value,key=value` with `;` joining
//! list items, so a value holding `,` `=` `;` or a line break would smuggle in
//! other keys (or other config lines once written to the CT's config): such
//! values are refused, and the cheap checks (VLAN tag range, MAC and IP
//! syntax, names) are done here rather than by the server.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::error::{Error, Result};

/// Refuses characters that would break a property string or a config line.
fn plain(key: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(key, value, "must not be empty"));
    }
    if let Some(c) = value
        .chars()
        .find(|c| matches!(c, ',' | '=' | ';') || c.is_control())
    {
        return Err(Error::invalid(
            key,
            value,
            format!("must not contain {c:?} (it would break the property string)"),
        ));
    }
    Ok(())
}

/// Interface, bridge and storage-like names: letters, digits, `-`, `_`, `.`.
fn name(key: &str, value: &str, max: usize) -> Result<()> {
    plain(key, value)?;
    if value.len() > max
        || !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(Error::invalid(
            key,
            value,
            format!("must be at most {max} letters, digits, '-', '_' or '.'"),
        ));
    }
    Ok(())
}

fn cidr<A: std::str::FromStr>(key: &str, value: &str, max_prefix: u8) -> Result<()> {
    let ok = match value.split_once('/') {
        Some((addr, prefix)) => {
            addr.parse::<A>().is_ok() && prefix.parse::<u8>().is_ok_and(|p| p <= max_prefix)
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            key,
            value,
            format!("must be ADDRESS/PREFIX (prefix 0..{max_prefix})"),
        ))
    }
}

/// Disk sizes as Proxmox writes them: `8G`, `512M`, `0.5T`, `1024` (bytes… GiB
/// depending on the unit).
fn size(key: &str, value: &str) -> Result<()> {
    let digits = value.trim_end_matches(['K', 'M', 'G', 'T']);
    let unit_len = value.len() - digits.len();
    let ok = unit_len <= 1
        && !digits.is_empty()
        && digits.parse::<f64>().is_ok_and(|f| f >= 0.0)
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            key,
            value,
            "must be a number with an optional K/M/G/T unit, e.g. 8G",
        ))
    }
}

/// A volume id (`local-zfs:subvol-100-disk-0`, `local-zfs:8` to allocate
/// 8 GiB) or, for bind mounts, an absolute host path.
fn volume(key: &str, value: &str) -> Result<()> {
    plain(key, value)?;
    if value.chars().any(char::is_whitespace) {
        return Err(Error::invalid(key, value, "must not contain white space"));
    }
    if value.starts_with('/') {
        return abs_path(key, value);
    }
    match value.split_once(':') {
        Some((storage, rest)) if !storage.is_empty() && !rest.is_empty() => name(key, storage, 64)
            .map_err(|_| {
                Error::invalid(
                    key,
                    value,
                    "storage id must be letters, digits, '-', '_' or '.'",
                )
            }),
        _ => Err(Error::invalid(
            key,
            value,
            "must be STORAGE:VOLUME, STORAGE:SIZE_GB or an absolute path",
        )),
    }
}

fn abs_path(key: &str, value: &str) -> Result<()> {
    plain(key, value)?;
    if !value.starts_with('/') {
        return Err(Error::invalid(key, value, "must be an absolute path"));
    }
    if value.split('/').any(|c| c == "..") {
        return Err(Error::invalid(key, value, "must not contain '..'"));
    }
    Ok(())
}

fn flag(out: &mut Vec<String>, key: &str, v: Option<bool>) {
    if let Some(b) = v {
        out.push(format!("{key}={}", u8::from(b)));
    }
}

fn mount_options(key: &str, opts: &[String]) -> Result<Option<String>> {
    if opts.is_empty() {
        return Ok(None);
    }
    for o in opts {
        // Proxmox allows only a fixed set (noatime, nodev, noexec, nosuid,
        // lazytime, discard); plain words keep the string intact either way.
        if o.is_empty() || !o.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            return Err(Error::invalid(key, o, "mount options are lower-case words"));
        }
    }
    Ok(Some(opts.join(";")))
}

/// One CT network interface, `net[n]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetConfig {
    /// Interface name inside the CT, e.g. `eth0`.
    pub name: String,
    pub bridge: Option<String>,
    /// VLAN tag, 1..=4094.
    pub tag: Option<u16>,
    /// `ADDR/PREFIX`, `dhcp` or `manual`.
    pub ip: Option<String>,
    pub gw: Option<String>,
    /// `ADDR/PREFIX`, `auto`, `dhcp` or `manual`.
    pub ip6: Option<String>,
    pub gw6: Option<String>,
    /// `XX:XX:XX:XX:XX:XX`.
    pub hwaddr: Option<String>,
    pub mtu: Option<u16>,
    pub firewall: Option<bool>,
    /// Rate limit in MB/s.
    pub rate: Option<f64>,
    pub link_down: Option<bool>,
    /// Allowed VLAN ids on a trunk port.
    pub trunks: Vec<u16>,
    /// `host-managed=1`: the host (not the CT) configures the address, as for
    /// OCI-image CTs.
    pub host_managed: Option<bool>,
}

impl NetConfig {
    pub fn new(name: impl Into<String>) -> NetConfig {
        NetConfig {
            name: name.into(),
            ..NetConfig::default()
        }
    }

    pub fn to_property_string(&self) -> Result<String> {
        let mut out = Vec::new();
        name("name", &self.name, 15)?;
        out.push(format!("name={}", self.name));
        if let Some(b) = &self.bridge {
            name("bridge", b, 15)?;
            out.push(format!("bridge={b}"));
        }
        flag(&mut out, "firewall", self.firewall);
        if let Some(gw) = &self.gw {
            if gw.parse::<Ipv4Addr>().is_err() {
                return Err(Error::invalid("gw", gw, "must be an IPv4 address"));
            }
            out.push(format!("gw={gw}"));
        }
        if let Some(gw6) = &self.gw6 {
            if gw6.parse::<Ipv6Addr>().is_err() {
                return Err(Error::invalid("gw6", gw6, "must be an IPv6 address"));
            }
            out.push(format!("gw6={gw6}"));
        }
        if let Some(h) = self.host_managed {
            out.push(format!("host-managed={}", u8::from(h)));
        }
        if let Some(mac) = &self.hwaddr {
            let parts: Vec<&str> = mac.split(':').collect();
            let ok = parts.len() == 6
                && parts
                    .iter()
                    .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
            // Bit 0 of the first octet set = multicast, which no NIC may use.
            let unicast = ok && u8::from_str_radix(parts[0], 16).is_ok_and(|b| b & 1 == 0);
            if !unicast {
                return Err(Error::invalid(
                    "hwaddr",
                    mac,
                    "must be a unicast MAC address XX:XX:XX:XX:XX:XX",
                ));
            }
            out.push(format!("hwaddr={}", mac.to_ascii_uppercase()));
        }
        if let Some(ip) = &self.ip {
            if ip != "dhcp" && ip != "manual" {
                cidr::<Ipv4Addr>("ip", ip, 32)?;
            }
            out.push(format!("ip={ip}"));
        }
        if let Some(ip6) = &self.ip6 {
            if !matches!(ip6.as_str(), "auto" | "dhcp" | "manual") {
                cidr::<Ipv6Addr>("ip6", ip6, 128)?;
            }
            out.push(format!("ip6={ip6}"));
        }
        flag(&mut out, "link_down", self.link_down);
        if let Some(mtu) = self.mtu {
            if !(64..=65535).contains(&mtu) {
                return Err(Error::invalid("mtu", &mtu.to_string(), "must be 64..65535"));
            }
            out.push(format!("mtu={mtu}"));
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate >= 0.0) {
                return Err(Error::invalid("rate", &rate.to_string(), "must be >= 0"));
            }
            out.push(format!("rate={rate}"));
        }
        if let Some(tag) = self.tag {
            check_vlan("tag", tag)?;
            out.push(format!("tag={tag}"));
        }
        if !self.trunks.is_empty() {
            for t in &self.trunks {
                check_vlan("trunks", *t)?;
            }
            let list: Vec<String> = self.trunks.iter().map(u16::to_string).collect();
            out.push(format!("trunks={}", list.join(";")));
        }
        out.push("type=veth".to_string());
        Ok(out.join(","))
    }
}

fn check_vlan(key: &str, tag: u16) -> Result<()> {
    if (1..=4094).contains(&tag) {
        Ok(())
    } else {
        Err(Error::invalid(
            key,
            &tag.to_string(),
            "VLAN ids are 1..4094",
        ))
    }
}

/// The CT's root volume, `rootfs`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rootfs {
    /// `STORAGE:VOLUME`, or `STORAGE:SIZE_GB` to allocate a new volume.
    pub volume: String,
    /// e.g. `8G`.
    pub size: Option<String>,
    pub acl: Option<bool>,
    pub quota: Option<bool>,
    pub replicate: Option<bool>,
    pub ro: Option<bool>,
    pub shared: Option<bool>,
    pub mountoptions: Vec<String>,
}

impl Rootfs {
    pub fn new(volume: impl Into<String>) -> Rootfs {
        Rootfs {
            volume: volume.into(),
            ..Rootfs::default()
        }
    }

    pub fn to_property_string(&self) -> Result<String> {
        volume("rootfs volume", &self.volume)?;
        if self.volume.starts_with('/') {
            return Err(Error::invalid(
                "rootfs volume",
                &self.volume,
                "rootfs must be a storage volume, not a host path",
            ));
        }
        let mut out = vec![self.volume.clone()];
        flag(&mut out, "acl", self.acl);
        if let Some(m) = mount_options("mountoptions", &self.mountoptions)? {
            out.push(format!("mountoptions={m}"));
        }
        flag(&mut out, "quota", self.quota);
        flag(&mut out, "replicate", self.replicate);
        flag(&mut out, "ro", self.ro);
        flag(&mut out, "shared", self.shared);
        if let Some(s) = &self.size {
            size("size", s)?;
            out.push(format!("size={s}"));
        }
        Ok(out.join(","))
    }
}

/// An extra mount point, `mp[n]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MountPoint {
    /// `STORAGE:VOLUME`, `STORAGE:SIZE_GB`, or an absolute host path (bind
    /// mount; root@pam only on real Proxmox).
    pub volume: String,
    /// Absolute path inside the CT.
    pub mp: String,
    pub ro: Option<bool>,
    pub backup: Option<bool>,
    pub acl: Option<bool>,
    pub quota: Option<bool>,
    pub replicate: Option<bool>,
    pub shared: Option<bool>,
    pub size: Option<String>,
    pub mountoptions: Vec<String>,
}

impl MountPoint {
    pub fn new(volume: impl Into<String>, mp: impl Into<String>) -> MountPoint {
        MountPoint {
            volume: volume.into(),
            mp: mp.into(),
            ..MountPoint::default()
        }
    }

    pub fn to_property_string(&self) -> Result<String> {
        volume("mp volume", &self.volume)?;
        abs_path("mp", &self.mp)?;
        if self.mp.chars().any(char::is_whitespace) {
            return Err(Error::invalid(
                "mp",
                &self.mp,
                "must not contain white space",
            ));
        }
        let mut out = vec![self.volume.clone(), format!("mp={}", self.mp)];
        flag(&mut out, "acl", self.acl);
        flag(&mut out, "backup", self.backup);
        if let Some(m) = mount_options("mountoptions", &self.mountoptions)? {
            out.push(format!("mountoptions={m}"));
        }
        flag(&mut out, "quota", self.quota);
        flag(&mut out, "replicate", self.replicate);
        flag(&mut out, "ro", self.ro);
        flag(&mut out, "shared", self.shared);
        if let Some(s) = &self.size {
            size("size", s)?;
            out.push(format!("size={s}"));
        }
        Ok(out.join(","))
    }
}

/// CT features, `features`. Only enabled features are written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    pub nesting: bool,
    pub fuse: bool,
    pub keyctl: bool,
    pub mknod: bool,
    pub force_rw_sys: bool,
    /// File system types the CT may mount, e.g. `nfs`, `cifs`.
    pub mount: Vec<String>,
}

impl Features {
    /// The string, empty when nothing is enabled (then delete the key instead).
    pub fn to_property_string(&self) -> Result<String> {
        let mut out = Vec::new();
        let on = |out: &mut Vec<String>, k: &str, b: bool| {
            if b {
                out.push(format!("{k}=1"));
            }
        };
        on(&mut out, "force_rw_sys", self.force_rw_sys);
        on(&mut out, "fuse", self.fuse);
        on(&mut out, "keyctl", self.keyctl);
        on(&mut out, "mknod", self.mknod);
        if !self.mount.is_empty() {
            for fs in &self.mount {
                plain("mount", fs)?;
                if !fs
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    return Err(Error::invalid(
                        "mount",
                        fs,
                        "file system types are lower-case letters, digits and '_'",
                    ));
                }
            }
            out.push(format!("mount={}", self.mount.join(";")));
        }
        on(&mut out, "nesting", self.nesting);
        Ok(out.join(","))
    }
}

/// Splits a property string into its keys. A part without `=` is the value
/// of `default_key` (e.g. `volume` for `rootfs`, `name` would be wrong for
/// `net[n]` which has no default key, so pass what the format uses).
pub fn parse_property_string(s: &str, default_key: &str) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = match part.split_once('=') {
            Some((k, v)) => (k.trim(), v),
            None => (default_key, part),
        };
        if map.insert(k.to_string(), v.to_string()).is_some() {
            return Err(Error::invalid(k, s, "key given twice"));
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> NetConfig {
        NetConfig {
            name: "eth0".into(),
            bridge: Some("vmbr0".into()),
            tag: Some(10),
            ip: Some("10.0.0.5/24".into()),
            gw: Some("10.0.0.1".into()),
            hwaddr: Some("bc:24:11:00:00:01".into()),
            mtu: Some(1500),
            firewall: Some(true),
            host_managed: Some(true),
            ..NetConfig::default()
        }
    }

    #[test]
    fn net_builds() {
        assert_eq!(
            net().to_property_string().unwrap(),
            "name=eth0,bridge=vmbr0,firewall=1,gw=10.0.0.1,host-managed=1,\
             hwaddr=BC:24:11:00:00:01,ip=10.0.0.5/24,mtu=1500,tag=10,type=veth"
        );
        let dhcp = NetConfig {
            ip: Some("dhcp".into()),
            ip6: Some("auto".into()),
            trunks: vec![2, 3],
            ..NetConfig::new("eth1")
        };
        assert_eq!(
            dhcp.to_property_string().unwrap(),
            "name=eth1,ip=dhcp,ip6=auto,trunks=2;3,type=veth"
        );
    }

    #[test]
    fn net_rejects_injection_and_bad_values() {
        let cases: Vec<(&str, NetConfig)> = vec![
            ("name", NetConfig::new("eth0,bridge=evil")),
            ("name", NetConfig::new("eth0\nlxc.hook.pre-start: /x")),
            ("name", NetConfig::new("")),
            ("name", NetConfig::new("averyveryverylongname")),
            (
                "bridge",
                NetConfig {
                    bridge: Some("vmbr0,tag=5".into()),
                    ..net()
                },
            ),
            (
                "bridge",
                NetConfig {
                    bridge: Some("vmbr0;x".into()),
                    ..net()
                },
            ),
            (
                "tag",
                NetConfig {
                    tag: Some(0),
                    ..net()
                },
            ),
            (
                "tag",
                NetConfig {
                    tag: Some(4095),
                    ..net()
                },
            ),
            (
                "ip",
                NetConfig {
                    ip: Some("10.0.0.5/24,gw=1.1.1.1".into()),
                    ..net()
                },
            ),
            (
                "ip",
                NetConfig {
                    ip: Some("10.0.0.5".into()),
                    ..net()
                },
            ),
            (
                "ip",
                NetConfig {
                    ip: Some("10.0.0.5/33".into()),
                    ..net()
                },
            ),
            (
                "ip6",
                NetConfig {
                    ip6: Some("10.0.0.5/24".into()),
                    ..net()
                },
            ),
            (
                "gw",
                NetConfig {
                    gw: Some("10.0.0.1\0".into()),
                    ..net()
                },
            ),
            (
                "gw6",
                NetConfig {
                    gw6: Some("1.2.3.4".into()),
                    ..net()
                },
            ),
            (
                "hwaddr",
                NetConfig {
                    hwaddr: Some("01:00:00:00:00:01".into()),
                    ..net()
                },
            ),
            (
                "hwaddr",
                NetConfig {
                    hwaddr: Some("bc:24:11:00:00".into()),
                    ..net()
                },
            ),
            (
                "mtu",
                NetConfig {
                    mtu: Some(10),
                    ..net()
                },
            ),
            (
                "trunks",
                NetConfig {
                    trunks: vec![5000],
                    ..net()
                },
            ),
        ];
        for (key, n) in cases {
            match n.to_property_string() {
                Err(Error::InvalidProperty { key: k, .. }) => assert_eq!(k, key, "{n:?}"),
                other => panic!("{n:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn rootfs_and_mount_points() {
        let r = Rootfs {
            size: Some("8G".into()),
            acl: Some(false),
            mountoptions: vec!["noatime".into(), "nodev".into()],
            ..Rootfs::new("local-zfs:subvol-100-disk-0")
        };
        assert_eq!(
            r.to_property_string().unwrap(),
            "local-zfs:subvol-100-disk-0,acl=0,mountoptions=noatime;nodev,size=8G"
        );
        assert_eq!(
            Rootfs::new("local:4").to_property_string().unwrap(),
            "local:4"
        );
        for bad in [
            "local:4,size=1T",
            "local:4\nlxc.apparmor.profile: unconfined",
            "local",
            ":x",
            "/var/lib/x",
            "lo cal:4",
            "local:a=b",
        ] {
            assert!(Rootfs::new(bad).to_property_string().is_err(), "{bad:?}");
        }
        assert!(Rootfs {
            size: Some("8X".into()),
            ..Rootfs::new("local:4")
        }
        .to_property_string()
        .is_err());
        assert!(Rootfs {
            mountoptions: vec!["noatime,ro=1".into()],
            ..Rootfs::new("local:4")
        }
        .to_property_string()
        .is_err());

        let mp = MountPoint {
            ro: Some(true),
            backup: Some(false),
            ..MountPoint::new("/srv/data", "/data")
        };
        assert_eq!(
            mp.to_property_string().unwrap(),
            "/srv/data,mp=/data,backup=0,ro=1"
        );
        for (vol, path) in [
            ("/srv/data", "data"),
            ("/srv/data", "/data,ro=0"),
            ("/srv/data", "/a/../../etc"),
            ("/srv/../etc", "/data"),
            ("/srv/data", "/da ta"),
            ("local:8;x", "/data"),
        ] {
            assert!(
                MountPoint::new(vol, path).to_property_string().is_err(),
                "{vol:?} {path:?}"
            );
        }
    }

    #[test]
    fn features() {
        let f = Features {
            nesting: true,
            keyctl: true,
            mount: vec!["nfs".into(), "cifs".into()],
            ..Features::default()
        };
        assert_eq!(
            f.to_property_string().unwrap(),
            "keyctl=1,mount=nfs;cifs,nesting=1"
        );
        assert_eq!(Features::default().to_property_string().unwrap(), "");
        for bad in ["nfs,fuse=1", "nfs;cifs", "NFS", "nfs\n"] {
            let f = Features {
                mount: vec![bad.into()],
                ..Features::default()
            };
            assert!(f.to_property_string().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parse_round_trip() {
        let m = parse_property_string("local-zfs:subvol-100-disk-0,size=8G", "volume").unwrap();
        assert_eq!(m["volume"], "local-zfs:subvol-100-disk-0");
        assert_eq!(m["size"], "8G");
        let n = parse_property_string(&net().to_property_string().unwrap(), "name").unwrap();
        assert_eq!(n["tag"], "10");
        assert_eq!(n["host-managed"], "1");
        assert!(parse_property_string("a=1,a=2", "x").is_err());
    }
}
