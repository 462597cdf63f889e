//! `exec`: run another process in a running container.
//!
//! The process joins the init's cgroups and namespaces, is forked into its
//! pid namespace, and then goes through the same set-up as the container's
//! own process ([`crate::init::process::exec_user`]: user, capabilities,
//! no_new_privs, seccomp). It stays a child of the calling command, so with
//! `--detach` it is reparented to containerd's shim (a subreaper), which
//! reaps it and learns its exit status, as with runc.
use std::fs::{self, File};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::Process;

use crate::init::{prepare_process, process::exec_user, InitError};
use crate::init_config::{Capabilities, InitConfig};

/// Why `exec` failed; every message starts with `exec: `.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("exec: process.args must not be empty")]
    NoArgs,
    #[error("exec: {0}")]
    PidFile(std::io::Error),
    #[error("exec: process.cwd {0:?} must be absolute")]
    RelativeCwd(String),
    #[error("exec: reading the container's cgroups: {0}")]
    ReadCgroups(std::io::Error),
    #[error("exec: reading mountinfo: {0}")]
    ReadMountinfo(std::io::Error),
    #[error("exec: joining cgroup {}: {source}", path.display())]
    JoinCgroup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("exec: opening {}: {source}", path.display())]
    OpenNamespace {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("exec: entering the container's {flag:?}: {source}")]
    EnterNamespace {
        flag: CloneFlags,
        source: nix::Error,
    },
    /// The process cannot run in the container (user, capabilities,
    /// seccomp, cwd, executable ...).
    #[error("exec: {0}")]
    Prepare(#[from] InitError),
    /// Making the pty or sending its master to the console socket.
    #[error("exec: {0}")]
    Pty(String),
    #[error("exec: pipe: {0}")]
    Pipe(nix::Error),
    #[error("exec: fork: {0}")]
    Fork(nix::Error),
    /// The forked process failed before exec (its message).
    #[error("exec: {0}")]
    Process(String),
}

/// The InitConfig for an exec'd process: its own process fields, the
/// container's seccomp profile (runc applies it to exec'd processes too).
pub fn init_config_for(
    process: &Process,
    container: &InitConfig,
) -> Result<InitConfig, AttachError> {
    let args = process.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(AttachError::NoArgs);
    }
    let user = process.user();
    let caps = process.capabilities().as_ref().map(|c| {
        let names = |s: &Option<oci_spec::runtime::Capabilities>| -> Vec<String> {
            s.as_ref()
                .map(|set| set.iter().map(|c| format!("CAP_{c}")).collect())
                .unwrap_or_default()
        };
        Capabilities {
            bounding: names(c.bounding()),
            effective: names(c.effective()),
            inheritable: names(c.inheritable()),
            permitted: names(c.permitted()),
            ambient: names(c.ambient()),
        }
    });
    let cwd = process.cwd().to_string_lossy().into_owned();
    if !cwd.starts_with('/') {
        return Err(AttachError::RelativeCwd(cwd));
    }
    Ok(InitConfig {
        args,
        env: process.env().clone().unwrap_or_default(),
        cwd,
        uid: user.uid(),
        gid: user.gid(),
        additional_gids: user.additional_gids().clone().unwrap_or_default(),
        umask: user.umask(),
        terminal: process.terminal().unwrap_or(false),
        capabilities: caps,
        no_new_privileges: process.no_new_privileges().unwrap_or(false),
        seccomp: container.seccomp.clone(),
        ..Default::default()
    })
}

/// `exec --cgroup` (runc 1.1): sub-cgroups of the container's cgroups to
/// run the process in, `path` for every hierarchy or `ctrl[,ctrl]:path`
/// per controller.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SubCgroups(std::collections::BTreeMap<String, String>);

impl SubCgroups {
    /// runc's rules: one plain path, or controller-prefixed ones, each
    /// controller once; the path stays inside the container's cgroup.
    pub fn parse(args: &[String]) -> Result<SubCgroups, String> {
        let mut m = std::collections::BTreeMap::new();
        for a in args {
            let bad = |why: &str| format!("invalid --cgroup argument: {a}{why}");
            let parts: Vec<&str> = a.splitn(3, ':').collect();
            let (ctrls, path) = match parts.as_slice() {
                [p] if args.len() == 1 => (vec![""], *p),
                [_] => return Err(bad(" (missing <controller>: prefix)")),
                [c, p] => (c.split(',').collect(), *p),
                _ => return Err(bad("")),
            };
            let mut clean = Vec::new();
            for c in Path::new(path).components() {
                match c {
                    std::path::Component::Normal(n) => clean.push(n.to_string_lossy()),
                    std::path::Component::RootDir | std::path::Component::CurDir => {}
                    _ => return Err(bad(" (the path must stay inside the container's cgroup)")),
                }
            }
            let path = clean.join("/");
            for c in ctrls {
                if a.contains(':') && c.is_empty() {
                    return Err(bad(" (empty <controller> prefix)"));
                }
                if m.insert(c.to_string(), path.clone()).is_some() {
                    return Err(format!(
                        "invalid --cgroup argument(s): controller {c} specified multiple times"
                    ));
                }
            }
        }
        Ok(SubCgroups(m))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The sub-cgroup for the hierarchy of `ctrls` ("cpu,cpuacct",
    /// "name=systemd", "" for cgroup v2), and the key that chose it.
    fn for_hierarchy(&self, ctrls: &str, v2_only: bool) -> Option<(&str, &str)> {
        if let Some((k, p)) = self.0.get_key_value("") {
            return Some((k, p));
        }
        if v2_only {
            // cgroup v2: one hierarchy, whichever controller was named.
            return self.0.iter().next().map(|(k, p)| (k.as_str(), p.as_str()));
        }
        ctrls
            .split(',')
            .find_map(|c| self.0.get_key_value(c))
            .map(|(k, p)| (k.as_str(), p.as_str()))
    }
}

/// Join the cgroups of `pid` on every hierarchy mounted here (their
/// `sub` cgroups where asked for).
fn join_cgroups(pid: i32, sub: &SubCgroups) -> Result<(), AttachError> {
    let theirs =
        fs::read_to_string(format!("/proc/{pid}/cgroup")).map_err(AttachError::ReadCgroups)?;
    let mountinfo =
        fs::read_to_string("/proc/self/mountinfo").map_err(AttachError::ReadMountinfo)?;
    let mut used = std::collections::BTreeSet::new();
    let v2_only = theirs.lines().all(|l| l.starts_with("0::"));
    let mut joins = Vec::new();
    for line in theirs.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Some(mnt) = proxmox_lxcri_cgroups::mount_point(&mountinfo, ctrls) else {
            continue;
        };
        let mut dir = PathBuf::from(format!("{mnt}{path}"));
        let chosen = sub.for_hierarchy(ctrls, v2_only);
        if let Some((key, p)) = chosen {
            used.insert(key.to_string());
            if !p.is_empty() {
                dir.push(p);
            }
        }
        // The named systemd hierarchy is bookkeeping only (its sub-cgroup
        // too, unless named).
        let bookkeeping = ctrls.starts_with("name=") && chosen.is_none_or(|(k, _)| k.is_empty());
        joins.push((dir.join("cgroup.procs"), bookkeeping));
    }
    // Nothing joined before the arguments are known good.
    if let Some(k) = sub.0.keys().find(|k| !k.is_empty() && !used.contains(*k)) {
        return Err(AttachError::Process(format!(
            "--cgroup {k}:...: the container has no cgroup of controller {k}"
        )));
    }
    for (procs, bookkeeping) in joins {
        if let Err(source) = fs::write(&procs, "0") {
            if !bookkeeping {
                return Err(AttachError::JoinCgroup {
                    path: procs,
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Namespaces of `pid` that differ from ours, user namespace first.
fn namespaces(pid: i32) -> Result<Vec<(OwnedFd, CloneFlags)>, AttachError> {
    let mut out = vec![];
    for (name, flag) in [
        ("user", CloneFlags::CLONE_NEWUSER),
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("cgroup", CloneFlags::CLONE_NEWCGROUP),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ] {
        let theirs = format!("/proc/{pid}/ns/{name}");
        let (Ok(a), Ok(b)) = (
            fs::metadata(&theirs),
            fs::metadata(format!("/proc/self/ns/{name}")),
        ) else {
            continue;
        };
        if a.ino() == b.ino() && a.dev() == b.dev() {
            continue;
        }
        let f = File::open(&theirs).map_err(|source| AttachError::OpenNamespace {
            path: theirs.into(),
            source,
        })?;
        // SAFETY: ownership moves from the File.
        out.push((unsafe { OwnedFd::from_raw_fd(f.into_raw_fd()) }, flag));
    }
    Ok(out)
}

/// How the exec'd process ends up.
pub enum Spawned {
    /// Detached: its host pid; the caller writes the pid file and leaves.
    Detached(i32),
    /// Waited for: its exit status in shell form.
    Exited(i32),
}

/// Join the container of `init_pid` and run `cfg` there. `stdio` replaces
/// fds 0-2 (a pty slave) when given. `started` gets the process's host pid
/// once it runs (the `--pid-file`, written before we wait, as runc does)
/// and its seccomp notify fd, if its filter has one (for the agent); if it
/// fails, the process is killed. Must be called single-threaded.
pub fn exec(
    init_pid: i32,
    cfg: InitConfig,
    console: Option<std::os::unix::net::UnixStream>,
    detach: bool,
    sub_cgroups: &SubCgroups,
    started: impl FnOnce(i32, Option<OwnedFd>) -> std::io::Result<()>,
) -> Result<Spawned, AttachError> {
    let ns = namespaces(init_pid)?;
    join_cgroups(init_pid, sub_cgroups)?;
    for (fd, flag) in &ns {
        setns(fd, *flag).map_err(|source| AttachError::EnterNamespace {
            flag: *flag,
            source,
        })?;
    }
    drop(ns);
    // Root and cwd are the container's now; check the process against them.
    let mut prepared = prepare_process(cfg)?;
    // SCMP_ACT_NOTIFY: the process sends its notify fd back to us.
    let notify = match prepared.seccomp.as_ref().is_some_and(|f| f.notify) {
        true => {
            let (ours, theirs) = std::os::unix::net::UnixStream::pair()
                .map_err(|e| AttachError::Process(format!("socketpair: {e}")))?;
            prepared.notify_sock = Some(theirs);
            Some(ours)
        }
        false => None,
    };
    // The terminal comes from the container's own devpts; its master goes
    // to the console socket, connected before we left the host's mounts.
    let pty = match &console {
        Some(sock) => {
            let (master, slave) = crate::pty::open_pty().map_err(AttachError::Pty)?;
            crate::pty::send_fd(sock, master.as_raw_fd()).map_err(AttachError::Pty)?;
            Some(slave)
        }
        None => None,
    };
    let stdio: Option<RawFd> = pty.as_ref().map(|s| s.as_raw_fd());
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(AttachError::Pipe)?;
    // SAFETY: single-threaded caller; the child only sets itself up and execs.
    let child = match unsafe { fork() }.map_err(AttachError::Fork)? {
        ForkResult::Child => {
            drop(r);
            if let Some(fd) = stdio {
                unsafe {
                    libc::dup2(fd, 0);
                    libc::dup2(fd, 1);
                    libc::dup2(fd, 2);
                }
            }
            let (code, msg) = exec_user(&prepared);
            let mut w = File::from(w);
            let _ = std::io::Write::write_all(&mut w, msg.as_bytes());
            unsafe { libc::_exit(code as i32) }
        }
        ForkResult::Parent { child } => child,
    };
    drop(w);
    let mut msg = String::new();
    let _ = File::from(r).read_to_string(&mut msg);
    if !msg.is_empty() {
        let _ = waitpid(child, None);
        return Err(AttachError::Process(msg));
    }
    // The process sent its notify fd before it exec'd.
    drop(prepared.notify_sock.take());
    let notify_fd = match &notify {
        Some(s) => {
            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(10)));
            match crate::pty::recv_fd(s) {
                Ok(fd) => Some(fd),
                Err(e) => {
                    let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                    let _ = waitpid(child, None);
                    return Err(AttachError::Process(format!(
                        "the seccomp notify fd from the process: {e}"
                    )));
                }
            }
        }
        None => None,
    };
    if let Err(e) = started(child.as_raw(), notify_fd) {
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(child, None);
        return Err(AttachError::PidFile(e));
    }
    if detach {
        return Ok(Spawned::Detached(child.as_raw()));
    }
    let code = wait_forwarding(child, |s| {
        let _ = nix::sys::signal::kill(child, s);
    });
    Ok(Spawned::Exited(code.unwrap_or(255)))
}

/// Wait for our child `child`, handing the signals a foreground command
/// receives (^C, TERM, ...) to `forward`. Returns its exit status in shell
/// form, or None if it cannot be waited for (not our child any more).
pub fn wait_forwarding(
    child: Pid,
    mut forward: impl FnMut(nix::sys::signal::Signal),
) -> Option<i32> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
    ] {
        set.add(s);
    }
    // SIGCHLD too: the child's end wakes the wait at once (it stays
    // pending while blocked, so an exit between waitpid and the wait is not
    // lost). Before, only a 20 ms timeout noticed it: 10 ms on average
    // added to every foreground `run` and `exec`.
    set.add(Signal::SIGCHLD);
    let mut old = SigSet::empty();
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old));
    let status = loop {
        match waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => break Some(c),
            Ok(WaitStatus::Signaled(_, s, _)) => break Some(128 + s as i32),
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(_) => break None,
        }
        // A safety net only (a SIGCHLD taken by someone else's wait).
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 200_000_000,
        };
        // SAFETY: plain syscall with valid pointers.
        let sig = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
        match Signal::try_from(sig) {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(s) => forward(s),
        }
    };
    // The forwarded signals stay blocked (the caller cleans up next);
    // SIGCHLD as it was.
    if !old.contains(Signal::SIGCHLD) {
        let mut chld = SigSet::empty();
        chld.add(Signal::SIGCHLD);
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&chld), None);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_the_old_strings() {
        let mut p = Process::default();
        p.set_args(Some(vec![]));
        let c = InitConfig::default();
        assert_eq!(
            init_config_for(&p, &c).unwrap_err().to_string(),
            "exec: process.args must not be empty"
        );
        p.set_args(Some(vec!["sh".into()]));
        p.set_cwd("rel".into());
        assert_eq!(
            init_config_for(&p, &c).unwrap_err().to_string(),
            "exec: process.cwd \"rel\" must be absolute"
        );
        let e = AttachError::JoinCgroup {
            path: "/sys/fs/cgroup/x/cgroup.procs".into(),
            source: std::io::Error::from_raw_os_error(libc::EACCES),
        };
        assert_eq!(
            e.to_string(),
            "exec: joining cgroup /sys/fs/cgroup/x/cgroup.procs: Permission denied (os error 13)"
        );
        let e = AttachError::EnterNamespace {
            flag: CloneFlags::CLONE_NEWNET,
            source: nix::Error::EPERM,
        };
        assert_eq!(
            e.to_string(),
            format!(
                "exec: entering the container's {:?}: {}",
                CloneFlags::CLONE_NEWNET,
                nix::Error::EPERM
            )
        );
        assert_eq!(
            AttachError::from(InitError::NoArgs).to_string(),
            "exec: process.args must not be empty"
        );
    }
}
