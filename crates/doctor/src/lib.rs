//! `proxmox-lxcri doctor` and the exporter's `/healthz`: each check says in
//! words what it found and, on a problem, what to do.
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde::Serialize;

use proxmox_lxcri_runtime::config::PveSection;
use proxmox_lxcri_runtime::engine::pve_lxc;
use proxmox_lxcri_runtime::Runtime;

mod privileges;
pub use privileges::{missing_privileges, required_privileges};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Not configured here, so not checked.
    Skip,
    /// Works, but needs attention.
    Warn,
    /// Containers will fail.
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Skip => "skip",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
}

fn check(name: &'static str, status: Status, detail: impl Into<String>) -> Check {
    Check {
        name,
        status,
        detail: detail.into(),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub healthy: bool,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn worst(&self) -> Status {
        self.checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Ok)
    }

    /// A table for people.
    pub fn table(&self) -> String {
        let w = self
            .checks
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut s = format!("{:<w$}  {:<6} DETAIL\n", "CHECK", "STATUS");
        for c in &self.checks {
            let mut lines = c.detail.lines();
            s.push_str(&format!(
                "{:<w$}  {:<6} {}\n",
                c.name,
                c.status.as_str(),
                lines.next().unwrap_or("")
            ));
            for l in lines {
                s.push_str(&format!("{:<w$}  {:<6} {l}\n", "", ""));
            }
        }
        s
    }
}

/// Run every check for the runtime root and config of `rt`.
pub fn run(rt: &Runtime) -> Report {
    let mut checks = vec![root_writable(&rt.store.root)];
    checks.push(liblxc(&rt.config.lxc.lxc_start));
    checks.push(cgroups());
    checks.push(zfs_pool(rt));
    checks.extend(proxmox(rt.config.pve.as_ref()));
    checks.push(pve_vm(rt));
    checks.push(bridges(rt));
    if checks[0].status == Status::Fail {
        checks.push(check(
            "leftovers",
            Status::Skip,
            "the runtime root is unusable",
        ));
    } else {
        checks.push(leftovers(rt));
    }
    let healthy = checks.iter().all(|c| c.status != Status::Fail);
    Report { healthy, checks }
}

fn root_writable(root: &Path) -> Check {
    const NAME: &str = "runtime root";
    match std::fs::metadata(root) {
        Ok(m) if !m.is_dir() => {
            return check(
                NAME,
                Status::Fail,
                format!(
                    "{} is not a directory; pass --root a directory",
                    root.display()
                ),
            )
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Made by the first create; its parent must let us.
            let parent = root.parent().unwrap_or(Path::new("/"));
            let mut p = parent;
            while !p.exists() {
                p = p.parent().unwrap_or(Path::new("/"));
            }
            return match probe_write(p) {
                Ok(()) => check(
                    NAME,
                    Status::Ok,
                    format!(
                        "{} does not exist yet; {} is writable, so the first create makes it",
                        root.display(),
                        p.display()
                    ),
                ),
                Err(e) => check(
                    NAME,
                    Status::Fail,
                    format!(
                        "{} does not exist and {} is not writable: {e}",
                        root.display(),
                        p.display()
                    ),
                ),
            };
        }
        Err(e) => return check(NAME, Status::Fail, format!("{}: {e}", root.display())),
    }
    match probe_write(root) {
        Ok(()) => check(NAME, Status::Ok, format!("{} is writable", root.display())),
        Err(e) => check(
            NAME,
            Status::Fail,
            format!(
                "cannot write in {}: {e}; check its mount (read-only?) and permissions",
                root.display()
            ),
        ),
    }
}

/// Create, sync and remove a file: what every state write does.
fn probe_write(dir: &Path) -> std::io::Result<()> {
    let p = dir.join(format!(".doctor-{}", std::process::id()));
    let r = std::fs::write(&p, b"probe").and_then(|_| std::fs::File::open(&p)?.sync_all());
    let _ = std::fs::remove_file(&p);
    r
}

fn liblxc(lxc_start: &Path) -> Check {
    const NAME: &str = "liblxc";
    let out = Command::new(lxc_start).arg("--version").output();
    match out {
        Ok(o) if o.status.success() => {
            let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
            let major: u32 = v.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
            if major < 4 {
                check(NAME, Status::Warn, format!("{} reports liblxc {v}; 4.0 or later is tested", lxc_start.display()))
            } else {
                check(NAME, Status::Ok, format!("liblxc {v} ({})", lxc_start.display()))
            }
        }
        Ok(o) => check(NAME, Status::Fail, format!("{} --version failed: {}", lxc_start.display(), String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => check(NAME, Status::Fail, format!("cannot run {}: {e}; install the lxc package (apt-get install lxc) or set lxc.lxc_start", lxc_start.display())),
    }
}

fn cgroups() -> Check {
    const NAME: &str = "cgroups";
    use proxmox_lxcri_cgroups::{CgroupLayout, Mode};
    match CgroupLayout::detect() {
        Ok(l) => {
            let mode = match l.mode() {
                Mode::V2 => "cgroup v2 (unified)",
                Mode::Hybrid => "hybrid (v1 controllers + unified)",
                Mode::V1 => "cgroup v1",
            };
            let missing: Vec<&str> = ["cpu", "memory", "pids"]
                .into_iter()
                .filter(|c| !l.has_v1(c) && !l.has_v2(c))
                .collect();
            if missing.is_empty() {
                check(
                    NAME,
                    Status::Ok,
                    format!("{mode}; cpu, memory, pids available"),
                )
            } else {
                check(
                    NAME,
                    Status::Warn,
                    format!(
                        "{mode}; no {} controller: those limits cannot be applied",
                        missing.join(", ")
                    ),
                )
            }
        }
        Err(e) => check(NAME, Status::Fail, e.to_string()),
    }
}

fn zfs_pool(rt: &Runtime) -> Check {
    const NAME: &str = "zfs pool";
    let Some(cfg) = &rt.config.storage else {
        return check(NAME, Status::Skip, "no [storage]: rootfs run in place");
    };
    if cfg.kind != storage::Kind::Zfs {
        return check(
            NAME,
            Status::Skip,
            format!("[storage] kind is dir ({})", cfg.dir_root.display()),
        );
    }
    let parent = cfg.zfs_parent.clone().unwrap_or_default();
    let pool = parent.split('/').next().unwrap_or_default().to_string();
    // zpool lives next to zfs.
    let zpool = cfg
        .zfs_command
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| p.join("zpool"))
        .unwrap_or_else(|| "zpool".into());
    // Health from zpool; sizes from the pool's root dataset with zfs -p
    // (zfs-fuse's zpool has no -p).
    let out = Command::new(&zpool)
        .args(["list", "-H", "-o", "health", &pool])
        .output();
    let o = match out {
        Ok(o) => o,
        Err(e) => {
            return check(
                NAME,
                Status::Fail,
                format!("cannot run {}: {e}", zpool.display()),
            )
        }
    };
    if !o.status.success() {
        return check(
            NAME,
            Status::Fail,
            format!(
                "pool {pool:?} of storage.zfs_parent: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
        );
    }
    let health = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let zfs = storage::zfs::Zfs::new(cfg.zfs_command.clone());
    let (used, free) = match (zfs.get_u64(&pool, "used"), zfs.get_u64(&pool, "available")) {
        (Ok(u), Ok(a)) => (u, a),
        (Err(e), _) | (_, Err(e)) => return check(NAME, Status::Fail, format!("pool {pool}: {e}")),
    };
    let size = used + free;
    let pct = (free * 100).checked_div(size).unwrap_or(0);
    let detail = format!(
        "{pool}: {health}, {} free of {} ({pct}%)",
        human(free),
        human(size)
    );
    if health != "ONLINE" {
        check(
            NAME,
            Status::Fail,
            format!("{detail}; see zpool status {pool}"),
        )
    } else if pct < 10 {
        check(NAME, Status::Warn, format!("{detail}; less than 10% free"))
    } else {
        check(NAME, Status::Ok, detail)
    }
}

fn human(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", units[i])
}

/// Reachable, TLS as configured, credentials valid, the node known, and the
/// privileges pve-lxc needs.
fn proxmox(cfg: Option<&PveSection>) -> Vec<Check> {
    const NAME: &str = "proxmox api";
    let Some(cfg) = cfg else {
        return vec![check(
            NAME,
            Status::Skip,
            "no [pve]: the Proxmox engines are not configured",
        )];
    };
    let tls = if cfg.insecure {
        check(
            "proxmox tls",
            Status::Warn,
            "insecure = true: the certificate is not verified; pin its fingerprint",
        )
    } else if let Some(fp) = &cfg.fingerprint {
        check(
            "proxmox tls",
            Status::Ok,
            format!("certificate pinned ({}…)", &fp[..fp.len().min(17)]),
        )
    } else if let Some(ca) = &cfg.ca_file {
        check(
            "proxmox tls",
            Status::Ok,
            format!("verified against {}", ca.display()),
        )
    } else {
        check(
            "proxmox tls",
            Status::Ok,
            "verified against the system roots",
        )
    };
    let mut short = cfg.clone();
    // A doctor should answer quickly, not retry for minutes.
    short.timeout_secs = short.timeout_secs.min(5);
    short.retries = 0;
    let client = match pve_lxc::connect(&short) {
        Ok(c) => c,
        Err(e) => return vec![check(NAME, Status::Fail, e.to_string()), tls],
    };
    let version = match client.version() {
        Ok(v) => v,
        Err(e) => {
            let (name, hint) = match &e {
                pve_client::Error::Tls(_) => ("proxmox tls", "the certificate does not match pve.fingerprint / pve.ca_file (a new certificate? pin the new fingerprint)"),
                pve_client::Error::Http { status: 401, .. } => ("proxmox auth", "the token or password is not accepted (wrong secret, expired or deleted token)"),
                _ => (NAME, "is pve.url right, and pveproxy running?"),
            };
            let mut out = vec![check(name, Status::Fail, format!("{e}\n{hint}"))];
            if name != "proxmox tls" {
                out.push(tls);
            }
            if name != NAME {
                out.insert(0, check(NAME, Status::Ok, format!("{} answers", cfg.url)));
            }
            return out;
        }
    };
    let mut out = vec![
        check(
            NAME,
            Status::Ok,
            format!("{} answers: Proxmox VE {}", cfg.url, version.version),
        ),
        tls,
    ];
    let who = cfg
        .token_id
        .clone()
        .or(cfg.username.clone())
        .unwrap_or_default();
    out.push(check(
        "proxmox auth",
        Status::Ok,
        format!("{who} is accepted"),
    ));
    match client.nodes() {
        Ok(nodes) if nodes.iter().any(|n| n.node == cfg.node) => {}
        Ok(nodes) => out.push(check(
            "proxmox node",
            Status::Fail,
            format!(
                "pve.node {:?} is not a node of this cluster (nodes: {})",
                cfg.node,
                nodes
                    .iter()
                    .map(|n| n.node.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
        Err(e) => out.push(check("proxmox node", Status::Fail, e.to_string())),
    }
    match client.permissions(None) {
        Ok(perms) => {
            let missing = missing_privileges(&perms, &required_privileges(cfg));
            if missing.is_empty() {
                out.push(check(
                    "proxmox privileges",
                    Status::Ok,
                    format!("{who} has every privilege pve-lxc needs"),
                ));
            } else {
                out.push(check(
                    "proxmox privileges",
                    Status::Fail,
                    format!("{who} lacks: {}\ngrant them (pveum acl modify ...) or use a token without privilege separation", missing.iter().map(|(p, v)| format!("{v} on {p}")).collect::<Vec<_>>().join(", ")),
                ));
            }
        }
        Err(e) => out.push(check(
            "proxmox privileges",
            Status::Fail,
            format!("cannot read the permissions: {e}"),
        )),
    }
    out
}

/// What pve-vm needs on this node, when the config chooses that engine:
/// the guest kernel and its modules, mkfs.ext4, and a root@pam login (a
/// VM's `args`, which carry its kernel and initramfs, are root@pam's only).
fn pve_vm(rt: &Runtime) -> Check {
    const NAME: &str = "pve-vm guest";
    use proxmox_lxcri_runtime::config::Backend;
    let chosen = rt.config.default_backend == Backend::PveVm
        || rt
            .config
            .routing
            .iter()
            .any(|r| r.backend == Backend::PveVm);
    if !chosen {
        return check(
            NAME,
            Status::Skip,
            "neither default_backend nor a routing rule chooses pve-vm",
        );
    }
    let Some(pve) = &rt.config.pve else {
        return check(NAME, Status::Fail, "pve-vm needs a [pve] section");
    };
    let kernel = match proxmox_lxcri_runtime::engine::pve_vm::initramfs::find_kernel(
        pve.vm_kernel.as_deref(),
    ) {
        Ok(k) => k,
        Err(e) => return check(NAME, Status::Fail, e.to_string()),
    };
    if !kernel.modules.join("modules.dep").is_file() {
        return check(
            NAME,
            Status::Fail,
            format!(
                "{}: its modules are missing ({}/modules.dep); reinstall its package",
                kernel.image.display(),
                kernel.modules.display()
            ),
        );
    }
    let mkfs = std::process::Command::new("mkfs.ext4")
        .arg("-V")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !mkfs {
        return check(
            NAME,
            Status::Fail,
            "mkfs.ext4 not found: install e2fsprogs (it writes the VM's disk)",
        );
    }
    if pve.token_id.is_some() || pve.username.as_deref() != Some("root@pam") {
        return check(
            NAME,
            Status::Fail,
            "a VM's args (its kernel and initramfs) can only be set by root@pam, not by a token: \
             set username = \"root@pam\" and password_file in [pve]",
        );
    }
    check(
        NAME,
        Status::Ok,
        format!(
            "kernel {}, mkfs.ext4, root@pam login",
            kernel.image.display()
        ),
    )
}

/// The bridge of `[pve]` (needed on this node: CTs cannot start without
/// it) and those of `[network.*]` (the lxc engine makes a missing one at
/// first use; a Proxmox CT on it cannot start until it exists).
fn bridges(rt: &Runtime) -> Check {
    const NAME: &str = "bridges";
    let is_bridge = |b: &str| Path::new("/sys/class/net").join(b).join("bridge").is_dir();
    let exists = |b: &str| Path::new("/sys/class/net").join(b).exists();
    let mut wanted: Vec<(String, String)> = vec![];
    if let Some(p) = &rt.config.pve {
        wanted.push((p.bridge.clone(), "pve.bridge".into()));
    }
    for (name, n) in &rt.config.network {
        wanted.push((n.bridge.clone(), format!("network.{name}")));
    }
    if wanted.is_empty() {
        return check(
            NAME,
            Status::Skip,
            "no [pve] and no [network.*]: no NIC is put on a bridge",
        );
    }
    let mut worst = Status::Ok;
    let mut lines = vec![];
    for (b, by) in &wanted {
        let (st, what) = if is_bridge(b) {
            (Status::Ok, format!("{b} ({by}) is a bridge"))
        } else if exists(b) {
            (
                Status::Fail,
                format!("{b} ({by}) exists but is not a bridge"),
            )
        } else if by == "pve.bridge" {
            (Status::Fail, format!("{b} ({by}) does not exist on this node; create it (ip link add {b} type bridge) or set pve.bridge"))
        } else if rt.config.pve.is_some() {
            (Status::Warn, format!("{b} ({by}) does not exist: the lxc engine makes it at first use, but a Proxmox CT on it cannot start until it exists"))
        } else {
            (
                Status::Ok,
                format!("{b} ({by}) does not exist yet; the lxc engine makes it at first use"),
            )
        };
        worst = worst.max(st);
        lines.push(what);
    }
    check(NAME, worst, lines.join("\n"))
}

fn leftovers(rt: &Runtime) -> Check {
    const NAME: &str = "leftovers";
    match rt.gc(true) {
        Ok(list) if list.is_empty() => check(NAME, Status::Ok, "nothing for gc to remove"),
        Ok(list) => {
            let mut d = format!(
                "{} leftover(s); `proxmox-lxcri gc` removes them:",
                list.len()
            );
            for r in list.iter().take(10) {
                d.push_str(&format!(
                    "\n{} {} ({})",
                    r.item.source, r.item.name, r.item.reason
                ));
            }
            check(NAME, Status::Warn, d)
        }
        Err(e) => check(
            NAME,
            Status::Fail,
            format!("cannot look for leftovers: {e}"),
        ),
    }
}

/// A cached report, for `/healthz` (a scraper polling often must not run
/// `zpool` and API calls each time).
pub struct Cached {
    every: Duration,
    last: std::sync::Mutex<Option<(std::time::Instant, Report)>>,
}

impl Cached {
    pub fn new(every: Duration) -> Self {
        Cached {
            every,
            last: Default::default(),
        }
    }

    pub fn get(&self, rt: &Runtime) -> Report {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((t, r)) = last.as_ref() {
            if t.elapsed() < self.every {
                return r.clone();
            }
        }
        let r = run(rt);
        *last = Some((std::time::Instant::now(), r.clone()));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_as_root_and_a_missing_lxc_start_fail_in_words() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        let c = root_writable(&file);
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("is not a directory"), "{}", c.detail);
        assert_eq!(root_writable(dir.path()).status, Status::Ok);
        let c = root_writable(&dir.path().join("new/root"));
        assert_eq!(c.status, Status::Ok, "{}", c.detail);
        let c = liblxc(Path::new("/nonexistent/lxc-start"));
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("install the lxc package"), "{}", c.detail);
    }

    #[test]
    fn table_has_one_row_per_check() {
        let r = Report {
            healthy: false,
            checks: vec![
                check("a", Status::Ok, "fine"),
                check("bb", Status::Fail, "broken\nfix it"),
            ],
        };
        let t = r.table();
        assert_eq!(t.lines().count(), 4, "{t}");
        assert!(t.contains("bb     FAIL   broken"), "{t}");
        assert_eq!(r.worst(), Status::Fail);
    }
}
