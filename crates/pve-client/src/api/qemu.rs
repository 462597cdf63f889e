//! QEMU VMs: create, config, power, status, delete.

use serde_json::Value;

use crate::client::{seg, Client, Method};
use crate::error::Result;
use crate::params::Params;
use crate::types::{VmConfig, VmListEntry, VmStatus};
use crate::upid::Upid;

fn vm(node: &str, vmid: u32, tail: &str) -> Result<String> {
    Ok(format!("/nodes/{}/qemu/{vmid}{tail}", seg("node", node)?))
}

impl Client {
    /// `POST /nodes/{node}/qemu` (needs at least `vmid`). Returns the
    /// `qmcreate` task.
    pub fn qemu_create(&self, node: &str, params: &Params) -> Result<Upid> {
        let path = format!("/nodes/{}/qemu", seg("node", node)?);
        self.send(Method::Post, &path, params)
    }

    /// `GET /nodes/{node}/qemu`.
    pub fn qemu_list(&self, node: &str) -> Result<Vec<VmListEntry>> {
        self.get(
            &format!("/nodes/{}/qemu", seg("node", node)?),
            &Params::new(),
        )
    }

    /// `GET /nodes/{node}/qemu/{vmid}/config`.
    pub fn qemu_config(&self, node: &str, vmid: u32) -> Result<VmConfig> {
        self.get(&vm(node, vmid, "/config")?, &Params::new())
    }

    /// `PUT /nodes/{node}/qemu/{vmid}/config` (the synchronous form).
    pub fn qemu_set_config(&self, node: &str, vmid: u32, params: &Params) -> Result<()> {
        let _: Value = self.send(Method::Put, &vm(node, vmid, "/config")?, params)?;
        Ok(())
    }

    /// `GET .../status/current`.
    pub fn qemu_status(&self, node: &str, vmid: u32) -> Result<VmStatus> {
        self.get(&vm(node, vmid, "/status/current")?, &Params::new())
    }

    fn qemu_action(&self, node: &str, vmid: u32, action: &str, params: &Params) -> Result<Upid> {
        self.send(
            Method::Post,
            &vm(node, vmid, &format!("/status/{action}"))?,
            params,
        )
    }

    /// `POST .../status/start`.
    pub fn qemu_start(&self, node: &str, vmid: u32) -> Result<Upid> {
        self.qemu_action(node, vmid, "start", &Params::new())
    }

    /// `POST .../status/suspend` (the VM paused in place, QMP `stop`).
    pub fn qemu_suspend(&self, node: &str, vmid: u32) -> Result<Upid> {
        self.qemu_action(node, vmid, "suspend", &Params::new())
    }

    /// `POST .../status/resume`.
    pub fn qemu_resume(&self, node: &str, vmid: u32) -> Result<Upid> {
        self.qemu_action(node, vmid, "resume", &Params::new())
    }

    /// `POST .../status/stop` (like pulling the plug).
    pub fn qemu_stop(&self, node: &str, vmid: u32) -> Result<Upid> {
        self.qemu_action(node, vmid, "stop", &Params::new())
    }

    /// `POST .../status/shutdown` (ACPI, or the guest agent).
    pub fn qemu_shutdown(
        &self,
        node: &str,
        vmid: u32,
        timeout: Option<u32>,
        force_stop: bool,
    ) -> Result<Upid> {
        let params = super::lxc::shutdown_params(timeout, force_stop);
        self.qemu_action(node, vmid, "shutdown", &params)
    }

    /// `DELETE /nodes/{node}/qemu/{vmid}?purge=1&destroy-unreferenced-disks=1`:
    /// the VM with every disk of its own, referenced or not.
    pub fn qemu_destroy(&self, node: &str, vmid: u32) -> Result<Upid> {
        let params = Params::new()
            .bool("purge", true)
            .bool("destroy-unreferenced-disks", true);
        self.send(Method::Delete, &vm(node, vmid, "")?, &params)
    }

    /// `DELETE /nodes/{node}/qemu/{vmid}`.
    pub fn qemu_delete(&self, node: &str, vmid: u32, purge: bool) -> Result<Upid> {
        let params = if purge {
            Params::new().bool("purge", true)
        } else {
            Params::new()
        };
        self.send(Method::Delete, &vm(node, vmid, "")?, &params)
    }
}
