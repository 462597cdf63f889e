//! ADD, DEL and CHECK: a veth pair, the host end on the network's bridge,
//! the other end moved into the namespace with the lease's address, MAC,
//! MTU and default routes.
use std::path::Path;
use std::process::Command;

use cni_plugin::reply::{Interface, Ip, Route, SuccessReply};
use proxmox_lxcri_network::{bridge, valid_ifname, Lease};

use crate::{Failure, Setup};

use proxmox_lxcri_network::{cni_host_ifname as host_ifname, cni_owner as owner};

fn check_inputs(ifname: &str, netns: Option<&Path>) -> Result<(), Failure> {
    if !valid_ifname(ifname) {
        return Err(Failure::new(
            7,
            "invalid CNI_IFNAME",
            format!("{ifname:?} is not an interface name"),
        ));
    }
    if let Some(ns) = netns {
        if !ns.is_absolute() || !ns.exists() {
            return Err(Failure::new(
                7,
                "invalid CNI_NETNS",
                format!("{} does not exist", ns.display()),
            ));
        }
    }
    Ok(())
}

fn ip(args: &[&str]) -> Result<(), Failure> {
    bridge::ip(args).map_err(|e| Failure::new(101, "setting up the interface failed", e))
}

/// `ip ARGS` inside the namespace at `netns`.
fn ip_in(netns: &Path, args: &[&str]) -> Result<String, Failure> {
    let o = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .arg("ip")
        .args(args)
        .output()
        .map_err(|e| Failure::new(101, "running nsenter", e))?;
    if !o.status.success() {
        return Err(Failure::new(
            101,
            "setting up the interface failed",
            format!(
                "ip {} in {}: {}",
                args.join(" "),
                netns.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

pub fn add(
    s: &Setup,
    container_id: &str,
    ifname: &str,
    netns: &Path,
    version: semver::Version,
) -> Result<Option<SuccessReply>, Failure> {
    check_inputs(ifname, Some(netns))?;
    let who = owner(container_id, ifname);
    let lease = s
        .ipam
        .lease(&s.name, &s.net, &who, None)
        .map_err(|e| Failure::new(100, "no address", e))?;
    if let Err(e) = wire(s, container_id, ifname, netns, &lease) {
        let _ = s.ipam.release(&s.name, &who);
        let host = host_ifname(container_id, ifname);
        if bridge::exists(&host) {
            let _ = ip(&["link", "del", &host]);
        }
        return Err(e);
    }
    let mut ips = vec![];
    let mut routes = vec![];
    for a in &lease.addrs {
        let gateway = s.net.gateway_for(a.addr());
        ips.push(Ip {
            address: a.to_string().parse().expect("an address with its prefix"),
            gateway,
            interface: Some(1),
        });
        if let Some(gw) = gateway {
            let dst = if a.addr().is_ipv4() {
                "0.0.0.0/0"
            } else {
                "::/0"
            };
            routes.push(Route {
                dst: dst.parse().expect("a default route"),
                gw: Some(gw),
            });
        }
    }
    Ok(Some(SuccessReply {
        cni_version: version,
        interfaces: vec![
            Interface {
                name: host_ifname(container_id, ifname),
                mac: None,
                sandbox: "".into(),
            },
            Interface {
                name: ifname.to_string(),
                mac: lease.mac.parse().ok(),
                sandbox: netns.to_path_buf(),
            },
        ],
        ips,
        routes,
        dns: cni_plugin::reply::Dns {
            nameservers: s.net.dns.clone(),
            domain: None,
            search: s.net.search.clone(),
            options: vec![],
        },
        specific: Default::default(),
    }))
}

/// The veth pair and its addresses (idempotent for a retried ADD).
fn wire(
    s: &Setup,
    container_id: &str,
    ifname: &str,
    netns: &Path,
    lease: &Lease,
) -> Result<(), Failure> {
    bridge::ensure(&s.net).map_err(|e| Failure::new(101, "making the bridge failed", e))?;
    let host = host_ifname(container_id, ifname);
    // A host end without its peer in this namespace is stale (an earlier
    // attachment whose namespace went away): made anew.
    if bridge::exists(&host) && ip_in(netns, &["link", "show", ifname]).is_err() {
        ip(&["link", "del", &host])?;
    }
    if !bridge::exists(&host) {
        // Made inside the namespace, the peer sent to ours (this process's).
        let me = std::process::id().to_string();
        ip_in(
            netns,
            &[
                "link", "add", ifname, "type", "veth", "peer", "name", &host, "netns", &me,
            ],
        )?;
    }
    let mtu = s.net.mtu.map(|m| m.to_string());
    let mut host_args = vec!["link", "set", &host, "master", &s.net.bridge];
    if let Some(m) = &mtu {
        host_args.extend(["mtu", m]);
    }
    host_args.push("up");
    ip(&host_args)?;
    let mut in_args = vec!["link", "set", ifname, "address", &lease.mac];
    if let Some(m) = &mtu {
        in_args.extend(["mtu", m]);
    }
    in_args.push("up");
    ip_in(netns, &in_args)?;
    ip_in(netns, &["link", "set", "lo", "up"])?;
    for a in &lease.addrs {
        let a_s = a.to_string();
        ip_in(netns, &["addr", "replace", &a_s, "dev", ifname])?;
        if let Some(gw) = s.net.gateway_for(a.addr()) {
            let gw = gw.to_string();
            let fam = if a.addr().is_ipv4() { "-4" } else { "-6" };
            ip_in(
                netns,
                &[
                    fam, "route", "replace", "default", "via", &gw, "dev", ifname,
                ],
            )?;
        }
    }
    Ok(())
}

pub fn del(
    s: &Setup,
    container_id: &str,
    ifname: &str,
    netns: Option<&Path>,
) -> Result<Option<SuccessReply>, Failure> {
    // DEL must succeed for what is already gone (the spec): a missing
    // namespace or interface is fine.
    check_inputs(ifname, None)?;
    let _ = netns;
    let host = host_ifname(container_id, ifname);
    if bridge::exists(&host) {
        ip(&["link", "del", &host])?;
    }
    s.ipam
        .release(&s.name, &owner(container_id, ifname))
        .map_err(|e| Failure::new(11, "releasing the lease failed", e))?;
    Ok(None)
}

pub fn check(
    s: &Setup,
    container_id: &str,
    ifname: &str,
    netns: &Path,
) -> Result<Option<SuccessReply>, Failure> {
    check_inputs(ifname, Some(netns))?;
    let who = owner(container_id, ifname);
    let lease = s
        .ipam
        .leases(&s.name)
        .map_err(|e| Failure::new(11, "reading the leases failed", e))?
        .into_iter()
        .find(|l| l.owner == who)
        .ok_or_else(|| {
            Failure::new(
                102,
                "no lease",
                format!("{container_id}/{ifname} holds no lease on {}", s.name),
            )
        })?;
    let shown = ip_in(netns, &["-o", "addr", "show", "dev", ifname])?;
    for a in &lease.addrs {
        if !shown.contains(&a.to_string()) {
            return Err(Failure::new(
                102,
                "address missing",
                format!("{a} is not on {ifname}: {shown}"),
            ));
        }
    }
    if !bridge::exists(&host_ifname(container_id, ifname)) {
        return Err(Failure::new(
            102,
            "host interface missing",
            host_ifname(container_id, ifname),
        ));
    }
    Ok(None)
}
