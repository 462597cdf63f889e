//! /cluster/firewall/options and a guest's (CT's or VM's) firewall options
//! and IP sets, kept in pve-firewall's files; every change re-syncs the nft
//! rules.
use std::sync::Arc;

use serde_json::{json, Value};

use super::*;
use crate::firewall::{self, FwFile, IpSetEntry};

/// Option keys a CT's firewall has (GET shows those set; booleans as 0/1).
const GUEST_OPTS: &[&str] = &[
    "dhcp",
    "enable",
    "ipfilter",
    "log_level_in",
    "log_level_out",
    "macfilter",
    "ndp",
    "policy_in",
    "policy_out",
    "radv",
];
const CLUSTER_OPTS: &[&str] = &[
    "ebtables",
    "enable",
    "log_ratelimit",
    "policy_forward",
    "policy_in",
    "policy_out",
];
const BOOLS: &[&str] = &[
    "dhcp",
    "enable",
    "ipfilter",
    "macfilter",
    "ndp",
    "radv",
    "ebtables",
];

fn options_json(f: &FwFile, keys: &[&str]) -> Value {
    let mut o = serde_json::Map::new();
    for (k, v) in &f.options {
        if !keys.contains(&k.as_str()) {
            continue;
        }
        let val = if BOOLS.contains(&k.as_str()) {
            json!(v.parse::<i64>().unwrap_or(0))
        } else {
            json!(v)
        };
        o.insert(k.clone(), val);
    }
    Value::Object(o)
}

fn digest_of(f: &FwFile) -> String {
    crate::store::digest(&f.render())
}

fn set_options(f: &mut FwFile, p: &P, keys: &[&str]) -> Result<(), ApiError> {
    if let Some(d) = p.get("digest") {
        if *d != digest_of(f) {
            return Err(internal(
                "detected modified configuration - file changed by other user? Try again.",
            ));
        }
    }
    let deletes: Vec<&str> = p
        .get("delete")
        .map(|d| d.split([',', ';', ' ']).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    for d in deletes {
        f.options.remove(d);
    }
    for k in keys {
        if let Some(v) = p.get(*k) {
            f.options.insert(k.to_string(), v.clone());
        }
    }
    Ok(())
}

fn guest_conf(app: &App, p: &P, kind: Kind) -> Result<crate::store::Section, ApiError> {
    Ok(read(app, p, kind)?.0.main)
}

fn sync_guest(app: &App, p: &P, kind: Kind) -> Result<(), ApiError> {
    let conf = guest_conf(app, p, kind)?;
    firewall::sync(&app.data_dir, vmid(p), Some((kind, &conf)))
        .map_err(|e| internal(format!("applying the firewall rules: {e}")))
}

fn save(app: &App, name: &str, f: &FwFile) -> Result<(), ApiError> {
    firewall::save(&app.data_dir, name, f).map_err(|e| internal(format!("writing {name}.fw: {e}")))
}

pub(super) fn cluster_get(app: &App) -> R {
    let f = firewall::load(&app.data_dir, "cluster");
    let mut v = options_json(&f, CLUSTER_OPTS);
    v["digest"] = json!(digest_of(&f));
    ok(v)
}

pub(super) fn cluster_put(app: &App, p: &P) -> R {
    let mut f = firewall::load(&app.data_dir, "cluster");
    set_options(&mut f, p, CLUSTER_OPTS)?;
    save(app, "cluster", &f)?;
    // Every guest's rules depend on it.
    for (node, kind, id) in app.store.list() {
        if let Ok((conf, _)) = app.store.read(&node, kind, id) {
            firewall::sync(&app.data_dir, id, Some((kind, &conf.main)))
                .map_err(|e| internal(format!("applying the firewall rules: {e}")))?;
        }
    }
    ok(Value::Null)
}

pub(super) fn options_get(app: &App, p: &P, kind: Kind) -> R {
    guest_conf(app, p, kind)?;
    let f = firewall::load(&app.data_dir, &vmid(p).to_string());
    let mut v = options_json(&f, GUEST_OPTS);
    v["digest"] = json!(digest_of(&f));
    ok(v)
}

pub(super) fn options_put(app: &Arc<App>, p: &P, kind: Kind) -> R {
    guest_conf(app, p, kind)?;
    let name = vmid(p).to_string();
    let mut f = firewall::load(&app.data_dir, &name);
    set_options(&mut f, p, GUEST_OPTS)?;
    save(app, &name, &f)?;
    sync_guest(app, p, kind)?;
    ok(Value::Null)
}

pub(super) fn ipset_list(app: &App, p: &P, kind: Kind) -> R {
    guest_conf(app, p, kind)?;
    let f = firewall::load(&app.data_dir, &vmid(p).to_string());
    let d = digest_of(&f);
    ok(json!(f
        .ipsets
        .iter()
        .map(|(n, (c, _))| {
            let mut v = json!({"name": n, "digest": d});
            if !c.is_empty() {
                v["comment"] = json!(c);
            }
            v
        })
        .collect::<Vec<_>>()))
}

pub(super) fn ipset_create(app: &Arc<App>, p: &P, kind: Kind) -> R {
    guest_conf(app, p, kind)?;
    let name = vmid(p).to_string();
    let mut f = firewall::load(&app.data_dir, &name);
    let set = p["name"].clone();
    let comment = p.get("comment").cloned().unwrap_or_default();
    match p.get("rename") {
        Some(old) => {
            let (_, entries) = f
                .ipsets
                .remove(old)
                .ok_or_else(|| internal(format!("no such IPSet '{old}'")))?;
            f.ipsets.insert(set, (comment, entries));
        }
        None => {
            if f.ipsets.contains_key(&set) {
                return Err(internal(format!("IPSet '{set}' already exists")));
            }
            f.ipsets.insert(set, (comment, vec![]));
        }
    }
    save(app, &name, &f)?;
    sync_guest(app, p, kind)?;
    ok(Value::Null)
}

pub(super) fn ipset_get(app: &App, p: &P, kind: Kind) -> R {
    guest_conf(app, p, kind)?;
    let f = firewall::load(&app.data_dir, &vmid(p).to_string());
    let d = digest_of(&f);
    let (_, entries) = f
        .ipsets
        .get(&p["name"])
        .ok_or_else(|| internal(format!("no such IPSet '{}'", p["name"])))?;
    ok(json!(entries
        .iter()
        .map(|e| {
            let mut v = json!({"cidr": e.cidr, "digest": d, "nomatch": e.nomatch as i32});
            if !e.comment.is_empty() {
                v["comment"] = json!(e.comment);
            }
            v
        })
        .collect::<Vec<_>>()))
}

pub(super) fn ipset_add(app: &Arc<App>, p: &P, kind: Kind) -> R {
    guest_conf(app, p, kind)?;
    let name = vmid(p).to_string();
    let mut f = firewall::load(&app.data_dir, &name);
    let cidr = p["cidr"].clone();
    let ok_cidr = match cidr.split_once('/') {
        Some((a, l)) => a.parse::<std::net::IpAddr>().is_ok() && l.parse::<u8>().is_ok(),
        None => cidr.parse::<std::net::IpAddr>().is_ok(),
    };
    if !ok_cidr {
        return Err(ApiError::param(
            "cidr",
            format!("value does not look like a valid CIDR network ({cidr})"),
        ));
    }
    let (_, entries) = f
        .ipsets
        .get_mut(&p["name"])
        .ok_or_else(|| internal(format!("no such IPSet '{}'", p["name"])))?;
    if entries.iter().any(|e| e.cidr == cidr) {
        return Err(internal(format!("address '{cidr}' already exists")));
    }
    entries.push(IpSetEntry {
        cidr,
        nomatch: flag(p, "nomatch"),
        comment: p.get("comment").cloned().unwrap_or_default(),
    });
    save(app, &name, &f)?;
    sync_guest(app, p, kind)?;
    ok(Value::Null)
}

pub(super) fn ipset_delete(app: &Arc<App>, p: &P, kind: Kind) -> R {
    guest_conf(app, p, kind)?;
    let name = vmid(p).to_string();
    let mut f = firewall::load(&app.data_dir, &name);
    let set = &p["name"];
    match f.ipsets.get(set) {
        None => return ok(Value::Null),
        Some((_, e)) if !e.is_empty() && !flag(p, "force") => {
            return Err(internal(format!("IPSet '{set}' is not empty")))
        }
        _ => {}
    }
    f.ipsets.remove(set);
    save(app, &name, &f)?;
    sync_guest(app, p, kind)?;
    ok(Value::Null)
}

/// A destroyed guest's firewall goes with it (`purge`, as a node does).
pub(crate) fn forget(app: &App, id: u32) {
    let _ = std::fs::remove_file(firewall::path(&app.data_dir, &id.to_string()));
    let _ = firewall::sync(&app.data_dir, id, None);
}
