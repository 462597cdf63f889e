//! Children of the init: startContainer hooks and the user process.
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, pipe2, ForkResult, Gid, Pid, Uid};

use super::{capabilities, seccomp, Prepared};

/// Puts every signal disposition back to default and unblocks everything:
/// the init blocks all signals (for its signalfd) and LXC may have ignored
/// some; both would be inherited across execve.
pub fn reset_signals() {
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: resetting a disposition to SIG_DFL; errors (glibc-internal signals) are ignored.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// Reads everything from a pipe until EOF.
fn read_all(fd: OwnedFd) -> Vec<u8> {
    let mut f = std::fs::File::from(fd);
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    buf
}

/// Drains the (non-blocking) signalfd; returns the signals other than SIGCHLD.
pub fn drain_signals(sigfd: &SignalFd) -> Vec<i32> {
    let mut out = Vec::new();
    while let Ok(Some(si)) = sigfd.read_signal() {
        let s = si.ssi_signo as i32;
        if s != libc::SIGCHLD {
            out.push(s);
        }
    }
    out
}

/// Waits until `fd` is readable or `timeout_ms` (-1: forever) passes.
pub fn poll_in(fds: &[i32], timeout_ms: i32) -> Vec<bool> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: p is a valid array of pollfd.
    let rc = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
    if rc <= 0 {
        return vec![false; fds.len()];
    }
    p.iter().map(|x| x.revents != 0).collect()
}

/// The seccomp notify fd to the runtime (which hands it to the agent at
/// listenerPath); ours is closed. Without a socket (an `exec`'d process)
/// it is closed: the process's notified syscalls then fail with ENOSYS.
fn send_notify_fd(p: &Prepared, fd: Option<OwnedFd>) -> Result<(), seccomp::SeccompError> {
    let (Some(fd), Some(sock)) = (fd, &p.notify_sock) else {
        return Ok(());
    };
    crate::pty::send_fds(sock, &[fd.as_raw_fd()], b"seccompFd")
        .map_err(|e| seccomp::SeccompError::Load(std::io::Error::other(e)))
}

/// `--preserve-fds n`: fds 3..3+n stay open across the exec, as runc
/// passes them; every other fd above 2 is closed on exec.
pub fn pass_fds(n: u32) -> std::io::Result<()> {
    // SAFETY: close_range only sets close-on-exec here; no fd is closed.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 + n,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    for fd in 3..3 + n as i32 {
        // SAFETY: plain fcntl on a number; EBADF is the caller's error.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
            return Err(std::io::Error::other(format!(
                "fd {fd}: {}",
                std::io::Error::last_os_error()
            )));
        }
    }
    Ok(())
}

pub(crate) fn cstrings(v: &[String], what: &str) -> Result<Vec<CString>, String> {
    v.iter()
        .enumerate()
        .map(|(i, s)| {
            CString::new(s.as_bytes()).map_err(|_| format!("{what}[{i}] contains a NUL byte"))
        })
        .collect()
}

/// Runs one startContainer hook to completion. Its stdin is `state`, its
/// stdout and stderr go to the init's stderr. Signals other than SIGCHLD
/// that arrive meanwhile are appended to `pending` (forwarded later).
pub fn run_hook(
    h: &oci_spec::runtime::Hook,
    state: &[u8],
    sigfd: &SignalFd,
    pending: &mut Vec<i32>,
) -> Result<(), String> {
    let timeout = match h.timeout() {
        Some(t) if t <= 0 => return Err(format!("timeout must be greater than zero, got {t}")),
        t => t,
    };
    let path_str = h.path().to_string_lossy().into_owned();
    let path = CString::new(path_str.as_bytes()).map_err(|_| "path contains a NUL byte")?;
    let args = cstrings(
        &h.args().clone().unwrap_or_else(|| vec![path_str.clone()]),
        "args",
    )?;
    let env = cstrings(&h.env().clone().unwrap_or_default(), "env")?;
    let (in_r, in_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: the init is single-threaded.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            reset_signals();
            // SAFETY: plain fd syscalls in the forked child.
            unsafe {
                libc::dup2(in_r.as_raw_fd(), 0);
                libc::dup2(2, 1);
            }
            let e = nix::unistd::execve(&path, &args, &env).unwrap_err();
            let mut w = std::fs::File::from(err_w);
            let _ = write!(w, "exec {path_str}: {}", std::io::Error::from(e));
            // SAFETY: leave the forked child without running the parent's destructors.
            unsafe { libc::_exit(127) }
        }
        ForkResult::Parent { child } => {
            drop(in_r);
            drop(err_w);
            {
                let mut w = std::fs::File::from(in_w);
                // Small JSON; a hook that does not read it must not block us.
                // SAFETY: fcntl on an fd we own.
                unsafe {
                    libc::fcntl(w.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK);
                }
                let _ = w.write_all(state);
            }
            let msg = read_all(err_r);
            if !msg.is_empty() {
                let _ = waitpid(child, None);
                return Err(String::from_utf8_lossy(&msg).into_owned());
            }
            wait_hook(child, timeout, sigfd, pending)
        }
    }
}

fn wait_hook(
    child: Pid,
    timeout: Option<i64>,
    sigfd: &SignalFd,
    pending: &mut Vec<i32>,
) -> Result<(), String> {
    let deadline = timeout.map(|t| Instant::now() + Duration::from_secs(t as u64));
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, 0)) => return Ok(()),
            Ok(WaitStatus::Exited(_, c)) => return Err(format!("exit status {c}")),
            Ok(WaitStatus::Signaled(_, s, _)) => {
                return Err(format!("killed by signal {} ({s})", s as i32))
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("waiting for the hook: {e}")),
        }
        let ms = match deadline {
            None => -1,
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                    let _ = waitpid(child, None);
                    return Err(format!(
                        "hook ran past specified timeout of {} seconds",
                        timeout.unwrap_or(0)
                    ));
                }
                ((d - now).as_millis().min(i32::MAX as u128 - 1) as i32) + 1
            }
        };
        poll_in(&[sigfd.as_raw_fd()], ms);
        pending.extend(drain_signals(sigfd));
    }
}

/// Pre-exec failure of the user process: the shell-style exit code and the message.
pub type ExecFailure = (u8, String);

/// In the forked child: become the user process. Only returns on failure.
///
/// Order of the privileged steps (as runc's init does them):
/// 1. reset signal dispositions and mask;
/// 2. `setsid` (+ `TIOCSCTTY` on fd 0 with `process.terminal`);
/// 3. without `noNewPrivileges`: load seccomp now, while CAP_SYS_ADMIN is
///    still held (seccomp(2) needs it when no_new_privs is not set); every
///    later step then runs under the filter, as in runc;
/// 4. drop the bounding set (needs CAP_SETPCAP, still effective);
/// 5. `PR_SET_KEEPCAPS`, setgroups, setgid, setuid (permitted caps survive
///    the uid change, effective ones are cleared by the kernel);
/// 6. umask, chdir (as the target user, so permissions are checked as it);
/// 7. capset effective/permitted/inheritable, then the ambient set;
/// 8. `PR_SET_NO_NEW_PRIVS`;
/// 9. with `noNewPrivileges`: load seccomp as late as possible;
/// 10. execve with exactly process.env.
pub fn exec_user(p: &Prepared) -> ExecFailure {
    let cfg = &p.cfg;
    let fail = |m: String| (127u8, m);
    reset_signals();
    // A fresh session; the init that execs in place may lead one already.
    if let Err(e) = nix::unistd::setsid() {
        if nix::unistd::getsid(None) != Ok(nix::unistd::getpid()) {
            return fail(format!("setsid: {e}"));
        }
    }
    if cfg.terminal {
        // SAFETY: ioctl on fd 0 with an integer argument.
        if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
            return fail(format!(
                "making stdin the controlling terminal (process.terminal): {}",
                errno()
            ));
        }
    }
    if let (Some(f), false) = (&p.seccomp, cfg.no_new_privileges) {
        if let Err(e) = seccomp::load(f).and_then(|fd| send_notify_fd(p, fd)) {
            return fail(format!("linux.seccomp: {e}"));
        }
    }
    if let Err(e) = capabilities::drop_bounding(p.caps.bounding) {
        return fail(format!("process.capabilities.bounding: {e}"));
    }
    // SAFETY: plain prctl.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
        return fail(format!("prctl(PR_SET_KEEPCAPS): {}", errno()));
    }
    let gids: Vec<Gid> = cfg
        .additional_gids
        .iter()
        .map(|&g| Gid::from_raw(g))
        .collect();
    if let Err(e) = nix::unistd::setgroups(&gids) {
        // In a user namespace with setgroups=deny, an empty list cannot be
        // set but is already what we want.
        if !(gids.is_empty() && e == nix::errno::Errno::EPERM) {
            return fail(format!(
                "setgroups {:?} (process.user.additionalGids): {e}",
                cfg.additional_gids
            ));
        }
    }
    let gid = Gid::from_raw(cfg.gid);
    if let Err(e) = nix::unistd::setresgid(gid, gid, gid) {
        return fail(format!("setgid {} (process.user.gid): {e}", cfg.gid));
    }
    let uid = Uid::from_raw(cfg.uid);
    if let Err(e) = nix::unistd::setresuid(uid, uid, uid) {
        return fail(format!("setuid {} (process.user.uid): {e}", cfg.uid));
    }
    // SAFETY: plain prctl.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
        cfg.umask.unwrap_or(0o022) as libc::mode_t,
    ));
    if let Err(e) = nix::unistd::chdir(cfg.cwd.as_str()) {
        return fail(format!("chdir to process.cwd {:?}: {e}", cfg.cwd));
    }
    let c = p.caps;
    if let Err(e) = capabilities::set_eip(c.effective, c.permitted, c.inheritable) {
        return fail(format!("process.capabilities: {e}"));
    }
    if let Err(e) = capabilities::set_ambient(c.ambient) {
        return fail(format!("process.capabilities.ambient: {e}"));
    }
    if cfg.no_new_privileges {
        // SAFETY: plain prctl.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return fail(format!("prctl(PR_SET_NO_NEW_PRIVS): {}", errno()));
        }
        if let Some(f) = &p.seccomp {
            if let Err(e) = seccomp::load(f).and_then(|fd| send_notify_fd(p, fd)) {
                return fail(format!("linux.seccomp: {e}"));
            }
        }
    }
    if let Err(e) = pass_fds(cfg.preserve_fds) {
        return fail(format!("--preserve-fds {}: {e}", cfg.preserve_fds));
    }
    let e = nix::unistd::execve(&p.path, &p.args, &p.env).unwrap_err();
    let code = match e {
        nix::errno::Errno::EACCES
        | nix::errno::Errno::ENOEXEC
        | nix::errno::Errno::EISDIR
        | nix::errno::Errno::EPERM => 126,
        _ => 127,
    };
    (
        code,
        format!(
            "exec {}: {}",
            p.path.to_string_lossy(),
            std::io::Error::from(e)
        ),
    )
}
