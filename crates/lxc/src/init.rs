//! The container init (pid 1 inside the container). See `init_config` for the protocol.
//!
//! LXC starts this binary (bind-mounted at [`INIT_PATH`]) as the container's
//! pid 1, after it has set up namespaces, mounts, cgroups, rlimits, sysctls
//! and the hostname. The init then:
//! 1. prepares what LXC does not do (domainname, devices, masked and
//!    read-only paths), resolves the executable, and reports on `ready`;
//! 2. waits for the `start` byte;
//! 3. hides the exchange directory and itself, runs the startContainer
//!    hooks, then either
//!    * with [`InitConfig::exec_in_place`] (the lxc engine), reports `exec`
//!      on `started` and becomes the user process (see
//!      [`process::exec_user`] for the order of the privileged steps): the
//!      OCI process is pid 1, as under runc, and the `started` FIFO closes
//!      on the successful exec (an error is reported on it otherwise);
//!      reaping orphans is then the image's business, as under runc
//!      (`--init` exists for that);
//!    * or forks the user process, reports `ok` on `started`, and stays
//!      pid 1: forwards signals, reaps zombies, and records the user
//!      process's [`ExitStatus`] in the `exit` file (a Proxmox CT, whose
//!      init's parent is Proxmox's monitor, not ours).
pub mod agent;
pub mod capabilities;
pub mod member;
pub mod mount_order;
pub mod prepare;
pub mod process;
pub mod seccomp;

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::signal::{SigSet, SigmaskHow};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, pipe2, ForkResult, Pid};

use crate::init_config::{
    ExitStatus, InitConfig, EXCHANGE_DIR, FIFO_READY, FIFO_START, FIFO_STARTED, FILE_EXIT,
    FILE_INIT_CONFIG, INIT_PATH,
};

/// Everything the user process needs, checked before `ready`.
pub struct Prepared {
    pub cfg: InitConfig,
    pub path: CString,
    pub args: Vec<CString>,
    pub env: Vec<CString>,
    pub caps: capabilities::CapSets,
    pub seccomp: Option<seccomp::Filter>,
    /// Where the seccomp notify fd goes (the runtime's
    /// [`crate::init_config::SOCKET_SECCOMP`]), when the filter has one.
    pub notify_sock: Option<UnixStream>,
}

/// Why the init cannot prepare the user process. The message goes to the
/// runtime on the `ready` FIFO (or, for `exec`, to the caller); the tests
/// and the runtime's users read some of them.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("reading {}: {source}", path.display())]
    ReadConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {}: {source}", path.display())]
    ParseConfig {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("process.args must not be empty")]
    NoArgs,
    /// Domainname, devices, masked or read-only paths, cwd or executable
    /// (see [`prepare`]).
    #[error("{0}")]
    Prepare(String),
    #[error("{0}")]
    Capabilities(String),
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error("hooks.startContainer[{index}].timeout must be greater than zero, got {timeout}")]
    HookTimeout { index: usize, timeout: i64 },
    #[error("process.args[0] contains a NUL byte")]
    NulInPath,
    /// process.args or process.env with a NUL byte.
    #[error("{0}")]
    CString(String),
    /// Opening an exchange-dir file (exit file, start FIFO).
    #[error("opening {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Connecting to the runtime's console or stdio socket.
    #[error("connecting {}: {source}", path.display())]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Making the pty or passing fds over a socket.
    #[error("{0}")]
    Pty(String),
    #[error("dup2 of the pty slave: {0}")]
    DupPty(nix::Error),
    #[error("dup2 of stdio fd {fd}: {source}")]
    DupStdio { fd: usize, source: nix::Error },
}

fn log(msg: &str) {
    let _ = writeln!(std::io::stderr(), "lxcri-init: {msg}");
}

/// One protocol line: no embedded newlines.
fn line(prefix: &str, msg: &str) -> Vec<u8> {
    let m: String = msg
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    format!("{prefix}{m}\n").into_bytes()
}

fn write_exit(f: Option<&File>, st: ExitStatus) {
    let Some(f) = f else { return };
    let json = serde_json::to_string(&st).unwrap_or_default();
    let _ = f.set_len(0);
    let _ = f.write_all_at(json.as_bytes(), 0);
    let _ = f.sync_all();
}

fn code(c: i32) -> ExitStatus {
    ExitStatus {
        code: Some(c),
        signal: None,
    }
}

/// Closes every fd above 2 (LXC leaks some into the init).
fn close_inherited_fds() {
    // SAFETY: close_range on fds we do not use; no Rust object owns them yet.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if rc == 0 {
        return;
    }
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    for fd in fds.into_iter().filter(|&fd| fd > 2) {
        // SAFETY: as above.
        unsafe { libc::close(fd) };
    }
}

/// `--preserve-fds`: the caller's fds from the runtime over the exchange
/// dir's preserve socket, put at 3..3+N (close-on-exec until the user
/// process's exec, see [`process::pass_fds`]). Called first, when nothing
/// else of ours is open above 2, so that nothing takes those numbers.
fn preserved_from_runtime(dir: &Path) -> Result<u32, InitError> {
    let path = dir.join(crate::init_config::SOCKET_PRESERVE);
    if !path.exists() {
        return Ok(0);
    }
    let sock = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(source) => return Err(InitError::Connect { path, source }),
    };
    let fds = crate::pty::recv_fds_until_eof(&sock).map_err(InitError::Pty)?;
    drop(sock);
    let n = fds.len() as i32;
    let err = |e: nix::Error| InitError::Pty(format!("placing the preserved fds: {e}"));
    // Out of the way first (above 2+n), then each to its place.
    let mut high = Vec::new();
    for fd in fds {
        let h = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3 + n))
            .map_err(err)?;
        high.push(h);
    }
    for (i, h) in high.into_iter().enumerate() {
        // SAFETY: dup3 onto a number nothing of ours holds, then closing
        // our own duplicate.
        let rc = unsafe { libc::dup3(h, 3 + i as i32, libc::O_CLOEXEC) };
        let e = std::io::Error::last_os_error();
        unsafe { libc::close(h) };
        if rc < 0 {
            return Err(InitError::Pty(format!("placing the preserved fds: {e}")));
        }
    }
    Ok(n as u32)
}

/// Step 1: read the config and prepare the container.
fn prepare(dir: &Path) -> Result<Prepared, InitError> {
    let path = dir.join(FILE_INIT_CONFIG);
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(source) => return Err(InitError::ReadConfig { path, source }),
    };
    let cfg: InitConfig = match serde_json::from_slice(&data) {
        Ok(c) => c,
        Err(source) => return Err(InitError::ParseConfig { path, source }),
    };
    if cfg.args.is_empty() {
        return Err(InitError::NoArgs);
    }
    if let Some(d) = &cfg.domainname {
        prepare::set_domainname(d).map_err(InitError::Prepare)?;
    }
    // Before anything adds mounts of its own (devices, paths).
    mount_order::reorder(&cfg.mount_order).map_err(InitError::Prepare)?;
    for (i, d) in cfg.devices.iter().enumerate() {
        prepare::create_device(i, d).map_err(InitError::Prepare)?;
    }
    for a in &cfg.mount_attrs {
        prepare::set_mount_attr(a).map_err(InitError::Prepare)?;
    }
    // Read-only paths first, then masked ones (on top), as runc.
    for (i, r) in cfg.readonly_paths.iter().enumerate() {
        prepare::readonly_path(i, r).map_err(InitError::Prepare)?;
    }
    for (i, m) in cfg.masked_paths.iter().enumerate() {
        prepare::mask_path(i, m).map_err(InitError::Prepare)?;
    }
    if cfg.readonly_root {
        prepare::readonly_root().map_err(InitError::Prepare)?;
    }
    prepare_process(cfg)
}

/// Check and compile what the user process needs (capabilities, seccomp,
/// hooks, cwd, executable), relative to the current root. Also used by
/// `exec`, after it has joined the container.
pub fn prepare_process(cfg: InitConfig) -> Result<Prepared, InitError> {
    if cfg.args.is_empty() {
        return Err(InitError::NoArgs);
    }
    let caps = capabilities::parse(cfg.capabilities.as_ref()).map_err(InitError::Capabilities)?;
    let seccomp = match &cfg.seccomp {
        Some(s) => Some(seccomp::compile(s)?),
        None => None,
    };
    for (i, h) in cfg.start_container_hooks.iter().enumerate() {
        if let Some(t) = h.timeout() {
            if t <= 0 {
                return Err(InitError::HookTimeout {
                    index: i,
                    timeout: t,
                });
            }
        }
    }
    prepare::check_cwd(&cfg.cwd, Path::new("/")).map_err(InitError::Prepare)?;
    let path = prepare::lookup(&cfg.args[0], &cfg.env, &cfg.cwd, Path::new("/"))
        .map_err(InitError::Prepare)?;
    let path = CString::new(path).map_err(|_| InitError::NulInPath)?;
    let args = process::cstrings(&cfg.args, "process.args").map_err(InitError::CString)?;
    let env = process::cstrings(&cfg.env, "process.env").map_err(InitError::CString)?;
    Ok(Prepared {
        cfg,
        path,
        args,
        env,
        caps,
        seccomp,
        notify_sock: None,
    })
}

/// Make a pty in the container, send its master over the exchange dir's
/// console socket, and put the slave on fds 0-2.
fn console_to_runtime(dir: &Path) -> Result<(), InitError> {
    let (master, slave) = crate::pty::open_pty().map_err(InitError::Pty)?;
    let path = dir.join(crate::init_config::SOCKET_CONSOLE);
    let sock = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(source) => return Err(InitError::Connect { path, source }),
    };
    crate::pty::send_fd(&sock, std::os::fd::AsRawFd::as_raw_fd(&master)).map_err(InitError::Pty)?;
    for fd in 0..3 {
        nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&slave), fd)
            .map_err(InitError::DupPty)?;
    }
    Ok(())
}

/// Take the container's stdio from the runtime's monitor: three fds over
/// the exchange dir's stdio socket, put on fds 0-2. The connection stays:
/// the exit status goes back over it (see [`report_status`]).
fn stdio_from_runtime(dir: &Path) -> Result<UnixStream, InitError> {
    let path = dir.join(crate::init_config::SOCKET_STDIO);
    let sock = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(source) => return Err(InitError::Connect { path, source }),
    };
    let fds = crate::pty::recv_fds(&sock, 3).map_err(InitError::Pty)?;
    for (i, fd) in fds.iter().enumerate() {
        nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(fd), i as i32)
            .map_err(|source| InitError::DupStdio { fd: i, source })?;
    }
    Ok(sock)
}

/// Signals that do nothing by default: they do not end a created container.
fn harmless(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGCHLD
            | libc::SIGCONT
            | libc::SIGURG
            | libc::SIGWINCH
            | libc::SIGTSTP
            | libc::SIGTTIN
            | libc::SIGTTOU
    )
}

/// Step 2: wait for one byte on `start`, watching signals meanwhile (a
/// signal that would kill a process ends the not-yet-started container).
fn wait_start(start: File, sigfd: &SignalFd, exit: Option<&File>) {
    loop {
        let ready = process::poll_in(&[start.as_raw_fd(), sigfd.as_raw_fd()], -1);
        if ready[1] {
            for s in process::drain_signals(sigfd) {
                if !harmless(s) {
                    write_exit(
                        exit,
                        ExitStatus {
                            code: None,
                            signal: Some(s),
                        },
                    );
                    std::process::exit(128 + s);
                }
            }
        }
        if ready[0] {
            let mut b = [0u8; 1];
            match nix::unistd::read(start.as_raw_fd(), &mut b) {
                Ok(1) => return,
                // The runtime closed `start` without a byte: abort.
                Ok(_) => std::process::exit(0),
                Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    log(&format!("reading the start FIFO: {e}"));
                    write_exit(exit, code(1));
                    std::process::exit(1);
                }
            }
        }
    }
}

/// Reaps every zombie; returns the user process's status if it was among them.
fn reap(child: Pid) -> Option<ExitStatus> {
    let mut res = None;
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, c)) if p == child => res = Some(code(c)),
            Ok(WaitStatus::Signaled(p, s, _)) if p == child => {
                res = Some(ExitStatus {
                    code: None,
                    signal: Some(s as i32),
                })
            }
            Ok(WaitStatus::StillAlive) => break,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    res
}

fn forward(child: Pid, sig: i32) {
    // SAFETY: kill(2) with a pid we forked.
    unsafe { libc::kill(child.as_raw(), sig) };
}

/// Tell the runtime's pid-file process the exit status, and give it a
/// moment to leave: it lives in our pid namespace, which dies with us.
fn report_status(report: Option<UnixStream>, st: ExitStatus) {
    let Some(mut s) = report else { return };
    let json = serde_json::to_string(&st).unwrap_or_default();
    if s.write_all(format!("{json}\n").as_bytes()).is_err() {
        return;
    }
    // Bounded, in case it is gone; generous, as a loaded node is slow.
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(30)));
    let mut b = [0u8; 64];
    // Until EOF (it left), an error or the timeout.
    while matches!(std::io::Read::read(&mut s, &mut b), Ok(n) if n > 0) {}
}

/// Step 5: pid 1 duties until the user process ends.
fn supervise(
    child: Pid,
    sigfd: &SignalFd,
    exit: Option<&File>,
    pending: Vec<i32>,
    report: Option<UnixStream>,
    agent: Option<&agent::Agent>,
) -> ! {
    for s in pending {
        forward(child, s);
    }
    let mut fds = vec![sigfd.as_raw_fd()];
    fds.extend(agent.map(|a| a.fd()));
    loop {
        if let Some(st) = reap(child) {
            write_exit(exit, st);
            report_status(report, st);
            std::process::exit(st.shell_code());
        }
        let ready = process::poll_in(&fds, -1);
        if ready.get(1) == Some(&true) {
            agent.expect("polled").serve();
        }
        for s in process::drain_signals(sigfd) {
            forward(child, s);
        }
    }
}

/// Entry point when the binary runs as the container init. Never returns.
pub fn run() -> ! {
    close_inherited_fds();
    let preserved = preserved_from_runtime(Path::new(EXCHANGE_DIR));
    // The user process gets process.env exactly; nothing of LXC's
    // (container=lxc, ...) may leak, not even into hooks.
    for (k, _) in std::env::vars_os() {
        std::env::remove_var(k);
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    // All signals blocked and read through a signalfd: forwarded to the user
    // process later. Blocked signals are queued even for a namespace's pid 1.
    let all = SigSet::all();
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&all), None);
    let sigfd = match SignalFd::with_flags(&all, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) {
        Ok(s) => s,
        Err(e) => {
            log(&format!("signalfd: {e}"));
            std::process::exit(1);
        }
    };

    let dir = Path::new(EXCHANGE_DIR);
    let exit_file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(dir.join(FILE_EXIT));
    // The stdio socket first, when the runtime offers one (pve-lxc): the
    // monitor learns our host pid from it, even if preparing fails below.
    let stdio = if dir.join(crate::init_config::SOCKET_STDIO).exists() {
        stdio_from_runtime(dir).map(Some)
    } else {
        Ok(None)
    };
    let (exit_file, prepared, report) = match (exit_file, stdio) {
        (Ok(f), Ok(report)) => (
            Some(f),
            preserved.and_then(|n| {
                let p = prepare(dir)?;
                if p.cfg.preserve_fds != n {
                    return Err(InitError::Pty(format!(
                        "--preserve-fds {}: got {n} fds from the runtime",
                        p.cfg.preserve_fds
                    )));
                }
                Ok(p)
            }),
            report,
        ),
        (Err(source), _) => (
            None,
            Err(InitError::Open {
                path: dir.join(FILE_EXIT),
                source,
            }),
            None,
        ),
        (Ok(f), Err(e)) => (Some(f), Err(e), None),
    };
    let exit = exit_file.as_ref();

    // Open `start` before answering on `ready`, so that the runtime finds
    // a reader as soon as it has read `ok` (even with O_NONBLOCK).
    let start = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(dir.join(FIFO_START));
    // A terminal from the container's devpts: master to the runtime, slave
    // as our (and so the user process's) stdio.
    let prepared = prepared.and_then(|p| {
        if p.cfg.terminal && p.cfg.console_socket {
            console_to_runtime(dir)?;
        }
        Ok(p)
    });
    let prepared = match (prepared, start) {
        (Ok(p), Ok(s)) => Ok((p, s)),
        (Err(e), _) => Err(e),
        (_, Err(source)) => Err(InitError::Open {
            path: dir.join(FIFO_START),
            source,
        }),
    };

    // Step 1 result on `ready`.
    let ready = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(dir.join(FIFO_READY));
    let mut ready = match ready {
        Ok(f) => f,
        Err(e) => {
            log(&format!("opening the ready FIFO: {e}"));
            write_exit(exit, code(1));
            std::process::exit(1);
        }
    };
    // The pod agent listens before `ready`: the runtime may add a member
    // as soon as the sandbox is created.
    let prepared = prepared.and_then(|(p, s)| {
        let agent = match p.cfg.agent {
            true => Some(agent::Agent::bind().map_err(InitError::Prepare)?),
            false => None,
        };
        Ok((p, s, agent))
    });
    let (prepared, start, agent) = match prepared {
        Ok(p) => {
            let _ = ready.write_all(b"ok\n");
            p
        }
        Err(e) => {
            let _ = ready.write_all(&line("error: ", &e.to_string()));
            write_exit(exit, code(1));
            std::process::exit(1);
        }
    };
    drop(ready);

    // Step 2.
    wait_start(start, &sigfd, exit);

    // Step 3. The runtime has the read side open; don't block if it has not.
    let mut started = match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(dir.join(FIFO_STARTED))
    {
        Ok(f) => f,
        Err(e) => {
            log(&format!(
                "opening the started FIFO (is the runtime reading it?): {e}"
            ));
            write_exit(exit, code(1));
            std::process::exit(1);
        }
    };
    let fail_started = |started: &mut File, msg: &str, c: i32| -> ! {
        let _ = started.write_all(&line("error: ", msg));
        write_exit(exit, code(c));
        std::process::exit(c);
    };
    // SCMP_ACT_NOTIFY: the notify fd goes to `start` over this socket
    // (connected now: the exchange dir is hidden below).
    let mut prepared = prepared;
    if prepared.seccomp.as_ref().is_some_and(|f| f.notify) {
        let path = dir.join(crate::init_config::SOCKET_SECCOMP);
        match UnixStream::connect(&path) {
            Ok(s) => prepared.notify_sock = Some(s),
            Err(e) => fail_started(
                &mut started,
                &format!(
                    "connecting {} for the seccomp notify fd: {e}",
                    path.display()
                ),
                1,
            ),
        }
    }
    // Hide the exchange directory and this binary from the user process
    // (the pod agent keeps them: its process hides them in its own mount
    // namespace instead).
    let hide = if agent.is_some() {
        &[][..]
    } else {
        &[(EXCHANGE_DIR, true), (INIT_PATH, false)][..]
    };
    for &(p, is_dir) in hide {
        if let Err(e) = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH) {
            fail_started(&mut started, &format!("unmounting {p}: {e}"), 1);
        }
        let _ = if is_dir {
            std::fs::remove_dir(p)
        } else {
            std::fs::remove_file(p)
        };
    }

    let mut pending = Vec::new();
    let state = serde_json::to_vec(&prepared.cfg.hook_state).unwrap_or_default();
    for h in &prepared.cfg.start_container_hooks {
        if let Err(d) = process::run_hook(h, &state, &sigfd, &mut pending) {
            fail_started(
                &mut started,
                &format!("startContainer hook {} failed: {d}", h.path().display()),
                1,
            );
        }
    }

    // Step 4.
    if prepared.cfg.exec_in_place {
        // `started` is close-on-exec: a successful exec closes it.
        let _ = started.write_all(b"exec\n");
        let (c, msg) = process::exec_user(&prepared);
        fail_started(&mut started, &msg, c as i32);
    }
    let (err_r, err_w) = match pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => fail_started(&mut started, &format!("pipe: {e}"), 1),
    };
    // SAFETY: the init is single-threaded.
    match unsafe { fork() } {
        Err(e) => fail_started(&mut started, &format!("fork: {e}"), 1),
        Ok(ForkResult::Child) => {
            drop(err_r);
            let (c, msg) = match agent.as_ref().map(|_| agent::hide_from_process()) {
                Some(Err(e)) => (1, e),
                _ => process::exec_user(&prepared),
            };
            let mut w = File::from(err_w);
            let mut buf = vec![c];
            buf.extend_from_slice(msg.as_bytes());
            let _ = w.write_all(&buf);
            // SAFETY: leave the forked child without running destructors.
            unsafe { libc::_exit(c as i32) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(err_w);
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut File::from(err_r), &mut buf);
            if !buf.is_empty() {
                let c = buf[0] as i32;
                let msg = String::from_utf8_lossy(&buf[1..]).into_owned();
                let _ = waitpid(child, None);
                fail_started(&mut started, &msg, c);
            }
            let _ = started.write_all(b"ok\n");
            drop(started);
            supervise(child, &sigfd, exit, pending, report, agent.as_ref())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_json_and_code() {
        let s = code(7);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"code":7,"signal":null}"#
        );
        assert_eq!(s.shell_code(), 7);
        let s = ExitStatus {
            code: None,
            signal: Some(15),
        };
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"code":null,"signal":15}"#
        );
        assert_eq!(s.shell_code(), 143);
        let back: ExitStatus = serde_json::from_str(r#"{"code":null,"signal":9}"#).unwrap();
        assert_eq!(back.shell_code(), 137);
    }

    #[test]
    fn exit_file_is_rewritten() {
        let t = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(t.path(), "garbage garbage garbage").unwrap();
        let f = OpenOptions::new().write(true).open(t.path()).unwrap();
        write_exit(Some(&f), code(3));
        assert_eq!(
            std::fs::read_to_string(t.path()).unwrap(),
            r#"{"code":3,"signal":null}"#
        );
    }

    #[test]
    fn error_messages() {
        let e = InitError::HookTimeout {
            index: 2,
            timeout: 0,
        };
        assert_eq!(
            e.to_string(),
            "hooks.startContainer[2].timeout must be greater than zero, got 0"
        );
        let e = InitError::Open {
            path: Path::new(EXCHANGE_DIR).join(FILE_EXIT),
            source: std::io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert_eq!(
            e.to_string(),
            format!(
                "opening {EXCHANGE_DIR}/{FILE_EXIT}: {}",
                std::io::Error::from_raw_os_error(libc::ENOENT)
            )
        );
        assert_eq!(
            prepare_process(InitConfig::default())
                .err()
                .unwrap()
                .to_string(),
            "process.args must not be empty"
        );
    }

    #[test]
    fn protocol_lines_have_no_inner_newlines() {
        assert_eq!(line("error: ", "a\nb"), b"error: a b\n");
    }
}
