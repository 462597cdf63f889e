//! Version, nodes, cluster resources, free VMIDs.

use serde_json::Value;

use crate::client::{seg, Client};
use crate::error::{Error, Result};
use crate::params::Params;
use crate::types::{NodeInfo, NodeStatus, Resource, Version};

impl Client {
    /// `GET /version`.
    pub fn version(&self) -> Result<Version> {
        self.get("/version", &Params::new())
    }

    /// `GET /nodes`.
    pub fn nodes(&self) -> Result<Vec<NodeInfo>> {
        self.get("/nodes", &Params::new())
    }

    /// `GET /nodes/{node}/status`.
    pub fn node_status(&self, node: &str) -> Result<NodeStatus> {
        self.get(
            &format!("/nodes/{}/status", seg("node", node)?),
            &Params::new(),
        )
    }

    /// `GET /cluster/resources`, optionally only one `type` (`vm`, `storage`,
    /// `node`, `sdn`).
    pub fn cluster_resources(&self, kind: Option<&str>) -> Result<Vec<Resource>> {
        self.get("/cluster/resources", &Params::new().opt("type", kind))
    }

    /// `GET /cluster/nextid`: a free VMID, or checks that `hint` is free
    /// (an [`Error::Http`] 400 with `errors["vmid"]` when it is taken).
    /// Real servers answer the number as a string; both forms are accepted.
    pub fn next_id(&self, hint: Option<u32>) -> Result<u32> {
        let params = match hint {
            Some(id) => Params::new().int("vmid", id),
            None => Params::new(),
        };
        let v: Value = self.get("/cluster/nextid", &params)?;
        crate::de::value_to_u64(&v)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| Error::Decode(format!("GET /cluster/nextid: not a VMID: {v}")))
    }
}
