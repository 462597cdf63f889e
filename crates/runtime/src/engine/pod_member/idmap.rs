//! A member's rootfs inside an unprivileged pod CT. The image's files belong
//! to the node's root, which the CT's root is not: seen plain, the CT's root
//! could not write into its own image. So the rootfs is mounted *idmapped*
//! through the CT's user namespace (node uid 0 shows as the CT's root).
//!
//! overlayfs itself cannot be idmapped, but its layers can: for containerd's
//! overlay rootfs the snapshot directory holding every layer is bound once,
//! idmapped, and a new overlay is made of the same layers through it, by a
//! mounter whose filesystem ids are the CT root's (overlayfs does its own
//! work as its mounter; the node's root is not mapped in the idmap). Writes
//! land in containerd's upper layer, owned by the node's root as under runc.
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_EMPTY_PATH: libc::c_uint = 0x1000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Guest(format!("{}: NUL in the path", p.display())))
}

fn os_err(what: String) -> Error {
    Error::Guest(format!("{what}: {}", std::io::Error::last_os_error()))
}

/// Bind `src` at `target`, idmapped through the user namespace `userns`.
pub fn idmapped_bind(src: &Path, target: &Path, userns: &File) -> Result<()> {
    let c_src = cpath(src)?;
    // SAFETY: open_tree(2) with a C string; returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c_src.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(os_err(format!("open_tree {}", src.display())));
    }
    // SAFETY: a fresh fd we own.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    let empty = CString::default();
    // SAFETY: mount_setattr(2) on our detached tree with a valid mount_attr.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(os_err(format!(
            "idmapping {} (its filesystem must support idmapped mounts)",
            src.display()
        )));
    }
    let c_target = cpath(target)?;
    // SAFETY: move_mount(2) of our tree onto a path.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            c_target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc != 0 {
        return Err(os_err(format!("mounting at {}", target.display())));
    }
    Ok(())
}

/// An overlay mount's layers, from its mountinfo super options.
#[derive(Debug, PartialEq)]
pub struct Overlay {
    pub lower: Vec<PathBuf>,
    pub upper: Option<PathBuf>,
    pub work: Option<PathBuf>,
}

/// The overlay mounted at `mountpoint` (the topmost mount there), if any.
pub fn overlay_at(mountinfo: &str, mountpoint: &Path) -> Option<Overlay> {
    let line = mountinfo.lines().rfind(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|m| crate::exchange::unescape_mountinfo(m) == mountpoint)
    })?;
    let (_, post) = line.split_once(" - ")?;
    let mut f = post.split(' ');
    if f.next()? != "overlay" {
        return None;
    }
    let opts = f.nth(1)?;
    let mut o = Overlay {
        lower: vec![],
        upper: None,
        work: None,
    };
    for opt in opts.split(',') {
        let path = |v: &str| crate::exchange::unescape_mountinfo(v);
        if let Some(v) = opt.strip_prefix("lowerdir=") {
            o.lower = v.split(':').map(path).collect();
        } else if let Some(v) = opt.strip_prefix("upperdir=") {
            o.upper = Some(path(v));
        } else if let Some(v) = opt.strip_prefix("workdir=") {
            o.work = Some(path(v));
        }
    }
    let all_absolute = o
        .lower
        .iter()
        .chain(o.upper.iter())
        .chain(o.work.iter())
        .all(|p| p.is_absolute());
    (!o.lower.is_empty() && all_absolute).then_some(o)
}

/// The deepest directory holding every layer.
fn common_dir(paths: &[&PathBuf]) -> PathBuf {
    let mut base: PathBuf = paths[0].parent().unwrap_or(Path::new("/")).to_path_buf();
    while !paths.iter().all(|p| p.starts_with(&base)) {
        if !base.pop() {
            break;
        }
    }
    base
}

/// Mount `rootfs` at `target` for a CT whose root is `root` (host ids) in
/// the user namespace `userns`; `staging` (an empty directory) holds the
/// idmapped layers.
pub fn mount_rootfs(
    rootfs: &Path,
    target: &Path,
    staging: &Path,
    userns: &File,
    root: (u32, u32),
) -> Result<()> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::Guest(format!("reading mountinfo: {e}")))?;
    let Some(ovl) = overlay_at(&mountinfo, rootfs) else {
        // A directory (a bundle's rootfs): idmapped as it is.
        return idmapped_bind(rootfs, target, userns);
    };
    let all: Vec<&PathBuf> = ovl
        .lower
        .iter()
        .chain(ovl.upper.iter())
        .chain(ovl.work.iter())
        .collect();
    let base = common_dir(&all);
    idmapped_bind(&base, staging, userns)?;
    let through = |p: &Path| staging.join(p.strip_prefix(&base).expect("under the base"));
    let lower: Vec<String> = ovl
        .lower
        .iter()
        .map(|p| through(p).to_string_lossy().into_owned())
        .collect();
    let mut data = format!("lowerdir={}", lower.join(":"));
    if let (Some(u), Some(w)) = (&ovl.upper, &ovl.work) {
        data.push_str(&format!(
            ",upperdir={},workdir={}",
            through(u).display(),
            through(w).display()
        ));
    }
    // containerd's own mount of these layers stays (its shim removes it);
    // nothing uses it, and no index may tie the upper layer to one mount.
    data.push_str(",index=off");
    let odd = all
        .iter()
        .any(|p| p.to_string_lossy().contains([',', ':', '\\']));
    if data.len() >= 4000 || odd {
        return Err(Error::Unsupported(format!(
            "the rootfs {} has too many layers (or odd paths) to remount for an unprivileged \
             pod CT; use a privileged pod (io.proxmox-lxcri.privileged=true)",
            rootfs.display()
        )));
    }
    mount_overlay_as(target, &data, root)
}

/// Mount an overlay in a child whose filesystem ids are `ids` (overlayfs
/// keeps its mounter's credentials for its own work in the layers), with
/// every permitted capability effective.
fn mount_overlay_as(target: &Path, data: &str, ids: (u32, u32)) -> Result<()> {
    let c_target = cpath(target)?;
    let c_data = CString::new(data).map_err(|_| Error::Guest("NUL in overlay options".into()))?;
    // SAFETY: the CLI is single-threaded; the child only makes syscalls.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(Error::Guest(format!("fork: {e}"))),
        Ok(nix::unistd::ForkResult::Child) => {
            // SAFETY: plain syscalls in the forked child, then _exit.
            unsafe {
                libc::setfsgid(ids.1);
                libc::setfsuid(ids.0);
            }
            let raised = caps::read(None, caps::CapSet::Permitted)
                .and_then(|p| caps::set(None, caps::CapSet::Effective, &p));
            let rc = match raised {
                Err(_) => 200,
                Ok(()) => {
                    // SAFETY: mount(2) with C strings.
                    let r = unsafe {
                        libc::mount(
                            c"overlay".as_ptr(),
                            c_target.as_ptr(),
                            c"overlay".as_ptr(),
                            0,
                            c_data.as_ptr() as *const libc::c_void,
                        )
                    };
                    if r == 0 {
                        0
                    } else {
                        std::io::Error::last_os_error().raw_os_error().unwrap_or(1) & 0x7f
                    }
                }
            };
            // SAFETY: leave the child at once.
            unsafe { libc::_exit(rc) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            match nix::sys::wait::waitpid(child, None) {
                Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
                Ok(nix::sys::wait::WaitStatus::Exited(_, 200)) => Err(Error::Guest(
                    "raising capabilities to mount the rootfs overlay".into(),
                )),
                Ok(nix::sys::wait::WaitStatus::Exited(_, e)) => Err(Error::Guest(format!(
                    "mounting the rootfs overlay at {}: {}",
                    target.display(),
                    std::io::Error::from_raw_os_error(e)
                ))),
                other => Err(Error::Guest(format!(
                    "mounting the rootfs overlay: the mounter ended {other:?}"
                ))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_layers_from_mountinfo() {
        let mi = "\
30 1 0:27 / / rw - ext4 /dev/vda rw
99 30 0:50 / /run/c/rootfs rw,relatime - overlay overlay rw,lowerdir=/var/s/snapshots/2/fs:/var/s/snapshots/1/fs,upperdir=/var/s/snapshots/3/fs,workdir=/var/s/snapshots/3/work,index=off
100 30 0:51 / /run/c/other rw - tmpfs tmpfs rw
";
        let o = overlay_at(mi, Path::new("/run/c/rootfs")).unwrap();
        assert_eq!(
            o.lower,
            vec![
                PathBuf::from("/var/s/snapshots/2/fs"),
                PathBuf::from("/var/s/snapshots/1/fs")
            ]
        );
        assert_eq!(o.upper, Some(PathBuf::from("/var/s/snapshots/3/fs")));
        assert_eq!(o.work, Some(PathBuf::from("/var/s/snapshots/3/work")));
        let all: Vec<&PathBuf> = o.lower.iter().chain(o.upper.iter()).collect();
        assert_eq!(common_dir(&all), PathBuf::from("/var/s/snapshots"));
        assert_eq!(overlay_at(mi, Path::new("/run/c/other")), None);
        assert_eq!(overlay_at(mi, Path::new("/nowhere")), None);
    }
}
