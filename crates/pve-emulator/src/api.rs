//! The endpoint handlers. Each reads the guest configs anew, checks what
//! Proxmox checks synchronously, and leaves the slow work to a task.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use serde_json::{json, Value};

use crate::auth::{now, Auth, Identity};
use crate::error::ApiError;
use crate::faults::Faults;
use crate::propstr;
use crate::runner::{self, Runner, ID_OFFSET};
use crate::schema;
use crate::storage::{self, Storage};
use crate::store::{Conf, Kind, Section, Store};
use crate::tasks::Tasks;
use crate::template;

pub struct App {
    pub data_dir: PathBuf,
    pub nodes: Vec<String>,
    pub auth: Auth,
    pub store: Store,
    pub tasks: Arc<Tasks>,
    pub runner: Runner,
    pub faults: Faults,
    pub storages: Vec<Storage>,
    pub auth_fail_delay_ms: u64,
    pub fingerprint: String,
    /// Lowest VMID nextid returns.
    pub next_id_lower: u32,
}

pub struct Ctx {
    /// None only for the login call.
    pub identity: Option<Identity>,
    pub fail_task: Option<String>,
    /// The uploaded file of a multipart request: (name, bytes).
    pub file: Option<(String, Vec<u8>)>,
}

pub enum Data {
    Plain(Value),
    WithTotal(Value, usize),
}

type P = BTreeMap<String, String>;
type R = Result<Data, ApiError>;

fn ok(v: Value) -> R {
    Ok(Data::Plain(v))
}

fn internal(m: impl Into<String>) -> ApiError {
    ApiError::internal(m)
}

impl Ctx {
    fn who(&self) -> &Identity {
        self.identity.as_ref().expect("authenticated")
    }
    fn user(&self) -> String {
        self.who().name()
    }
    fn root_only(&self, what: &str) -> Result<(), ApiError> {
        if self.who().is_root_pam() {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "Permission check failed ({what})"
            )))
        }
    }
}

fn vmid(p: &P) -> u32 {
    p.get("vmid").and_then(|v| v.parse().ok()).unwrap_or(0)
}
fn flag(p: &P, k: &str) -> bool {
    p.get(k).map(String::as_str) == Some("1")
}

pub fn dispatch(app: &Arc<App>, ctx: &Ctx, method: &str, path: &str, p: &P) -> R {
    if let Some(n) = p.get("node") {
        if !app.nodes.contains(n) {
            return Err(ApiError::param(
                "node",
                format!("no such cluster node '{n}'"),
            ));
        }
    }
    match (method, path) {
        ("POST", "/access/ticket") => login(app, p),
        ("GET", "/version") => {
            ok(json!({"version": "9.1.3", "release": "9.1", "repoid": "pve-emulator"}))
        }
        ("GET", "/nodes") => ok(nodes(app)),
        ("GET", "/nodes/{node}/status") => ok(node_status()),
        ("GET", "/cluster/resources") => ok(resources(app, p.get("type").map(String::as_str))),
        ("GET", "/cluster/nextid") => nextid(app, p),
        ("GET", "/nodes/{node}/lxc") => ok(list_guests(app, &p["node"], Kind::Lxc)),
        ("POST", "/nodes/{node}/lxc") => lxc_create(app, ctx, p),
        ("DELETE", "/nodes/{node}/lxc/{vmid}") => lxc_delete(app, ctx, p),
        ("GET", "/nodes/{node}/lxc/{vmid}/config") => get_config(app, p, Kind::Lxc),
        ("PUT", "/nodes/{node}/lxc/{vmid}/config") => put_config(app, ctx, p, Kind::Lxc),
        ("GET", "/nodes/{node}/lxc/{vmid}/status/current") => lxc_current(app, p),
        ("POST", path) if path.starts_with("/nodes/{node}/lxc/{vmid}/status/") => {
            lxc_power(app, ctx, p, path.rsplit('/').next().unwrap_or(""))
        }
        ("GET", "/nodes/{node}/lxc/{vmid}/snapshot") => snapshot_list(app, p),
        ("POST", "/nodes/{node}/lxc/{vmid}/snapshot") => snapshot_create(app, ctx, p),
        ("DELETE", "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}") => snapshot_delete(app, ctx, p),
        ("POST", "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}/rollback") => {
            snapshot_rollback(app, ctx, p)
        }
        ("POST", "/nodes/{node}/lxc/{vmid}/clone") => lxc_clone(app, ctx, p),
        ("GET", "/nodes/{node}/lxc/{vmid}/interfaces") => lxc_interfaces(app, p),
        ("GET", "/nodes/{node}/qemu") => ok(list_guests(app, &p["node"], Kind::Qemu)),
        ("POST", "/nodes/{node}/qemu") => qemu_create(app, ctx, p),
        ("DELETE", "/nodes/{node}/qemu/{vmid}") => qemu_delete(app, ctx, p),
        ("GET", "/nodes/{node}/qemu/{vmid}/config") => get_config(app, p, Kind::Qemu),
        ("PUT", "/nodes/{node}/qemu/{vmid}/config") => put_config(app, ctx, p, Kind::Qemu),
        ("GET", "/nodes/{node}/qemu/{vmid}/status/current") => qemu_current(app, p),
        ("POST", path) if path.starts_with("/nodes/{node}/qemu/{vmid}/status/") => {
            qemu_power(app, ctx, p, path.rsplit('/').next().unwrap_or(""))
        }
        ("GET", "/nodes/{node}/tasks") => ok(json!(app.tasks.list(&p["node"]))),
        ("GET", "/nodes/{node}/tasks/{upid}/status") => app
            .tasks
            .status(task_upid(p)?)
            .map(Data::Plain)
            .ok_or_else(|| ApiError::param("upid", "no such task")),
        ("GET", "/nodes/{node}/tasks/{upid}/log") => {
            let start = p.get("start").and_then(|v| v.parse().ok()).unwrap_or(0);
            let limit = p.get("limit").and_then(|v| v.parse().ok()).unwrap_or(50);
            let (lines, total) = app
                .tasks
                .log(task_upid(p)?, start, limit)
                .ok_or_else(|| ApiError::param("upid", "no such task"))?;
            Ok(Data::WithTotal(json!(lines), total))
        }
        ("DELETE", "/nodes/{node}/tasks/{upid}") => {
            if !app.tasks.exists(task_upid(p)?) {
                return Err(ApiError::param("upid", "no such task"));
            }
            ok(Value::Null)
        }
        ("GET", "/nodes/{node}/storage") => ok(storage_list(app, p)),
        ("GET", "/nodes/{node}/storage/{storage}/content") => storage_content(app, p),
        ("GET", "/nodes/{node}/storage/{storage}/content/{volume}") => volume_info(app, p),
        ("DELETE", "/nodes/{node}/storage/{storage}/content/{volume}") => {
            volume_delete(app, ctx, p)
        }
        ("POST", "/nodes/{node}/storage/{storage}/upload") => upload(app, ctx, p),
        _ => Err(ApiError::new(
            501,
            format!("Method '{method} {path}' not implemented"),
        )),
    }
}

// ---- auth, cluster, nodes ----

fn login(app: &App, p: &P) -> R {
    let user = p.get("username").cloned().unwrap_or_default();
    match app
        .auth
        .login(&user, p.get("password").map(String::as_str).unwrap_or(""))
    {
        Some(u) => ok(json!({
            "username": u,
            "ticket": app.auth.make_ticket(&u),
            "CSRFPreventionToken": app.auth.make_csrf(&u),
            "cap": {"vms": {}, "storage": {}, "nodes": {}, "access": {}, "dc": {}, "sdn": {}, "mapping": {}},
        })),
        None => {
            std::thread::sleep(std::time::Duration::from_millis(app.auth_fail_delay_ms));
            Err(ApiError::new(401, "authentication failure"))
        }
    }
}

fn meminfo() -> (u64, u64, u64) {
    let t = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let get = |k: &str| {
        t.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let total = get("MemTotal:");
    let avail = get("MemAvailable:");
    (total, total - avail, get("MemFree:"))
}

fn host_uptime() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split('.').next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn ncpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn loadavg() -> Vec<String> {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .map(str::to_string)
        .collect()
}

fn nodes(app: &App) -> Value {
    let (total, used, _) = meminfo();
    let load: f64 = loadavg()
        .first()
        .and_then(|l| l.parse().ok())
        .unwrap_or(0.0);
    json!(app
        .nodes
        .iter()
        .map(|n| json!({
            "node": n, "status": "online", "type": "node", "id": format!("node/{n}"),
            "cpu": (load / ncpus() as f64).min(1.0), "maxcpu": ncpus(), "mem": used, "maxmem": total,
            "uptime": host_uptime(), "level": "", "ssl_fingerprint": app.fingerprint,
        }))
        .collect::<Vec<_>>())
}

fn node_status() -> Value {
    let (total, used, free) = meminfo();
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':').map(|x| x.1.trim().to_string()))
        .unwrap_or_default();
    let root = nix::sys::statvfs::statvfs("/").ok();
    let (rt, ra) = root
        .map(|s| {
            (
                s.blocks() * s.fragment_size(),
                s.blocks_available() * s.fragment_size(),
            )
        })
        .unwrap_or((0, 0));
    let kernel = nix::sys::utsname::uname().ok();
    json!({
        "cpu": 0.0, "uptime": host_uptime(), "loadavg": loadavg(),
        "cpuinfo": {"cores": ncpus(), "cpus": ncpus(), "sockets": 1, "model": model},
        "memory": {"total": total, "used": used, "free": free, "available": total - used},
        "rootfs": {"total": rt, "avail": ra, "used": rt - ra, "free": ra},
        "pveversion": "pve-manager/9.1.3/pve-emulator",
        "current-kernel": {
            "sysname": kernel.as_ref().map(|k| k.sysname().to_string_lossy().to_string()).unwrap_or_default(),
            "release": kernel.as_ref().map(|k| k.release().to_string_lossy().to_string()).unwrap_or_default(),
            "version": kernel.as_ref().map(|k| k.version().to_string_lossy().to_string()).unwrap_or_default(),
            "machine": kernel.as_ref().map(|k| k.machine().to_string_lossy().to_string()).unwrap_or_default(),
        },
        "boot-info": {"mode": "legacy"},
    })
}

fn resources(app: &App, ty: Option<&str>) -> Value {
    let mut out = Vec::new();
    if ty.is_none_or(|t| t == "node") {
        for n in nodes(app).as_array().into_iter().flatten() {
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

fn nextid(app: &App, p: &P) -> R {
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

// ---- guests: shared helpers ----

/// The `{upid}` of a task path, parsed (it names files) and of the path's node.
fn task_upid(p: &P) -> Result<&str, ApiError> {
    let upid = p.get("upid").map(String::as_str).unwrap_or("");
    match crate::tasks::Upid::parse(upid) {
        Some(u) if u.node == p["node"] => Ok(upid),
        _ => Err(ApiError::param("upid", "no such task")),
    }
}

fn read(app: &App, p: &P, kind: Kind) -> Result<(Conf, String), ApiError> {
    app.store.read(&p["node"], kind, vmid(p))
}

fn check_lock(conf: &Section, skiplock: bool) -> Result<(), ApiError> {
    match conf.get("lock") {
        Some(l) if !skiplock => Err(internal(format!("CT is locked ({l})"))),
        _ => Ok(()),
    }
}

fn lock_label(kind: Kind) -> &'static str {
    kind.label()
}

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

fn get_config(app: &App, p: &P, kind: Kind) -> R {
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

/// Keys that only root@pam may set (pve-container's check_ct_modify_config_perm).
fn check_root_only(ctx: &Ctx, p: &P) -> Result<(), ApiError> {
    for (k, v) in p {
        let base = k.trim_end_matches(|c: char| c.is_ascii_digit());
        match base {
            "features" => {
                let f = propstr::parse_lxc("lxc-features", v).unwrap_or_default();
                if f.keys().any(|k| k != "nesting") {
                    ctx.root_only(
                        "changing feature flags (except nesting) is only allowed for root@pam",
                    )?;
                }
            }
            "mp" => {
                let m = propstr::parse_lxc("lxc-mp", v).unwrap_or_default();
                if m.get("volume").is_some_and(|v| v.starts_with('/')) {
                    ctx.root_only(&format!(
                        "only root can set '{k}' config for non-volume mount"
                    ))?;
                }
            }
            "dev" => ctx.root_only(&format!("only root can set '{k}' config"))?,
            "hookscript" => ctx.root_only("only root can set 'hookscript' config")?,
            "skiplock" if v == "1" => ctx.root_only("Only root may use this option.")?,
            _ => {}
        }
    }
    Ok(())
}

/// Parameters that are request options, not config keys.
const NOT_CONFIG: &[&str] = &[
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

fn put_config(app: &App, ctx: &Ctx, p: &P, kind: Kind) -> R {
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
    let deletes: Vec<String> = p
        .get("delete")
        .map(|d| {
            d.split([',', ';', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
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
        } else {
            v.clone()
        };
        conf.main.keys.insert(k.clone(), v);
    }
    app.store.write(&p["node"], kind, id, &conf)?;
    ok(Value::Null)
}

/// A Proxmox-like random MAC (BC:24:11 prefix) when net[n] has none.
fn with_hwaddr(net: &str) -> String {
    if net.contains("hwaddr=") {
        return net.to_string();
    }
    let mut b = [0u8; 3];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    format!(
        "{net},hwaddr=BC:24:11:{:02X}:{:02X}:{:02X}",
        b[0], b[1], b[2]
    )
}

fn list_guests(app: &App, node: &str, kind: Kind) -> Value {
    json!(app
        .store
        .list()
        .into_iter()
        .filter(|(n, k, _)| n == node && *k == kind)
        .filter_map(|(n, k, id)| guest_summary(app, &n, k, id).ok())
        .collect::<Vec<_>>())
}

fn guest_summary(app: &App, node: &str, kind: Kind, id: u32) -> Result<Value, ApiError> {
    let (conf, _) = app.store.read(node, kind, id)?;
    Ok(match kind {
        Kind::Lxc => lxc_status_json(app, id, &conf.main),
        Kind::Qemu => qemu_status_json(app, id, &conf.main),
    })
}

fn storage(app: &App, id: &str) -> Result<Storage, ApiError> {
    app.storages
        .iter()
        .find(|s| s.id == id)
        .cloned()
        .ok_or_else(|| internal(format!("storage '{id}' does not exist")))
}

/// (storage, volume name) of the CT's rootfs.
fn rootfs_volume(app: &App, conf: &Section) -> anyhow::Result<(Storage, String)> {
    let r = conf.get("rootfs").context("CT has no rootfs")?;
    let m = propstr::parse_lxc("lxc-rootfs", r).map_err(|e| anyhow!("rootfs: {e}"))?;
    let vol = m.get("volume").context("rootfs without volume")?;
    let (sid, name) =
        storage::split_volid(vol).with_context(|| format!("unable to parse volume ID '{vol}'"))?;
    let s = app
        .storages
        .iter()
        .find(|s| s.id == sid)
        .cloned()
        .with_context(|| format!("storage '{sid}' does not exist"))?;
    Ok((s, name.to_string()))
}

fn volumes_of(conf: &Section) -> Vec<String> {
    conf.keys
        .iter()
        .filter(|(k, _)| *k == "rootfs" || k.starts_with("mp") || k.starts_with("unused"))
        .filter_map(|(_, v)| {
            propstr::parse(v, Some("volume"))
                .ok()?
                .get("volume")
                .cloned()
        })
        .filter(|v| storage::split_volid(v).is_some())
        .collect()
}

// ---- LXC ----

fn parse_size(v: &str) -> Option<f64> {
    v.parse::<f64>().ok().filter(|s| *s >= 0.0)
}

fn lxc_create(app: &Arc<App>, ctx: &Ctx, p: &P) -> R {
    check_root_only(ctx, p)?;
    let node = p["node"].clone();
    let id = vmid(p);
    let default_storage = p.get("storage").cloned().unwrap_or_else(|| "local".into());
    // rootfs: STORAGE:SIZE_GiB, a bare size, or nothing (4 GiB).
    let rootfs_arg = p
        .get("rootfs")
        .cloned()
        .unwrap_or_else(|| format!("{default_storage}:4"));
    let mut rootfs =
        propstr::parse_lxc("lxc-rootfs", &rootfs_arg).map_err(|e| ApiError::param("rootfs", e))?;
    let vol = rootfs.remove("volume").unwrap_or_default();
    let (sid, size) = match vol.split_once(':') {
        Some((s, n)) => (s.to_string(), n.to_string()),
        None => (default_storage.clone(), vol.clone()),
    };
    let size = parse_size(&size).ok_or_else(|| {
        ApiError::param(
            "rootfs",
            format!(
                "only new volumes (STORAGE:SIZE_GiB) are supported by the emulator, got '{vol}'"
            ),
        )
    })?;
    let st = storage(app, &sid)?;
    if !st.supports("rootdir") {
        return Err(internal(format!(
            "storage '{sid}' does not support container directories"
        )));
    }
    let ost = &p["ostemplate"];
    let (tsid, tname) = storage::split_volid(ost).ok_or_else(|| {
        ApiError::param("ostemplate", format!("unable to parse volume ID '{ost}'"))
    })?;
    let tname = tname
        .strip_prefix("vztmpl/")
        .filter(|n| storage::is_template_name(n))
        .ok_or_else(|| {
            ApiError::param(
                "ostemplate",
                format!("'{ost}' is not a vztmpl volume (STORAGE:vztmpl/NAME.tar[.gz|.xz|.zst])"),
            )
        })?;
    let tpath = storage(app, tsid)?
        .template_dir()
        .map(|d| d.join(tname))
        .filter(|p| p.exists())
        .ok_or_else(|| internal(format!("volume '{ost}' does not exist")))?;
    for (k, v) in p {
        if k.starts_with("mp")
            && storage::split_volid(v.split(',').next().unwrap_or(""))
                .is_some_and(|(_, n)| parse_size(n).is_some())
        {
            return Err(ApiError::param(
                k,
                "allocating mount point volumes is not supported by the emulator",
            ));
        }
    }

    let mut main = Section::default();
    main.keys.insert("arch".into(), "amd64".into());
    main.keys.insert("memory".into(), "512".into());
    main.keys.insert("swap".into(), "512".into());
    main.keys.insert("ostype".into(), "unmanaged".into());
    main.keys.insert("unprivileged".into(), "1".into());
    for (k, v) in p {
        if NOT_CONFIG.contains(&k.as_str()) || k == "rootfs" {
            continue;
        }
        let v = if k.starts_with("net") {
            with_hwaddr(v)
        } else {
            v.clone()
        };
        main.keys.insert(k.clone(), v);
    }
    if let Some(d) = p.get("description") {
        main.description = Some(d.clone());
    }
    main.keys.insert("lock".into(), "create".into());
    let conf = Conf {
        main,
        snapshots: vec![],
    };
    if flag(p, "force") {
        if let Some((n, k)) = app.store.locate(id) {
            if n != node || k != Kind::Lxc {
                return Err(internal(format!(
                    "{} {id} already exists on node '{n}'",
                    k.label()
                )));
            }
            return Err(internal(
                "forced overwrite of an existing CT is not supported by the emulator",
            ));
        }
    }
    app.store.create_new(&node, Kind::Lxc, id, &conf)?;

    let app2 = app.clone();
    let start = flag(p, "start");
    let has_password = p.contains_key("password");
    let opts: Vec<(String, String)> = rootfs.into_iter().collect();
    let upid = app
        .tasks
        .spawn(
            &p["node"],
            "vzcreate",
            &id.to_string(),
            &ctx.user(),
            ctx.fail_task.clone(),
            move |task| {
                let mut allocated: Option<String> = None;
                let res = (|| -> anyhow::Result<()> {
                    task.injected()?;
                    let name = st.alloc_subvol(id, size)?;
                    allocated = Some(name.clone());
                    let path = st.path(&name)?;
                    task.log(format!("extracting archive '{}'", tpath.display()));
                    let scratch = app2.data_dir.join("tmp").join(format!("create-{id}"));
                    let _ = std::fs::remove_dir_all(&scratch);
                    std::fs::create_dir_all(&scratch)?;
                    let oci = template::extract(&tpath, &path, &scratch);
                    let _ = std::fs::remove_dir_all(&scratch);
                    let oci = oci?;
                    let _l = app2.store.lock(id).map_err(|e| anyhow!(e.message))?;
                    let (mut conf, _) = app2
                        .store
                        .read(&node, Kind::Lxc, id)
                        .map_err(|e| anyhow!(e.message))?;
                    if let Some(o) = oci {
                        task.log("Detected OCI archive");
                        apply_oci(&mut conf.main, &o, &path);
                    }
                    if conf.main.get("unprivileged") == Some("1") {
                        task.log("shifting file ownership for the unprivileged container");
                        template::shift_ids(&path, ID_OFFSET)?;
                    }
                    if has_password {
                        task.log("note: the emulator does not set the root password inside the CT");
                    }
                    let mut r = format!("{}:{name}", st.id);
                    for (k, v) in &opts {
                        if k != "size" {
                            r.push_str(&format!(",{k}={v}"));
                        }
                    }
                    if size > 0.0 {
                        r.push_str(&format!(",size={}G", size));
                    }
                    conf.main.keys.insert("rootfs".into(), r);
                    conf.main.keys.remove("lock");
                    app2.store
                        .write(&node, Kind::Lxc, id, &conf)
                        .map_err(|e| anyhow!(e.message))?;
                    task.log(format!(
                        "Total bytes written: {}",
                        st.usage(&name).map(|u| u.1).unwrap_or(0)
                    ));
                    Ok(())
                })();
                if let Err(e) = res {
                    if let Some(n) = allocated {
                        let _ = st.free(&n);
                    }
                    app2.store.remove(&node, Kind::Lxc, id);
                    return Err(e);
                }
                if start {
                    let (conf, _) = app2
                        .store
                        .read(&node, Kind::Lxc, id)
                        .map_err(|e| anyhow!(e.message))?;
                    let (s, n) = rootfs_volume(&app2, &conf.main)?;
                    app2.runner.start(id, &conf.main, &s.path(&n)?)?;
                }
                Ok(())
            },
        )
        .map_err(|e| internal(format!("starting task: {e}")))?;
    ok(json!(upid))
}

/// Maps an OCI image config onto the CT config, as Create.pm does.
fn apply_oci(conf: &mut Section, o: &template::OciConfig, rootfs: &std::path::Path) {
    if let Some(e) = &o.entrypoint {
        conf.keys
            .entry("entrypoint".into())
            .or_insert_with(|| e.clone());
    }
    if !o.env.is_empty() && !conf.keys.contains_key("env") {
        let env: Vec<&str> = o
            .env
            .iter()
            .map(String::as_str)
            .filter(|e| !e.contains(['\n', '\0']))
            .collect();
        conf.keys.insert("env".into(), env.join("\0"));
    }
    conf.keys
        .entry("cmode".into())
        .or_insert_with(|| "console".into());
    let nets: Vec<String> = conf
        .keys
        .keys()
        .filter(|k| k.starts_with("net"))
        .cloned()
        .collect();
    for n in nets {
        let v = conf.keys[&n].clone();
        if !v.contains("host-managed=") {
            conf.keys.insert(n, format!("{v},host-managed=1"));
        }
    }
    let clean = |s: &str| !s.is_empty() && !s.contains(['\n', '\r', '\0']);
    if let Some(u) = o.user.as_deref().filter(|u| clean(u)) {
        let (user, group) = match u.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (u, None),
        };
        let (uid, mut gid) = match user.parse::<u32>() {
            Ok(n) => (
                Some(n),
                template::lookup_id(rootfs, "passwd", user)
                    .map(|x| x.1)
                    .or(Some(n)),
            ),
            Err(_) => template::lookup_id(rootfs, "passwd", user)
                .map(|(a, b)| (Some(a), Some(b)))
                .unwrap_or((None, None)),
        };
        if let Some(g) = group {
            gid = g
                .parse()
                .ok()
                .or_else(|| template::lookup_id(rootfs, "group", g).map(|x| x.0));
        }
        if let Some(uid) = uid {
            conf.lxc.push(("lxc.init.uid".into(), uid.to_string()));
        }
        if let Some(gid) = gid {
            conf.lxc.push(("lxc.init.gid".into(), gid.to_string()));
        }
    }
    if let Some(w) = o.workdir.as_deref().filter(|w| clean(w)) {
        conf.lxc.push(("lxc.init.cwd".into(), w.to_string()));
    }
    if let Some(s) = o.stop_signal.as_deref().filter(|s| clean(s)) {
        conf.lxc.push(("lxc.signal.halt".into(), s.to_string()));
    }
}

fn lxc_status_json(app: &App, id: u32, conf: &Section) -> Value {
    let live = app.runner.state(id);
    let maxmem = conf
        .get("memory")
        .and_then(|m| m.parse::<u64>().ok())
        .unwrap_or(512)
        << 20;
    let maxswap = conf
        .get("swap")
        .and_then(|m| m.parse::<u64>().ok())
        .unwrap_or(512)
        << 20;
    let cpus: f64 = conf
        .get("cores")
        .and_then(|c| c.parse().ok())
        .unwrap_or(ncpus() as f64);
    let (maxdisk, disk) = rootfs_volume(app, conf)
        .ok()
        .and_then(|(s, n)| s.usage(&n).ok())
        .unwrap_or((0, 0));
    let mut v = json!({
        "vmid": id, "type": "lxc", "status": if live.is_some() { "running" } else { "stopped" },
        "name": conf.get("hostname").map(str::to_string).unwrap_or(format!("CT{id}")),
        "maxmem": maxmem, "maxswap": maxswap, "cpus": cpus, "maxdisk": maxdisk, "disk": disk,
        "mem": 0, "cpu": 0, "uptime": 0, "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0,
        "ha": {"managed": 0}, "template": 0,
    });
    if let Some(l) = conf.get("lock") {
        v["lock"] = json!(l);
    }
    if let Some(t) = conf.get("tags") {
        v["tags"] = json!(t);
    }
    if let Some(live) = live {
        let up = runner::uptime_of(live.pid);
        v["pid"] = json!(live.pid);
        v["mem"] = json!(runner::mem_usage(live.pid));
        v["uptime"] = json!(up);
        let secs = runner::cpu_seconds(live.pid);
        v["cpu"] = json!(if up > 0 {
            (secs / up as f64 / cpus.max(1.0)).min(1.0)
        } else {
            0.0
        });
    }
    v
}

fn lxc_current(app: &App, p: &P) -> R {
    let (conf, _) = read(app, p, Kind::Lxc)?;
    ok(lxc_status_json(app, vmid(p), &conf.main))
}

fn lxc_power(app: &Arc<App>, ctx: &Ctx, p: &P, action: &str) -> R {
    check_root_only(ctx, p)?;
    let id = vmid(p);
    let node = p["node"].clone();
    let (conf, _) = read(app, p, Kind::Lxc)?;
    let running = app.runner.state(id).is_some();
    if action != "stop" || !flag(p, "skiplock") {
        check_lock(&conf.main, flag(p, "skiplock"))?;
    }
    match (action, running) {
        ("start", true) => return Err(internal(format!("CT {id} already running"))),
        ("stop" | "shutdown" | "suspend" | "resume" | "reboot", false) => {
            return Err(internal(format!("CT {id} not running")))
        }
        _ => {}
    }
    let kind = match action {
        "start" => "vzstart",
        "stop" => "vzstop",
        "shutdown" => "vzshutdown",
        "suspend" => "vzsuspend",
        "resume" => "vzresume",
        _ => "vzreboot",
    };
    let timeout: u64 = p.get("timeout").and_then(|t| t.parse().ok()).unwrap_or(60);
    let force = flag(p, "forceStop");
    let action = action.to_string();
    let app2 = app.clone();
    let upid = app
        .tasks
        .spawn(
            &p["node"],
            kind,
            &id.to_string(),
            &ctx.user(),
            ctx.fail_task.clone(),
            move |task| {
                task.injected()?;
                let r = &app2.runner;
                let start = |task: &crate::tasks::Task| -> anyhow::Result<()> {
                    let (conf, _) = app2
                        .store
                        .read(&node, Kind::Lxc, id)
                        .map_err(|e| anyhow!(e.message))?;
                    let (s, n) = rootfs_volume(&app2, &conf.main)?;
                    r.start(id, &conf.main, &s.path(&n)?)?;
                    task.log(format!("CT {id} started"));
                    Ok(())
                };
                match action.as_str() {
                    "start" => start(task)?,
                    "stop" => r.stop(id)?,
                    "shutdown" => {
                        if !r.shutdown(id, timeout) {
                            if force {
                                task.log("shutdown timed out, stopping");
                                r.stop(id)?;
                            } else {
                                anyhow::bail!("container did not stop");
                            }
                        }
                    }
                    "suspend" => r.freeze(id, true)?,
                    "resume" => r.freeze(id, false)?,
                    _ => {
                        if !r.shutdown(id, timeout) {
                            r.stop(id)?;
                        }
                        start(task)?;
                    }
                }
                Ok(())
            },
        )
        .map_err(|e| internal(format!("starting task: {e}")))?;
    ok(json!(upid))
}

/// The VMID a volume belongs to: `subvol-<vmid>-disk-<n>` (or vm-/base-).
fn volume_owner(name: &str) -> Option<u32> {
    let rest = ["subvol-", "vm-", "base-"]
        .iter()
        .find_map(|p| name.strip_prefix(p))?;
    rest.split_once('-')?.0.parse().ok()
}

/// Drops the config's `lock` (best effort: the guest may be gone).
fn clear_lock(app: &App, node: &str, id: u32) {
    if let Ok(_l) = app.store.lock(id) {
        if let Ok((mut conf, _)) = app.store.read(node, Kind::Lxc, id) {
            if conf.main.keys.remove("lock").is_some() {
                let _ = app.store.write(node, Kind::Lxc, id, &conf);
            }
        }
    }
}

fn lxc_delete(app: &Arc<App>, ctx: &Ctx, p: &P) -> R {
    let id = vmid(p);
    let node = p["node"].clone();
    // Checked and locked under the config lock: a second DELETE sees
    // "CT is locked (destroyed)" while the first one's task runs.
    {
        let _l = app.store.lock(id)?;
        let (mut conf, _) = read(app, p, Kind::Lxc)?;
        check_lock(&conf.main, false)?;
        if conf.main.get("protection") == Some("1") {
            return Err(internal(format!(
                "can't remove CT {id} - protection mode enabled"
            )));
        }
        if !flag(p, "force") && app.runner.state(id).is_some() {
            return Err(internal(format!(
                "unable to destroy CT {id} - container is running"
            )));
        }
        conf.main.keys.insert("lock".into(), "destroyed".into());
        app.store.write(&node, Kind::Lxc, id, &conf)?;
    }
    let force = flag(p, "force");
    let app2 = app.clone();
    let node2 = node.clone();
    let spawned = app.tasks.spawn(
        &p["node"],
        "vzdestroy",
        &id.to_string(),
        &ctx.user(),
        ctx.fail_task.clone(),
        move |task| {
            // Nothing is removed yet on these errors: give the CT back.
            let before = (|| -> anyhow::Result<_> {
                task.injected()?;
                let l = app2.store.lock(id).map_err(|e| anyhow!(e.message))?;
                let (conf, _) = app2
                    .store
                    .read(&node, Kind::Lxc, id)
                    .map_err(|e| anyhow!(e.message))?;
                if app2.runner.state(id).is_some() {
                    if !force {
                        anyhow::bail!("unable to destroy CT {id} - container is running");
                    }
                    app2.runner.stop(id)?;
                }
                Ok((l, conf))
            })();
            let (_l, conf) = match before {
                Ok(x) => x,
                Err(e) => {
                    clear_lock(&app2, &node, id);
                    return Err(e);
                }
            };
            for vol in volumes_of(&conf.main) {
                let (sid, name) = storage::split_volid(&vol).unwrap_or_default();
                // As Proxmox: an `unused[n]`/`mp[n]` may name another guest's
                // volume; only free our own.
                if volume_owner(name) != Some(id) {
                    task.log(format!(
                        "CT {id} isn't the owner of volume '{vol}', not removing it"
                    ));
                    continue;
                }
                if let Some(s) = app2.storages.iter().find(|s| s.id == sid) {
                    for (snap, _) in &conf.snapshots {
                        let _ = s.delete_snapshot(name, snap);
                    }
                    s.free(name)
                        .with_context(|| format!("removing volume '{vol}'"))?;
                    task.log(format!("removed volume '{vol}'"));
                }
            }
            app2.runner.forget(id);
            app2.store.remove(&node, Kind::Lxc, id);
            Ok(())
        },
    );
    match spawned {
        Ok(upid) => ok(json!(upid)),
        Err(e) => {
            clear_lock(app, &node2, id);
            Err(internal(format!("starting task: {e}")))
        }
    }
}

fn lxc_interfaces(app: &App, p: &P) -> R {
    let id = vmid(p);
    read(app, p, Kind::Lxc)?;
    let live = app
        .runner
        .state(id)
        .ok_or_else(|| internal(format!("CT {id} not running")))?;
    runner::interfaces(live.pid)
        .map(Data::Plain)
        .map_err(ApiError::from)
}

// ---- snapshots ----

fn snapshot_list(app: &App, p: &P) -> R {
    let (conf, _) = read(app, p, Kind::Lxc)?;
    let mut out: Vec<Value> = conf
        .snapshots
        .iter()
        .map(|(n, s)| {
            let mut v =
                json!({"name": n, "description": s.description.clone().unwrap_or_default()});
            if let Some(t) = s.get("snaptime").and_then(|t| t.parse::<i64>().ok()) {
                v["snaptime"] = json!(t);
            }
            if let Some(pa) = s.get("parent") {
                v["parent"] = json!(pa);
            }
            v
        })
        .collect();
    let mut cur = json!({"name": "current", "description": "You are here!", "running": app.runner.state(vmid(p)).is_some() as i32});
    if let Some(pa) = conf.main.get("parent") {
        cur["parent"] = json!(pa);
    }
    out.push(cur);
    ok(json!(out))
}

fn snapshot_task(app: &Arc<App>, ctx: &Ctx, p: &P, kind: &str, lock: &str, work: SnapWork) -> R {
    let id = vmid(p);
    let node = p["node"].clone();
    let snap = p["snapname"].clone();
    {
        let _l = app.store.lock(id)?;
        let (mut conf, _) = read(app, p, Kind::Lxc)?;
        check_lock(&conf.main, false)?;
        let exists = conf.snapshots.iter().any(|(n, _)| *n == snap);
        match work {
            SnapWork::Create if exists => {
                return Err(internal(format!("snapshot name '{snap}' already used")))
            }
            SnapWork::Delete | SnapWork::Rollback if !exists => {
                return Err(internal(format!("snapshot '{snap}' does not exist")))
            }
            _ => {}
        }
        if snap == "current" {
            return Err(ApiError::param(
                "snapname",
                "invalid snapshot name 'current'",
            ));
        }
        conf.main.keys.insert("lock".into(), lock.into());
        app.store.write(&node, Kind::Lxc, id, &conf)?;
    }
    let app2 = app.clone();
    let description = p.get("description").cloned();
    let upid = app
        .tasks
        .spawn(
            &p["node"],
            kind,
            &id.to_string(),
            &ctx.user(),
            ctx.fail_task.clone(),
            move |task| {
                let res = (|| -> anyhow::Result<()> {
                    task.injected()?;
                    let (conf, _) = app2
                        .store
                        .read(&node, Kind::Lxc, id)
                        .map_err(|e| anyhow!(e.message))?;
                    let (s, name) = rootfs_volume(&app2, &conf.main)?;
                    match work {
                        SnapWork::Create => s.snapshot(&name, &snap)?,
                        SnapWork::Delete => s.delete_snapshot(&name, &snap)?,
                        SnapWork::Rollback => {
                            if app2.runner.state(id).is_some() {
                                app2.runner.stop(id)?;
                            }
                            s.rollback(&name, &snap)?
                        }
                    }
                    Ok(())
                })();
                let _l = app2.store.lock(id).map_err(|e| anyhow!(e.message))?;
                let (mut conf, _) = app2
                    .store
                    .read(&node, Kind::Lxc, id)
                    .map_err(|e| anyhow!(e.message))?;
                conf.main.keys.remove("lock");
                if res.is_ok() {
                    match work {
                        SnapWork::Create => {
                            let mut s = conf.main.clone();
                            s.keys.insert("snaptime".into(), now().to_string());
                            s.description = description.clone();
                            conf.main.keys.insert("parent".into(), snap.clone());
                            conf.snapshots.push((snap.clone(), s));
                        }
                        SnapWork::Delete => {
                            let parent = conf
                                .snapshots
                                .iter()
                                .find(|(n, _)| *n == snap)
                                .and_then(|(_, s)| s.get("parent").map(str::to_string));
                            conf.snapshots.retain(|(n, _)| *n != snap);
                            for (_, s) in conf
                                .snapshots
                                .iter_mut()
                                .map(|(n, s)| (n.clone(), s))
                                .chain(std::iter::once((String::new(), &mut conf.main)))
                            {
                                if s.get("parent") == Some(snap.as_str()) {
                                    match &parent {
                                        Some(pa) => s.keys.insert("parent".into(), pa.clone()),
                                        None => s.keys.remove("parent"),
                                    };
                                }
                            }
                        }
                        SnapWork::Rollback => {
                            if let Some((_, s)) = conf.snapshots.iter().find(|(n, _)| *n == snap) {
                                let mut main = s.clone();
                                main.keys.remove("snaptime");
                                main.description = conf.main.description.clone();
                                main.keys.insert("parent".into(), snap.clone());
                                conf.main = main;
                            }
                        }
                    }
                }
                app2.store
                    .write(&node, Kind::Lxc, id, &conf)
                    .map_err(|e| anyhow!(e.message))?;
                res
            },
        )
        .map_err(|e| internal(format!("starting task: {e}")))?;
    ok(json!(upid))
}

#[derive(Clone, Copy)]
enum SnapWork {
    Create,
    Delete,
    Rollback,
}

fn snapshot_create(app: &Arc<App>, ctx: &Ctx, p: &P) -> R {
    snapshot_task(app, ctx, p, "vzsnapshot", "snapshot", SnapWork::Create)
}
fn snapshot_delete(app: &Arc<App>, ctx: &Ctx, p: &P) -> R {
    snapshot_task(
        app,
        ctx,
        p,
        "vzdelsnapshot",
        "snapshot-delete",
        SnapWork::Delete,
    )
}
fn snapshot_rollback(app: &Arc<App>, ctx: &Ctx, p: &P) -> R {
    snapshot_task(app, ctx, p, "vzrollback", "rollback", SnapWork::Rollback)
}

// ---- clone ----

fn lxc_clone(app: &Arc<App>, ctx: &Ctx, p: &P) -> R {
    let id = vmid(p);
    let node = p["node"].clone();
    let target = p.get("target").cloned().unwrap_or_else(|| node.clone());
    if !app.nodes.contains(&target) {
        return Err(ApiError::param(
            "target",
            format!("no such cluster node '{target}'"),
        ));
    }
    let newid: u32 = p["newid"].parse().unwrap_or(0);
    let (conf, _) = read(app, p, Kind::Lxc)?;
    check_lock(&conf.main, false)?;
    let (src_store, src_name) = rootfs_volume(app, &conf.main).map_err(ApiError::from)?;
    let dst_store = match p.get("storage") {
        Some(s) => storage(app, s)?,
        None => src_store.clone(),
    };
    let mut main = conf.main.clone();
    main.keys.remove("parent");
    main.keys.insert("lock".into(), "create".into());
    if let Some(h) = p.get("hostname") {
        main.keys.insert("hostname".into(), h.clone());
    }
    if let Some(d) = p.get("description") {
        main.description = Some(d.clone());
    }
    // New MACs, as a clone gets.
    let nets: Vec<String> = main
        .keys
        .keys()
        .filter(|k| k.starts_with("net"))
        .cloned()
        .collect();
    for n in nets {
        let v: Vec<&str> = main.keys[&n]
            .split(',')
            .filter(|kv| !kv.starts_with("hwaddr="))
            .collect();
        let v = with_hwaddr(&v.join(","));
        main.keys.insert(n, v);
    }
    let new_conf = Conf {
        main,
        snapshots: vec![],
    };
    app.store.create_new(&target, Kind::Lxc, newid, &new_conf)?;
    let app2 = app.clone();
    let snapname = p.get("snapname").cloned();
    let upid = app
        .tasks
        .spawn(
            &p["node"],
            "vzclone",
            &id.to_string(),
            &ctx.user(),
            ctx.fail_task.clone(),
            move |task| {
                let mut allocated = None;
                let res = (|| -> anyhow::Result<()> {
                    task.injected()?;
                    if snapname.is_some() {
                        anyhow::bail!("cloning from a snapshot is not supported by the emulator");
                    }
                    let size = src_store.usage(&src_name).map(|u| u.0).unwrap_or(0) as f64
                        / (1u64 << 30) as f64;
                    let name = dst_store.alloc_subvol(newid, size)?;
                    allocated = Some(name.clone());
                    let src = src_store.path(&src_name)?;
                    let dst = dst_store.path(&name)?;
                    task.log(format!("copying {} to {}", src.display(), dst.display()));
                    storage::run(
                        "cp",
                        &[
                            "-a",
                            &format!("{}/.", src.display()),
                            &dst.to_string_lossy(),
                        ],
                    )?;
                    let _l = app2.store.lock(newid).map_err(|e| anyhow!(e.message))?;
                    let (mut c, _) = app2
                        .store
                        .read(&target, Kind::Lxc, newid)
                        .map_err(|e| anyhow!(e.message))?;
                    let old = c.main.get("rootfs").unwrap_or("").to_string();
                    let rest: Vec<&str> = old.split(',').skip(1).collect();
                    let mut r = format!("{}:{name}", dst_store.id);
                    for kv in rest {
                        r.push(',');
                        r.push_str(kv);
                    }
                    c.main.keys.insert("rootfs".into(), r);
                    c.main.keys.remove("lock");
                    app2.store
                        .write(&target, Kind::Lxc, newid, &c)
                        .map_err(|e| anyhow!(e.message))?;
                    Ok(())
                })();
                if res.is_err() {
                    if let Some(n) = allocated {
                        let _ = dst_store.free(&n);
                    }
                    app2.store.remove(&target, Kind::Lxc, newid);
                }
                res
            },
        )
        .map_err(|e| internal(format!("starting task: {e}")))?;
    ok(json!(upid))
}

// ---- QEMU (config and status only: the guest does not really run) ----

fn qemu_state_path(app: &App, id: u32) -> PathBuf {
    app.data_dir
        .join("run")
        .join("qemu")
        .join(format!("{id}.json"))
}

fn qemu_state(app: &App, id: u32) -> Option<Value> {
    std::fs::read(qemu_state_path(app, id))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

fn qemu_set_state(app: &App, id: u32, v: Option<Value>) -> anyhow::Result<()> {
    let p = qemu_state_path(app, id);
    match v {
        Some(v) => {
            std::fs::create_dir_all(p.parent().unwrap())?;
            std::fs::write(&p, serde_json::to_vec(&v)?)?;
        }
        None => {
            let _ = std::fs::remove_file(&p);
        }
    }
    Ok(())
}

fn qemu_status_json(app: &App, id: u32, conf: &Section) -> Value {
    let st = qemu_state(app, id);
    let mem_mb: u64 = conf
        .get("memory")
        .map(|m| m.trim_start_matches("current="))
        .and_then(|m| m.split(',').next()?.parse().ok())
        .unwrap_or(512);
    let cores: u64 = conf.get("cores").and_then(|c| c.parse().ok()).unwrap_or(1);
    let sockets: u64 = conf
        .get("sockets")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    let mut v = json!({
        "vmid": id, "type": "qemu", "name": conf.get("name").map(str::to_string).unwrap_or(format!("VM{id}")),
        "status": "stopped", "qmpstatus": "stopped", "maxmem": mem_mb << 20, "mem": 0, "cpus": cores * sockets, "cpu": 0,
        "uptime": 0, "maxdisk": 0, "disk": 0, "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0, "ha": {"managed": 0},
        "template": 0,
    });
    if let Some(s) = st {
        v["status"] = json!("running");
        v["qmpstatus"] = s["qmpstatus"].clone();
        v["uptime"] = json!(now() - s["since"].as_i64().unwrap_or(now()));
        v["pid"] = s["pid"].clone();
        v["running-qemu"] = json!("10.1.2");
        v["running-machine"] = json!("pc-i440fx-10.1+pve0");
        v["mem"] = json!((mem_mb << 20) / 4);
    }
    if let Some(l) = conf.get("lock") {
        v["lock"] = json!(l);
    }
    v
}

fn qemu_create(app: &Arc<App>, ctx: &Ctx, p: &P) -> R {
    if p.contains_key("hookscript") {
        ctx.root_only("only root can set 'hookscript' config")?;
    }
    let node = p["node"].clone();
    let id = vmid(p);
    let default_storage = p.get("storage").cloned();
    let mut main = Section::default();
    let mut disk_n = 0;
    for (k, v) in p {
        if NOT_CONFIG.contains(&k.as_str()) {
            continue;
        }
        let base = k.trim_end_matches(|c: char| c.is_ascii_digit());
        let mut v = v.clone();
        if matches!(base, "scsi" | "virtio" | "ide" | "sata") || k == "efidisk0" {
            // STORAGE:SIZE allocates (in the config only) vm-<vmid>-disk-<n>.
            let first = v.split(',').next().unwrap_or("").to_string();
            if let Some((sid, size)) = storage::split_volid(&first) {
                if let Some(sz) = parse_size(size) {
                    storage(app, sid)?;
                    let rest: Vec<String> = v.split(',').skip(1).map(String::from).collect();
                    v = format!("{sid}:vm-{id}-disk-{disk_n},size={sz}G");
                    for r in rest {
                        v.push(',');
                        v.push_str(&r);
                    }
                    disk_n += 1;
                }
            } else if first.chars().all(|c| c.is_ascii_digit() || c == '.') && !first.is_empty() {
                let sid = default_storage.clone().unwrap_or_else(|| "local".into());
                v = format!("{sid}:vm-{id}-disk-{disk_n},size={first}G");
                disk_n += 1;
            }
        }
        if base == "net" && !v.contains('=') {
            v = format!("virtio,bridge={v}");
        }
        main.keys.insert(k.clone(), v);
    }
    if let Some(d) = p.get("description") {
        main.description = Some(d.clone());
    }
    main.keys
        .entry("smbios1".into())
        .or_insert_with(|| "uuid=00000000-0000-4000-8000-000000000000".into());
    main.keys.insert("lock".into(), "create".into());
    app.store.create_new(
        &node,
        Kind::Qemu,
        id,
        &Conf {
            main,
            snapshots: vec![],
        },
    )?;
    let app2 = app.clone();
    let start = flag(p, "start");
    let upid = app
        .tasks
        .spawn(&p["node"], "qmcreate", &id.to_string(), &ctx.user(), ctx.fail_task.clone(), move |task| {
            let res = (|| -> anyhow::Result<()> {
                task.injected()?;
                let _l = app2.store.lock(id).map_err(|e| anyhow!(e.message))?;
                let (mut c, _) = app2.store.read(&node, Kind::Qemu, id).map_err(|e| anyhow!(e.message))?;
                c.main.keys.remove("lock");
                app2.store.write(&node, Kind::Qemu, id, &c).map_err(|e| anyhow!(e.message))?;
                Ok(())
            })();
            if res.is_err() {
                app2.store.remove(&node, Kind::Qemu, id);
            }
            res?;
            if start {
                qemu_set_state(&app2, id, Some(json!({"qmpstatus": "running", "since": now(), "pid": std::process::id()})))?;
            }
            Ok(())
        })
        .map_err(|e| internal(format!("starting task: {e}")))?;
    ok(json!(upid))
}

fn qemu_current(app: &App, p: &P) -> R {
    let (conf, _) = read(app, p, Kind::Qemu)?;
    ok(qemu_status_json(app, vmid(p), &conf.main))
}

fn qemu_power(app: &Arc<App>, ctx: &Ctx, p: &P, action: &str) -> R {
    check_root_only(ctx, p)?;
    let id = vmid(p);

    let (conf, _) = read(app, p, Kind::Qemu)?;
    if let Some(l) = conf.main.get("lock") {
        if !flag(p, "skiplock") {
            return Err(internal(format!("VM is locked ({l})")));
        }
    }
    let running = qemu_state(app, id).is_some();
    match (action, running) {
        ("start", true) => return Err(internal(format!("VM {id} already running"))),
        ("stop" | "shutdown" | "reset" | "suspend" | "resume" | "reboot", false) => {
            return Err(internal(format!("VM {id} not running")))
        }
        _ => {}
    }
    let kind = format!("qm{action}");
    let action = action.to_string();
    let app2 = app.clone();
    let upid = app
        .tasks
        .spawn(
            &p["node"],
            &kind,
            &id.to_string(),
            &ctx.user(),
            ctx.fail_task.clone(),
            move |task| {
                task.injected()?;
                let cur = qemu_state(&app2, id);
                let fresh = || {
                    Some(json!({"qmpstatus": "running", "since": now(), "pid": std::process::id()}))
                };
                let next = match action.as_str() {
                    "start" | "reset" | "reboot" => fresh(),
                    "stop" | "shutdown" => None,
                    "suspend" => cur.map(|mut c| {
                        c["qmpstatus"] = json!("paused");
                        c
                    }),
                    _ => cur.map(|mut c| {
                        c["qmpstatus"] = json!("running");
                        c
                    }),
                };
                qemu_set_state(&app2, id, next)
            },
        )
        .map_err(|e| internal(format!("starting task: {e}")))?;
    ok(json!(upid))
}

fn qemu_delete(app: &Arc<App>, ctx: &Ctx, p: &P) -> R {
    check_root_only(ctx, p)?;
    let id = vmid(p);
    let node = p["node"].clone();
    let (conf, _) = read(app, p, Kind::Qemu)?;
    if let Some(l) = conf.main.get("lock") {
        if !flag(p, "skiplock") {
            return Err(internal(format!("VM is locked ({l})")));
        }
    }
    if conf.main.get("protection") == Some("1") {
        return Err(internal(format!(
            "can't remove VM {id} - protection mode enabled"
        )));
    }
    if qemu_state(app, id).is_some() {
        return Err(internal(format!("VM {id} is running - destroy failed")));
    }
    let app2 = app.clone();
    let upid = app
        .tasks
        .spawn(
            &p["node"],
            "qmdestroy",
            &id.to_string(),
            &ctx.user(),
            ctx.fail_task.clone(),
            move |task| {
                task.injected()?;
                app2.store.remove(&node, Kind::Qemu, id);
                Ok(())
            },
        )
        .map_err(|e| internal(format!("starting task: {e}")))?;
    let _ = lock_label(Kind::Qemu);
    ok(json!(upid))
}

// ---- storage ----

fn storage_list(app: &App, p: &P) -> Value {
    json!(app
        .storages
        .iter()
        .filter(|s| p.get("storage").is_none_or(|x| *x == s.id))
        .filter(|s| p.get("content").is_none_or(|c| c.split(',').all(|c| s.supports(c))))
        .map(|s| {
            let (total, used, avail) = s.status();
            json!({
                "storage": s.id, "type": s.type_name(), "content": s.content(), "active": 1, "enabled": 1,
                "shared": 0, "total": total, "used": used, "avail": avail,
                "used_fraction": if total > 0 { used as f64 / total as f64 } else { 0.0 },
            })
        })
        .collect::<Vec<_>>())
}

fn storage_content(app: &App, p: &P) -> R {
    let s = storage(app, &p["storage"])?;
    let vmid = p.get("vmid").and_then(|v| v.parse().ok());
    ok(json!(s.list(p.get("content").map(String::as_str), vmid)))
}

/// Resolves `{volume}` (`STORAGE:NAME` or just `NAME`) on `{storage}`.
fn volume_of(app: &App, p: &P) -> Result<(Storage, String), ApiError> {
    let vol = &p["volume"];
    let (sid, name) = match storage::split_volid(vol) {
        Some((s, n)) => (s.to_string(), n.to_string()),
        None => (p.get("storage").cloned().unwrap_or_default(), vol.clone()),
    };
    if p.get("storage").is_some_and(|s| *s != sid) {
        return Err(ApiError::param(
            "volume",
            format!("volume '{vol}' is not on storage '{}'", p["storage"]),
        ));
    }
    Ok((storage(app, &sid)?, name))
}

fn volume_info(app: &App, p: &P) -> R {
    let (s, name) = volume_of(app, p)?;
    if let Some(t) = name.strip_prefix("vztmpl/") {
        let path = s
            .template_dir()
            .map(|d| d.join(t))
            .filter(|p| storage::is_template_name(t) && p.exists())
            .ok_or_else(|| internal(format!("volume '{}:{name}' does not exist", s.id)))?;
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        return ok(
            json!({"path": path, "size": len, "used": len, "format": t.split_once('.').map(|x| x.1).unwrap_or("tar")}),
        );
    }
    let path = s.path(&name).map_err(ApiError::from)?;
    if !path.exists() {
        return Err(internal(format!("volume '{}:{name}' does not exist", s.id)));
    }
    let (size, used) = s.usage(&name).map_err(ApiError::from)?;
    ok(json!({"path": path, "size": size, "used": used, "format": "subvol"}))
}

fn volume_delete(app: &Arc<App>, ctx: &Ctx, p: &P) -> R {
    let (s, name) = volume_of(app, p)?;
    let volid = format!("{}:{name}", s.id);
    // A volume still referenced by a guest config is refused.
    for (n, k, id) in app.store.list() {
        if let Ok((c, _)) = app.store.read(&n, k, id) {
            if volumes_of(&c.main).contains(&volid) {
                return Err(internal(format!(
                    "unable to delete volume '{volid}' - used by CT {id}"
                )));
            }
        }
    }
    let path = if let Some(t) = name.strip_prefix("vztmpl/") {
        s.template_dir()
            .map(|d| d.join(t))
            .filter(|_| storage::is_template_name(t))
    } else {
        None
    };
    let upid = app
        .tasks
        .spawn(
            &p["node"],
            "imgdel",
            "",
            &ctx.user(),
            ctx.fail_task.clone(),
            move |task| {
                task.injected()?;
                match &path {
                    Some(f) => std::fs::remove_file(f)
                        .with_context(|| format!("removing {}", f.display()))?,
                    None => s.free(&name)?,
                }
                Ok(())
            },
        )
        .map_err(|e| internal(format!("starting task: {e}")))?;
    ok(json!(upid))
}

fn upload(app: &Arc<App>, ctx: &Ctx, p: &P) -> R {
    let s = storage(app, &p["storage"])?;
    if p["content"] != "vztmpl" {
        return Err(ApiError::param(
            "content",
            "only 'vztmpl' uploads are supported by the emulator",
        ));
    }
    if !s.supports("vztmpl") {
        return Err(ApiError::param(
            "content",
            format!("storage '{}' does not support 'vztmpl' content", s.id),
        ));
    }
    let Some((name, data)) = &ctx.file else {
        return Err(ApiError::param(
            "filename",
            "no file part named 'filename' in the multipart body",
        ));
    };
    if !storage::is_template_name(name) {
        return Err(ApiError::param(
            "filename",
            format!("wrong file extension or name '{name}'"),
        ));
    }
    if let Some(sum) = p.get("checksum") {
        let alg = p
            .get("checksum-algorithm")
            .map(String::as_str)
            .unwrap_or("");
        let got = match alg {
            "sha256" => ring::digest::digest(&ring::digest::SHA256, data),
            "sha512" => ring::digest::digest(&ring::digest::SHA512, data),
            "sha384" => ring::digest::digest(&ring::digest::SHA384, data),
            "sha1" => ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, data),
            _ => {
                return Err(ApiError::param(
                    "checksum-algorithm",
                    "supported here: sha1, sha256, sha384, sha512",
                ))
            }
        };
        let hex: String = got.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        if !hex.eq_ignore_ascii_case(sum) {
            return Err(internal(format!(
                "checksum mismatch: got '{hex}' != expect '{sum}'"
            )));
        }
    }
    let dir = s.template_dir().expect("dir storage");
    // One temp file per upload: concurrent uploads of one name must not share it.
    static UPLOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = UPLOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".upload-{}-{n}-{name}", std::process::id()));
    std::fs::write(&tmp, data).map_err(|e| internal(format!("writing upload: {e}")))?;
    let dst = dir.join(name);
    let len = data.len();
    let volid_log = format!("{}:vztmpl/{name}", s.id);
    let upid = app
        .tasks
        .spawn(
            &p["node"],
            "imgcopy",
            "",
            &ctx.user(),
            ctx.fail_task.clone(),
            move |task| {
                let r = task.injected().and_then(|_| {
                    std::fs::rename(&tmp, &dst).context("moving the upload into place")
                });
                if r.is_err() {
                    let _ = std::fs::remove_file(&tmp);
                }
                r?;
                task.log(format!("target file: {} ({volid_log})", dst.display()));
                task.log(format!("file size is: {len}"));
                Ok(())
            },
        )
        .map_err(|e| internal(format!("starting task: {e}")))?;
    ok(json!(upid))
}
