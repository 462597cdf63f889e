//! What the runtime does on the Proxmox node and through its API around a
//! CT: the base template, the rootfs volume, the CT's config file, the
//! exchange directory, ownership checks and destruction.
use super::*;

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

/// A kind of Proxmox guest: the API paths, config directory and name differ;
/// what the runtime asks of either is the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guest {
    Ct,
    Vm,
}

impl Guest {
    pub fn name(self) -> &'static str {
        match self {
            Guest::Ct => "CT",
            Guest::Vm => "VM",
        }
    }

    /// The kind in the API's paths (`/lxc/`, `/qemu/`).
    pub fn api_type(self) -> pve_client::GuestType {
        match self {
            Guest::Ct => pve_client::GuestType::Lxc,
            Guest::Vm => pve_client::GuestType::Qemu,
        }
    }

    fn config(
        self,
        client: &Client,
        node: &str,
        vmid: u32,
    ) -> pve_client::Result<pve_client::CtConfig> {
        match self {
            Guest::Ct => client.lxc_config(node, vmid),
            Guest::Vm => client.qemu_config(node, vmid),
        }
    }

    /// Proxmox's answer for a guest that does not exist, and only that (a
    /// missing storage or volume in an error must not read as "already gone").
    pub fn is_missing(self, e: &pve_client::Error, node: &str, vmid: u32) -> bool {
        let dir = match self {
            Guest::Ct => "lxc",
            Guest::Vm => "qemu-server",
        };
        e.status() == Some(500)
            && e.server_message().is_some_and(|m| {
                m.contains(&format!(
                    "Configuration file 'nodes/{node}/{dir}/{vmid}.conf' does not exist"
                ))
            })
    }

    /// True if guest `vmid` exists and is this container's (its description
    /// names the id, root and node). A missing guest is `Ok(false)`.
    pub fn owns(
        self,
        client: &Client,
        node: &str,
        vmid: u32,
        id: &str,
        root: &Path,
    ) -> Result<bool> {
        match self.config(client, node, vmid) {
            Ok(c) => Ok(c
                .get("description")
                .is_some_and(|d| description_id(d, root, node).as_deref() == Some(id))),
            Err(e) if self.is_missing(&e, node, vmid) => Ok(false),
            Err(e) => Err(api(&format!("reading the {} config", self.name()))(e)),
        }
    }

    /// Wait, with backoff, until the guest's config has no `lock` (a task
    /// we did not start, or lost track of, still runs). A gone guest is fine.
    pub fn wait_unlocked(
        self,
        client: &Client,
        cfg: &PveSection,
        node: &str,
        vmid: u32,
    ) -> Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(cfg.task_timeout_secs);
        let mut pause = Duration::from_millis(100);
        loop {
            let conf = match self.config(client, node, vmid) {
                Ok(c) => c,
                Err(e) if self.is_missing(&e, node, vmid) => return Ok(()),
                Err(e) => return Err(api(&format!("reading the {} config", self.name()))(e)),
            };
            let Some(lock) = conf.get("lock") else {
                return Ok(());
            };
            if std::time::Instant::now() > deadline {
                return Err(Error::Guest(format!(
                    "{} {vmid} stayed locked ({lock})",
                    self.name()
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

/// [`Guest::owns`] of a CT.
pub fn owns(client: &Client, node: &str, vmid: u32, id: &str, root: &Path) -> Result<bool> {
    Guest::Ct.owns(client, node, vmid, id, root)
}

/// [`Guest::is_missing`] of a CT.
pub fn is_missing(e: &pve_client::Error, node: &str, vmid: u32) -> bool {
    Guest::Ct.is_missing(e, node, vmid)
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
    let mut waited = false;
    let upid = loop {
        match client.lxc_delete(&rec.node, vmid, true, true) {
            Ok(u) => break u,
            Err(e) if is_missing(&e, &rec.node, vmid) => return Ok(()),
            // Still in its create task (the runtime died while it ran).
            Err(e) if is_locked(&e) && !waited => {
                wait_unlocked(client, cfg, &rec.node, vmid)?;
                waited = true;
            }
            Err(e) => return Err(api(&format!("destroying CT {vmid}"))(e)),
        }
    };
    wait(client, cfg, &upid, &format!("destroying CT {vmid}"))
}

/// [`Guest::wait_unlocked`] of a CT.
pub fn wait_unlocked(client: &Client, cfg: &PveSection, node: &str, vmid: u32) -> Result<()> {
    Guest::Ct.wait_unlocked(client, cfg, node, vmid)
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
        .ok_or_else(|| Error::Guest(format!("CT {vmid} has no rootfs")))?;
    let volid = rootfs.split(',').next().unwrap_or_default();
    let volid = volid.strip_prefix("volume=").unwrap_or(volid);
    let (storage, _) = volid.split_once(':').ok_or_else(|| {
        Error::Guest(format!(
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
    storage::IdShift::uniform(ID_SHIFT, 65536)
}

/// Wait for a task while keeping the caller's deadline.
/// A failed task's error carries its log's lines that matter.
pub fn wait(client: &Client, cfg: &PveSection, upid: &Upid, what: &str) -> Result<()> {
    client
        .wait_task(upid, Duration::from_secs(cfg.task_timeout_secs))
        .map(|_| ())
        .map_err(|e| match e {
            pve_client::Error::Task {
                upid: u,
                exitstatus,
            } => api(what)(pve_client::Error::Task {
                exitstatus: super::task_log::describe(client, upid, &exitstatus),
                upid: u,
            }),
            e => api(what)(e),
        })
}
