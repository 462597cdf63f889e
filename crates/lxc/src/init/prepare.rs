//! Step 1 of the protocol: what the init does to the container before
//! reporting `ready` (devices, masked and read-only paths, the executable).
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::sys::statvfs::{statvfs, FsFlags};
use nix::unistd::{chown, Gid, Uid};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// linux.domainname.
pub fn set_domainname(name: &str) -> Result<(), String> {
    // SAFETY: pointer and length of a live buffer.
    let rc = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    if rc != 0 {
        return Err(format!(
            "setting linux.domainname {name:?}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Creates one linux.devices entry (mknod + mode + owner). An existing node
/// of the same kind is left alone (it may be a bind mount of a host node).
pub fn create_device(i: usize, d: &LinuxDevice) -> Result<(), String> {
    let field = format!("linux.devices[{i}]");
    let path = d.path();
    if !path.is_absolute() {
        return Err(format!("{field}.path {path:?} is not absolute"));
    }
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(format!(
                "{field}.type \"a\" is not a device node type (use c, b, u or p)"
            ))
        }
    };
    if let Ok(meta) = fs::symlink_metadata(path) {
        let ft = meta.file_type();
        let same = match kind {
            SFlag::S_IFCHR => ft.is_char_device(),
            SFlag::S_IFBLK => ft.is_block_device(),
            _ => ft.is_fifo(),
        };
        if same {
            return Ok(());
        }
        return Err(format!(
            "{field}: {} exists and is not a {} device node",
            path.display(),
            d.typ().as_str()
        ));
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| format!("{field}: creating {}: {e}", parent.display()))?;
    }
    let mode = d.file_mode().unwrap_or(0o666) & 0o7777;
    let dev = if kind == SFlag::S_IFIFO {
        0
    } else {
        makedev(d.major() as u64, d.minor() as u64)
    };
    mknod(path, kind, Mode::from_bits_truncate(mode), dev).map_err(|e| {
        format!(
            "{field}: mknod {} ({} {}:{}): {e}",
            path.display(),
            d.typ().as_str(),
            d.major(),
            d.minor()
        )
    })?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{field}: chmod {}: {e}", path.display()))?;
    chown(
        path,
        Some(Uid::from_raw(d.uid().unwrap_or(0))),
        Some(Gid::from_raw(d.gid().unwrap_or(0))),
    )
    .map_err(|e| format!("{field}: chown {}: {e}", path.display()))?;
    Ok(())
}

/// linux.maskedPaths entry: /dev/null over a file, a read-only tmpfs over a
/// directory; a missing path is ignored (as runc).
pub fn mask_path(i: usize, p: &str) -> Result<(), String> {
    let meta = match fs::metadata(p) {
        Ok(m) => m,
        Err(e) if is_missing(&e) => return Ok(()),
        Err(e) => return Err(format!("linux.maskedPaths[{i}] {p}: {e}")),
    };
    let r = if meta.is_dir() {
        mount(
            Some("tmpfs"),
            p,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
    } else {
        mount(
            Some("/dev/null"),
            p,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    r.map_err(|e| format!("linux.maskedPaths[{i}]: masking {p}: {e}"))
}

fn is_missing(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
}

/// A mount's recursive attributes (runc's `rro`, `rnosuid` ...):
/// mount_setattr(2) with AT_RECURSIVE on the mount point and every mount
/// below it.
pub fn set_mount_attr(a: &crate::init_config::MountAttr) -> Result<(), String> {
    #[repr(C)]
    struct MountAttrC {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttrC {
        attr_set: a.set,
        attr_clr: a.clr,
        propagation: 0,
        userns_fd: 0,
    };
    let path = std::ffi::CString::new(a.path.as_bytes())
        .map_err(|_| format!("{}: a NUL byte in {:?}", a.field, a.path))?;
    // SAFETY: mount_setattr with a valid path and a struct of the size given.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE,
            &attr as *const MountAttrC,
            std::mem::size_of::<MountAttrC>(),
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    let hint = match e.raw_os_error() {
        Some(libc::ENOSYS) => " (recursive mount attributes need Linux 5.12 or later)",
        Some(libc::EINVAL) => {
            " (an attribute this kernel does not know, e.g. nosymfollow before 5.14)"
        }
        _ => "",
    };
    Err(format!(
        "{}: recursive mount attributes on {}: mount_setattr: {e}{hint}",
        a.field, a.path
    ))
}

/// linux.readonlyPaths entry: bind onto itself, then remount read-only
/// keeping the flags the mount already had (nosuid, nodev, noexec, atime
/// flags, which are locked in a user namespace). Missing → ignored.
pub fn readonly_path(i: usize, p: &str) -> Result<(), String> {
    match fs::metadata(p) {
        Ok(_) => {}
        Err(e) if is_missing(&e) => return Ok(()),
        Err(e) => return Err(format!("linux.readonlyPaths[{i}] {p}: {e}")),
    }
    let field = format!("linux.readonlyPaths[{i}]");
    mount(
        Some(p),
        p,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| format!("{field}: bind-mounting {p}: {e}"))?;
    remount_ro(p).map_err(|e| format!("{field}: {e}"))
}

/// root.readonly: `/` (the rootfs LXC bind-mounted and pivoted into)
/// remounted read-only, after every mount of the spec, keeping its flags.
pub fn readonly_root() -> Result<(), String> {
    remount_ro("/").map_err(|e| format!("root.readonly: {e}"))
}

/// Remounts the bind mount at `p` read-only, keeping the flags it already
/// has (nosuid, nodev, noexec, atime flags: locked in a user namespace).
fn remount_ro(p: &str) -> Result<(), String> {
    let st = statvfs(p).map_err(|e| format!("statvfs {p}: {e}"))?;
    let f = st.flags();
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    for (sf, mf) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(sf) {
            flags |= mf;
        }
    }
    mount(None::<&str>, p, None::<&str>, flags, None::<&str>)
        .map_err(|e| format!("remounting {p} read-only: {e}"))
}

/// Is `p` (absolute, below `root`) an executable regular file? Go's
/// `findExecutable` rules: a directory or a file without any x bit is not.
fn check_executable(p: &Path) -> Result<(), std::io::Error> {
    let m = fs::metadata(p)?;
    if m.is_dir() {
        return Err(std::io::Error::from_raw_os_error(libc::EISDIR));
    }
    if m.permissions().mode() & 0o111 == 0 {
        return Err(std::io::Error::from_raw_os_error(libc::EACCES));
    }
    Ok(())
}

/// Where `path` (as the container sees it, relative paths against `cwd`)
/// lives for us, whose `/` is `root`.
fn under_root(root: &Path, cwd: &str, path: &str) -> PathBuf {
    let abs = if path.starts_with('/') {
        PathBuf::from(path)
    } else {
        Path::new(cwd).join(path)
    };
    root.join(abs.strip_prefix("/").unwrap_or(&abs))
}

/// Resolves process.args[0] the way runc does (Go's exec.LookPath), with
/// PATH taken from the process env (first `PATH=`; default [`DEFAULT_PATH`]).
/// Returns the path to execve, as the container sees it.
pub fn lookup(arg0: &str, env: &[String], cwd: &str, root: &Path) -> Result<String, String> {
    if arg0.is_empty() {
        return Err("process.args[0] is empty".into());
    }
    if arg0.contains('/') {
        return match check_executable(&under_root(root, cwd, arg0)) {
            Ok(()) => Ok(arg0.to_string()),
            Err(e) => Err(format!("exec: {arg0:?}: {}", io_msg(&e, arg0))),
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let cand = format!("{}/{arg0}", dir.trim_end_matches('/'));
        if check_executable(&under_root(root, cwd, &cand)).is_ok() {
            return Ok(cand);
        }
    }
    Err(format!(
        "exec: {arg0:?}: executable file not found in $PATH"
    ))
}

fn io_msg(e: &std::io::Error, path: &str) -> String {
    match e.raw_os_error() {
        Some(libc::ENOENT) => format!("stat {path}: no such file or directory"),
        Some(libc::EACCES) => "permission denied".into(),
        Some(libc::EISDIR) => "is a directory".into(),
        _ => e.to_string(),
    }
}

/// process.cwd must exist and be a directory.
pub fn check_cwd(cwd: &str, root: &Path) -> Result<(), String> {
    if !cwd.starts_with('/') {
        return Err(format!("process.cwd {cwd:?} is not an absolute path"));
    }
    match fs::metadata(under_root(root, "/", cwd)) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("process.cwd {cwd:?} is not a directory")),
        Err(e) => Err(format!("process.cwd {cwd:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exe(p: &Path, mode: u32) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, "#!/bin/sh\n").unwrap();
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn path_lookup() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        exe(&r.join("usr/bin/tool"), 0o755);
        exe(&r.join("bin/tool"), 0o755);
        exe(&r.join("opt/x/noexec"), 0o644);
        exe(&r.join("opt/y/noexec"), 0o700);
        fs::create_dir_all(r.join("opt/x/adir")).unwrap();
        exe(&r.join("work/rel"), 0o755);
        // Default PATH order: /usr/bin before /bin.
        assert_eq!(lookup("tool", &[], "/", r).unwrap(), "/usr/bin/tool");
        // PATH from env, first PATH= wins.
        let env = vec![
            "A=b".to_string(),
            "PATH=/bin:/usr/bin".into(),
            "PATH=/usr/bin".into(),
        ];
        assert_eq!(lookup("tool", &env, "/", r).unwrap(), "/bin/tool");
        // Not executable / directories are skipped.
        let env = vec!["PATH=/opt/x:/opt/y".to_string()];
        assert_eq!(lookup("noexec", &env, "/", r).unwrap(), "/opt/y/noexec");
        let e = lookup("adir", &env, "/", r).unwrap_err();
        assert_eq!(e, "exec: \"adir\": executable file not found in $PATH");
        let e = lookup("nosuchbin", &[], "/", r).unwrap_err();
        assert_eq!(e, "exec: \"nosuchbin\": executable file not found in $PATH");
        // With a slash: no lookup, but it must exist and be executable.
        assert_eq!(lookup("/bin/tool", &[], "/", r).unwrap(), "/bin/tool");
        assert_eq!(lookup("./rel", &[], "/work", r).unwrap(), "./rel");
        let e = lookup("/nope", &[], "/", r).unwrap_err();
        assert!(e.contains("no such file or directory"), "{e}");
        let e = lookup("/opt/x/noexec", &[], "/", r).unwrap_err();
        assert!(e.contains("permission denied"), "{e}");
        // Relative PATH entries resolve against cwd.
        let env = vec!["PATH=.".to_string()];
        assert_eq!(lookup("rel", &env, "/work", r).unwrap(), "./rel");
    }

    #[test]
    fn cwd_check() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("srv")).unwrap();
        fs::write(t.path().join("file"), "").unwrap();
        assert!(check_cwd("/srv", t.path()).is_ok());
        assert!(check_cwd("/", t.path()).is_ok());
        assert!(check_cwd("/nope", t.path())
            .unwrap_err()
            .contains("process.cwd"));
        assert!(check_cwd("/file", t.path())
            .unwrap_err()
            .contains("not a directory"));
        assert!(check_cwd("rel", t.path()).unwrap_err().contains("absolute"));
    }
}
