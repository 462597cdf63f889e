//! Which configured networks a container is on, and its leases: taken after
//! the id is claimed (so a crash leaves a state that names the owner),
//! released by `delete` and by a failed create, reclaimed by `gc` when the
//! owner's state is gone.
use std::collections::BTreeMap;

use proxmox_lxcri_network::{Ipam, Lease, Network, NetworkError, Owner};

use crate::error::{Error, Result};
use crate::gc::{Leftover, LeftoverSource};
use crate::runtime::Runtime;

/// `io.proxmox-lxcri.network=<name>[,<name>...]`: one NIC per network.
pub const NETWORK_ANNOTATION: &str = "io.proxmox-lxcri.network";

impl From<NetworkError> for Error {
    fn from(e: NetworkError) -> Self {
        match e {
            NetworkError::Unknown(_) | NetworkError::Address { .. } => Error::Spec(e.to_string()),
            _ => Error::Config(e.to_string()),
        }
    }
}

/// The networks a container asks for (annotation, else the default), in
/// NIC order; unknown names are refused before anything is made.
pub fn chosen(
    rt: &Runtime,
    annotations: &BTreeMap<String, String>,
) -> Result<Vec<(String, Network)>> {
    let names: Vec<String> = match annotations.get(NETWORK_ANNOTATION) {
        Some(v) => v
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        None => rt.config.default_network.iter().cloned().collect(),
    };
    let mut out = vec![];
    for n in names {
        if out.iter().any(|(o, _)| o == &n) {
            return Err(Error::Spec(format!(
                "annotation {NETWORK_ANNOTATION}: network {n:?} named twice"
            )));
        }
        let net = rt
            .config
            .network
            .get(&n)
            .cloned()
            .ok_or_else(|| NetworkError::Unknown(n.clone()))?;
        out.push((n, net));
    }
    Ok(out)
}

pub fn ipam(rt: &Runtime) -> Ipam {
    Ipam::new(
        rt.config
            .ipam_dir
            .clone()
            .unwrap_or_else(|| rt.store.root.join("ipam")),
    )
}

pub fn owner(rt: &Runtime, id: &str) -> Owner {
    Owner {
        root: rt.store.root.clone(),
        id: id.to_string(),
    }
}

/// Lease an address on each network for `id` (a retry gets the same).
pub fn lease_all(
    rt: &Runtime,
    id: &str,
    nets: &[(String, Network)],
    fixed: Option<std::net::IpAddr>,
) -> Result<Vec<(Network, Lease)>> {
    let ipam = ipam(rt);
    let who = owner(rt, id);
    let mut out = vec![];
    for (i, (name, net)) in nets.iter().enumerate() {
        // A fixed address is for the first NIC.
        let want = if i == 0 { fixed } else { None };
        let leased = match &net.sdn_vnet {
            None => ipam.lease(name, net, &who, want),
            Some(vnet) => sdn_lease(rt, &ipam, name, net, vnet, &who, want),
        };
        match leased {
            Ok(l) => out.push((net.clone(), l)),
            Err(e) => {
                release_all(rt, id);
                return Err(e.into());
            }
        }
    }
    Ok(out)
}

/// A lease on a network whose addresses Proxmox SDN's IPAM hands out to
/// the whole cluster: each candidate address is registered in the vnet's
/// IPAM first (taken there by another node: the next one), then leased
/// here as usual.
fn sdn_lease(
    rt: &Runtime,
    ipam: &Ipam,
    name: &str,
    net: &Network,
    vnet: &str,
    who: &Owner,
    want: Option<std::net::IpAddr>,
) -> std::result::Result<Lease, NetworkError> {
    let host = |what: &str, e: &dyn std::fmt::Display| NetworkError::Host {
        what: format!("Proxmox SDN vnet {vnet}: {what}"),
        reason: e.to_string(),
    };
    let client = crate::engine::pve_lxc::client(rt).map_err(|e| host("the API", &e))?;
    let zone = client
        .sdn_vnet_zone(vnet)
        .map_err(|e| host("reading the vnet", &e))?
        .ok_or_else(|| host("reading the vnet", &"it has no zone"))?;
    ipam.lease_with(
        name,
        net,
        who,
        want,
        &mut |a| match client.sdn_ip_add(vnet, &zone, &a.to_string(), None) {
            Ok(()) => Ok(true),
            Err(e) if e.to_string().contains("already exist") => Ok(false),
            Err(e) => Err(host(&format!("registering {a}"), &e)),
        },
        &mut |a| {
            let _ = client.sdn_ip_delete(vnet, &zone, &a.to_string());
        },
    )
}

/// Take a released lease's addresses out of Proxmox SDN's IPAM.
fn sdn_unregister(rt: &Runtime, lease: &Lease) {
    let Some(vnet) = rt
        .config
        .network
        .get(&lease.network)
        .and_then(|n| n.sdn_vnet.clone())
    else {
        return;
    };
    let done = crate::engine::pve_lxc::client(rt).and_then(|c| {
        let zone = c
            .sdn_vnet_zone(&vnet)
            .map_err(crate::engine::pve_lxc::api("reading the vnet"))?
            .unwrap_or_default();
        for a in &lease.addrs {
            c.sdn_ip_delete(&vnet, &zone, &a.addr().to_string())
                .map_err(crate::engine::pve_lxc::api("unregistering an address"))?;
        }
        Ok(())
    });
    if let Err(e) = done {
        tracing::warn!("Proxmox SDN vnet {vnet}: {e}");
    }
}

/// Give back every lease of `id` (best effort: `gc` retries).
pub fn release_all(rt: &Runtime, id: &str) {
    let ipam = ipam(rt);
    let who = owner(rt, id);
    for net in ipam.networks() {
        match ipam.release(&net, &who) {
            Ok(Some(l)) => sdn_unregister(rt, &l),
            Ok(None) => {}
            Err(e) => tracing::warn!("releasing the lease of {id} on {net}: {e}"),
        }
    }
}

/// The tag of a container's port-security rules: this root's hash and the
/// id (hashed when it has characters an nft comment should not carry).
pub fn rule_tag(rt: &Runtime, id: &str) -> String {
    let root = proxmox_lxcri_network::short_hash(&rt.store.root.to_string_lossy());
    let plain = id.len() <= 80
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if plain {
        format!("{root:08x}:{id}")
    } else {
        format!("{root:08x}:{:08x}", proxmox_lxcri_network::short_hash(id))
    }
}

/// Port-security rules of this root whose container has no state any more.
pub struct OrphanRules;

impl LeftoverSource for OrphanRules {
    fn name(&self) -> &'static str {
        "rules"
    }
    fn find(&self, rt: &Runtime) -> Result<Vec<Leftover>> {
        let mine = rule_tag(rt, "x");
        let prefix = format!(
            "{}{}",
            proxmox_lxcri_network::port_security::comment(""),
            &mine[..9]
        );
        let live: Vec<String> = rt
            .store
            .list()?
            .iter()
            .map(|id| proxmox_lxcri_network::port_security::comment(&rule_tag(rt, id)))
            .collect();
        let mut tags: Vec<String> = proxmox_lxcri_network::port_security::rules()?
            .into_iter()
            .map(|(_, c)| c)
            .filter(|c| c.starts_with(&prefix) && !live.contains(c))
            .collect();
        tags.sort();
        tags.dedup();
        Ok(tags
            .into_iter()
            .map(|c| Leftover {
                source: self.name(),
                name: c.trim_start_matches("lxcri ").to_string(),
                reason: "port-security rules of a container that no longer exists".into(),
                stamp: None,
            })
            .collect())
    }
    fn remove(&self, rt: &Runtime, item: &Leftover) -> Result<()> {
        // Still without a container? (An id may have been created since.)
        let live = rt
            .store
            .list()?
            .iter()
            .any(|id| rule_tag(rt, id) == item.name);
        if !live {
            proxmox_lxcri_network::port_security::remove(&item.name)?;
        }
        Ok(())
    }
}

/// Leases of this runtime root whose container has no state any more.
pub struct OrphanLeases;

impl LeftoverSource for OrphanLeases {
    fn name(&self) -> &'static str {
        "lease"
    }
    fn find(&self, rt: &Runtime) -> Result<Vec<Leftover>> {
        let ipam = ipam(rt);
        let mut out = vec![];
        for net in ipam.networks() {
            for l in ipam.leases(&net)? {
                if l.owner.root == rt.store.root
                    && !rt.store.dir(&l.owner.id).join("state.json").exists()
                {
                    let addrs: Vec<String> = l.addrs.iter().map(|a| a.to_string()).collect();
                    out.push(Leftover {
                        source: self.name(),
                        name: format!("{net}/{}", l.owner.id),
                        reason: format!(
                            "{} leased to container {}, which no longer exists",
                            addrs.join(" "),
                            l.owner.id
                        ),
                        stamp: None,
                    });
                }
            }
        }
        Ok(out)
    }
    fn remove(&self, rt: &Runtime, item: &Leftover) -> Result<()> {
        let (net, id) = item.name.split_once('/').expect("made by find");
        // Checked again under the lease file's lock: a create may have
        // claimed the id since.
        let freed = ipam(rt).reclaim(net, |o| {
            o.root == rt.store.root && o.id == id && !rt.store.dir(id).join("state.json").exists()
        })?;
        for l in &freed {
            sdn_unregister(rt, l);
        }
        Ok(())
    }
}
