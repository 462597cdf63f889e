//! The host side of a network: its bridge, made with iproute2 when this
//! host has none of that name (the gateways become its addresses, as on a
//! container host's bridge); an existing bridge is used as it is.
use std::path::Path;
use std::process::Command;

use crate::config::{Network, NetworkError};

/// Run `ip ARGS` (no shell; every argument checked by its caller).
pub fn ip(args: &[&str]) -> Result<(), NetworkError> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| NetworkError::Host {
            what: format!("ip {}", args.join(" ")),
            reason: format!("running ip (iproute2): {e}"),
        })?;
    if !o.status.success() {
        return Err(NetworkError::Host {
            what: format!("ip {}", args.join(" ")),
            reason: String::from_utf8_lossy(&o.stderr).trim().to_string(),
        });
    }
    Ok(())
}

pub fn exists(ifname: &str) -> bool {
    Path::new("/sys/class/net").join(ifname).exists()
}

/// The commands that make the network's bridge (names checked at load).
pub fn commands(net: &Network) -> Vec<Vec<String>> {
    let b = net.bridge.clone();
    let mut cmds = vec![vec![
        "link".into(),
        "add".into(),
        b.clone(),
        "type".into(),
        "bridge".into(),
    ]];
    if net.vlan.is_some() {
        cmds[0].extend(["vlan_filtering".into(), "1".into()]);
    }
    if let Some(m) = net.mtu {
        cmds.push(vec![
            "link".into(),
            "set".into(),
            b.clone(),
            "mtu".into(),
            m.to_string(),
        ]);
    }
    for g in &net.gateway {
        let prefix = net.subnet_of(*g).map(|s| s.prefix_len()).unwrap_or(32);
        cmds.push(vec![
            "addr".into(),
            "replace".into(),
            format!("{g}/{prefix}"),
            "dev".into(),
            b.clone(),
        ]);
    }
    cmds.push(vec!["link".into(), "set".into(), b, "up".into()]);
    cmds
}

/// Make the network's bridge if this host has none of that name.
pub fn ensure(net: &Network) -> Result<(), NetworkError> {
    if exists(&net.bridge) {
        return Ok(());
    }
    for c in commands(net) {
        let args: Vec<&str> = c.iter().map(String::as_str).collect();
        match ip(&args) {
            // Another create made it meanwhile.
            Err(_) if c[1] == "add" && exists(&net.bridge) => {}
            r => r?,
        }
    }
    Ok(())
}
