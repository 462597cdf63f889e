//! /cluster: the resource list over all nodes, and the next free VMID.

use serde_json::{json, Value};

use super::{guest_summary, nodes, ok, App, P, R};
use crate::error::ApiError;
use crate::store::Kind;

pub(super) fn resources(app: &App, ty: Option<&str>) -> Value {
    let mut out = Vec::new();
    if ty.is_none_or(|t| t == "node") {
        for n in nodes::list(app).as_array().into_iter().flatten() {
            out.push(n.clone());
        }
    }
    if ty.is_none_or(|t| t == "storage") {
        for n in &app.nodes {
            for s in &app.storages {
                let (total, used, _) = s.status();
                out.push(json!({
                    "id": format!("storage/{n}/{}", s.id), "type": "storage", "node": n, "storage": s.id,
                    "status": "available", "plugintype": s.type_name(), "content": s.content(),
                    "disk": used, "maxdisk": total, "shared": 0,
                }));
            }
        }
    }
    if ty.is_none_or(|t| t == "vm") {
        for (node, kind, id) in app.store.list() {
            if let Ok(mut v) = guest_summary(app, &node, kind, id) {
                v["id"] = json!(format!(
                    "{}/{id}",
                    if kind == Kind::Lxc { "lxc" } else { "qemu" }
                ));
                v["type"] = json!(if kind == Kind::Lxc { "lxc" } else { "qemu" });
                v["node"] = json!(node);
                out.push(v);
            }
        }
    }
    json!(out)
}

pub(super) fn nextid(app: &App, p: &P) -> R {
    if let Some(v) = p.get("vmid") {
        let id: u32 = v.parse().unwrap_or(0);
        if app.store.locate(id).is_some() {
            return Err(ApiError::param("vmid", format!("VM {id} already exists")));
        }
        return ok(json!(id.to_string()));
    }
    let used: std::collections::HashSet<u32> = app.store.list().into_iter().map(|x| x.2).collect();
    let lower = app.next_id_lower;
    let id = (lower..).find(|i| !used.contains(i)).unwrap_or(lower);
    ok(json!(id.to_string()))
}
