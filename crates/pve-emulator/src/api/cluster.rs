//! /cluster: the resource list over all nodes, and the next free VMID.

use serde_json::{json, Value};

use super::{guest_summary, nodes, ok, App, P, R};
use crate::error::ApiError;
use crate::store::Kind;

/// GET /cluster/status: a standalone node is listed alone (nodeid 0); with
/// several `--node`s the emulator is a quorate cluster of them. All nodes
/// are this one process, so each is online and the first answers (`local`).
pub(super) fn status(app: &App) -> Value {
    let cluster = app.nodes.len() > 1;
    let mut out = Vec::new();
    if cluster {
        out.push(json!({
            "type": "cluster", "id": "cluster", "name": "pve-emulator",
            "nodes": app.nodes.len(), "quorate": 1, "version": app.nodes.len(),
        }));
    }
    for (i, n) in app.nodes.iter().enumerate() {
        out.push(json!({
            "type": "node", "id": format!("node/{n}"), "name": n, "online": 1,
            "local": if i == 0 { 1 } else { 0 }, "nodeid": if cluster { i + 1 } else { 0 },
            "level": "",
        }));
    }
    json!(out)
}

/// Keys of a guest's status that /cluster/resources shows (`cpus` becomes
/// `maxcpu`).
const GUEST_KEYS: &[&str] = &[
    "vmid",
    "name",
    "status",
    "cpu",
    "mem",
    "maxmem",
    "disk",
    "maxdisk",
    "netin",
    "netout",
    "diskread",
    "diskwrite",
    "uptime",
    "template",
    "tags",
    "lock",
];

/// GET /cluster/resources, `type` = node, storage, vm (qemu and lxc) or
/// sdn (none here: the emulator has no SDN).
pub(super) fn resources(app: &App, ty: Option<&str>) -> Value {
    let mut out = Vec::new();
    if ty.is_none_or(|t| t == "node") {
        let st = nodes::status();
        let unified = proxmox_lxcri_cgroups::CgroupLayout::detect()
            .map(|l| l.v1_controllers().next().is_none())
            .unwrap_or(false);
        for n in nodes::list(app).as_array().into_iter().flatten() {
            out.push(json!({
                "id": n["id"], "type": "node", "node": n["node"], "status": n["status"],
                "cpu": n["cpu"], "maxcpu": n["maxcpu"], "mem": n["mem"], "maxmem": n["maxmem"],
                "uptime": n["uptime"], "level": n["level"],
                "disk": st["rootfs"]["used"], "maxdisk": st["rootfs"]["total"],
                "cgroup-mode": if unified { 2 } else { 1 },
            }));
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
            let Ok(st) = guest_summary(app, &node, kind, id) else {
                continue;
            };
            let t = if kind == Kind::Lxc { "lxc" } else { "qemu" };
            let mut v =
                json!({"id": format!("{t}/{id}"), "type": t, "node": node, "maxcpu": st["cpus"]});
            for k in GUEST_KEYS {
                if let Some(x) = st.get(*k) {
                    v[*k] = x.clone();
                }
            }
            out.push(v);
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
