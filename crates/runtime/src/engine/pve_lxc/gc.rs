//! `gc` for pve-lxc: CTs tagged by us whose container has no state.
use super::*;
use crate::gc::{Leftover, LeftoverSource};

/// Proxmox CTs tagged `proxmox-lxcri` whose description names this
/// runtime root, this node and a container that has no state (its state
/// was lost).
pub struct OrphanCts;

impl LeftoverSource for OrphanCts {
    fn name(&self) -> &'static str {
        "pve-ct"
    }
    fn find(&self, rt: &Runtime) -> Result<Vec<Leftover>> {
        if rt.config.pve.is_none() {
            return Ok(vec![]);
        }
        Ok(orphans(rt)?
            .into_iter()
            .map(|(node, vmid, id)| Leftover {
                source: self.name(),
                name: format!("{node}/{vmid}/{id}"),
                reason: format!(
                    "CT {vmid} on {node} belongs to container {id}, which has no state"
                ),
                stamp: None,
            })
            .collect())
    }
    fn remove(&self, rt: &Runtime, item: &Leftover) -> Result<()> {
        let mut parts = item.name.splitn(3, '/');
        let (Some(node), Some(vmid), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
            return Ok(());
        };
        let Ok(vmid) = vmid.parse() else {
            return Ok(());
        };
        let rec = PveRecord {
            node: node.to_string(),
            vmid: Some(vmid),
            created: true,
            unprivileged: false,
        };
        // Checked again: it must still be ours and still without state.
        if rt.store.state_file(id).exists() {
            return Ok(());
        }
        destroy(
            client(rt)?,
            rt.config.pve()?,
            &rec,
            id,
            &rt.store.root,
            true,
        )?;
        // The CT's LXC log points into the container's directory: LXC
        // remakes it while the CT goes. Without a state it is ours to clear.
        if !rt.store.state_file(id).exists() {
            let _ = std::fs::remove_dir_all(rt.store.dir(id));
        }
        Ok(())
    }
}

/// CTs tagged by us, made from this root on this node, whose container has
/// no state: (node, vmid, container id).
fn orphans(rt: &Runtime) -> Result<Vec<(String, u32, String)>> {
    let client = client(rt)?;
    let mut found = vec![];
    let resources = client
        .cluster_resources(Some("vm"))
        .map_err(api("listing guests"))?;
    for r in resources {
        let tagged = r
            .tags
            .as_deref()
            .is_some_and(|t| t.split([';', ',', ' ']).any(|t| t == TAG));
        let (Some(vmid), Some(node)) = (r.vmid, r.node.clone()) else {
            continue;
        };
        // Only this node's: another node's runtime owns its CTs (the
        // description names the node too).
        if r.kind != "lxc" || !tagged || node != rt.config.pve()?.node {
            continue;
        }
        let conf = match client.lxc_config(&node, vmid) {
            Ok(c) => c,
            Err(e) if is_missing(&e, &node, vmid) => continue,
            Err(e) => return Err(api("reading a CT config")(e)),
        };
        let Some(id) = conf
            .get("description")
            .and_then(|d| description_id(d, &rt.store.root, &node))
        else {
            continue; // another runtime root's, or not ours
        };
        if rt.store.state_file(&id).exists() {
            continue;
        }
        found.push((node, vmid, id));
    }
    Ok(found)
}
