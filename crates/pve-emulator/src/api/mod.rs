//! The endpoint handlers. Each reads the guest configs anew, checks what
//! Proxmox checks synchronously, and leaves the slow work to a task.
//!
//! Laid out as Proxmox's own API tree (PVE::API2): one file per resource,
//! and a route table that maps (method, path pattern) to its handler.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use serde_json::{json, Value};

use crate::auth::{Auth, Identity};
use crate::error::ApiError;
use crate::faults::Faults;
use crate::propstr;
use crate::runner::Runner;
use crate::storage::Storage;
use crate::store::{Conf, Kind, Section, Store};
use crate::tasks::Tasks;

mod access;
mod cluster;
mod config;
pub(crate) mod firewall;
mod lxc;
mod nodes;
mod qemu;
mod rrddata;
mod sdn;
mod storage;
mod tasks;

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
    /// Statistics history, fed by `sampler`.
    pub rrd: crate::rrd::Rrd,
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

/// Every handler has one signature, so the table can hold plain fn pointers;
/// closures adapt the handlers that need less (or a fixed argument).
type Handler = fn(&Arc<App>, &Ctx, &P) -> R;

/// (method, path pattern, handler). The patterns are the schema's
/// (`schema::endpoints`): the server has already matched the raw path
/// against them and filled in the path parameters.
#[rustfmt::skip]
static ROUTES: &[(&str, &str, Handler)] = &[
    ("POST", "/access/ticket", |a, _, p| access::login(a, p)),
    ("GET", "/access/permissions", |_, c, p| access::permissions(c, p)),
    ("GET", "/version", |_, _, _| nodes::version()),
    ("GET", "/nodes", |a, _, _| ok(nodes::list(a))),
    ("GET", "/nodes/{node}/status", |_, _, _| ok(nodes::status())),
    ("GET", "/nodes/{node}/version", |_, _, _| nodes::version()),
    ("GET", "/nodes/{node}/rrddata", |a, _, p| rrddata::node(a, p)),
    ("GET", "/cluster/status", |a, _, _| ok(cluster::status(a))),
    ("GET", "/cluster/resources", |a, _, p| ok(cluster::resources(a, p.get("type").map(String::as_str)))),
    ("GET", "/cluster/nextid", |a, _, p| cluster::nextid(a, p)),

    ("GET", "/nodes/{node}/lxc", |a, _, p| ok(list_guests(a, &p["node"], Kind::Lxc))),
    ("POST", "/nodes/{node}/lxc", lxc::create),
    ("DELETE", "/nodes/{node}/lxc/{vmid}", lxc::delete),
    ("GET", "/nodes/{node}/lxc/{vmid}/config", |a, _, p| config::get(a, p, Kind::Lxc)),
    ("PUT", "/nodes/{node}/lxc/{vmid}/config", |a, c, p| config::put(a, c, p, Kind::Lxc)),
    ("GET", "/nodes/{node}/lxc/{vmid}/status/current", |a, _, p| lxc::current(a, p)),
    ("POST", "/nodes/{node}/lxc/{vmid}/status/start", |a, c, p| lxc::power(a, c, p, "start")),
    ("POST", "/nodes/{node}/lxc/{vmid}/status/stop", |a, c, p| lxc::power(a, c, p, "stop")),
    ("POST", "/nodes/{node}/lxc/{vmid}/status/shutdown", |a, c, p| lxc::power(a, c, p, "shutdown")),
    ("POST", "/nodes/{node}/lxc/{vmid}/status/suspend", |a, c, p| lxc::power(a, c, p, "suspend")),
    ("POST", "/nodes/{node}/lxc/{vmid}/status/resume", |a, c, p| lxc::power(a, c, p, "resume")),
    ("POST", "/nodes/{node}/lxc/{vmid}/status/reboot", |a, c, p| lxc::power(a, c, p, "reboot")),
    ("GET", "/nodes/{node}/lxc/{vmid}/snapshot", |a, _, p| lxc::snapshot_list(a, p)),
    ("POST", "/nodes/{node}/lxc/{vmid}/snapshot", lxc::snapshot_create),
    ("DELETE", "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}", lxc::snapshot_delete),
    ("POST", "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}/rollback", lxc::snapshot_rollback),
    ("POST", "/nodes/{node}/lxc/{vmid}/clone", lxc::clone),
    ("GET", "/nodes/{node}/lxc/{vmid}/interfaces", |a, _, p| lxc::interfaces(a, p)),
    ("GET", "/nodes/{node}/lxc/{vmid}/pending", |a, _, p| config::pending(a, p, Kind::Lxc)),
    ("GET", "/nodes/{node}/lxc/{vmid}/firewall/options", |a, _, p| firewall::options_get(a, p, Kind::Lxc)),
    ("GET", "/nodes/{node}/qemu/{vmid}/firewall/options", |a, _, p| firewall::options_get(a, p, Kind::Qemu)),
    ("PUT", "/nodes/{node}/lxc/{vmid}/firewall/options", |a, _, p| firewall::options_put(a, p, Kind::Lxc)),
    ("PUT", "/nodes/{node}/qemu/{vmid}/firewall/options", |a, _, p| firewall::options_put(a, p, Kind::Qemu)),
    ("GET", "/nodes/{node}/lxc/{vmid}/firewall/ipset", |a, _, p| firewall::ipset_list(a, p, Kind::Lxc)),
    ("GET", "/nodes/{node}/qemu/{vmid}/firewall/ipset", |a, _, p| firewall::ipset_list(a, p, Kind::Qemu)),
    ("POST", "/nodes/{node}/lxc/{vmid}/firewall/ipset", |a, _, p| firewall::ipset_create(a, p, Kind::Lxc)),
    ("POST", "/nodes/{node}/qemu/{vmid}/firewall/ipset", |a, _, p| firewall::ipset_create(a, p, Kind::Qemu)),
    ("GET", "/nodes/{node}/lxc/{vmid}/firewall/ipset/{name}", |a, _, p| firewall::ipset_get(a, p, Kind::Lxc)),
    ("GET", "/nodes/{node}/qemu/{vmid}/firewall/ipset/{name}", |a, _, p| firewall::ipset_get(a, p, Kind::Qemu)),
    ("POST", "/nodes/{node}/lxc/{vmid}/firewall/ipset/{name}", |a, _, p| firewall::ipset_add(a, p, Kind::Lxc)),
    ("POST", "/nodes/{node}/qemu/{vmid}/firewall/ipset/{name}", |a, _, p| firewall::ipset_add(a, p, Kind::Qemu)),
    ("DELETE", "/nodes/{node}/lxc/{vmid}/firewall/ipset/{name}", |a, _, p| firewall::ipset_delete(a, p, Kind::Lxc)),
    ("DELETE", "/nodes/{node}/qemu/{vmid}/firewall/ipset/{name}", |a, _, p| firewall::ipset_delete(a, p, Kind::Qemu)),
    ("GET", "/cluster/firewall/options", |a, _, _| firewall::cluster_get(a)),
    ("GET", "/cluster/sdn/zones", |a, _, p| sdn::zones_get(a, p)),
    ("POST", "/cluster/sdn/zones", |a, _, p| sdn::zones_post(a, p)),
    ("GET", "/cluster/sdn/vnets", |a, _, _| sdn::vnets_get(a)),
    ("POST", "/cluster/sdn/vnets", |a, _, p| sdn::vnets_post(a, p)),
    ("GET", "/cluster/sdn/vnets/{vnet}", |a, _, p| sdn::vnet_get(a, p)),
    ("GET", "/cluster/sdn/vnets/{vnet}/subnets", |a, _, p| sdn::subnets_get(a, p)),
    ("POST", "/cluster/sdn/vnets/{vnet}/subnets", |a, _, p| sdn::subnets_post(a, p)),
    ("POST", "/cluster/sdn/vnets/{vnet}/ips", |a, _, p| sdn::ips_post(a, p)),
    ("DELETE", "/cluster/sdn/vnets/{vnet}/ips", |a, _, p| sdn::ips_delete(a, p)),
    ("GET", "/cluster/sdn/ipams/{ipam}/status", |a, _, p| sdn::ipam_status(a, p)),
    ("PUT", "/cluster/firewall/options", |a, _, p| firewall::cluster_put(a, p)),
    ("GET", "/nodes/{node}/lxc/{vmid}/rrddata", |a, _, p| rrddata::guest(a, p, Kind::Lxc)),

    ("GET", "/nodes/{node}/qemu", |a, _, p| ok(list_guests(a, &p["node"], Kind::Qemu))),
    ("POST", "/nodes/{node}/qemu", qemu::create),
    ("DELETE", "/nodes/{node}/qemu/{vmid}", qemu::delete),
    ("GET", "/nodes/{node}/qemu/{vmid}/config", |a, _, p| config::get(a, p, Kind::Qemu)),
    ("PUT", "/nodes/{node}/qemu/{vmid}/config", |a, c, p| config::put(a, c, p, Kind::Qemu)),
    ("GET", "/nodes/{node}/qemu/{vmid}/status/current", |a, _, p| qemu::current(a, p)),
    ("POST", "/nodes/{node}/qemu/{vmid}/status/start", |a, c, p| qemu::power(a, c, p, "start")),
    ("POST", "/nodes/{node}/qemu/{vmid}/status/stop", |a, c, p| qemu::power(a, c, p, "stop")),
    ("POST", "/nodes/{node}/qemu/{vmid}/status/shutdown", |a, c, p| qemu::power(a, c, p, "shutdown")),
    ("POST", "/nodes/{node}/qemu/{vmid}/status/reset", |a, c, p| qemu::power(a, c, p, "reset")),
    ("POST", "/nodes/{node}/qemu/{vmid}/status/suspend", |a, c, p| qemu::power(a, c, p, "suspend")),
    ("POST", "/nodes/{node}/qemu/{vmid}/status/resume", |a, c, p| qemu::power(a, c, p, "resume")),
    ("POST", "/nodes/{node}/qemu/{vmid}/status/reboot", |a, c, p| qemu::power(a, c, p, "reboot")),
    ("GET", "/nodes/{node}/qemu/{vmid}/pending", |a, _, p| config::pending(a, p, Kind::Qemu)),
    ("GET", "/nodes/{node}/qemu/{vmid}/rrddata", |a, _, p| rrddata::guest(a, p, Kind::Qemu)),

    ("GET", "/nodes/{node}/tasks", |a, _, p| tasks::list(a, p)),
    ("GET", "/nodes/{node}/tasks/{upid}/status", |a, _, p| tasks::status(a, p)),
    ("GET", "/nodes/{node}/tasks/{upid}/log", |a, _, p| tasks::log(a, p)),
    ("DELETE", "/nodes/{node}/tasks/{upid}", |a, _, p| tasks::delete(a, p)),

    ("GET", "/nodes/{node}/storage", |a, _, p| ok(storage::list(a, p))),
    ("GET", "/nodes/{node}/storage/{storage}/status", |a, _, p| storage::status(a, p)),
    ("GET", "/nodes/{node}/storage/{storage}/rrddata", |a, _, p| rrddata::storage(a, p)),
    ("GET", "/nodes/{node}/storage/{storage}/content", |a, _, p| storage::content(a, p)),
    ("POST", "/nodes/{node}/storage/{storage}/content", storage::alloc),
    ("GET", "/nodes/{node}/storage/{storage}/content/{volume}", |a, _, p| storage::volume_info(a, p)),
    ("DELETE", "/nodes/{node}/storage/{storage}/content/{volume}", storage::volume_delete),
    ("POST", "/nodes/{node}/storage/{storage}/upload", storage::upload),
];

pub fn dispatch(app: &Arc<App>, ctx: &Ctx, method: &str, path: &str, p: &P) -> R {
    // Before the route: every `{node}` must name a node of this cluster.
    if let Some(n) = p.get("node") {
        if !app.nodes.contains(n) {
            return Err(ApiError::param(
                "node",
                format!("no such cluster node '{n}'"),
            ));
        }
    }
    match ROUTES
        .iter()
        .find(|(m, pat, _)| *m == method && *pat == path)
    {
        Some((_, _, handler)) => handler(app, ctx, p),
        None => Err(ApiError::new(
            501,
            format!("Method '{method} {path}' not implemented"),
        )),
    }
}

// ---- shared helpers ----

fn ok(v: Value) -> R {
    Ok(Data::Plain(v))
}

fn internal(m: impl Into<String>) -> ApiError {
    ApiError::internal(m)
}

fn vmid(p: &P) -> u32 {
    p.get("vmid").and_then(|v| v.parse().ok()).unwrap_or(0)
}
fn flag(p: &P, k: &str) -> bool {
    p.get(k).map(String::as_str) == Some("1")
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

/// A Proxmox-like random MAC (BC:24:11 prefix) when net[n] has none.
fn with_hwaddr(net: &str) -> String {
    if net.contains("hwaddr=") {
        return net.to_string();
    }
    format!("{net},hwaddr={}", proxmox_mac())
}

/// A random MAC with Proxmox's prefix, as a node gives a NIC without one.
fn proxmox_mac() -> String {
    let mut b = [0u8; 3];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    format!("BC:24:11:{:02X}:{:02X}:{:02X}", b[0], b[1], b[2])
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
    Ok(guest_status(app, kind, id, &conf.main))
}

/// A guest's status/current answer (for the statistics sampler too).
pub(crate) fn guest_status(app: &App, kind: Kind, id: u32, conf: &Section) -> Value {
    match kind {
        Kind::Lxc => lxc::status_json(app, id, conf),
        Kind::Qemu => qemu::status_json(app, id, conf),
    }
}

/// The node's status answer (every node is this host).
pub(crate) fn node_status() -> Value {
    nodes::status()
}

/// A configured storage by ID, or Proxmox's error for an unknown one.
fn find_storage(app: &App, id: &str) -> Result<Storage, ApiError> {
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
    let (sid, name) = crate::storage::split_volid(vol)
        .with_context(|| format!("unable to parse volume ID '{vol}'"))?;
    let s = app
        .storages
        .iter()
        .find(|s| s.id == sid)
        .cloned()
        .with_context(|| format!("storage '{sid}' does not exist"))?;
    Ok((s, name.to_string()))
}

/// The storage volumes a config refers to (rootfs, mp[n], unused[n]).
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
        .filter(|v| crate::storage::split_volid(v).is_some())
        .collect()
}

/// A `STORAGE:SIZE` size in GiB (new-volume syntax).
fn parse_size(v: &str) -> Option<f64> {
    v.parse::<f64>().ok().filter(|s| *s >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::ROUTES;
    use crate::schema;

    /// The server only dispatches the schema's endpoints: each needs a route,
    /// and a route outside the schema could never be reached.
    #[test]
    fn routes_match_the_schema() {
        for ep in schema::endpoints() {
            let n = ROUTES
                .iter()
                .filter(|(m, p, _)| *m == ep.method && *p == ep.path)
                .count();
            assert_eq!(n, 1, "{} {}: {n} routes", ep.method, ep.path);
        }
        for (m, p, _) in ROUTES {
            assert!(schema::find(m, p).is_some(), "{m} {p} is not in the schema");
        }
    }
}
