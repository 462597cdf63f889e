//! /nodes/{node}/{lxc,qemu}/{vmid}/config: one implementation for both
//! guest kinds, as their configs share the section format.

use serde_json::{json, Value};

use super::{check_lock, flag, internal, ok, read, vmid, with_hwaddr, App, Ctx, P, R};
use crate::api::access::check_root_only;
use crate::error::ApiError;
use crate::propstr;
use crate::schema;
use crate::store::{Kind, Section};

/// Typed values for GET config, per the PUT schema's types.
fn typed(kind: Kind, k: &str, v: &str) -> Value {
    let path = if kind == Kind::Lxc {
        "/nodes/{node}/lxc/{vmid}/config"
    } else {
        "/nodes/{node}/qemu/{vmid}/config"
    };
    let ep = schema::find("PUT", path).expect("config endpoint");
    let base = k.trim_end_matches(|c: char| c.is_ascii_digit());
    let param = ep
        .params
        .iter()
        .find(|x| x.name == k || x.name.strip_suffix("[n]") == Some(base));
    match param.map(|x| &x.ty) {
        Some(schema::Ty::Int { .. }) | Some(schema::Ty::Bool) => {
            v.parse::<i64>().map(Value::from).unwrap_or(json!(v))
        }
        Some(schema::Ty::Num { .. }) => v.parse::<f64>().map(Value::from).unwrap_or(json!(v)),
        _ => json!(v),
    }
}

fn section_json(kind: Kind, s: &Section) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in &s.keys {
        m.insert(k.clone(), typed(kind, k, v));
    }
    if let Some(d) = &s.description {
        m.insert("description".into(), json!(d));
    }
    if !s.lxc.is_empty() {
        m.insert(
            "lxc".into(),
            json!(s.lxc.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>()),
        );
    }
    Value::Object(m)
}

pub(super) fn get(app: &App, p: &P, kind: Kind) -> R {
    let (conf, digest) = read(app, p, kind)?;
    let section = match p.get("snapshot") {
        Some(s) => conf
            .snapshots
            .iter()
            .find(|(n, _)| n == s)
            .map(|x| x.1.clone())
            .ok_or_else(|| internal(format!("snapshot '{s}' does not exist")))?,
        None => conf.main.clone(),
    };
    let mut v = section_json(kind, &section);
    v["digest"] = json!(digest);
    ok(v)
}

/// Parameters that are request options, not config keys.
pub(super) const NOT_CONFIG: &[&str] = &[
    "node",
    "vmid",
    "ostemplate",
    "storage",
    "password",
    "ssh-public-keys",
    "start",
    "pool",
    "force",
    "unique",
    "restore",
    "ignore-unpack-errors",
    "bwlimit",
    "ha-managed",
    "delete",
    "revert",
    "digest",
    "skiplock",
    "description",
    "lock",
    "cipassword",
];

pub(super) fn put(app: &App, ctx: &Ctx, p: &P, kind: Kind) -> R {
    check_root_only(ctx, p)?;
    let id = vmid(p);
    let _l = app.store.lock(id)?;
    let (mut conf, digest) = read(app, p, kind)?;
    if let Some(d) = p.get("digest") {
        if d != &digest {
            return Err(internal(
                "detected modified configuration - file changed by other user? Try again.",
            ));
        }
    }
    check_lock(&conf.main, flag(p, "skiplock"))?;
    let mut deletes: Vec<String> = p
        .get("delete")
        .map(|d| {
            d.split([',', ';', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    // A VM's disks: allocated, hot-plugged and unplugged as qemu-server
    // does on a running VM (before anything else is written).
    let mut sets: Vec<(String, String)> = vec![];
    if kind == Kind::Qemu {
        if let Some(d) = deletes.iter().find(|d| p.contains_key(*d)) {
            return Err(ApiError::param(
                "delete",
                format!("cannot set and delete '{d}' at the same time"),
            ));
        }
        sets = p
            .iter()
            .filter(|(k, _)| super::qemu::is_disk_key(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        super::qemu::put_disks(app, id, &mut conf.main, &mut sets, &mut deletes)?;
    }
    for d in &deletes {
        if p.contains_key(d) {
            return Err(ApiError::param(
                "delete",
                format!("cannot set and delete '{d}' at the same time"),
            ));
        }
        if d == "rootfs" {
            return Err(ApiError::param(
                "delete",
                "unable to delete required option 'rootfs'",
            ));
        }
        // As pve-container: the idmap of existing files depends on it.
        if kind == Kind::Lxc && d == "unprivileged" {
            return Err(internal(format!(
                "unable to delete read-only option: '{d}'"
            )));
        }
        if d == "description" {
            conf.main.description = None;
        }
        conf.main.keys.remove(d);
    }
    for (k, v) in p {
        if k == "description" {
            conf.main.description = Some(v.clone());
            continue;
        }
        if NOT_CONFIG.contains(&k.as_str()) {
            continue;
        }
        if kind == Kind::Lxc && k == "unprivileged" {
            return Err(internal(format!(
                "unable to modify read-only option: '{k}'"
            )));
        }
        if k == "rootfs" {
            let old = conf
                .main
                .get("rootfs")
                .and_then(|r| propstr::parse_lxc("lxc-rootfs", r).ok())
                .and_then(|m| m.get("volume").cloned());
            let new = propstr::parse_lxc("lxc-rootfs", v)
                .ok()
                .and_then(|m| m.get("volume").cloned());
            if old != new {
                return Err(ApiError::param(
                    "rootfs",
                    "changing the rootfs volume is not supported by the emulator",
                ));
            }
        }
        let v = if kind == Kind::Lxc && k.starts_with("net") {
            with_hwaddr(v)
        } else if let Some((_, nv)) = sets.iter().find(|(sk, _)| sk == k) {
            nv.clone()
        } else {
            v.clone()
        };
        conf.main.keys.insert(k.clone(), v);
    }
    app.store.write(&p["node"], kind, id, &conf)?;
    // A NIC's MAC, ip or firewall flag may have changed.
    crate::firewall::sync(&app.data_dir, id, Some((kind, &conf.main)))
        .map_err(|e| internal(format!("applying the firewall rules: {e}")))?;
    ok(Value::Null)
}

/// GET .../pending: every config key with its current value, the config's
/// `digest` among them, raw `lxc.*` lines not (as pve-container answers).
/// The emulator applies a PUT at once (as Proxmox does for a stopped
/// guest), so nothing is ever pending.
pub(super) fn pending(app: &App, p: &P, kind: Kind) -> R {
    let (conf, digest) = read(app, p, kind)?;
    let mut rows: Vec<Value> = conf
        .main
        .keys
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    if let Some(d) = &conf.main.description {
        rows.push(json!({"key": "description", "value": d}));
    }
    rows.push(json!({"key": "digest", "value": digest}));
    rows.sort_by(|a, b| a["key"].as_str().cmp(&b["key"].as_str()));
    ok(json!(rows))
}
