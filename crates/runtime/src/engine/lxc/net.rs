//! Configured networks on the lxc engine: LXC makes a veth pair per network
//! (`lxc.net.<i>.*`), the host end on the network's bridge, the container
//! end with the lease's address, MAC, routes and MTU. A bridge that is not
//! there is made (with the gateways as its addresses, as a container host's
//! bridge is); an existing bridge is used as it is.
use std::fs;
use std::path::Path;

use proxmox_lxcri_lxc::config::LxcConfig;
use proxmox_lxcri_network::{Lease, Network};

use crate::error::{Context, Error, Result};

/// The spec asks for a new network namespace (no path): ours to set up.
pub fn own_netns(spec: &oci_spec::runtime::Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
        .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Network && n.path().is_none())
}

/// The host end of NIC `i` of container `id`: ours, at most 15 bytes.
pub fn host_ifname(id: &str, i: usize) -> String {
    format!(
        "lxcri{:08x}",
        proxmox_lxcri_network::short_hash(&format!("{id}/{i}"))
    )
}

/// The `lxc.net.<i>.*` keys of NIC `i` (eth<i>) on `net` with `lease`.
/// The VLAN tag becomes the host port's VLAN membership
/// (`veth.vlan.id`, which needs a VLAN-filtering bridge).
pub fn nic_keys(i: usize, net: &Network, lease: &Lease) -> Vec<(String, String)> {
    let k = |s: &str| format!("lxc.net.{i}.{s}");
    let mut v = vec![
        (k("type"), "veth".to_string()),
        (k("link"), net.bridge.clone()),
        (k("name"), format!("eth{i}")),
        (k("flags"), "up".to_string()),
        (k("hwaddr"), lease.mac.clone()),
    ];
    if let Some(m) = net.mtu {
        v.push((k("mtu"), m.to_string()));
    }
    if let Some(tag) = net.vlan {
        v.push((k("veth.vlan.id"), tag.to_string()));
    }
    for a in &lease.addrs {
        let fam = if a.addr().is_ipv4() { "ipv4" } else { "ipv6" };
        v.push((k(&format!("{fam}.address")), a.to_string()));
        if let Some(gw) = net.gateway_for(a.addr()) {
            v.push((k(&format!("{fam}.gateway")), gw.to_string()));
        }
    }
    v
}

/// The container's LXC config with its NICs in place of the empty netns.
pub fn with_nics(lxc: &LxcConfig, nics: &[(Network, Lease)]) -> Result<LxcConfig> {
    let mut out = lxc.clone();
    out.remove("lxc.net.0.type");
    for (i, (net, lease)) in nics.iter().enumerate() {
        for (k, v) in nic_keys(i, net, lease) {
            out.push(&k, v)?;
        }
    }
    Ok(out)
}

/// `resolv.conf` text from the first network's DNS (None without DNS).
pub fn resolv_conf(nets: &[(Network, Lease)]) -> Option<String> {
    let (net, _) = nets.first()?;
    if net.dns.is_empty() && net.search.is_empty() {
        return None;
    }
    let mut s = String::new();
    if !net.search.is_empty() {
        s.push_str(&format!("search {}\n", net.search.join(" ")));
    }
    for d in &net.dns {
        s.push_str(&format!("nameserver {d}\n"));
    }
    Some(s)
}

/// Write resolv.conf for the container under its dir; the mount entry
/// that puts it at /etc/resolv.conf.
pub fn resolv_mount(dir: &Path, text: &str) -> Result<(String, String)> {
    let path = dir.join("resolv.conf");
    fs::write(&path, text).ctx(|| format!("writing {}", path.display()))?;
    let src = path
        .to_str()
        .ok_or_else(|| Error::Config(format!("{}: not a UTF-8 path", path.display())))?;
    if src.contains(char::is_whitespace) {
        return Err(Error::Config(format!(
            "{src}: a path with spaces cannot go into an LXC mount entry"
        )));
    }
    Ok((
        "lxc.mount.entry".into(),
        format!("{src} etc/resolv.conf none bind,ro,create=file 0 0"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Network {
        toml::from_str(text).unwrap()
    }

    fn lease(addrs: &[&str]) -> Lease {
        Lease {
            network: "n".into(),
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            mac: "02:aa:0a:00:00:05".into(),
            owner: proxmox_lxcri_network::Owner {
                root: "/r".into(),
                id: "c".into(),
            },
            since: 0,
        }
    }

    /// This kernel has no 802.1Q and no VLAN filtering: the VLAN part is
    /// checked as generated (LXC's veth.vlan.id, the bridge made with
    /// vlan_filtering 1), not run.
    #[test]
    fn nic_keys_and_bridge_commands_carry_the_network() {
        let n = net("bridge = \"lxbr0\"\nsubnet = [\"10.9.0.0/24\", \"fd00:9::/64\"]\ngateway = [\"10.9.0.1\", \"fd00:9::1\"]\nvlan = 30\nmtu = 1400\ndns = [\"10.9.0.1\"]\nsearch = [\"x.test\"]");
        let l = lease(&["10.9.0.5/24", "fd00:9::5/64"]);
        let keys = nic_keys(1, &n, &l);
        for kv in [
            ("lxc.net.1.type", "veth"),
            ("lxc.net.1.link", "lxbr0"),
            ("lxc.net.1.name", "eth1"),
            ("lxc.net.1.hwaddr", "02:aa:0a:00:00:05"),
            ("lxc.net.1.mtu", "1400"),
            ("lxc.net.1.veth.vlan.id", "30"),
            ("lxc.net.1.ipv4.address", "10.9.0.5/24"),
            ("lxc.net.1.ipv4.gateway", "10.9.0.1"),
            ("lxc.net.1.ipv6.address", "fd00:9::5/64"),
            ("lxc.net.1.ipv6.gateway", "fd00:9::1"),
        ] {
            assert!(
                keys.contains(&(kv.0.to_string(), kv.1.to_string())),
                "{kv:?} in {keys:?}"
            );
        }
        let cmds: Vec<String> = proxmox_lxcri_network::bridge::commands(&n)
            .iter()
            .map(|c| c.join(" "))
            .collect();
        assert_eq!(
            cmds,
            vec![
                "link add lxbr0 type bridge vlan_filtering 1",
                "link set lxbr0 mtu 1400",
                "addr replace 10.9.0.1/24 dev lxbr0",
                "addr replace fd00:9::1/64 dev lxbr0",
                "link set lxbr0 up",
            ]
        );
        assert_eq!(
            resolv_conf(&[(n, l)]).unwrap(),
            "search x.test\nnameserver 10.9.0.1\n"
        );
    }
}
