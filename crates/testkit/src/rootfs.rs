//! Busybox root filesystems, CT templates and OCI bundles.
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Spec;

/// A busybox root filesystem: the host's static busybox as `/bin/busybox`
/// with applet symlinks beside it, empty top-level directories and some
/// files. [`Rootfs::busybox`] is the least of it; the rest is opt-in, so
/// each test gets exactly the tree it relies on.
#[derive(Clone, Debug)]
pub struct Rootfs {
    dirs: Vec<String>,
    applets: Vec<String>,
    files: Vec<(String, Vec<u8>, Option<u32>)>,
    modes: Vec<(String, u32)>,
}

/// `/etc/passwd` of [`Rootfs::users`].
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n";
/// `/etc/group` of [`Rootfs::users`].
const GROUP: &str = "root:x:0:\nnobody:x:65534:\n";

impl Rootfs {
    /// `/bin/busybox`, `/bin/sh`, and empty `bin dev etc proc sys tmp`.
    pub fn busybox() -> Rootfs {
        Rootfs {
            dirs: ["bin", "dev", "etc", "proc", "sys", "tmp"]
                .map(String::from)
                .to_vec(),
            applets: vec!["sh".into()],
            files: vec![],
            modes: vec![],
        }
    }

    /// More empty directories (relative, e.g. `"run"`, `"var/log"`).
    pub fn dirs(mut self, dirs: &[&str]) -> Rootfs {
        self.dirs.extend(dirs.iter().map(|d| d.to_string()));
        self
    }

    /// More applets linked in `/bin`.
    pub fn applets(mut self, applets: &[&str]) -> Rootfs {
        for a in applets {
            if !self.applets.iter().any(|x| x == a) {
                self.applets.push(a.to_string());
            }
        }
        self
    }

    /// A file (relative path; parents are made).
    pub fn file(mut self, path: &str, contents: impl Into<Vec<u8>>) -> Rootfs {
        self.files.push((path.into(), contents.into(), None));
        self
    }

    /// An executable file (mode 0755).
    pub fn executable(mut self, path: &str, contents: impl Into<Vec<u8>>) -> Rootfs {
        self.files.push((path.into(), contents.into(), Some(0o755)));
        self
    }

    /// The mode of a directory or file, set after everything is made
    /// (e.g. `("tmp", 0o1777)`).
    pub fn mode(mut self, path: &str, mode: u32) -> Rootfs {
        self.modes.push((path.into(), mode));
        self
    }

    /// `/etc/passwd` and `/etc/group` with root and nobody (65534).
    pub fn users(self) -> Rootfs {
        self.file("etc/passwd", PASSWD).file("etc/group", GROUP)
    }

    /// A system container's: `/sbin/init` a script that sleeps until it gets
    /// SIGTERM, SIGPWR or SIGINT (so a started CT stays up and stops on
    /// request), and `/etc/hostname`.
    pub fn sleeping_init(self) -> Rootfs {
        self.dirs(&["sbin"])
            .applets(&["sleep"])
            .executable(
                "sbin/init",
                "#!/bin/sh\ntrap 'exit 0' TERM PWR INT\nwhile :; do sleep 1; done\n",
            )
            .file("etc/hostname", "ct\n")
    }

    /// Makes the tree at `root` (created if missing); returns `root`.
    pub fn build(&self, root: &Path) -> PathBuf {
        let busybox = crate::busybox();
        for d in &self.dirs {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::copy(&busybox, root.join("bin/busybox"))
            .unwrap_or_else(|e| panic!("copying {}: {e}", busybox.display()));
        for a in &self.applets {
            symlink("busybox", root.join("bin").join(a)).unwrap();
        }
        for (path, contents, mode) in &self.files {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, contents).unwrap();
            if let Some(m) = mode {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*m)).unwrap();
            }
        }
        for (path, mode) in &self.modes {
            std::fs::set_permissions(root.join(path), std::fs::Permissions::from_mode(*mode))
                .unwrap();
        }
        root.to_path_buf()
    }

    /// A CT template (what `pveam` downloads): the tree packed as `dir/name`
    /// by `tar -a`, compressed as the name says (`.tar`, `.tar.gz`,
    /// `.tar.xz`, `.tar.zst`). The tree is built in `dir` too.
    pub fn template(&self, dir: &Path, name: &str) -> PathBuf {
        let root = self.build(&dir.join(format!("rootfs-{}", crate::unique())));
        let out = dir.join(name);
        tar(&out, &root);
        out
    }

    /// The tree as one uncompressed tar, in memory: an OCI image layer.
    pub fn layer(&self, dir: &Path) -> Vec<u8> {
        let out = self.template(dir, &format!("layer-{}.tar", crate::unique()));
        std::fs::read(out).unwrap()
    }
}

/// Packs the contents of `root` as `out` (`tar -acf`).
pub(crate) fn tar(out: &Path, root: &Path) {
    let st = Command::new("tar")
        .arg("-acf")
        .arg(out)
        .arg("-C")
        .arg(root)
        .arg(".")
        .status()
        .expect("running tar");
    assert!(st.success(), "tar -acf {} failed", out.display());
}

/// An OCI bundle at `dir`: `dir/rootfs` made from `rootfs` and
/// `dir/config.json` from `spec` (whose `root.path` should be `rootfs`, as
/// runc's is). Returns `dir`.
pub fn bundle(dir: &Path, rootfs: &Rootfs, spec: &Spec) -> PathBuf {
    rootfs.build(&dir.join("rootfs"));
    spec.write(dir);
    dir.to_path_buf()
}
