//! tmpfs copy-up (runc's `tmpcopyup`, which Podman puts on its tmpfs
//! mounts): LXC cannot fill a tmpfs with what the image had at its mount
//! point, so before the container starts we mount each such tmpfs on the
//! host (`Copyup::staging`), copy the image's directory into it, and LXC
//! bind-mounts it in the spec's order. Once the container holds its mounts
//! the host side is detached ([`release`]).
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};
use proxmox_lxcri_lxc::config::Copyup;

use crate::error::{Context, Error, Result};

/// openat2(2)'s `struct open_how` (libc's is non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Opens `rel` (a directory) inside `rootfs` as if `rootfs` were `/`:
/// symlinks in the image cannot lead out of it. None when the image has no
/// directory there (nothing to copy).
fn open_in_root(rootfs: &Path, rel: &str) -> Result<Option<OwnedFd>> {
    let root = std::fs::File::open(rootfs).ctx(|| format!("opening {}", rootfs.display()))?;
    let path = std::ffi::CString::new(rel)
        .map_err(|_| Error::Spec(format!("mount destination {rel:?} contains NUL")))?;
    let how = OpenHow {
        flags: (libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: openat2 with a valid dirfd, a NUL-terminated path and an
    // open_how of the size we pass.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => Ok(None),
            _ => Err(Error::Io {
                context: format!("opening /{rel} in the rootfs for tmpcopyup"),
                source: e,
            }),
        };
    }
    // SAFETY: the kernel just returned this fd.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
}

fn flags(c: &Copyup) -> MsFlags {
    let mut f = MsFlags::empty();
    for o in &c.flags {
        f |= match o.as_str() {
            "nosuid" => MsFlags::MS_NOSUID,
            "nodev" => MsFlags::MS_NODEV,
            "noexec" => MsFlags::MS_NOEXEC,
            _ => MsFlags::empty(),
        };
    }
    f
}

/// Mounts and fills every copy-up tmpfs; on error what was mounted is
/// released again.
pub(super) fn prepare(rootfs: &Path, dir: &Path, copyups: &[Copyup]) -> Result<()> {
    let r = copyups.iter().try_for_each(|c| prepare_one(rootfs, c));
    if r.is_err() {
        release(dir);
    }
    r
}

fn prepare_one(rootfs: &Path, c: &Copyup) -> Result<()> {
    std::fs::create_dir_all(&c.staging).ctx(|| format!("creating {}", c.staging.display()))?;
    let data = c.data.join(",");
    nix::mount::mount(
        Some("tmpfs"),
        &c.staging,
        Some("tmpfs"),
        flags(c),
        (!data.is_empty()).then_some(data.as_str()),
    )
    .map_err(|e| {
        Error::Spec(format!(
            "mount of the tmpfs for /{} (tmpcopyup) with options {data:?}: {e}",
            c.destination
        ))
    })?;
    let Some(src) = open_in_root(rootfs, &c.destination)? else {
        return Ok(());
    };
    // Through the fd: the directory resolved inside the rootfs, never a
    // path that a symlink could redirect.
    let from = format!("/proc/self/fd/{}/.", src.as_raw_fd());
    storage::copy_tree_with(
        Path::new(&from),
        &c.staging,
        &storage::CopyOptions {
            shift: None,
            xattrs: storage::XattrPolicy::Skip,
        },
        &mut storage::NoProgress,
    )
    .map_err(|e| Error::Spec(format!("copying /{} up into its tmpfs: {e}", c.destination)))?;
    Ok(())
}

/// Detaches the host side of every copy-up tmpfs under `dir` and removes
/// `dir` (the container's bind mounts keep the tmpfs alive). Idempotent.
pub(super) fn release(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        // Not a mount (a failed prepare): EINVAL, nothing to do.
        let _ = nix::mount::umount2(&p, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&p);
    }
    let _ = std::fs::remove_dir(dir);
}
