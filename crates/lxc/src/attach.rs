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

use nix::sched::{setns, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::Process;

use crate::init::{prepare_process, process::exec_user};
use crate::init_config::{Capabilities, InitConfig};

#[derive(Debug, thiserror::Error)]
#[error("exec: {0}")]
pub struct AttachError(pub String);

fn err(m: impl Into<String>) -> AttachError {
    AttachError(m.into())
}

/// The InitConfig for an exec'd process: its own process fields, the
/// container's seccomp profile (runc applies it to exec'd processes too).
pub fn init_config_for(
    process: &Process,
    container: &InitConfig,
) -> Result<InitConfig, AttachError> {
    let args = process.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(err("process.args must not be empty"));
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
        return Err(err(format!("process.cwd {cwd:?} must be absolute")));
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

/// Join the cgroups of `pid` on every hierarchy mounted here.
fn join_cgroups(pid: i32) -> Result<(), AttachError> {
    let theirs = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|e| err(format!("reading the container's cgroups: {e}")))?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| err(format!("reading mountinfo: {e}")))?;
    for line in theirs.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Some(mnt) = proxmox_lxcri_cgroups::mount_point(&mountinfo, ctrls) else {
            continue;
        };
        let procs = format!("{mnt}{path}/cgroup.procs");
        if let Err(e) = fs::write(&procs, "0") {
            // The named systemd hierarchy is bookkeeping only.
            if !ctrls.starts_with("name=") {
                return Err(err(format!("joining cgroup {procs}: {e}")));
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
        let f = File::open(&theirs).map_err(|e| err(format!("opening {theirs}: {e}")))?;
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
/// fds 0-2 (a pty slave) when given. Must be called single-threaded.
pub fn exec(
    init_pid: i32,
    cfg: InitConfig,
    console: Option<std::os::unix::net::UnixStream>,
    detach: bool,
) -> Result<Spawned, AttachError> {
    let ns = namespaces(init_pid)?;
    join_cgroups(init_pid)?;
    for (fd, flag) in &ns {
        setns(fd, *flag).map_err(|e| err(format!("entering the container's {flag:?}: {e}")))?;
    }
    drop(ns);
    // Root and cwd are the container's now; check the process against them.
    let prepared = prepare_process(cfg).map_err(err)?;
    // The terminal comes from the container's own devpts; its master goes
    // to the console socket, connected before we left the host's mounts.
    let pty = match &console {
        Some(sock) => {
            let (master, slave) = crate::pty::open_pty().map_err(err)?;
            crate::pty::send_fd(sock, master.as_raw_fd()).map_err(err)?;
            Some(slave)
        }
        None => None,
    };
    let stdio: Option<RawFd> = pty.as_ref().map(|s| s.as_raw_fd());
    let (r, w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| err(format!("pipe: {e}")))?;
    // SAFETY: single-threaded caller; the child only sets itself up and execs.
    let child = match unsafe { fork() }.map_err(|e| err(format!("fork: {e}")))? {
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
        return Err(err(msg));
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
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
    loop {
        match waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => return Some(c),
            Ok(WaitStatus::Signaled(_, s, _)) => return Some(128 + s as i32),
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(_) => return None,
        }
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 20_000_000,
        };
        // SAFETY: plain syscall with valid pointers.
        let sig = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
        if let Ok(s) = Signal::try_from(sig) {
            forward(s);
        }
    }
}
