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
        match ipam.lease(name, net, &who, want) {
            Ok(l) => out.push((net.clone(), l)),
            Err(e) => {
                release_all(rt, id);
                return Err(e.into());
            }
        }
    }
    Ok(out)
}

/// Give back every lease of `id` (best effort: `gc` retries).
pub fn release_all(rt: &Runtime, id: &str) {
    let ipam = ipam(rt);
    let who = owner(rt, id);
    for net in ipam.networks() {
        if let Err(e) = ipam.release(&net, &who) {
            tracing::warn!("releasing the lease of {id} on {net}: {e}");
        }
    }
}

/// The tag of a container's port-security rules: this root's hash and the
/// id (hashed when it has characters an nft comment should not carry).
pub fn rule_tag(rt: &Runtime, id: &str) -> String {
    let fnv = |s: &str| {
        s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        })
    };
    let root = fnv(&rt.store.root.to_string_lossy()) as u32;
    let plain = id.len() <= 80
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if plain {
        format!("{root:08x}:{id}")
    } else {
        format!("{root:08x}:{:016x}", fnv(id))
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
        ipam(rt).reclaim(net, |o| {
            o.root == rt.store.root && o.id == id && !rt.store.dir(id).join("state.json").exists()
        })?;
        Ok(())
    }
}
