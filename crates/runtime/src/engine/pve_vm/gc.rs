//! `gc` for pve-vm: VMs tagged by us whose container has no state.
use super::*;
use crate::gc::{Leftover, LeftoverSource};

/// Proxmox VMs tagged `proxmox-lxcri` whose description names this
/// runtime root, this node and a container that has no state.
pub struct OrphanVms;

impl LeftoverSource for OrphanVms {
    fn name(&self) -> &'static str {
        "pve-vm"
    }

    fn find(&self, rt: &Runtime) -> Result<Vec<Leftover>> {
        if rt.config.pve.is_none() {
            return Ok(vec![]);
        }
        let client = client(rt)?;
        let node = &rt.config.pve()?.node;
        let mut found = vec![];
        for r in client
            .cluster_resources(Some("vm"))
            .map_err(api("listing guests"))?
        {
            let tagged = r
                .tags
                .as_deref()
                .is_some_and(|t| t.split([';', ',', ' ']).any(|t| t == TAG));
            let Some(vmid) = r.vmid else { continue };
            if r.kind != "qemu" || !tagged || r.node.as_deref() != Some(node.as_str()) {
                continue;
            }
            let conf = match client.qemu_config(node, vmid) {
                Ok(c) => c,
                Err(e) if is_missing(&e, node, vmid) => continue,
                Err(e) => return Err(api("reading a VM config")(e)),
            };
            let Some(id) = conf
                .get("description")
                .and_then(|d| description_id(d, &rt.store.root, node))
            else {
                continue;
            };
            if rt.store.state_file(&id).exists() {
                continue;
            }
            found.push(Leftover {
                source: self.name(),
                name: format!("{node}/{vmid}/{id}"),
                reason: format!(
                    "VM {vmid} on {node} belongs to container {id}, which has no state"
                ),
                stamp: None,
            });
        }
        Ok(found)
    }

    fn remove(&self, rt: &Runtime, item: &Leftover) -> Result<()> {
        let mut parts = item.name.splitn(3, '/');
        let (Some(node), Some(vmid), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
            return Ok(());
        };
        let Ok(vmid) = vmid.parse() else {
            return Ok(());
        };
        // Checked again: still without state (destroy checks it is ours).
        if rt.store.state_file(id).exists() {
            return Ok(());
        }
        let rec = PveRecord {
            node: node.to_string(),
            vmid: Some(vmid),
            created: true,
            unprivileged: false,
        };
        destroy(client(rt)?, rt.config.pve()?, &rec, id, &rt.store.root)
    }
}
