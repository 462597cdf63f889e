//! What a test needs of the machine, checked first. Every check panics with
//! what is missing and how to get it: tests fail loudly, never skip.
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Panics unless we run as root. `tests` names who needs it and why, e.g.
/// `"the copy tests (chown, mknod)"`.
pub fn require_root(tests: &str) {
    let euid = nix::unistd::geteuid();
    assert!(
        euid.is_root(),
        "{tests} need root (running as uid {euid}); CI runs them as root, \
         e.g. `sudo -E cargo test`"
    );
}

/// Panics unless `lxc-start --version` runs.
pub fn require_lxc(tests: &str) {
    let ok = Command::new("lxc-start")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{tests} need lxc-start: install the Debian package `lxc` \
         (scripts/install-deps.sh does)"
    );
}

/// [`require_root`] and [`require_lxc`]: for tests that run real containers.
pub fn require_root_and_lxc(tests: &str) {
    require_root(tests);
    require_lxc(tests);
}

/// The host's static busybox (`/bin/busybox` or `/usr/bin/busybox`), which
/// the test root filesystems are made of; panics when there is none.
pub fn busybox() -> PathBuf {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .expect(
            "a static busybox is needed: install the Debian package `busybox-static` \
             (scripts/install-deps.sh does)",
        )
        .to_path_buf()
}

/// `name` looked up in `PATH`: an executable file.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}
