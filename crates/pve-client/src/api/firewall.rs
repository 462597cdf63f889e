//! A guest's firewall: options and IP sets (what port security needs). CTs
//! and VMs have the same endpoints under `/lxc/` and `/qemu/`.
use serde_json::Value;

use crate::client::{seg, Client, Method};
use crate::error::Result;
use crate::params::Params;

/// Which kind of guest an endpoint is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestType {
    Lxc,
    Qemu,
}

impl GuestType {
    fn segment(self) -> &'static str {
        match self {
            GuestType::Lxc => "lxc",
            GuestType::Qemu => "qemu",
        }
    }
}

fn fw(guest: GuestType, node: &str, vmid: u32, tail: &str) -> Result<String> {
    Ok(format!(
        "/nodes/{}/{}/{vmid}/firewall{tail}",
        seg("node", node)?,
        guest.segment()
    ))
}

impl Client {
    /// `PUT .../firewall/options` (enable, ipfilter, macfilter, policies).
    pub fn firewall_options(
        &self,
        guest: GuestType,
        node: &str,
        vmid: u32,
        params: &Params,
    ) -> Result<()> {
        let _: Value = self.send(Method::Put, &fw(guest, node, vmid, "/options")?, params)?;
        Ok(())
    }

    /// `POST .../firewall/ipset`: a new IP set.
    pub fn ipset_create(
        &self,
        guest: GuestType,
        node: &str,
        vmid: u32,
        name: &str,
        comment: &str,
    ) -> Result<()> {
        let p = Params::new().set("name", name).set("comment", comment);
        let _: Value = self.send(Method::Post, &fw(guest, node, vmid, "/ipset")?, &p)?;
        Ok(())
    }

    /// `POST .../firewall/ipset/{name}`: an address or network into it.
    pub fn ipset_add(
        &self,
        guest: GuestType,
        node: &str,
        vmid: u32,
        name: &str,
        cidr: &str,
    ) -> Result<()> {
        let path = fw(guest, node, vmid, &format!("/ipset/{}", seg("name", name)?))?;
        let _: Value = self.send(Method::Post, &path, &Params::new().set("cidr", cidr))?;
        Ok(())
    }
}
