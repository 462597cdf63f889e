//! Proxmox SDN, the part a cluster-wide address space needs: zones, vnets,
//! their subnets, and the built-in `pve` IPAM (`/cluster/sdn/vnets/{vnet}/ips`
//! and `/cluster/sdn/ipams/{ipam}/status`). Kept in `DIR/sdn.json` under one
//! lock, so two runtimes (nodes) never register one address twice.
//! A simplification: changes count at once (a node keeps them pending
//! until `PUT /cluster/sdn` applies them).
use std::net::IpAddr;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::*;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Sdn {
    zones: BTreeMap<String, BTreeMap<String, String>>,
    vnets: BTreeMap<String, BTreeMap<String, String>>,
    /// Subnet id (`<zone>-<addr>-<prefix>`) -> vnet, cidr, gateway.
    subnets: BTreeMap<String, BTreeMap<String, String>>,
    /// Registered addresses: ip -> zone, vnet, subnet, mac, vmid.
    ips: BTreeMap<String, BTreeMap<String, String>>,
}

static LOCK: Mutex<()> = Mutex::new(());

fn path(app: &App) -> PathBuf {
    app.data_dir.join("sdn.json")
}

fn load(app: &App) -> Sdn {
    std::fs::read(path(app))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save(app: &App, s: &Sdn) -> Result<(), ApiError> {
    let p = path(app);
    let tmp = p.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(s).expect("serializes"))
        .and_then(|_| std::fs::rename(&tmp, &p))
        .map_err(|e| internal(format!("writing sdn.json: {e}")))
}

/// `pve-sdn-zone-id` / `pve-sdn-vnet-id`: a letter, then letters/digits, 8 at most.
fn sdn_id(kind: &str, v: &str) -> Result<(), ApiError> {
    let ok = (2..=8).contains(&v.len())
        && v.as_bytes()[0].is_ascii_lowercase()
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ApiError::param(
            kind,
            format!("invalid format - {kind} ID '{v}' contains illegal characters"),
        ))
    }
}

fn with_id(key: &str, id: &str, m: &BTreeMap<String, String>) -> Value {
    let mut o = serde_json::Map::new();
    o.insert(key.into(), json!(id));
    for (k, v) in m {
        let val = match k.as_str() {
            "tag" | "mtu" => json!(v.parse::<i64>().unwrap_or(0)),
            "vlanaware" | "isolate-ports" => json!(v.parse::<i64>().unwrap_or(0)),
            _ => json!(v),
        };
        o.insert(k.clone(), val);
    }
    Value::Object(o)
}

pub(super) fn zones_get(app: &App, p: &P) -> R {
    let s = load(app);
    ok(json!(s
        .zones
        .iter()
        .filter(|(_, z)| p.get("type").is_none_or(|t| z.get("type") == Some(t)))
        .map(|(id, z)| with_id("zone", id, z))
        .collect::<Vec<_>>()))
}

pub(super) fn zones_post(app: &App, p: &P) -> R {
    let _l = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let zone = &p["zone"];
    sdn_id("zone", zone)?;
    let mut s = load(app);
    if s.zones.contains_key(zone) {
        return Err(internal(format!("zone '{zone}' already exists")));
    }
    let mut z = BTreeMap::new();
    for k in ["type", "ipam", "bridge", "mtu", "dns", "dnszone", "nodes"] {
        if let Some(v) = p.get(k) {
            z.insert(k.to_string(), v.clone());
        }
    }
    z.entry("ipam".into()).or_insert_with(|| "pve".into());
    s.zones.insert(zone.clone(), z);
    save(app, &s)?;
    ok(Value::Null)
}

pub(super) fn vnets_get(app: &App) -> R {
    let s = load(app);
    ok(json!(s
        .vnets
        .iter()
        .map(|(id, v)| with_id("vnet", id, v))
        .collect::<Vec<_>>()))
}

pub(super) fn vnet_get(app: &App, p: &P) -> R {
    let s = load(app);
    let vnet = &p["vnet"];
    let v = s
        .vnets
        .get(vnet)
        .ok_or_else(|| internal(format!("sdn '{vnet}' does not exist")))?;
    ok(with_id("vnet", vnet, v))
}

pub(super) fn vnets_post(app: &App, p: &P) -> R {
    let _l = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let vnet = &p["vnet"];
    sdn_id("vnet", vnet)?;
    let mut s = load(app);
    if s.vnets.contains_key(vnet) {
        return Err(internal(format!("vnet '{vnet}' already exists")));
    }
    if !s.zones.contains_key(&p["zone"]) {
        return Err(ApiError::param(
            "zone",
            format!("zone '{}' does not exist", p["zone"]),
        ));
    }
    let mut v = BTreeMap::new();
    v.insert("type".into(), "vnet".into());
    for k in ["zone", "tag", "alias", "vlanaware", "isolate-ports"] {
        if let Some(x) = p.get(k) {
            v.insert(k.to_string(), x.clone());
        }
    }
    s.vnets.insert(vnet.clone(), v);
    save(app, &s)?;
    ok(Value::Null)
}

pub(super) fn subnets_get(app: &App, p: &P) -> R {
    let s = load(app);
    let vnet = &p["vnet"];
    ok(json!(s
        .subnets
        .iter()
        .filter(|(_, sub)| sub.get("vnet") == Some(vnet))
        .map(|(id, sub)| {
            let mut v = with_id("subnet", id, sub);
            let cidr = sub.get("cidr").cloned().unwrap_or_default();
            if let Some((net, mask)) = cidr.split_once('/') {
                v["network"] = json!(net);
                v["mask"] = json!(mask);
            }
            v["type"] = json!("subnet");
            v
        })
        .collect::<Vec<_>>()))
}

fn parse_cidr(c: &str) -> Option<(IpAddr, u8)> {
    let (a, l) = c.split_once('/')?;
    let a: IpAddr = a.parse().ok()?;
    let l: u8 = l.parse().ok()?;
    (l <= if a.is_ipv4() { 32 } else { 128 }).then_some((a, l))
}

fn contains(cidr: &str, ip: IpAddr) -> bool {
    let Some((net, len)) = parse_cidr(cidr) else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let m = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(n) & m == u32::from(i) & m
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(n) & m == u128::from(i) & m
        }
        _ => false,
    }
}

pub(super) fn subnets_post(app: &App, p: &P) -> R {
    let _l = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let vnet = &p["vnet"];
    let mut s = load(app);
    let zone = s
        .vnets
        .get(vnet)
        .and_then(|v| v.get("zone").cloned())
        .ok_or_else(|| internal(format!("sdn '{vnet}' does not exist")))?;
    let cidr = &p["subnet"];
    let Some((addr, len)) = parse_cidr(cidr) else {
        return Err(ApiError::param(
            "subnet",
            format!("invalid format - value does not look like a valid subnet ({cidr})"),
        ));
    };
    let id = format!("{zone}-{addr}-{len}");
    if s.subnets.contains_key(&id) {
        return Err(internal(format!("{id} already exists")));
    }
    let mut sub = BTreeMap::new();
    sub.insert("vnet".into(), vnet.clone());
    sub.insert("zone".into(), zone);
    sub.insert("cidr".into(), format!("{addr}/{len}"));
    if let Some(g) = p.get("gateway") {
        if !g.parse::<IpAddr>().is_ok_and(|g| contains(cidr, g)) {
            return Err(ApiError::param(
                "gateway",
                format!("gateway {g} is not in subnet {cidr}"),
            ));
        }
        sub.insert("gateway".into(), g.clone());
    }
    s.subnets.insert(id, sub);
    save(app, &s)?;
    ok(Value::Null)
}

pub(super) fn ips_post(app: &App, p: &P) -> R {
    let _l = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = load(app);
    let (vnet, zone) = (&p["vnet"], &p["zone"]);
    if s.vnets.get(vnet).and_then(|v| v.get("zone")) != Some(zone) {
        return Err(internal(format!("vnet '{vnet}' is not in zone '{zone}'")));
    }
    let ip: IpAddr = p["ip"].parse().map_err(|_| {
        ApiError::param(
            "ip",
            "invalid format - value does not look like a valid IP address",
        )
    })?;
    let Some((sid, _)) = s
        .subnets
        .iter()
        .find(|(_, sub)| sub.get("vnet") == Some(vnet) && contains(&sub["cidr"], ip))
    else {
        return Err(internal(format!(
            "ip {ip} is not in a subnet of vnet {vnet}"
        )));
    };
    let sid = sid.clone();
    let key = ip.to_string();
    if s.ips.contains_key(&key) || s.subnets[&sid].get("gateway") == Some(&key) {
        return Err(internal(format!("IP '{key}' already exist")));
    }
    let mut e = BTreeMap::new();
    e.insert("zone".into(), zone.clone());
    e.insert("vnet".into(), vnet.clone());
    e.insert("subnet".into(), sid);
    if let Some(m) = p.get("mac") {
        e.insert("mac".into(), m.clone());
    }
    s.ips.insert(key, e);
    save(app, &s)?;
    ok(Value::Null)
}

pub(super) fn ips_delete(app: &App, p: &P) -> R {
    let _l = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = load(app);
    let ip = p["ip"]
        .parse::<IpAddr>()
        .map(|a| a.to_string())
        .unwrap_or_default();
    match s.ips.get(&ip) {
        Some(e) if e.get("vnet") == Some(&p["vnet"]) => {
            s.ips.remove(&ip);
            save(app, &s)?;
            ok(Value::Null)
        }
        _ => Err(internal(format!(
            "IP '{ip}' does not exist in vnet {}",
            p["vnet"]
        ))),
    }
}

pub(super) fn ipam_status(app: &App, p: &P) -> R {
    if p["ipam"] != "pve" {
        return Err(internal(format!("ipam '{}' does not exist", p["ipam"])));
    }
    let s = load(app);
    let mut out = vec![];
    for (ip, e) in &s.ips {
        let mut v = json!({"ip": ip});
        for (k, x) in e {
            v[k] = json!(x);
        }
        out.push(v);
    }
    for (sid, sub) in &s.subnets {
        if let Some(g) = sub.get("gateway") {
            out.push(json!({"ip": g, "gateway": 1, "subnet": sid,
                            "vnet": sub["vnet"], "zone": sub["zone"]}));
        }
    }
    ok(json!(out))
}
