//! LXC containers: create, config, power, status, delete, snapshots, clone.

use serde_json::Value;

use crate::client::{seg, Client, Method};
use crate::error::Result;
use crate::params::Params;
use crate::types::{CtConfig, CtListEntry, CtStatus, Interface, Snapshot};
use crate::upid::Upid;

fn ct(node: &str, vmid: u32, tail: &str) -> Result<String> {
    Ok(format!("/nodes/{}/lxc/{vmid}{tail}", seg("node", node)?))
}

impl Client {
    /// `POST /nodes/{node}/lxc` (needs at least `vmid` and `ostemplate`).
    /// Returns the `vzcreate` task.
    pub fn lxc_create(&self, node: &str, params: &Params) -> Result<Upid> {
        let path = format!("/nodes/{}/lxc", seg("node", node)?);
        self.send(Method::Post, &path, params)
    }

    /// `GET /nodes/{node}/lxc`.
    pub fn lxc_list(&self, node: &str) -> Result<Vec<CtListEntry>> {
        self.get(
            &format!("/nodes/{}/lxc", seg("node", node)?),
            &Params::new(),
        )
    }

    /// `GET /nodes/{node}/lxc/{vmid}/config` (pending changes not applied).
    pub fn lxc_config(&self, node: &str, vmid: u32) -> Result<CtConfig> {
        self.get(&ct(node, vmid, "/config")?, &Params::new())
    }

    /// The config as it was at snapshot `snapname`.
    pub fn lxc_config_snapshot(&self, node: &str, vmid: u32, snapname: &str) -> Result<CtConfig> {
        self.get(
            &ct(node, vmid, "/config")?,
            &Params::new().set("snapshot", snapname),
        )
    }

    /// `PUT /nodes/{node}/lxc/{vmid}/config` (synchronous). Use
    /// [`Params::delete`] to remove keys and `digest` to refuse the update if
    /// the config changed since it was read.
    pub fn lxc_set_config(&self, node: &str, vmid: u32, params: &Params) -> Result<()> {
        let _: Value = self.send(Method::Put, &ct(node, vmid, "/config")?, params)?;
        Ok(())
    }

    fn lxc_action(&self, node: &str, vmid: u32, action: &str, params: &Params) -> Result<Upid> {
        self.send(
            Method::Post,
            &ct(node, vmid, &format!("/status/{action}"))?,
            params,
        )
    }

    /// `POST .../status/start`. Starting a running CT fails with HTTP 500
    /// "CT N already running".
    pub fn lxc_start(&self, node: &str, vmid: u32) -> Result<Upid> {
        self.lxc_action(node, vmid, "start", &Params::new())
    }

    /// `POST .../status/stop`: kills the CT at once.
    pub fn lxc_stop(&self, node: &str, vmid: u32) -> Result<Upid> {
        self.lxc_action(node, vmid, "stop", &Params::new())
    }

    /// `POST .../status/shutdown`: asks the CT's init to halt; after
    /// `timeout` seconds (server default 60) it is killed when `force_stop`,
    /// else the task fails.
    pub fn lxc_shutdown(
        &self,
        node: &str,
        vmid: u32,
        timeout: Option<u32>,
        force_stop: bool,
    ) -> Result<Upid> {
        self.lxc_action(
            node,
            vmid,
            "shutdown",
            &shutdown_params(timeout, force_stop),
        )
    }

    /// `POST .../status/suspend` (freezes the CT).
    pub fn lxc_suspend(&self, node: &str, vmid: u32) -> Result<Upid> {
        self.lxc_action(node, vmid, "suspend", &Params::new())
    }

    /// `POST .../status/resume`.
    pub fn lxc_resume(&self, node: &str, vmid: u32) -> Result<Upid> {
        self.lxc_action(node, vmid, "resume", &Params::new())
    }

    /// `POST .../status/reboot`.
    pub fn lxc_reboot(&self, node: &str, vmid: u32) -> Result<Upid> {
        self.lxc_action(node, vmid, "reboot", &Params::new())
    }

    /// `GET .../status/current`.
    pub fn lxc_status(&self, node: &str, vmid: u32) -> Result<CtStatus> {
        self.get(&ct(node, vmid, "/status/current")?, &Params::new())
    }

    /// `DELETE /nodes/{node}/lxc/{vmid}`: `purge` also removes it from
    /// backup jobs, HA and replication; `force` destroys a running CT.
    pub fn lxc_delete(&self, node: &str, vmid: u32, purge: bool, force: bool) -> Result<Upid> {
        let mut params = Params::new();
        if purge {
            // Purge also takes the disks no config line refers to any more.
            params = params
                .bool("purge", true)
                .bool("destroy-unreferenced-disks", true);
        }
        if force {
            params = params.bool("force", true);
        }
        self.send(Method::Delete, &ct(node, vmid, "")?, &params)
    }

    /// `POST .../snapshot`.
    pub fn lxc_snapshot_create(
        &self,
        node: &str,
        vmid: u32,
        snapname: &str,
        description: Option<&str>,
    ) -> Result<Upid> {
        let params = Params::new()
            .set("snapname", snapname)
            .opt("description", description);
        self.send(Method::Post, &ct(node, vmid, "/snapshot")?, &params)
    }

    /// `GET .../snapshot` (includes the pseudo-snapshot `current`).
    pub fn lxc_snapshot_list(&self, node: &str, vmid: u32) -> Result<Vec<Snapshot>> {
        self.get(&ct(node, vmid, "/snapshot")?, &Params::new())
    }

    /// `DELETE .../snapshot/{snapname}`.
    pub fn lxc_snapshot_delete(&self, node: &str, vmid: u32, snapname: &str) -> Result<Upid> {
        let path = ct(
            node,
            vmid,
            &format!("/snapshot/{}", seg("snapname", snapname)?),
        )?;
        self.send(Method::Delete, &path, &Params::new())
    }

    /// `POST .../snapshot/{snapname}/rollback`.
    pub fn lxc_snapshot_rollback(&self, node: &str, vmid: u32, snapname: &str) -> Result<Upid> {
        let path = ct(
            node,
            vmid,
            &format!("/snapshot/{}/rollback", seg("snapname", snapname)?),
        )?;
        self.send(Method::Post, &path, &Params::new())
    }

    /// `POST .../clone` to `newid`; `params` may add `hostname`, `full`,
    /// `storage`, `snapname`, `target`, `pool`, `description`.
    pub fn lxc_clone(&self, node: &str, vmid: u32, newid: u32, params: &Params) -> Result<Upid> {
        let mut p = params.clone();
        p.insert("newid", newid.to_string());
        self.send(Method::Post, &ct(node, vmid, "/clone")?, &p)
    }

    /// `GET .../interfaces` of a running CT.
    pub fn lxc_interfaces(&self, node: &str, vmid: u32) -> Result<Vec<Interface>> {
        self.get(&ct(node, vmid, "/interfaces")?, &Params::new())
    }
}

/// `timeout` and `forceStop` of a CT's or VM's shutdown.
pub(super) fn shutdown_params(timeout: Option<u32>, force_stop: bool) -> Params {
    let mut params = Params::new();
    if let Some(t) = timeout {
        params = params.int("timeout", t);
    }
    if force_stop {
        params = params.bool("forceStop", true);
    }
    params
}
