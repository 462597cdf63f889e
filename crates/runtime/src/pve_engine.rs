//! The pve-lxc engine: each OCI container is a Proxmox VE CT.
//!
//! ```text
//! create: nextid -> POST /nodes/N/lxc (base template, rootfs volume, limits, net0, tags)
//!         -> the bundle's rootfs into the CT's volume (the runtime runs on the node)
//!         -> raw lxc.* keys (our init, exchange dir, seccomp/caps via init, hooks)
//!            appended to the CT's config file on the node
//!         -> POST status/start: LXC starts our init, which waits for `start`
//!            exactly as on the lxc engine
//! ```
//! The CT is not our child, so the pid-file pid is a monitor of ours that
//! hands the init our stdio over a socket in the exchange dir, learns the
//! init's host pid from that connection (SO_PEERCRED), and exits with the
//! container's status when that pid ends (also when Proxmox stops the CT).
use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::Spec;
use pve_client::props::{Features, MountPoint, NetConfig};
use pve_client::{Auth, Client, ClientConfig, Params, Secret, Tls, Upid};
use serde::{Deserialize, Serialize};

use crate::config::PveSection;
use crate::error::{Context, Error, Result};
use crate::proc;
use crate::state::{write_atomic, ProcRef};

/// Every CT we make carries this tag (and one derived from the id).
pub const TAG: &str = "proxmox-lxcri";
/// `true`/`1`: a privileged CT (`unprivileged=0`).
pub const PRIVILEGED_ANNOTATION: &str = "io.proxmox-lxcri.privileged";
/// `nesting=1,fuse=1,keyctl=1`: the CT's `features`.
pub const FEATURES_ANNOTATION: &str = "io.proxmox-lxcri.features";
/// Prefix of the net0 annotations: bridge, vlan, ip, gw, ip6, gw6, hwaddr,
/// mtu, firewall, nameserver, searchdomain.
pub const NET_ANNOTATION_PREFIX: &str = "io.proxmox-lxcri.net.";
/// Rootfs size (`512M`, `8G`): the volume's size (refquota on ZFS).
pub const QUOTA_ANNOTATION: &str = "io.proxmox-lxcri.storage.quota";
/// Host uid/gid of root in an unprivileged CT (Proxmox's fixed idmap).
pub const ID_SHIFT: u32 = 100_000;
/// The empty template every CT is created from (its rootfs is ours).
const BASE_TEMPLATE: &str = "proxmox-lxcri-base.tar";
/// Written by the monitor: the init's host pid and start time.
pub const FILE_INIT_PID: &str = "init-pid";

/// What the state file records of the CT, before each step that makes
/// something, so that a crash can be cleaned up.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PveRecord {
    pub node: String,
    /// Reserved (and maybe created) VMID.
    #[serde(default)]
    pub vmid: Option<u32>,
    /// POST create succeeded for `vmid`: the CT is certainly ours.
    #[serde(default)]
    pub created: bool,
    #[serde(default)]
    pub unprivileged: bool,
}

/// A client for `[pve]`. Secrets come from files that must not be
/// readable by group or others.
pub fn connect(cfg: &PveSection) -> Result<Client> {
    let auth = match (&cfg.token_id, &cfg.token_secret_file) {
        (Some(id), Some(file)) => Auth::Token {
            id: id.clone(),
            secret: Secret::from_file(file)
                .map_err(|e| Error::Config(format!("pve.token_secret_file: {e}")))?,
        },
        _ => Auth::Password {
            username: cfg.username.clone().unwrap_or_default(),
            password: Secret::from_file(cfg.password_file.as_deref().unwrap_or(Path::new("")))
                .map_err(|e| Error::Config(format!("pve.password_file: {e}")))?,
        },
    };
    let tls = if cfg.insecure {
        Tls::Insecure
    } else if let Some(fp) = &cfg.fingerprint {
        Tls::Fingerprint(fp.clone())
    } else {
        Tls::Verify {
            ca_file: cfg.ca_file.clone(),
        }
    };
    let mut cc = ClientConfig::new(cfg.url.clone(), auth, tls);
    cc.timeout = Duration::from_secs(cfg.timeout_secs);
    cc.retries = cfg.retries;
    Client::new(cc).map_err(|e| Error::Config(format!("pve: {e}")))
}

pub fn api(what: &str) -> impl Fn(pve_client::Error) -> Error + '_ {
    move |e| Error::Pve(format!("Proxmox API: {what}: {e}"))
}

/// How the CT's network is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetMode {
    /// A new network namespace: net0 through the API.
    Api,
    /// The host's, or a given namespace path: LXC's own keys, raw.
    Raw,
}

/// The create parameters the spec and annotations ask for.
pub struct CtPlan {
    pub params: Params,
    pub unprivileged: bool,
    pub net: NetMode,
    /// Indexes of the spec's mounts that became `mp[n]` (the rest go raw).
    pub mount_points: Vec<usize>,
}

/// Description of our CTs: names the container, the runtime root and the
/// node, so that cleanup never touches a CT that is not ours (another
/// node's runtime may use the same root path).
pub fn description(id: &str, root: &Path, node: &str) -> String {
    format!(
        "proxmox-lxcri container {id} (root {}, node {node})",
        root.display()
    )
}

/// The container id in a description of ours, if it names `root` and `node`.
pub fn description_id(desc: &str, root: &Path, node: &str) -> Option<String> {
    let rest = desc.trim().strip_prefix("proxmox-lxcri container ")?;
    let (id, _) = rest.split_once(' ')?;
    (desc.trim() == description(id, root, node)).then(|| id.to_string())
}

/// `lxcri-<id>`, in the characters Proxmox allows in tags.
pub fn id_tag(id: &str) -> String {
    let t: String = id
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || "_-+.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("lxcri-{t}")
}

fn flag(v: &str) -> Option<bool> {
    match v {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// Sizes like `512M`, `8G`, `1T` (binary units) in bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1u64 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        'T' | 't' => (&s[..s.len() - 1], 1 << 40),
        c if c.is_ascii_digit() => (s, 1),
        _ => return None,
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(mul).filter(|n| *n > 0)
}

fn host_memory_mb() -> u64 {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(512)
}

fn dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Map the spec and annotations to `POST /nodes/{node}/lxc` parameters
/// (everything but vmid and ostemplate).
pub fn plan(
    id: &str,
    spec: &Spec,
    annotations: &BTreeMap<String, String>,
    cfg: &PveSection,
    root: &Path,
) -> Result<CtPlan> {
    let bad = |what: &str, v: &str, why: &str| Error::Spec(format!("{what}={v:?}: {why}"));
    let mut p = Params::new();
    p = p.set("ostype", "unmanaged");
    p = p.set("description", description(id, root, &cfg.node));
    p = p.set("tags", format!("{TAG};{}", id_tag(id)));

    let unprivileged = match annotations.get(PRIVILEGED_ANNOTATION) {
        None => true,
        Some(v) => !flag(v).ok_or_else(|| bad(PRIVILEGED_ANNOTATION, v, "use true or false"))?,
    };
    p = p.bool("unprivileged", unprivileged);

    if let Some(h) = spec.hostname() {
        if !dns_name(h) {
            return Err(bad(
                "hostname",
                h,
                "Proxmox needs a DNS name (letters, digits, '-', '.')",
            ));
        }
        p = p.set("hostname", h.clone());
    }

    // Limits: what the API can say; the exact cgroup values also go raw.
    let res = spec.linux().as_ref().and_then(|l| l.resources().clone());
    p = limit_params(res.as_ref(), p)?;

    let size = match annotations.get(QUOTA_ANNOTATION) {
        Some(v) => {
            let bytes = parse_size(v)
                .ok_or_else(|| bad(QUOTA_ANNOTATION, v, "use a size like 512M or 8G"))?;
            // Proxmox takes GiB with decimals; whole MiB (rounded up) are
            // exact binary fractions, so the volume gets exactly this size.
            format!("{}", bytes.div_ceil(1 << 20) as f64 / 1024.0)
        }
        None => cfg.rootfs_size_gb.to_string(),
    };
    p = p.set("rootfs", format!("{}:{size}", cfg.storage));

    let net = net_mode(spec);
    if net == NetMode::Api {
        p = p.set("net0", net0(annotations, cfg)?);
    }
    let ann = |k: &str| {
        annotations
            .get(&format!("{NET_ANNOTATION_PREFIX}{k}"))
            .cloned()
    };
    if let Some(ns) = ann("nameserver").or_else(|| cfg.nameserver.clone()) {
        if !ns.split(' ').all(|a| a.parse::<std::net::IpAddr>().is_ok()) {
            return Err(bad("nameserver", &ns, "space-separated IP addresses"));
        }
        p = p.set("nameserver", ns);
    }
    if let Some(sd) = ann("searchdomain").or_else(|| cfg.searchdomain.clone()) {
        if !sd.split(' ').all(dns_name) {
            return Err(bad("searchdomain", &sd, "space-separated DNS names"));
        }
        p = p.set("searchdomain", sd);
    }
    if let Some(f) = annotations.get(FEATURES_ANNOTATION) {
        p = p.set("features", features(f)?);
    }
    // Bind mounts as mount points, which Proxmox allows root@pam only.
    let mut mount_points = vec![];
    if cfg.username.as_deref() == Some("root@pam") {
        for (n, (i, mp)) in bind_mount_points(spec)?.into_iter().enumerate() {
            p = p.set(&format!("mp{n}"), mp);
            mount_points.push(i);
        }
    }
    Ok(CtPlan {
        params: p,
        unprivileged,
        net,
        mount_points,
    })
}

/// The CT options for a spec's resources: `memory`/`swap` (without a limit:
/// the node's memory, Proxmox has no "unlimited"), `cpulimit`, `cpuunits`,
/// `cores`. Used at create and by `update`.
pub fn limit_params(
    res: Option<&oci_spec::runtime::LinuxResources>,
    mut p: Params,
) -> Result<Params> {
    let bad = |what: &str, v: &str, why: &str| Error::Spec(format!("{what}={v:?}: {why}"));
    let mem = res.and_then(|r| *r.memory());
    match mem.as_ref().and_then(|m| m.limit()).filter(|l| *l > 0) {
        Some(limit) => {
            let mb = (limit as u64).div_ceil(1 << 20).max(16);
            p = p.int("memory", mb as i64);
            let swap = mem
                .as_ref()
                .and_then(|m| m.swap())
                .filter(|s| *s > 0)
                .map(|s| (s as u64).saturating_sub(limit as u64).div_ceil(1 << 20))
                .unwrap_or(0);
            p = p.int("swap", swap as i64);
        }
        // No limit: Proxmox has no "unlimited", so the node's memory.
        None => {
            p = p.int("memory", host_memory_mb() as i64);
            p = p.int("swap", 0);
        }
    }
    if let Some(cpu) = res.and_then(|r| r.cpu().clone()) {
        if let (Some(q), Some(per)) = (cpu.quota(), cpu.period()) {
            if q > 0 && per > 0 {
                let limit = (q as f64 / per as f64 * 100.0).ceil() / 100.0;
                p = p.set("cpulimit", format!("{limit}"));
            }
        }
        if let Some(shares) = cpu.shares() {
            p = p.int("cpuunits", shares.clamp(1, 10000) as i64);
        }
        if let Some(cpus) = cpu.cpus() {
            let n = count_cpus(cpus)
                .ok_or_else(|| bad("linux.resources.cpu.cpus", cpus, "not a cpu list"))?;
            p = p.int("cores", n as i64);
        }
    }

    Ok(p)
}

/// The spec's bind mounts that Proxmox can express as `mp[n]`: a host
/// directory, plain options, and no other mount nested with it (the order
/// of mount points and LXC's own entries differs). Index and property string.
fn bind_mount_points(spec: &Spec) -> Result<Vec<(usize, String)>> {
    const PLAIN: &[&str] = &["bind", "rbind", "ro", "rw", "private", "rprivate"];
    let mounts = spec.mounts().clone().unwrap_or_default();
    let nested = |a: &Path, b: &Path| a != b && (a.starts_with(b) || b.starts_with(a));
    let mut out = vec![];
    for (i, m) in mounts.iter().enumerate() {
        let opts = m.options().clone().unwrap_or_default();
        let is_bind =
            m.typ().as_deref() == Some("bind") || opts.iter().any(|o| o == "bind" || o == "rbind");
        let Some(src) = m.source().as_ref() else {
            continue;
        };
        let dst = m.destination();
        if !is_bind
            || !src.is_absolute()
            || !src.is_dir()
            || !dst.is_absolute()
            || dst == Path::new("/")
            || !opts.iter().all(|o| PLAIN.contains(&o.as_str()))
            || mounts
                .iter()
                .enumerate()
                .any(|(j, o)| j != i && (o.destination() == dst || nested(o.destination(), dst)))
        {
            continue;
        }
        let (Some(src_s), Some(dst_s)) = (src.to_str(), dst.to_str()) else {
            continue;
        };
        let mut mp = MountPoint::new(src_s, dst_s);
        mp.ro = Some(opts.iter().any(|o| o == "ro"));
        mp.backup = Some(false);
        // A path the property string cannot carry stays a raw mount entry.
        if let Ok(s) = mp.to_property_string() {
            out.push((i, s));
        }
    }
    Ok(out)
}

/// The spec without the mounts that became mount points.
pub fn without_mounts(spec: &Spec, moved: &[usize]) -> Spec {
    let mut s = spec.clone();
    if let Some(m) = spec.mounts() {
        let kept = m
            .iter()
            .enumerate()
            .filter(|(i, _)| !moved.contains(i))
            .map(|(_, m)| m.clone())
            .collect();
        s.set_mounts(Some(kept));
    }
    s
}

fn count_cpus(list: &str) -> Option<u32> {
    let mut n = 0;
    for part in list.split(',') {
        let part = part.trim();
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                n += b.checked_sub(a)? + 1;
            }
            None => {
                part.parse::<u32>().ok()?;
                n += 1;
            }
        }
    }
    (n > 0).then_some(n)
}

fn net_mode(spec: &Spec) -> NetMode {
    let ns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    match ns
        .iter()
        .find(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Network)
    {
        Some(n) if n.path().is_none() => NetMode::Api,
        _ => NetMode::Raw,
    }
}

fn net0(annotations: &BTreeMap<String, String>, cfg: &PveSection) -> Result<String> {
    let ann = |k: &str| {
        annotations
            .get(&format!("{NET_ANNOTATION_PREFIX}{k}"))
            .cloned()
    };
    let bad = |k: &str, v: &str, why: &str| {
        Error::Spec(format!(
            "annotation {NET_ANNOTATION_PREFIX}{k}={v:?}: {why}"
        ))
    };
    let mut n = NetConfig::new("eth0");
    n.bridge = Some(ann("bridge").unwrap_or_else(|| cfg.bridge.clone()));
    if let Some(v) = ann("vlan") {
        n.tag = Some(v.parse().map_err(|_| bad("vlan", &v, "a VLAN id 1-4094"))?);
    }
    n.ip = Some(ann("ip").unwrap_or_else(|| "dhcp".into()));
    n.gw = ann("gw");
    n.ip6 = ann("ip6");
    n.gw6 = ann("gw6");
    n.hwaddr = ann("hwaddr");
    if let Some(v) = ann("mtu") {
        n.mtu = Some(v.parse().map_err(|_| bad("mtu", &v, "a number"))?);
    }
    if let Some(v) = ann("firewall") {
        n.firewall = Some(flag(&v).ok_or_else(|| bad("firewall", &v, "use true or false"))?);
    }
    n.to_property_string().map_err(|e| {
        Error::Spec(format!(
            "net0 from the {NET_ANNOTATION_PREFIX}* annotations: {e}"
        ))
    })
}

fn features(s: &str) -> Result<String> {
    let mut f = Features::default();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, "1"));
        let on = flag(v).ok_or_else(|| {
            Error::Spec(format!(
                "annotation {FEATURES_ANNOTATION}: {part:?}: use name=1 or name=0"
            ))
        })?;
        match k {
            "nesting" => f.nesting = on,
            "fuse" => f.fuse = on,
            "keyctl" => f.keyctl = on,
            _ => {
                return Err(Error::Spec(format!(
                    "annotation {FEATURES_ANNOTATION}: unknown feature {k:?}; use nesting, fuse or keyctl"
                )))
            }
        }
    }
    f.to_property_string()
        .map_err(|e| Error::Spec(format!("annotation {FEATURES_ANNOTATION}: {e}")))
}

/// The translated LXC keys that go raw into the CT's config: everything
/// but what Proxmox sets itself from the API (rootfs, hostname, net0 when
/// the API makes it, the unprivileged idmap) or refuses (`lxc.rootfs.*`).
pub fn raw_keys(
    entries: &[(String, String)],
    unprivileged: bool,
    net: NetMode,
) -> Vec<(String, String)> {
    entries
        .iter()
        .filter(|(k, _)| {
            let k = k.as_str();
            !(k.starts_with("lxc.rootfs.")
                || k == "lxc.uts.name"
                || k.starts_with("lxc.cgroup.dir")
                // Proxmox gives every CT these namespaces anyway.
                || k == "lxc.namespace.clone"
                || k == "lxc.namespace.keep"
                || (net == NetMode::Api && k.starts_with("lxc.net."))
                || (unprivileged && k == "lxc.idmap"))
        })
        .cloned()
        .collect()
}

/// Append raw keys to the CT's config file on this node, as an admin edits
/// `/etc/pve/lxc/<vmid>.conf` (the API cannot set them).
pub fn append_raw(config_dir: &Path, vmid: u32, keys: &[(String, String)]) -> Result<()> {
    let path = config_dir.join(format!("{vmid}.conf"));
    let mut text = String::new();
    for (k, v) in keys {
        // LxcConfig refused newlines already; check again at the boundary.
        if v.contains(['\n', '\r', '\0']) || k.contains(['\n', ':', ' ']) {
            return Err(Error::Spec(format!(
                "raw LXC key {k} has a value that cannot go into a CT config line"
            )));
        }
        text.push_str(&format!("{k}: {v}\n"));
    }
    let mut f = OpenOptions::new().append(true).open(&path).map_err(|e| {
        Error::Config(format!(
            "CT config {}: {e} (the pve-lxc engine runs on the Proxmox node; set pve.config_dir)",
            path.display()
        ))
    })?;
    f.write_all(text.as_bytes())
        .ctx(|| format!("writing {}", path.display()))
}

/// The base template's volid, uploaded on first use. The answer is cached
/// in `<root>/pve-template` so later creates ask nothing.
pub fn ensure_template(client: &Client, cfg: &PveSection, root: &Path) -> Result<String> {
    let volid = format!("{}:vztmpl/{BASE_TEMPLATE}", cfg.template_storage);
    let marker = root.join("pve-template");
    let key = format!("{} {} {volid}", cfg.url, cfg.node);
    if fs::read_to_string(&marker).is_ok_and(|s| s == key) {
        return Ok(volid);
    }
    // Concurrent first creates: one uploads, the others wait and reuse.
    fs::create_dir_all(root).ctx(|| format!("creating {}", root.display()))?;
    let lock_path = root.join("pve-template.lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .ctx(|| format!("opening {}", lock_path.display()))?;
    nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .ctx(|| format!("locking {}", lock_path.display()))
        .and_then(|guard| {
            if fs::read_to_string(&marker).is_ok_and(|s| s == key) {
                return Ok(());
            }
            upload_template(client, cfg, root, &volid)?;
            let _ = write_atomic(&marker, key.as_bytes());
            drop(guard);
            Ok(())
        })?;
    Ok(volid)
}

fn upload_template(client: &Client, cfg: &PveSection, root: &Path, volid: &str) -> Result<()> {
    let have = client
        .storage_content(&cfg.node, &cfg.template_storage, Some("vztmpl"), None)
        .map_err(api("listing templates"))?
        .iter()
        .any(|v| v.volid == volid);
    if !have {
        // An empty tar archive: two zero blocks, padded to 10 KiB.
        let tar = root.join(format!(".{}-{BASE_TEMPLATE}", std::process::id()));
        fs::write(&tar, vec![0u8; 10240]).ctx(|| format!("writing {}", tar.display()))?;
        let sent = client
            .upload_template(&cfg.node, &cfg.template_storage, &tar, BASE_TEMPLATE)
            .and_then(|upid| client.wait_task(&upid, Duration::from_secs(cfg.task_timeout_secs)));
        let _ = fs::remove_file(&tar);
        sent.map_err(api("uploading the base template"))?;
    }
    Ok(())
}

/// Forget the cached template (it was deleted on the node).
pub fn forget_template(root: &Path) {
    let _ = fs::remove_file(root.join("pve-template"));
}

/// True if the CT `vmid` exists and is this container's (its description
/// names the id, root and node). A missing CT is `Ok(false)`.
pub fn owns(client: &Client, node: &str, vmid: u32, id: &str, root: &Path) -> Result<bool> {
    match client.lxc_config(node, vmid) {
        Ok(c) => Ok(c
            .get("description")
            .is_some_and(|d| d.trim() == description(id, root, node))),
        Err(e) if is_missing(&e, node, vmid) => Ok(false),
        Err(e) => Err(api("reading the CT config")(e)),
    }
}

/// Proxmox's answer for a CT that does not exist, and only that (a missing
/// storage or volume in an error must not read as "already gone").
pub fn is_missing(e: &pve_client::Error, node: &str, vmid: u32) -> bool {
    e.status() == Some(500)
        && e.to_string().contains(&format!(
            "Configuration file 'nodes/{node}/lxc/{vmid}.conf' does not exist"
        ))
}

/// Destroy the CT with its volumes (purge). `check_owner`: look first that
/// it is ours (when the VMID was only reserved, someone else may have it).
pub fn destroy(
    client: &Client,
    cfg: &PveSection,
    rec: &PveRecord,
    id: &str,
    root: &Path,
    check_owner: bool,
) -> Result<()> {
    let Some(vmid) = rec.vmid else { return Ok(()) };
    if check_owner && !owns(client, &rec.node, vmid, id, root)? {
        return Ok(());
    }
    // A CT still in its create task (the runtime died while it ran) is
    // locked: wait for the lock to go, with backoff.
    let deadline = std::time::Instant::now() + Duration::from_secs(cfg.task_timeout_secs);
    let mut pause = Duration::from_millis(200);
    let upid = loop {
        match client.lxc_delete(&rec.node, vmid, true, true) {
            Ok(u) => break u,
            Err(e) if is_missing(&e, &rec.node, vmid) => return Ok(()),
            Err(e) if e.to_string().contains("locked") && std::time::Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(api(&format!("destroying CT {vmid}"))(e)),
        }
    };
    client
        .wait_task(&upid, Duration::from_secs(cfg.task_timeout_secs))
        .map(|_| ())
        .map_err(api(&format!("destroying CT {vmid}")))
}

/// A pseudo-random number in 1..=n (spreads concurrent VMID picks).
pub fn jitter(n: u32) -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    1 + (h.finish() % n.max(1) as u64) as u32
}

/// The rootfs volume of a created CT: its volid and host path.
pub fn rootfs_path(client: &Client, node: &str, vmid: u32) -> Result<PathBuf> {
    let conf = client
        .lxc_config(node, vmid)
        .map_err(api("reading the CT config"))?;
    let rootfs = conf
        .get("rootfs")
        .ok_or_else(|| Error::Pve(format!("CT {vmid} has no rootfs")))?;
    let volid = rootfs.split(',').next().unwrap_or_default();
    let volid = volid.strip_prefix("volume=").unwrap_or(volid);
    let (storage, _) = volid.split_once(':').ok_or_else(|| {
        Error::Pve(format!(
            "CT {vmid}: rootfs {rootfs:?} is not a storage volume"
        ))
    })?;
    let info = client
        .volume_info(node, storage, volid)
        .map_err(api("looking up the rootfs volume"))?;
    let path = PathBuf::from(info.path);
    if !path.is_dir() {
        return Err(Error::Config(format!(
            "storage {storage:?} gives CT {vmid} its rootfs {volid} as {} (an image or block device), not a directory on this node; use a zfspool storage (or a dir storage with rootfs_size_gb = 0) for pve.storage",
            path.display()
        )));
    }
    Ok(path)
}

/// Proxmox's fixed idmap of unprivileged CTs: 0..65536 -> 100000..
pub fn unprivileged_shift() -> storage::IdShift {
    let r = storage::IdRange {
        container_id: 0,
        host_id: ID_SHIFT,
        size: 65536,
    };
    storage::IdShift {
        uids: vec![r],
        gids: vec![r],
    }
}

/// The ZFS dataset mounted at `path`, if any.
fn dataset_at(path: &Path) -> Option<String> {
    let out = storage::zfs::Zfs::new("zfs")
        .run(["list", "-H", "-o", "name,mountpoint", "-t", "filesystem"])
        .ok()?;
    out.lines().find_map(|l| {
        let (name, mp) = l.split_once('\t')?;
        (Path::new(mp) == path).then(|| name.to_string())
    })
}

/// Put the bundle's rootfs into the CT's (empty) volume: with `[storage]`
/// kind zfs and a ZFS volume, the volume becomes a clone of the cached
/// image (O(1) once cached; Proxmox keeps seeing its own dataset); else a
/// copy. Owners are shifted into the unprivileged range when asked.
pub fn fill_rootfs(
    store: Option<&storage::Storage>,
    src: &Path,
    dst: &Path,
    annotations: &BTreeMap<String, String>,
    unprivileged: bool,
) -> Result<()> {
    let shift = unprivileged.then(unprivileged_shift);
    let mut progress =
        storage::TerminalProgress::new(format!("copying rootfs to {}", dst.display()), None);
    if let Some(st) = store.filter(|s| s.config().kind == storage::Kind::Zfs) {
        if let Some(ds) = dataset_at(dst) {
            let key = storage::ImageKey::for_bundle(annotations, src, shift.as_ref())?;
            st.populate_named(&ds, src, &key, shift.as_ref(), &mut progress)?;
            return Ok(());
        }
    }
    storage::copy_tree(src, dst, shift.as_ref(), &mut progress)?;
    Ok(())
}

/// The exchange directory of a pve-lxc container lives under `base`
/// (traversable by the CT's unprivileged root, which LXC's mount of it runs
/// as; a runtime root such as containerd's `/run/containerd/runc` is not),
/// with `<container dir>/exchange` a symlink to it. Returns its real path.
pub fn make_exchange(base: &Path, root: &Path, id: &str, link: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    // FNV-1a of root and id: unique per container, short, no id in the path.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in root
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .chain(b"\0")
        .chain(id.as_bytes())
    {
        h = (h ^ *b as u64).wrapping_mul(0x100000001b3);
    }
    let mut p = PathBuf::from("/");
    for c in base.components().skip(1) {
        p.push(c);
        match fs::create_dir(&p) {
            // Made here: traversable, not listable.
            Ok(()) => fs::set_permissions(&p, fs::Permissions::from_mode(0o711))
                .ctx(|| format!("chmod {}", p.display()))?,
            // Concurrent creates race here; one of them makes it.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).ctx(|| format!("creating {}", p.display())),
        }
    }
    let dir = base.join(format!("{h:016x}"));
    match fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // A crashed create of the same container: start afresh.
            fs::remove_dir_all(&dir).ctx(|| format!("removing {}", dir.display()))?;
            fs::create_dir(&dir).ctx(|| format!("creating {}", dir.display()))?;
        }
        Err(e) => return Err(e).ctx(|| format!("creating {}", dir.display())),
    }
    // Only the container's root may look inside (init.json holds the
    // process's environment).
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
        .ctx(|| format!("chmod {}", dir.display()))?;
    std::os::unix::fs::symlink(&dir, link).ctx(|| format!("linking {}", link.display()))?;
    Ok(dir)
}

/// Remove the exchange directory behind `<container dir>/exchange`.
pub fn remove_exchange(container_dir: &Path) {
    if let Ok(target) = fs::read_link(container_dir.join("exchange")) {
        let _ = fs::remove_dir_all(target);
    }
}

/// Give the exchange directory to the container's root (user namespaces).
pub fn chown_exchange(dir: &Path, uid: u32, gid: u32) -> Result<()> {
    for e in std::iter::once(dir.to_path_buf()).chain(
        fs::read_dir(dir)
            .ctx(|| format!("reading {}", dir.display()))?
            .flatten()
            .map(|e| e.path()),
    ) {
        std::os::unix::fs::lchown(&e, Some(uid), Some(gid))
            .ctx(|| format!("chown {}", e.display()))?;
    }
    Ok(())
}

/// Start the CT's monitor. It is our child and the pid-file pid: it serves
/// `listener` once (the init's stdio), then waits for the init to end.
pub fn spawn_monitor(
    exchange: &Path,
    listener: UnixListener,
    stdio: Option<&OwnedFd>,
    wait_for_init: Duration,
) -> Result<Pid> {
    let exchange = exchange.to_path_buf();
    let slave = stdio.map(|f| f.as_raw_fd());
    // SAFETY: the CLI is single-threaded when it forks (the API client's
    // connections are plain blocking sockets).
    match unsafe { fork() }.ctx(|| "forking the monitor".to_string())? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            let code = monitor_main(&exchange, listener, slave, wait_for_init);
            // SAFETY: leave without running the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
    }
}

fn monitor_main(
    exchange: &Path,
    listener: UnixListener,
    slave: Option<i32>,
    wait_for_init: Duration,
) -> i32 {
    // Keep 0-2 and the listener (moved to 3); drop the rest (the lock).
    crate::lxc_engine::detach_monitor(slave, Some(listener.as_raw_fd()));
    std::mem::forget(listener);
    // SAFETY: fd 3 is the listener we just put there.
    let listener = unsafe { <UnixListener as std::os::fd::FromRawFd>::from_raw_fd(3) };
    // An init that never comes (the CT did not start, create was killed)
    // must not keep us, and containerd's stdio, forever.
    let timeout = PollTimeout::try_from(wait_for_init).unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    if !matches!(poll(&mut fds, timeout), Ok(n) if n > 0) {
        return 255;
    }
    let Ok((conn, _)) = listener.accept() else {
        return 255;
    };
    drop(listener);
    let Ok(cred) = getsockopt(&conn, PeerCredentials) else {
        return 255;
    };
    let Some(init) = proc::proc_ref(cred.pid()) else {
        return 255;
    };
    if write_atomic(
        &exchange.join(FILE_INIT_PID),
        serde_json::to_string(&init).unwrap_or_default().as_bytes(),
    )
    .is_err()
    {
        return 255;
    }
    if lxc_pty_send(&conn).is_err() {
        return 255;
    }
    drop(conn);
    // Only the container holds containerd's pipes from now on.
    if let Ok(null) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
    wait_exit(&init);
    match crate::lxc_engine::exit_code(exchange) {
        Some(code) => code,
        // No status from the init: killed from outside (Proxmox stopped
        // the CT). Say so where `state` looks, too.
        None => {
            let _ = fs::write(exchange.join(crate::lxc_engine::FILE_KILLED), "9");
            128 + libc::SIGKILL
        }
    }
}

fn lxc_pty_send(conn: &std::os::unix::net::UnixStream) -> std::result::Result<(), String> {
    proxmox_lxcri_lxc::pty::send_fds(conn, &[0, 1, 2], b"stdio")
}

/// Block until `init` (not our child) has ended.
fn wait_exit(init: &ProcRef) {
    let pid = init.pid;
    // SAFETY: pidfd_open(2) returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // The pid may have ended (and been reused) before the pidfd was made.
    if !proc::is_alive(init) {
        return;
    }
    if fd >= 0 {
        // SAFETY: a new fd we own.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
        loop {
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::Error::EINTR) => continue,
                _ => return,
            }
        }
    }
    while proc::is_alive(init) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The init's host pid, as the monitor recorded it.
pub fn read_init(exchange: &Path) -> Option<ProcRef> {
    let text = fs::read_to_string(exchange.join(FILE_INIT_PID)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Wait for a task while keeping the caller's deadline.
pub fn wait(client: &Client, cfg: &PveSection, upid: &Upid, what: &str) -> Result<()> {
    client
        .wait_task(upid, Duration::from_secs(cfg.task_timeout_secs))
        .map(|_| ())
        .map_err(api(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("8G"), Some(8 << 30));
        assert_eq!(parse_size("0G"), None);
        assert_eq!(parse_size("8 G"), None);
        assert_eq!(parse_size("-1G"), None);
        assert_eq!(parse_size("G"), None);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpus("0-3"), Some(4));
        assert_eq!(count_cpus("0,2,4-5"), Some(4));
        assert_eq!(count_cpus("3-1"), None);
        assert_eq!(count_cpus("x"), None);
    }

    #[test]
    fn tags_are_proxmox_safe() {
        assert_eq!(id_tag("My_Ctr.1"), "lxcri-my_ctr.1");
        assert_eq!(id_tag("a b"), "lxcri-a-b");
    }

    #[test]
    fn raw_keys_drop_what_the_api_sets() {
        let e = |k: &str, v: &str| (k.to_string(), v.to_string());
        let entries = vec![
            e("lxc.rootfs.path", "dir:/x"),
            e("lxc.uts.name", "h"),
            e("lxc.net.0.type", "empty"),
            e("lxc.idmap", "u 0 1 1"),
            e("lxc.init.cmd", "/dev/.lxcri-init"),
            e("lxc.mount.entry", "a b none bind 0 0"),
        ];
        let out = raw_keys(&entries, true, NetMode::Api);
        let keys: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["lxc.init.cmd", "lxc.mount.entry"]);
        let out = raw_keys(&entries, false, NetMode::Raw);
        assert!(out.iter().any(|(k, _)| k == "lxc.net.0.type"));
        assert!(out.iter().any(|(k, _)| k == "lxc.idmap"));
    }

    #[test]
    fn features_are_checked() {
        assert!(features("nesting=1,fuse=0").is_ok());
        assert!(features("mknod=1").is_err());
        assert!(features("nesting=yes").is_err());
    }
}
