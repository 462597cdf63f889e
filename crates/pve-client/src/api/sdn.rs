//! Proxmox SDN: a vnet's zone and the `pve` IPAM's address registrations.
use serde_json::Value;

use crate::client::{seg, Client, Method};
use crate::error::Result;
use crate::params::Params;

fn vnet_path(vnet: &str, tail: &str) -> Result<String> {
    Ok(format!("/cluster/sdn/vnets/{}{tail}", seg("vnet", vnet)?))
}

impl Client {
    /// The zone of `vnet` (`GET /cluster/sdn/vnets/{vnet}`).
    pub fn sdn_vnet_zone(&self, vnet: &str) -> Result<Option<String>> {
        let v: Value = self.send(Method::Get, &vnet_path(vnet, "")?, &Params::new())?;
        Ok(v["zone"].as_str().map(String::from))
    }

    /// Register `ip` in the vnet's IPAM (fails when it is taken).
    pub fn sdn_ip_add(&self, vnet: &str, zone: &str, ip: &str, mac: Option<&str>) -> Result<()> {
        let p = Params::new()
            .set("zone", zone)
            .set("ip", ip)
            .opt("mac", mac);
        let _: Value = self.send(Method::Post, &vnet_path(vnet, "/ips")?, &p)?;
        Ok(())
    }

    /// Remove `ip` from the vnet's IPAM.
    pub fn sdn_ip_delete(&self, vnet: &str, zone: &str, ip: &str) -> Result<()> {
        let p = Params::new().set("zone", zone).set("ip", ip);
        let _: Value = self.send(Method::Delete, &vnet_path(vnet, "/ips")?, &p)?;
        Ok(())
    }
}
