//! A CT's firewall: options and IP sets (what port security needs).
use serde_json::Value;

use crate::client::{seg, Client, Method};
use crate::error::Result;
use crate::params::Params;

fn fw(node: &str, vmid: u32, tail: &str) -> Result<String> {
    Ok(format!(
        "/nodes/{}/lxc/{vmid}/firewall{tail}",
        seg("node", node)?
    ))
}

impl Client {
    /// `PUT .../firewall/options` (enable, ipfilter, macfilter, policies).
    pub fn lxc_firewall_options(&self, node: &str, vmid: u32, params: &Params) -> Result<()> {
        let _: Value = self.send(Method::Put, &fw(node, vmid, "/options")?, params)?;
        Ok(())
    }

    /// `POST .../firewall/ipset`: a new IP set.
    pub fn lxc_ipset_create(&self, node: &str, vmid: u32, name: &str, comment: &str) -> Result<()> {
        let p = Params::new().set("name", name).set("comment", comment);
        let _: Value = self.send(Method::Post, &fw(node, vmid, "/ipset")?, &p)?;
        Ok(())
    }

    /// `POST .../firewall/ipset/{name}`: an address or network into it.
    pub fn lxc_ipset_add(&self, node: &str, vmid: u32, name: &str, cidr: &str) -> Result<()> {
        let path = fw(node, vmid, &format!("/ipset/{}", seg("name", name)?))?;
        let _: Value = self.send(Method::Post, &path, &Params::new().set("cidr", cidr))?;
        Ok(())
    }
}
