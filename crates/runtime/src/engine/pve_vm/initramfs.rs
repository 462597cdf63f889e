//! The guest's kernel and initramfs. The kernel is a distribution kernel on
//! the node (Debian's linux-image-cloud-amd64), configured, not built; the
//! initramfs is ours: a newc cpio (uncompressed: the kernel unpacks it
//! without a decompressor, and it is built and read faster) holding this
//! runtime's own static binary as `/init` and the modules the guest needs
//! (virtio PCI and block), cached under the runtime root per kernel and
//! binary.
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Context, Error, Result};

/// Modules the guest loads (with their dependencies), when the kernel has
/// them as modules: the disk is virtio-blk, the NIC virtio-net, both on
/// virtio-pci. ext4 and the
/// 8250 serial port are built into Debian's cloud kernel; where they are
/// modules they are loaded too.
const WANTED: &[&str] = &["virtio_pci", "virtio_blk", "virtio_net", "ext4", "8250"];
/// Bumped when the initramfs's layout changes (part of the cache key).
const LAYOUT: u32 = 2;

/// The guest kernel: its image, version and module directory.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub image: PathBuf,
    pub version: String,
    pub modules: PathBuf,
}

/// The configured kernel, or the newest `/boot/vmlinuz-*cloud-amd64`.
pub fn find_kernel(configured: Option<&Path>) -> Result<Kernel> {
    let image = match configured {
        Some(p) => {
            if !p.is_file() {
                return Err(Error::Config(format!(
                    "pve.vm_kernel {}: no such file",
                    p.display()
                )));
            }
            p.to_path_buf()
        }
        None => {
            let mut found: Vec<(std::time::SystemTime, PathBuf)> = fs::read_dir("/boot")
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with("vmlinuz-") && n.ends_with("cloud-amd64")
                })
                .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
                .collect();
            found.sort();
            found.pop().map(|(_, p)| p).ok_or_else(|| {
                Error::Config(
                    "pve-vm needs a guest kernel: install linux-image-cloud-amd64 \
                     (/boot/vmlinuz-*-cloud-amd64) or set pve.vm_kernel"
                        .into(),
                )
            })?
        }
    };
    let name = image
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let version = name
        .strip_prefix("vmlinuz-")
        .ok_or_else(|| {
            Error::Config(format!(
                "pve.vm_kernel {}: expected a file named vmlinuz-<version> (its modules are \
                 /lib/modules/<version>)",
                image.display()
            ))
        })?
        .to_string();
    check_arg("pve.vm_kernel", &image)?;
    Ok(Kernel {
        modules: Path::new("/lib/modules").join(&version),
        image,
        version,
    })
}

/// A host path that goes onto QEMU's command line (`args`): no character
/// that the option parser or the word splitter would take apart.
pub fn check_arg(what: &str, p: &Path) -> Result<()> {
    let s = p.to_string_lossy();
    if !p.is_absolute()
        || s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || "',\"\\=".contains(c))
    {
        return Err(Error::Config(format!(
            "{what} {s:?} cannot go on the VM's QEMU command line (it must be absolute, \
             without spaces, quotes, commas or '=')"
        )));
    }
    Ok(())
}

/// The modules (paths under the module dir) to load, dependencies first;
/// built-in ones are skipped.
pub fn modules_in_order(dir: &Path, wanted: &[&str]) -> Result<Vec<String>> {
    let dep_file = dir.join("modules.dep");
    let deps_text = fs::read_to_string(&dep_file).ctx(|| {
        format!(
            "reading {} (the guest kernel's modules; install its package)",
            dep_file.display()
        )
    })?;
    let norm = |s: &str| s.replace('-', "_");
    // module name -> (path, deps' paths)
    let mut deps: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    let mut by_path: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in deps_text.lines() {
        let Some((path, rest)) = line.split_once(':') else {
            continue;
        };
        let d: Vec<String> = rest.split_whitespace().map(String::from).collect();
        deps.insert(norm(&module_name(path)), (path.to_string(), d.clone()));
        by_path.insert(path.to_string(), d);
    }
    let mut out: Vec<String> = vec![];
    let mut seen = BTreeSet::new();
    fn visit(
        path: &str,
        by_path: &BTreeMap<String, Vec<String>>,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<String>,
    ) {
        if !seen.insert(path.to_string()) {
            return;
        }
        for d in by_path.get(path).into_iter().flatten() {
            visit(d, by_path, seen, out);
        }
        out.push(path.to_string());
    }
    for w in wanted {
        if let Some((path, _)) = deps.get(&norm(w)) {
            visit(path, &by_path, &mut seen, &mut out);
        }
        // Not in modules.dep: built in (or absent, which the guest reports
        // when its disk does not appear).
    }
    Ok(out)
}

/// `kernel/drivers/block/virtio_blk.ko.xz` -> `virtio_blk`.
fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.split(".ko").next().unwrap_or(base).to_string()
}

/// The cached initramfs for `kernel` and `binary` (built on first use).
pub fn ensure(root: &Path, kernel: &Kernel, binary: &Path) -> Result<PathBuf> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    LAYOUT.hash(&mut h);
    for p in [&kernel.image, binary] {
        let m = fs::metadata(p).ctx(|| format!("reading {}", p.display()))?;
        p.hash(&mut h);
        (m.len(), m.mtime(), m.mtime_nsec(), m.ino()).hash(&mut h);
    }
    let dir = root.join("vm");
    fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
    let out = dir.join(format!("initramfs-{:016x}.cpio", h.finish()));
    if out.exists() {
        // Its mtime says when it was last used (see prune).
        if let Ok(f) = fs::File::options().write(true).open(&out) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
        return Ok(out);
    }
    prune(&dir);
    check_arg("the initramfs path (under --root)", &out)?;
    let tmp = dir.join(format!(".initramfs-{}.tmp", std::process::id()));
    let res = build(&tmp, kernel, binary);
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, &out).ctx(|| format!("renaming to {}", out.display()))?;
    Ok(out)
}

/// How long an initramfs of another kernel or binary is kept unused (a
/// runtime of another version may still use it).
const KEEP_UNUSED: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Remove initramfs files nobody used for [`KEEP_UNUSED`] (each build of
/// the runtime makes a new one), and temporary files of builds that died.
fn prune(dir: &Path) {
    let now = std::time::SystemTime::now();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = (name.starts_with("initramfs-") && name.ends_with(".cpio"))
            || name.starts_with(".initramfs-");
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > KEEP_UNUSED);
        if ours && old {
            let _ = fs::remove_file(e.path());
        }
    }
}

fn build(out: &Path, kernel: &Kernel, binary: &Path) -> Result<()> {
    let modules = modules_in_order(&kernel.modules, WANTED)?;
    let init = stripped(binary, out)?;
    let mut w = Cpio::new(fs::File::create(out).ctx(|| format!("creating {}", out.display()))?);
    let io = |e: std::io::Error| Error::Guest(format!("writing the initramfs: {e}"));
    for d in [
        "dev",
        "proc",
        "sys",
        "newroot",
        "lxcri",
        "lib",
        "lib/modules",
    ] {
        w.dir(d).map_err(io)?;
    }
    // The kernel opens /dev/console for init's stdio before any devtmpfs.
    w.node("dev/console", 0o020600, 5, 1).map_err(io)?;
    let mdir = format!("lib/modules/{}", kernel.version);
    w.dir(&mdir).map_err(io)?;
    let mut list = String::new();
    for m in &modules {
        let rel = format!("{mdir}/{m}");
        // Parents first (dir() skips those already written).
        let parts: Vec<&str> = rel.split('/').collect();
        for i in 1..parts.len() {
            w.dir(&parts[..i].join("/")).map_err(io)?;
        }
        let data = fs::read(kernel.modules.join(m))
            .ctx(|| format!("reading module {}", kernel.modules.join(m).display()))?;
        w.file(&rel, 0o100644, &data).map_err(io)?;
        list.push_str(&format!("/{rel}\n"));
    }
    w.file("lxcri/modules", 0o100644, list.as_bytes())
        .map_err(io)?;
    let data = fs::read(&init.0).ctx(|| format!("reading {}", init.0.display()))?;
    w.file("init", 0o100755, &data).map_err(io)?;
    if init.1 {
        let _ = fs::remove_file(&init.0);
    }
    w.finish().map_err(io)?;
    Ok(())
}

/// The binary without its debug sections when `strip` is there (a debug
/// build is over 100 MiB; the guest holds the initramfs in RAM). Returns
/// the file and whether it is a temporary copy.
fn stripped(binary: &Path, beside: &Path) -> Result<(PathBuf, bool)> {
    let tmp = beside.with_extension("init");
    let ok = std::process::Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&tmp)
        .arg(binary)
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        Ok((tmp, true))
    } else {
        let _ = fs::remove_file(&tmp);
        Ok((binary.to_path_buf(), false))
    }
}

/// A newc ("070701") cpio writer: what the kernel's initramfs unpacker reads.
struct Cpio<W: Write> {
    w: std::io::BufWriter<W>,
    ino: u32,
    written: u64,
    names: BTreeSet<String>,
}

impl<W: Write> Cpio<W> {
    fn new(w: W) -> Self {
        Cpio {
            w: std::io::BufWriter::new(w),
            ino: 1,
            written: 0,
            names: BTreeSet::new(),
        }
    }

    fn has(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> std::io::Result<()> {
        self.names.insert(name.to_string());
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            if mode & 0o170000 == 0o040000 { 2 } else { 1 },
            0,
            data.len(),
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() + 1,
            0
        );
        self.ino += 1;
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.written += b.len() as u64;
        self.w.write_all(b)
    }

    fn pad(&mut self) -> std::io::Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0u8; 3][..n])
    }

    fn dir(&mut self, name: &str) -> std::io::Result<()> {
        if self.has(name) {
            return Ok(());
        }
        self.entry(name, 0o040755, (0, 0), &[])
    }

    fn node(&mut self, name: &str, mode: u32, major: u32, minor: u32) -> std::io::Result<()> {
        self.entry(name, mode, (major, minor), &[])
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> std::io::Result<()> {
        self.entry(name, mode, (0, 0), data)
    }

    fn finish(mut self) -> std::io::Result<()> {
        self.entry("TRAILER!!!", 0, (0, 0), &[])?;
        self.w.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_come_with_their_dependencies_first() {
        let t = tempfile::tempdir().unwrap();
        fs::write(
            t.path().join("modules.dep"),
            "kernel/drivers/virtio/virtio.ko:\n\
             kernel/drivers/virtio/virtio_ring.ko:\n\
             kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n\
             kernel/drivers/virtio/virtio_pci_legacy_dev.ko:\n\
             kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n",
        )
        .unwrap();
        let m = modules_in_order(t.path(), &["virtio_pci", "virtio-blk", "ext4"]).unwrap();
        assert_eq!(
            m,
            [
                "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
                "kernel/drivers/virtio/virtio.ko",
                "kernel/drivers/virtio/virtio_ring.ko",
                "kernel/drivers/virtio/virtio_pci.ko",
                "kernel/drivers/block/virtio_blk.ko",
            ]
        );
    }

    #[test]
    fn the_cpio_lists_with_cpio() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("a.cpio");
        let mut w = Cpio::new(fs::File::create(&p).unwrap());
        w.dir("dev").unwrap();
        w.node("dev/console", 0o020600, 5, 1).unwrap();
        w.file("init", 0o100755, b"#!/bin/sh\n").unwrap();
        w.finish().unwrap();
        assert_eq!(fs::metadata(&p).unwrap().len() % 4, 0);
        let o = std::process::Command::new("cpio")
            .args(["-it", "--quiet"])
            .stdin(fs::File::open(&p).unwrap())
            .output();
        if let Ok(o) = o {
            assert_eq!(
                String::from_utf8_lossy(&o.stdout),
                "dev\ndev/console\ninit\n"
            );
        }
    }

    #[test]
    fn unused_initramfs_files_are_pruned_after_a_week() {
        let t = tempfile::tempdir().unwrap();
        let old = t.path().join("initramfs-0000000000000001.cpio");
        let new = t.path().join("initramfs-0000000000000002.cpio");
        let other = t.path().join("notes.txt");
        for p in [&old, &new, &other] {
            fs::write(p, b"x").unwrap();
        }
        let weeks_ago = std::time::SystemTime::now() - KEEP_UNUSED * 2;
        for p in [&old, &other] {
            fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(weeks_ago)
                .unwrap();
        }
        prune(t.path());
        assert!(!old.exists() && new.exists() && other.exists());
    }

    #[test]
    fn paths_for_qemu_are_checked() {
        assert!(check_arg("x", Path::new("/boot/vmlinuz-6.1.0-cloud-amd64")).is_ok());
        assert!(check_arg("x", Path::new("/a b")).is_err());
        assert!(check_arg("x", Path::new("/a,b")).is_err());
        assert!(check_arg("x", Path::new("rel")).is_err());
    }
}
