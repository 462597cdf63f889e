//! A pod member's start inside the pod's guest, in a child of the pod agent:
//! what LXC does for a CT, for one container of the pod. See [`crate::pod`].
//!
//! 1. a mount namespace of its own (a slave of the CT's: nothing leaks back),
//!    and a pid namespace of its own unless the pod shares the CT's;
//! 2. its rootfs (bind-mounted by the runtime under the pod dir) as the new
//!    root, with the spec's mounts in the spec's order, each destination
//!    resolved inside the rootfs (`openat2` with `RESOLVE_IN_ROOT`: an
//!    image's symlinks cannot lead a mount out of it);
//! 3. the default devices bound from the CT's /dev (no mknod in a user
//!    namespace), its exchange dir and our binary where the init expects
//!    them; rlimits;
//! 4. exec our init, which speaks the exchange protocol from there.
//!
//! Any failure before the exec is written to the member's `ready` FIFO
//! (the runtime's create reads it) and ends the child.
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::unistd::{fork, ForkResult};

use crate::init_config::{EXCHANGE_DIR, FIFO_READY, INIT_PATH};
use crate::pod::{GuestMount, MemberSpec, MEMBER_EXCHANGE, MEMBER_ROOTFS, POD_DIR};

/// The member's directory as the agent sees it.
pub fn member_dir(id: &str) -> PathBuf {
    Path::new(EXCHANGE_DIR).join(POD_DIR).join(id)
}

/// In the agent's forked child: set the member up and exec its init.
/// Never returns.
pub fn run(spec: &MemberSpec) -> ! {
    let dir = member_dir(&spec.id);
    // The runtime's create holds the read side open while it waits.
    let ready = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(dir.join(MEMBER_EXCHANGE).join(FIFO_READY))
        .ok();
    let err = match setup(spec, &dir) {
        Ok(()) => exec_init(),
        Err(e) => e,
    };
    if let Some(mut r) = ready {
        let msg = err.replace('\n', " ");
        let _ = r.write_all(format!("error: {msg}\n").as_bytes());
    }
    let _ = writeln!(std::io::stderr(), "lxcri-agent: member {}: {err}", spec.id);
    // SAFETY: leave the forked child without running destructors.
    unsafe { libc::_exit(1) }
}

/// A mount namespace of our own, a slave of the one we were in: what we
/// mount stays ours, what the node mounts later still reaches us.
pub fn own_mount_namespace() -> Result<(), String> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare(mount): {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| format!("making / a slave: {e}"))
}

fn setup(spec: &MemberSpec, dir: &Path) -> Result<(), String> {
    let _ = nix::unistd::setsid();
    own_mount_namespace()?;
    if spec.own_pid_ns {
        unshare(CloneFlags::CLONE_NEWPID).map_err(|e| format!("unshare(pid): {e}"))?;
        // The next child is pid 1 of the new namespace; this process leaves
        // and the agent (the CT's pid 1) adopts and reaps it.
        // SAFETY: the agent's child is single-threaded.
        match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
            ForkResult::Parent { .. } => unsafe { libc::_exit(0) },
            ForkResult::Child => {}
        }
    }
    let rootfs = dir.join(MEMBER_ROOTFS);
    let root = mount_root(spec, &rootfs)?;
    // The init's files, where the init looks for them.
    let exch = dir.join(MEMBER_EXCHANGE);
    bind_into(&root, &exch, EXCHANGE_DIR, true, false)?;
    bind_into(&root, Path::new(INIT_PATH), INIT_PATH, false, true)?;
    pivot(&rootfs)?;
    for (name, soft, hard) in &spec.rlimits {
        set_rlimit(name, *soft, *hard)?;
    }
    Ok(())
}

/// The member's rootfs at `rootfs` (bound on itself, in a mount namespace
/// of the member's own) with the spec's mounts in order and runc's default
/// devices; the root, opened. The caller then pivots into it ([`pivot`]).
/// Shared by a CT's pod agent and a VM's.
pub fn mount_root(spec: &MemberSpec, rootfs: &Path) -> Result<File, String> {
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| format!("binding the rootfs {}: {e}", rootfs.display()))?;
    let root = File::open(rootfs).map_err(|e| format!("opening the rootfs: {e}"))?;
    let mut dev_is_tmpfs = false;
    for (i, m) in spec.mounts.iter().enumerate() {
        mount_one(&root, m).map_err(|e| format!("mounts[{i}] {}: {e}", m.destination))?;
        if m.destination.trim_end_matches('/') == "/dev" && m.typ == "tmpfs" {
            dev_is_tmpfs = true;
        }
    }
    if !dev_is_tmpfs {
        return Err(
            "the spec mounts no tmpfs on /dev: a pod member needs one (every \
                    containerd spec has it)"
                .into(),
        );
    }
    default_devices(&root)?;
    Ok(root)
}

fn exec_init() -> String {
    let path = CString::new(INIT_PATH).expect("no NUL");
    let argv = [path.clone()];
    let env: [CString; 0] = [];
    match nix::unistd::execve(&path, &argv, &env) {
        Err(e) => format!("exec {INIT_PATH}: {e}"),
        Ok(never) => match never {},
    }
}

/// Make the mount point `dest` inside the rootfs `root` (a directory, or a
/// file when `file`), resolved inside it. The runtime makes them on the
/// node before the member starts: the root of an unprivileged CT cannot
/// write into an image whose files belong to the node's root.
pub fn make_mount_target(root: &File, dest: &str, file: bool) -> Result<(), String> {
    open_in_root(root, dest, file).map(drop)
}

/// Resolve `path` inside `root` (symlinks cannot leave it), creating what
/// is missing: directories, and the last component as a file when `file`.
fn open_in_root(root: &File, path: &str, file: bool) -> Result<OwnedFd, String> {
    let rel = path.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return Err(format!("{path:?} has a '..' component"));
    }
    let comps: Vec<&str> = rel
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let mut so_far = String::new();
    for (n, c) in comps.iter().enumerate() {
        let parent = if so_far.is_empty() {
            ".".to_string()
        } else {
            so_far.clone()
        };
        if !so_far.is_empty() {
            so_far.push('/');
        }
        so_far.push_str(c);
        if openat2(root, &so_far, libc::O_PATH).is_ok() {
            continue;
        }
        let pfd = openat2(root, &parent, libc::O_PATH | libc::O_DIRECTORY)?;
        let name = CString::new(*c).map_err(|_| format!("NUL in {path:?}"))?;
        let last = n + 1 == comps.len();
        // SAFETY: plain *at calls on a valid fd and C string.
        let r = unsafe {
            if last && file {
                let fd = libc::openat(
                    pfd.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_WRONLY
                        | libc::O_CLOEXEC
                        | libc::O_NOFOLLOW,
                    0o644,
                );
                if fd >= 0 {
                    libc::close(fd);
                    0
                } else {
                    -1
                }
            } else {
                libc::mkdirat(pfd.as_raw_fd(), name.as_ptr(), 0o755)
            }
        };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(format!("creating {so_far:?} in the rootfs: {e}"));
            }
        }
    }
    openat2(root, if rel.is_empty() { "." } else { rel }, libc::O_PATH)
}

fn openat2(root: &File, rel: &str, flags: i32) -> Result<OwnedFd, String> {
    let c = CString::new(rel).map_err(|_| format!("NUL in {rel:?}"))?;
    // SAFETY: open_how is plain data; all-zero is its "no options".
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2 with a valid dir fd, C string and open_how.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(format!(
            "{rel:?} in the rootfs: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The path the kernel resolves to the object behind `fd`.
fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// An OCI mount's options: flags, propagation, the rest as fs data.
struct Options {
    flags: MsFlags,
    clear: MsFlags,
    propagation: Vec<MsFlags>,
    bind: Option<bool>,
    data: Vec<String>,
}

fn parse_options(opts: &[String]) -> Options {
    let mut o = Options {
        flags: MsFlags::empty(),
        clear: MsFlags::empty(),
        propagation: vec![],
        bind: None,
        data: vec![],
    };
    for s in opts {
        let (set, clear) = match s.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "bind" => {
                o.bind = Some(o.bind.unwrap_or(false));
                continue;
            }
            "rbind" => {
                o.bind = Some(true);
                continue;
            }
            p @ ("private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
            | "unbindable" | "runbindable") => {
                let base = match p.trim_start_matches('r') {
                    "private" => MsFlags::MS_PRIVATE,
                    "shared" => MsFlags::MS_SHARED,
                    "slave" => MsFlags::MS_SLAVE,
                    _ => MsFlags::MS_UNBINDABLE,
                };
                let rec = p.starts_with('r');
                o.propagation
                    .push(if rec { base | MsFlags::MS_REC } else { base });
                continue;
            }
            other => {
                o.data.push(other.to_string());
                continue;
            }
        };
        o.flags |= set;
        o.flags &= !clear;
        o.clear |= clear;
    }
    o
}

/// The flags a user namespace may not drop on a bind's remount (the source's).
fn locked_flags(path: &Path) -> MsFlags {
    let Ok(st) = nix::sys::statvfs::statvfs(path) else {
        return MsFlags::empty();
    };
    use nix::sys::statvfs::FsFlags;
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (a, b) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
    ] {
        if f.contains(a) {
            out |= b;
        }
    }
    out
}

fn mount_one(root: &File, m: &GuestMount) -> Result<(), String> {
    let o = parse_options(&m.options);
    let is_bind = m.typ == "bind" || o.bind.is_some();
    if !m.destination.starts_with('/') {
        return Err("the destination must be absolute".into());
    }
    let data = o.data.join(",");
    let data = (!data.is_empty()).then_some(data.as_str());
    if is_bind {
        let src = Path::new(&m.source);
        let file = !src.is_dir();
        let target = open_in_root(root, &m.destination, file)?;
        let t = fd_path(&target);
        let rec = o.bind.unwrap_or(false);
        let mut f = MsFlags::MS_BIND;
        if rec {
            f |= MsFlags::MS_REC;
        }
        mount(Some(src), &t, None::<&str>, f, None::<&str>)
            .map_err(|e| format!("bind from {}: {e}", src.display()))?;
        let want = o.flags
            & (MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
        if !want.is_empty() {
            // Reopened: the fd still names the directory under the new mount.
            let target = open_in_root(root, &m.destination, file)?;
            let t = fd_path(&target);
            let keep = locked_flags(&t);
            mount(
                None::<&str>,
                &t,
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | want | keep,
                None::<&str>,
            )
            .map_err(|e| format!("remounting the bind: {e}"))?;
        }
    } else {
        let target = open_in_root(root, &m.destination, false)?;
        let t = fd_path(&target);
        let typ = m.typ.as_str();
        match typ {
            "proc" | "tmpfs" | "devpts" | "mqueue" | "sysfs" | "cgroup" | "cgroup2" => {}
            other => {
                return Err(format!(
                    "filesystem type {other:?} is not supported in a pod"
                ))
            }
        }
        let r = if typ == "cgroup" || typ == "cgroup2" {
            // The pod's cgroup view: the CT's hierarchies (the member's own
            // cgroup is one of its directories), read-only as containerd asks.
            rbind_ro(Path::new("/sys/fs/cgroup"), root, &m.destination)
        } else {
            mount(Some(m.source.as_str()), &t, Some(typ), o.flags, data).map_err(|e| e.to_string())
        };
        match r {
            Ok(()) => {}
            // A sysfs the CT's user namespace may not mount afresh: the CT's.
            Err(_) if typ == "sysfs" => rbind_ro(Path::new("/sys"), root, &m.destination)?,
            Err(e) => return Err(format!("mount {typ}: {e}")),
        }
    }
    for p in &o.propagation {
        let target = open_in_root(root, &m.destination, false)?;
        mount(
            None::<&str>,
            &fd_path(&target),
            None::<&str>,
            *p,
            None::<&str>,
        )
        .map_err(|e| format!("propagation: {e}"))?;
    }
    Ok(())
}

fn rbind_ro(src: &Path, root: &File, dest: &str) -> Result<(), String> {
    let target = open_in_root(root, dest, false)?;
    mount(
        Some(src),
        &fd_path(&target),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| format!("bind from {}: {e}", src.display()))?;
    remount_ro(root, dest, false)
}

/// Make the bind mount at `dest` read-only, keeping the flags a user
/// namespace may not drop. The path is opened again: the remount must name
/// the new mount, not the directory under it.
fn remount_ro(root: &File, dest: &str, file: bool) -> Result<(), String> {
    let target = open_in_root(root, dest, file)?;
    let t = fd_path(&target);
    let keep = locked_flags(&t);
    mount(
        None::<&str>,
        &t,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | keep,
        None::<&str>,
    )
    .map_err(|e| format!("read-only {dest}: {e}"))
}

/// Bind `src` (a path in the agent's view) at `dest` inside the rootfs.
fn bind_into(root: &File, src: &Path, dest: &str, dir: bool, ro: bool) -> Result<(), String> {
    let target = open_in_root(root, dest, !dir)?;
    let t = fd_path(&target);
    mount(Some(src), &t, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| format!("binding {} at {dest}: {e}", src.display()))?;
    if ro {
        remount_ro(root, dest, !dir)?;
    }
    Ok(())
}

/// runc's default devices, bound from the CT's /dev, and /dev's symlinks.
fn default_devices(root: &File) -> Result<(), String> {
    for d in ["null", "zero", "full", "random", "urandom", "tty"] {
        let src = Path::new("/dev").join(d);
        if src.exists() {
            bind_into(root, &src, &format!("/dev/{d}"), false, false)?;
        }
    }
    let devfd = open_in_root(root, "/dev", false)?;
    let dev = fd_path(&devfd);
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        match std::os::unix::fs::symlink(to, dev.join(link)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("symlink /dev/{link}: {e}")),
        }
    }
    Ok(())
}

/// Make `rootfs` (a mount point) the root: pivot_root, the old root detached.
pub fn pivot(rootfs: &Path) -> Result<(), String> {
    nix::unistd::chdir(rootfs).map_err(|e| format!("chdir rootfs: {e}"))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detaching the old root: {e}"))?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))
}

/// One of process.rlimits by its OCI name.
pub fn set_rlimit(name: &str, soft: u64, hard: u64) -> Result<(), String> {
    use nix::sys::resource::{setrlimit, Resource};
    let r = match name {
        "RLIMIT_AS" => Resource::RLIMIT_AS,
        "RLIMIT_CORE" => Resource::RLIMIT_CORE,
        "RLIMIT_CPU" => Resource::RLIMIT_CPU,
        "RLIMIT_DATA" => Resource::RLIMIT_DATA,
        "RLIMIT_FSIZE" => Resource::RLIMIT_FSIZE,
        "RLIMIT_LOCKS" => Resource::RLIMIT_LOCKS,
        "RLIMIT_MEMLOCK" => Resource::RLIMIT_MEMLOCK,
        "RLIMIT_MSGQUEUE" => Resource::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => Resource::RLIMIT_NICE,
        "RLIMIT_NOFILE" => Resource::RLIMIT_NOFILE,
        "RLIMIT_NPROC" => Resource::RLIMIT_NPROC,
        "RLIMIT_RSS" => Resource::RLIMIT_RSS,
        "RLIMIT_RTPRIO" => Resource::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => Resource::RLIMIT_RTTIME,
        "RLIMIT_SIGPENDING" => Resource::RLIMIT_SIGPENDING,
        "RLIMIT_STACK" => Resource::RLIMIT_STACK,
        other => return Err(format!("unknown rlimit {other:?}")),
    };
    setrlimit(r, soft, hard).map_err(|e| format!("setrlimit {name} {soft} {hard}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let o = parse_options(&[
            "nosuid".into(),
            "rbind".into(),
            "rprivate".into(),
            "ro".into(),
            "mode=755".into(),
            "size=65536k".into(),
        ]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_RDONLY);
        assert_eq!(o.bind, Some(true));
        assert_eq!(o.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        assert_eq!(o.data, vec!["mode=755", "size=65536k"]);
        let o = parse_options(&["ro".into(), "rw".into(), "bind".into()]);
        assert_eq!(o.flags, MsFlags::empty());
        assert_eq!(o.bind, Some(false));
    }

    #[test]
    fn destinations_stay_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("escape")).unwrap();
        std::os::unix::fs::symlink("/nowhere", d.path().join("dangling")).unwrap();
        // A symlink that resolves to nothing inside the root is refused.
        let root = File::open(d.path()).unwrap();
        assert!(open_in_root(&root, "/escape/x", false).is_err());
        assert!(open_in_root(&root, "/dangling/x", false).is_err());
        std::fs::create_dir(d.path().join("etc")).unwrap();
        let root = File::open(d.path()).unwrap();
        // Through a symlink to /etc: created inside the root, not in /etc.
        let fd = open_in_root(&root, "/escape/lxcri-member-test", false).unwrap();
        drop(fd);
        assert!(d.path().join("etc/lxcri-member-test").is_dir());
        assert!(!Path::new("/etc/lxcri-member-test").exists());
        assert!(open_in_root(&root, "/a/../../b", false).is_err());
        open_in_root(&root, "/x/y/file", true).unwrap();
        assert!(d.path().join("x/y/file").is_file());
    }
}
