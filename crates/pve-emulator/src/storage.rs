//! Storage backends: a directory (`dir`) and real ZFS (`zfspool`, through
//! the `zfs` command). Rootfs volumes are subvolumes `subvol-<vmid>-disk-<n>`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub enum Backend {
    Dir(PathBuf),
    /// POOL/DATASET
    Zfs(String),
}

#[derive(Debug, Clone)]
pub struct Storage {
    pub id: String,
    pub backend: Backend,
}

/// Parses `ID=dir:/path` or `ID=zfspool:POOL/DATASET`.
pub fn parse_arg(s: &str) -> Result<Storage, String> {
    let (id, rest) = s
        .split_once('=')
        .ok_or_else(|| format!("storage '{s}' is not ID=dir:/path or ID=zfspool:POOL/DATASET"))?;
    if !crate::schema::is_storage_id(id) {
        return Err(format!("storage ID '{id}' contains illegal characters"));
    }
    let backend = match rest.split_once(':') {
        Some(("dir", p)) if p.starts_with('/') && !p.split('/').any(|c| c == "..") => {
            Backend::Dir(PathBuf::from(p))
        }
        Some(("zfspool", ds))
            if !ds.is_empty()
                && regex::Regex::new(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*(/[A-Za-z0-9_.:\-]+)*$")
                    .unwrap()
                    .is_match(ds) =>
        {
            Backend::Zfs(ds.to_string())
        }
        _ => {
            return Err(format!(
                "storage '{s}' is not ID=dir:/path or ID=zfspool:POOL/DATASET"
            ))
        }
    };
    Ok(Storage {
        id: id.to_string(),
        backend,
    })
}

/// Runs a command (no shell) and returns its stdout; gives up after
/// `TIMEOUT` so a wedged helper (e.g. a hung zfs-fuse) fails the task
/// instead of hanging it forever.
pub fn run(cmd: &str, args: &[&str]) -> Result<String> {
    const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running {cmd}"))?;
    // Drain the pipes in threads so a chatty command cannot block on them.
    let mut so = child.stdout.take().expect("piped");
    let mut se = child.stderr.take().expect("piped");
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = std::io::Read::read_to_end(&mut so, &mut b);
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = std::io::Read::read_to_end(&mut se, &mut b);
        b
    });
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            // A process stuck in the kernel dies late: reap it in the background.
            std::thread::spawn(move || child.wait());
            bail!(
                "{cmd} {} did not finish within {}s",
                args.join(" "),
                TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    if !status.success() {
        bail!(
            "{cmd} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

/// Template file names Proxmox accepts for vztmpl.
pub fn is_template_name(name: &str) -> bool {
    regex::Regex::new(r"^[A-Za-z0-9][A-Za-z0-9_.+\-]*\.(tar|tar\.(gz|xz|zst|bz2))$")
        .unwrap()
        .is_match(name)
}

fn is_subvol_name(name: &str) -> Option<u32> {
    let c = regex::Regex::new(r"^subvol-(\d+)-disk-(\d+)$")
        .unwrap()
        .captures(name)?;
    c[1].parse().ok()
}

/// `<vmid>/vm-<vmid>-<name>.raw` (`vm-100-disk-1`, as `pvesm alloc` also
/// takes any `vm-<vmid>-` name): a VM disk on a dir storage.
fn is_vm_disk_name(name: &str) -> Option<u32> {
    let c = regex::Regex::new(r"^(\d+)/vm-(\d+)-[A-Za-z0-9][A-Za-z0-9_.+-]*\.raw$")
        .unwrap()
        .captures(name)?;
    (c[1] == c[2]).then(|| c[1].parse().ok())?
}

fn dir_usage(p: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                use std::os::unix::fs::MetadataExt;
                total += m.blocks() * 512;
            }
        }
    }
    total
}

impl Storage {
    pub fn type_name(&self) -> &'static str {
        match self.backend {
            Backend::Dir(_) => "dir",
            Backend::Zfs(_) => "zfspool",
        }
    }
    pub fn content(&self) -> &'static str {
        match self.backend {
            Backend::Dir(_) => "rootdir,images,vztmpl,iso",
            Backend::Zfs(_) => "rootdir,images",
        }
    }
    pub fn supports(&self, content: &str) -> bool {
        self.content().split(',').any(|c| c == content)
    }

    pub fn init(&self) -> Result<()> {
        match &self.backend {
            Backend::Dir(p) => {
                std::fs::create_dir_all(p.join("template/cache"))?;
                std::fs::create_dir_all(p.join("images"))?;
            }
            Backend::Zfs(ds) => {
                if run("zfs", &["list", "-H", "-o", "name", ds]).is_err() {
                    run("zfs", &["create", "-p", ds])
                        .with_context(|| format!("storage '{}': creating dataset {ds}", self.id))?;
                }
            }
        }
        Ok(())
    }

    /// Where rootfs volumes live on the host: `images/` of a directory
    /// storage, the dataset's mountpoint on ZFS (None when not mounted).
    pub fn volume_dir(&self) -> Option<PathBuf> {
        match &self.backend {
            Backend::Dir(p) => Some(p.join("images")),
            Backend::Zfs(ds) => {
                let mp = run("zfs", &["get", "-H", "-o", "value", "mountpoint", ds]).ok()?;
                let mp = PathBuf::from(mp.trim());
                mp.is_absolute().then_some(mp)
            }
        }
    }

    pub fn template_dir(&self) -> Option<PathBuf> {
        match &self.backend {
            Backend::Dir(p) => Some(p.join("template/cache")),
            Backend::Zfs(_) => None,
        }
    }

    fn exists(&self, name: &str) -> bool {
        if is_vm_disk_name(name).is_some() {
            return self.path(name).is_ok_and(|p| p.exists());
        }
        match &self.backend {
            Backend::Dir(p) => {
                let vmid = is_subvol_name(name).unwrap_or(0);
                p.join("images").join(vmid.to_string()).join(name).exists()
            }
            Backend::Zfs(ds) => run(
                "zfs",
                &["list", "-H", "-o", "name", &format!("{ds}/{name}")],
            )
            .is_ok(),
        }
    }

    /// Allocates the lowest free `subvol-<vmid>-disk-<n>` with `size_gib`
    /// (0 = no quota) and returns its name.
    pub fn alloc_subvol(&self, vmid: u32, size_gib: f64) -> Result<String> {
        let name = (0..1000)
            .map(|n| format!("subvol-{vmid}-disk-{n}"))
            .find(|n| !self.exists(n))
            .context("no free disk name")?;
        match &self.backend {
            Backend::Dir(p) => {
                let d = p.join("images").join(vmid.to_string()).join(&name);
                std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
            }
            Backend::Zfs(ds) => {
                let full = format!("{ds}/{name}");
                let mut args = vec![
                    "create".to_string(),
                    "-o".into(),
                    "acltype=posixacl".into(),
                    "-o".into(),
                    "xattr=sa".into(),
                ];
                if size_gib > 0.0 {
                    args.push("-o".into());
                    args.push(format!(
                        "refquota={}K",
                        (size_gib * 1024.0 * 1024.0).round() as u64
                    ));
                }
                args.push(full.clone());
                let a: Vec<&str> = args.iter().map(String::as_str).collect();
                if run("zfs", &a).is_err() {
                    // zfs-fuse lacks some properties; retry without them.
                    let mut a2 = vec!["create"];
                    let q;
                    if size_gib > 0.0 {
                        q = format!("refquota={}K", (size_gib * 1024.0 * 1024.0).round() as u64);
                        a2.extend(["-o", q.as_str()]);
                    }
                    a2.push(&full);
                    run("zfs", &a2)?;
                }
            }
        }
        Ok(name)
    }

    /// Allocates the lowest free `<vmid>/vm-<vmid>-disk-<n>.raw` of
    /// `size_gib` (a sparse file) and returns its name. Dir storage only:
    /// on a zfspool a VM disk is a zvol, which zfs-fuse does not have.
    pub fn alloc_vm_disk(&self, vmid: u32, size_gib: f64) -> Result<String> {
        let Backend::Dir(p) = &self.backend else {
            anyhow::bail!(
                "storage '{}': VM disks on a zfspool are zvols, which this emulator (zfs-fuse) cannot make; use a dir storage",
                self.id
            );
        };
        let name = (0..1000)
            .map(|n| format!("{vmid}/vm-{vmid}-disk-{n}.raw"))
            .find(|n| {
                let sub = n.rsplit('/').next().unwrap_or("").replace("vm-", "subvol-");
                !self.exists(n) && !self.exists(sub.trim_end_matches(".raw"))
            })
            .context("no free disk name")?;
        let d = p.join("images").join(vmid.to_string());
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        let path = p.join("images").join(&name);
        let f =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        f.set_len((size_gib * (1u64 << 30) as f64).round() as u64)?;
        Ok(name)
    }

    /// Allocates `<vmid>/<filename>` (`vm-<vmid>-disk-<n>[.raw]`, raw) of
    /// `bytes` (a sparse file), as `pvesm alloc` does; its name.
    pub fn alloc_named(&self, vmid: u32, filename: &str, bytes: u64) -> Result<String> {
        let Backend::Dir(p) = &self.backend else {
            anyhow::bail!(
                "storage '{}': VM disks on a zfspool are zvols, which this emulator (zfs-fuse) cannot make; use a dir storage",
                self.id
            );
        };
        let file = if filename.ends_with(".raw") {
            filename.to_string()
        } else {
            format!("{filename}.raw")
        };
        let name = format!("{vmid}/{file}");
        if is_vm_disk_name(&name).is_none() {
            anyhow::bail!("illegal name '{filename}' - should be 'vm-{vmid}-*'");
        }
        if self.exists(&name) {
            anyhow::bail!("volume '{}:{name}' already exists", self.id);
        }
        let d = p.join("images").join(vmid.to_string());
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        let path = p.join("images").join(&name);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        f.set_len(bytes)?;
        Ok(name)
    }

    /// Where a volume is mounted on the host.
    pub fn path(&self, name: &str) -> Result<PathBuf> {
        if is_vm_disk_name(name).is_some() {
            if let Backend::Dir(p) = &self.backend {
                return Ok(p.join("images").join(name));
            }
        }
        let vmid = is_subvol_name(name)
            .with_context(|| format!("unable to parse volume name '{name}'"))?;
        match &self.backend {
            Backend::Dir(p) => Ok(p.join("images").join(vmid.to_string()).join(name)),
            Backend::Zfs(ds) => {
                let mp = run(
                    "zfs",
                    &[
                        "get",
                        "-H",
                        "-o",
                        "value",
                        "mountpoint",
                        &format!("{ds}/{name}"),
                    ],
                )?;
                Ok(PathBuf::from(mp.trim()))
            }
        }
    }

    pub fn free(&self, name: &str) -> Result<()> {
        if is_vm_disk_name(name).is_some() {
            let f = self.path(name)?;
            if f.exists() {
                std::fs::remove_file(&f).with_context(|| format!("removing {}", f.display()))?;
            }
            if let Some(d) = f.parent() {
                let _ = std::fs::remove_dir(d);
            }
            return Ok(());
        }
        let vmid = is_subvol_name(name)
            .with_context(|| format!("unable to parse volume name '{name}'"))?;
        match &self.backend {
            Backend::Dir(p) => {
                let d = p.join("images").join(vmid.to_string());
                let v = d.join(name);
                if v.exists() {
                    std::fs::remove_dir_all(&v)
                        .with_context(|| format!("removing {}", v.display()))?;
                }
                let snaps = d.join(format!(".snapshots-{name}"));
                if snaps.exists() {
                    std::fs::remove_dir_all(&snaps)?;
                }
                let _ = std::fs::remove_dir(&d);
            }
            Backend::Zfs(ds) => {
                // Right after a CT stopped its rootfs can still be busy for a
                // moment; retry, then force the unmount.
                let full = format!("{ds}/{name}");
                let mut tries = 0;
                loop {
                    let force = tries > 0;
                    let args: &[&str] = if force {
                        &["destroy", "-r", "-f", &full]
                    } else {
                        &["destroy", "-r", &full]
                    };
                    match run("zfs", args) {
                        Ok(_) => break,
                        Err(e) if tries < 10 && format!("{e}").contains("busy") => {
                            tries += 1;
                            std::thread::sleep(std::time::Duration::from_millis(500));
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }

    /// (size, used) in bytes.
    pub fn usage(&self, name: &str) -> Result<(u64, u64)> {
        match &self.backend {
            Backend::Dir(_) => Ok((0, dir_usage(&self.path(name)?))),
            Backend::Zfs(ds) => {
                let out = run(
                    "zfs",
                    &[
                        "get",
                        "-Hp",
                        "-o",
                        "value",
                        "refquota,used",
                        &format!("{ds}/{name}"),
                    ],
                )?;
                let v: Vec<u64> = out.lines().map(|l| l.trim().parse().unwrap_or(0)).collect();
                Ok((
                    v.first().copied().unwrap_or(0),
                    v.get(1).copied().unwrap_or(0),
                ))
            }
        }
    }

    pub fn snapshot(&self, name: &str, snap: &str) -> Result<()> {
        match &self.backend {
            Backend::Dir(_) => {
                // A copy: dir storage has no snapshots of its own.
                let src = self.path(name)?;
                let dst = src.with_file_name(format!(".snapshots-{name}")).join(snap);
                std::fs::create_dir_all(dst.parent().unwrap())?;
                run(
                    "cp",
                    &["-a", &src.to_string_lossy(), &dst.to_string_lossy()],
                )?;
            }
            Backend::Zfs(ds) => {
                run("zfs", &["snapshot", &format!("{ds}/{name}@{snap}")])?;
            }
        }
        Ok(())
    }

    pub fn rollback(&self, name: &str, snap: &str) -> Result<()> {
        match &self.backend {
            Backend::Dir(_) => {
                let dst = self.path(name)?;
                let src = dst.with_file_name(format!(".snapshots-{name}")).join(snap);
                std::fs::remove_dir_all(&dst)?;
                run(
                    "cp",
                    &["-a", &src.to_string_lossy(), &dst.to_string_lossy()],
                )?;
            }
            Backend::Zfs(ds) => {
                run("zfs", &["rollback", "-r", &format!("{ds}/{name}@{snap}")])?;
            }
        }
        Ok(())
    }

    pub fn delete_snapshot(&self, name: &str, snap: &str) -> Result<()> {
        match &self.backend {
            Backend::Dir(_) => {
                let p = self
                    .path(name)?
                    .with_file_name(format!(".snapshots-{name}"))
                    .join(snap);
                if p.exists() {
                    std::fs::remove_dir_all(&p)?;
                }
            }
            Backend::Zfs(ds) => {
                run("zfs", &["destroy", &format!("{ds}/{name}@{snap}")])?;
            }
        }
        Ok(())
    }

    /// (total, used, avail) bytes.
    pub fn status(&self) -> (u64, u64, u64) {
        match &self.backend {
            Backend::Dir(p) => match nix::sys::statvfs::statvfs(p.as_path()) {
                Ok(s) => {
                    let f = s.fragment_size();
                    let total = s.blocks() * f;
                    let avail = s.blocks_available() * f;
                    let used = total - s.blocks_free() * f;
                    (total, used, avail)
                }
                Err(_) => (0, 0, 0),
            },
            Backend::Zfs(ds) => {
                let out = run("zfs", &["get", "-Hp", "-o", "value", "used,available", ds])
                    .unwrap_or_default();
                let v: Vec<u64> = out.lines().map(|l| l.trim().parse().unwrap_or(0)).collect();
                let used = v.first().copied().unwrap_or(0);
                let avail = v.get(1).copied().unwrap_or(0);
                (used + avail, used, avail)
            }
        }
    }

    /// The content list (templates and rootfs volumes).
    pub fn list(&self, content: Option<&str>, vmid: Option<u32>) -> Vec<Value> {
        let mut out = Vec::new();
        if let Some(t) = self.template_dir() {
            if content.is_none_or(|c| c == "vztmpl") && vmid.is_none() {
                for e in std::fs::read_dir(&t).into_iter().flatten().flatten() {
                    let n = e.file_name().to_string_lossy().to_string();
                    if !is_template_name(&n) {
                        continue;
                    }
                    let m = e.metadata().ok();
                    use std::os::unix::fs::MetadataExt;
                    out.push(json!({
                        "volid": format!("{}:vztmpl/{n}", self.id), "content": "vztmpl", "format": n.split_once('.').map(|x| x.1).unwrap_or("tar"),
                        "size": m.as_ref().map(|m| m.len()).unwrap_or(0), "ctime": m.map(|m| m.ctime()).unwrap_or(0),
                    }));
                }
            }
        }
        // VM disks are `images` (raw files on a dir storage).
        if let (Backend::Dir(p), true) = (&self.backend, content.is_none_or(|c| c == "images")) {
            for d in std::fs::read_dir(p.join("images"))
                .into_iter()
                .flatten()
                .flatten()
            {
                for e in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
                    let n = format!(
                        "{}/{}",
                        d.file_name().to_string_lossy(),
                        e.file_name().to_string_lossy()
                    );
                    let Some(id) = is_vm_disk_name(&n) else {
                        continue;
                    };
                    if vmid.is_some_and(|v| v != id) {
                        continue;
                    }
                    use std::os::unix::fs::MetadataExt;
                    let m = e.metadata().ok();
                    out.push(json!({"volid": format!("{}:{n}", self.id), "content": "images", "format": "raw", "vmid": id,
                        "size": m.as_ref().map(|m| m.len()).unwrap_or(0),
                        "used": m.as_ref().map(|m| m.blocks() * 512).unwrap_or(0),
                        "ctime": m.map(|m| m.ctime()).unwrap_or(0)}));
                }
            }
        }
        // Subvolumes are `rootdir` content.
        if content.is_none_or(|c| c == "rootdir") {
            let names: Vec<String> = match &self.backend {
                Backend::Dir(p) => std::fs::read_dir(p.join("images"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| is_subvol_name(n).is_some())
                    .collect(),
                Backend::Zfs(ds) => run("zfs", &["list", "-H", "-o", "name", "-d", "1", "-r", ds])
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| l.strip_prefix(&format!("{ds}/")).map(str::to_string))
                    .filter(|n| is_subvol_name(n).is_some())
                    .collect(),
            };
            for n in names {
                let id = is_subvol_name(&n).unwrap_or(0);
                if vmid.is_some_and(|v| v != id) {
                    continue;
                }
                let (size, used) = self.usage(&n).unwrap_or((0, 0));
                out.push(json!({"volid": format!("{}:{n}", self.id), "content": "rootdir", "format": "subvol", "vmid": id, "size": size, "used": used}));
            }
        }
        out
    }
}

/// Splits `STORAGE:NAME`.
pub fn split_volid(v: &str) -> Option<(&str, &str)> {
    let (s, n) = v.split_once(':')?;
    (crate::schema::is_storage_id(s) && !n.is_empty()).then_some((s, n))
}
