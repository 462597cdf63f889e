//! Effective permissions of the caller.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::params::Params;

/// path => privilege => propagated.
pub type Permissions = BTreeMap<String, BTreeMap<String, bool>>;

impl Client {
    /// `GET /access/permissions`: the privileges of this client's user or
    /// token, on `path` only or on the whole tree.
    pub fn permissions(&self, path: Option<&str>) -> Result<Permissions> {
        let data = self.call(
            crate::Method::Get,
            "/access/permissions",
            &Params::new().opt("path", path),
        )?;
        let bad =
            || Error::Decode("GET /access/permissions: not a map of paths to privileges".into());
        let mut out = Permissions::new();
        for (p, privs) in data.as_object().ok_or_else(bad)? {
            let mut m = BTreeMap::new();
            for (name, prop) in privs.as_object().ok_or_else(bad)? {
                // 0/1, as Proxmox sends booleans (strings from some versions).
                let on = match prop {
                    Value::Bool(b) => *b,
                    Value::Number(n) => n.as_i64() == Some(1),
                    Value::String(s) => s == "1",
                    _ => false,
                };
                m.insert(name.clone(), on);
            }
            out.insert(p.clone(), m);
        }
        Ok(out)
    }
}
