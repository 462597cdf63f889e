//! `network list|leases|release`.
use std::io::Write;

use anyhow::{bail, Result};
use proxmox_lxcri_runtime::{network, Runtime};

use crate::cli::{ListFormat, NetworkCmd};

pub fn network(rt: &Runtime, c: NetworkCmd) -> Result<()> {
    let ipam = network::ipam(rt);
    let mut out = std::io::stdout().lock();
    match c {
        NetworkCmd::List { format } => {
            let mut rows = vec![];
            for (name, n) in &rt.config.network {
                let leased = ipam.leases(name)?.len();
                rows.push(serde_json::json!({
                    "name": name,
                    "bridge": n.bridge,
                    "subnet": n.subnet,
                    "gateway": n.gateway,
                    "vlan": n.vlan,
                    "mtu": n.mtu,
                    "isolated": n.isolated,
                    "port_security": n.port_security,
                    "default": rt.config.default_network.as_ref() == Some(name),
                    "leases": leased,
                }));
            }
            match format {
                ListFormat::Json => writeln!(out, "{}", serde_json::to_string(&rows)?)?,
                ListFormat::Table => {
                    writeln!(
                        out,
                        "{:<16} {:<15} {:<40} {:>5} LEASES",
                        "NAME", "BRIDGE", "SUBNET", "VLAN"
                    )?;
                    for (name, n) in &rt.config.network {
                        let subnets: Vec<String> = n.subnet.iter().map(|s| s.to_string()).collect();
                        writeln!(
                            out,
                            "{:<16} {:<15} {:<40} {:>5} {}",
                            name,
                            n.bridge,
                            subnets.join(","),
                            n.vlan.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
                            ipam.leases(name)?.len()
                        )?;
                    }
                }
            }
        }
        NetworkCmd::Leases { format, network } => {
            let nets = match network {
                Some(n) => {
                    if !rt.config.network.contains_key(&n) && !ipam.networks().contains(&n) {
                        bail!("network {n:?} is not configured and has no leases");
                    }
                    vec![n]
                }
                None => ipam.networks(),
            };
            let mut all = vec![];
            for n in nets {
                all.extend(ipam.leases(&n)?);
            }
            match format {
                ListFormat::Json => writeln!(out, "{}", serde_json::to_string(&all)?)?,
                ListFormat::Table => {
                    writeln!(
                        out,
                        "{:<16} {:<40} {:<17} CONTAINER",
                        "NETWORK", "ADDRESSES", "MAC"
                    )?;
                    for l in all {
                        let addrs: Vec<String> = l.addrs.iter().map(|a| a.to_string()).collect();
                        writeln!(
                            out,
                            "{:<16} {:<40} {:<17} {}",
                            l.network,
                            addrs.join(","),
                            l.mac,
                            l.owner.id
                        )?;
                    }
                }
            }
        }
        NetworkCmd::Release { network: net, id } => {
            if rt.store.state_file(&id).exists() {
                bail!("container {id} exists: `delete` it, which releases its leases");
            }
            match ipam.release(&net, &network::owner(rt, &id))? {
                Some(l) => {
                    let addrs: Vec<String> = l.addrs.iter().map(|a| a.to_string()).collect();
                    writeln!(out, "released {} of {id} on {net}", addrs.join(","))?;
                }
                None => bail!("container {id} holds no lease on network {net:?}"),
            }
        }
    }
    Ok(())
}
