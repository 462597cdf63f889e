//! The test kit of this workspace (dev-only, never published): what the
//! integration tests of several crates share.
//!
//! - [`Emulator`]: a pve-emulator for one test (its own data dir, an API
//!   token, the certificate fingerprint to pin, a free port, teardown),
//!   started from the target dir as a binary, with curl helpers for its API.
//! - [`Rootfs`]: a busybox root filesystem, packed as a CT template with
//!   [`Rootfs::template`]; [`OciImage`]: an OCI-layout archive of layers;
//!   [`bundle`]: an OCI bundle of a rootfs and a [`Spec`].
//! - [`Spec`]: the config.json `runc spec` writes, with setters.
//! - [`require_root`], [`require_lxc`], [`busybox`]: the checks tests make
//!   first. They panic: a test never passes by skipping.
//!
//! It depends on none of the workspace's library crates, so every crate can
//! use it as a dev-dependency.

mod emulator;
mod oci;
mod pty;
mod require;
mod rootfs;
mod spec;

pub use emulator::{
    emulator_bin, Emulator, EmulatorBuilder, DEFAULT_TOKEN_ID, DEFAULT_TOKEN_SECRET,
};
pub use oci::OciImage;
pub use pty::run_in_pty;
pub use require::{busybox, require_lxc, require_root, require_root_and_lxc, which};
pub use rootfs::{bundle, Rootfs};
pub use spec::Spec;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// 0, 1, 2, …: unique within this test process (names, files).
pub fn unique() -> u32 {
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

/// A VMID no other call in this process, and (short of pid reuse) no other
/// test process, hands out: 100 per process, from 100000 up.
pub fn vmid() -> u32 {
    100_000 + (std::process::id() % 40_000) * 100 + unique() % 100
}

/// The first of 100 VMIDs no other call here or test process hands out,
/// for an emulator's `--next-id-lower` (guests' veths are named after
/// their VMIDs: emulators side by side must not share any).
pub fn vmid_block() -> u32 {
    ((std::process::id() % 10_000) * 64 + unique() % 64) * 100 + 1000
}

/// An interface name (at most 15 bytes) unique to this process and call.
pub fn unique_ifname(prefix: &str) -> String {
    let name = format!("{prefix}{}x{}", std::process::id() % 100_000, unique());
    assert!(name.len() <= 15, "interface name {name} is too long");
    name
}

/// Let other users traverse `dir` and its parents, up to (not including)
/// `/tmp` or `/`: unprivileged CTs run as host uid 100000 and must reach
/// their rootfs and exchange dirs under a test's temporary dir.
pub fn make_traversable(dir: &Path) {
    let mut d = Some(dir);
    while let Some(p) = d {
        if p == Path::new("/") || p == Path::new("/tmp") {
            break;
        }
        if let Ok(md) = std::fs::metadata(p) {
            let mode = md.permissions().mode() | 0o711;
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
        }
        d = p.parent();
    }
}

/// Runs `cmd args`, asserts it succeeds and returns its stdout.
pub fn sh(cmd: &str, args: &[&str]) -> String {
    let o = std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}
