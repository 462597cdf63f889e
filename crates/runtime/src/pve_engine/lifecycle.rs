//! The pve-lxc parts of the lifecycle: making the CT (VMID, create, the
//! rootfs volume), destroying it, and finding CTs whose state was lost.
use std::path::Path;

use super::{self as pve, PveRecord};
use crate::error::Result;
use crate::runtime::{CreateGuard, Runtime};
use crate::state::ContainerState;

/// The error text of a task that ended badly; None while it runs or if OK.
pub(crate) fn task_error(client: &pve_client::Client, upid: &pve_client::Upid) -> Option<String> {
    let st = client.task_status(upid).ok()?;
    if st.status != "stopped" {
        return None;
    }
    match st.exitstatus.as_deref() {
        Some("OK") => None,
        Some(s) if s.starts_with("WARNINGS") => None,
        Some(s) => Some(s.to_string()),
        None => Some("the task ended without a status".into()),
    }
}

impl Runtime {
    /// Allocate a VMID and create the CT (stopped) with the bundle's rootfs
    /// in its volume; the VMID. Each step is recorded in the state before it is made.
    pub(crate) fn pve_make_ct(
        &self,
        id: &str,
        plan: &pve::CtPlan,
        rootfs: &Path,
        state: &mut ContainerState,
        guard: &mut CreateGuard,
    ) -> Result<u32> {
        let cfg = self.config.pve()?;
        let client = self.pve()?;
        let template = pve::ensure_template(client, cfg, &self.store.root)?;
        let mut rec = PveRecord {
            node: cfg.node.clone(),
            vmid: None,
            created: false,
            unprivileged: plan.unprivileged,
        };
        let mut attempt = 0u32;
        let mut skip = 0u32;
        let vmid = loop {
            attempt += 1;
            // nextid gives every concurrent create the same lowest free id;
            // after a collision, spread out above it.
            let vmid = client
                .next_id(None)
                .map_err(pve::api("allocating a VMID"))?
                .saturating_add(skip);
            rec.vmid = Some(vmid);
            rec.created = false;
            state.pve = Some(rec.clone());
            guard.pve = Some(rec.clone());
            self.store.save(state)?;
            let mut params = plan.params.clone();
            params = params.int("vmid", vmid as i64);
            params = params.set("ostemplate", template.clone());
            let upid = match client.lxc_create(&cfg.node, &params) {
                Ok(u) => Some(u),
                // Another node (or runtime) took the VMID between nextid
                // and create: ask again.
                Err(e) if e.to_string().contains("already exists") && attempt < 30 => {
                    skip = pve::jitter(attempt * 3);
                    continue;
                }
                // Sent, but no answer: look whether it landed, never
                // create twice.
                Err(e @ (pve_client::Error::Disconnected(_) | pve_client::Error::Timeout(_))) => {
                    if pve::owns(client, &cfg.node, vmid, id, &self.store.root)? {
                        None
                    } else {
                        return Err(pve::api("creating the CT")(e));
                    }
                }
                Err(e) => {
                    if e.to_string().contains("vztmpl") {
                        pve::forget_template(&self.store.root);
                    }
                    return Err(pve::api("creating the CT")(e));
                }
            };
            rec.created = true;
            state.pve = Some(rec.clone());
            guard.pve = Some(rec.clone());
            self.store.save(state)?;
            match upid {
                Some(u) => pve::wait(client, cfg, &u, &format!("creating CT {vmid}"))?,
                None => pve::wait_unlocked(client, cfg, &cfg.node, vmid)?,
            }
            break vmid;
        };
        let volume = pve::rootfs_path(client, &cfg.node, vmid)?;
        let store = crate::storage_glue::configured(self)?;
        pve::fill_rootfs(
            store.as_ref(),
            rootfs,
            &volume,
            &state.annotations,
            plan.unprivileged,
        )?;
        Ok(vmid)
    }

    /// Remove a container's CT (with its volumes and VMID).
    /// The VMID is checked to be still this container's first: the CT may
    /// have been destroyed from the Proxmox side and its VMID reused.
    pub(crate) fn pve_destroy(&self, id: &str, rec: &PveRecord) -> Result<()> {
        let cfg = self.config.pve()?;
        pve::destroy(self.pve()?, cfg, rec, id, &self.store.root, true)
    }
}

impl Runtime {
    /// CTs tagged by us, made from this root, whose container has no state:
    /// (node, vmid, container id).
    pub(crate) fn pve_orphans(&self) -> Result<Vec<(String, u32, String)>> {
        let client = self.pve()?;
        let mut found = vec![];
        let resources = client
            .cluster_resources(Some("vm"))
            .map_err(pve::api("listing guests"))?;
        for r in resources {
            let tagged = r
                .tags
                .as_deref()
                .is_some_and(|t| t.split([';', ',', ' ']).any(|t| t == pve::TAG));
            let (Some(vmid), Some(node)) = (r.vmid, r.node.clone()) else {
                continue;
            };
            // Only this node's: another node's runtime owns its CTs (the
            // description names the node too).
            if r.kind != "lxc" || !tagged || node != self.config.pve()?.node {
                continue;
            }
            let conf = match client.lxc_config(&node, vmid) {
                Ok(c) => c,
                Err(e) if pve::is_missing(&e, &node, vmid) => continue,
                Err(e) => return Err(pve::api("reading a CT config")(e)),
            };
            let Some(id) = conf
                .get("description")
                .and_then(|d| pve::description_id(d, &self.store.root, &node))
            else {
                continue; // another runtime root's, or not ours
            };
            if self.store.dir(&id).exists() {
                continue;
            }
            found.push((node, vmid, id));
        }
        Ok(found)
    }

    /// Destroy a CT found by [`Self::pve_orphans`].
    pub(crate) fn pve_destroy_orphan(&self, node: &str, vmid: u32, id: &str) -> Result<()> {
        let rec = PveRecord {
            node: node.to_string(),
            vmid: Some(vmid),
            created: true,
            unprivileged: false,
        };
        // Checked again: it must still be ours and still without state.
        if self.store.dir(id).exists() {
            return Ok(());
        }
        pve::destroy(
            self.pve()?,
            self.config.pve()?,
            &rec,
            id,
            &self.store.root,
            true,
        )
    }
}
