//! The pid-file process of a pve-lxc container. Proxmox's monitor is the
//! CT init's parent, so the pid containerd reaps cannot be the container's
//! own process as on the lxc engine; it is a process of ours that
//!
//! 1. hands the init our stdio over the exchange dir's socket and learns the
//!    init's host pid from that connection (SO_PEERCRED);
//! 2. joins the init's cgroups and namespaces (user, mnt, pid, net, ipc,
//!    uts, cgroup) and forks: the child, in the container's namespaces, is the pid-file
//!    process (containerd joins pod containers to /proc/<pid>/ns/*: they
//!    must be the container's, never the host's); the parent records it
//!    in the exchange dir and leaves, so the shim becomes its parent;
//! 3. the child ends with the container's exit status when the init ends
//!    (also when Proxmox stops the CT: 137).
use std::os::fd::FromRawFd;

use nix::fcntl::{openat, renameat, OFlag};
use nix::sched::{setns, CloneFlags};
use nix::sys::stat::Mode;

use super::*;

/// Written by the monitor: the pid-file process (in the container's
/// namespaces), or why it could not be made.
pub const FILE_MONITOR: &str = "monitor";
pub const FILE_MONITOR_ERROR: &str = "monitor-error";

/// Fork the CT's monitor, held at a gate until recorded. It serves
/// `listener` once (the init's stdio), then makes the pid-file process.
pub(crate) fn spawn_monitor(
    exchange: &Path,
    listener: UnixListener,
    stdio: Option<&OwnedFd>,
    wait_for_init: Duration,
) -> Result<(Pid, crate::exchange::Gate)> {
    let exchange = exchange.to_path_buf();
    let slave = stdio.map(|f| f.as_raw_fd());
    let gate = crate::exchange::Gate::new()?;
    // SAFETY: the CLI is single-threaded when it forks (the API client's
    // connections are plain blocking sockets).
    match unsafe { fork() }.ctx(|| "forking the monitor".to_string())? {
        ForkResult::Parent { child } => Ok((child, gate)),
        ForkResult::Child => {
            if !gate.pass() {
                // SAFETY: as below.
                unsafe { libc::_exit(255) }
            }
            let code = monitor_main(&exchange, listener, slave, wait_for_init);
            // SAFETY: leave without running the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
    }
}

fn monitor_main(
    exchange: &Path,
    listener: UnixListener,
    slave: Option<i32>,
    wait_for_init: Duration,
) -> i32 {
    // Keep 0-2 and the listener (moved to 3); drop the rest (the lock).
    crate::exchange::detach_monitor(slave, Some(listener.as_raw_fd()));
    std::mem::forget(listener);
    // SAFETY: fd 3 is the listener we just put there.
    let listener = unsafe { <UnixListener as std::os::fd::FromRawFd>::from_raw_fd(3) };
    // An init that never comes (the CT did not start, create was killed)
    // must not keep us, and containerd's stdio, forever.
    let timeout = PollTimeout::try_from(wait_for_init).unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    if !matches!(poll(&mut fds, timeout), Ok(n) if n > 0) {
        return 255;
    }
    let Ok((conn, _)) = listener.accept() else {
        return 255;
    };
    drop(listener);
    let Ok(cred) = getsockopt(&conn, PeerCredentials) else {
        return 255;
    };
    let Some(init) = proc::proc_ref(cred.pid()) else {
        return 255;
    };
    if write_atomic(
        &exchange.join(FILE_INIT_PID),
        serde_json::to_string(&init).unwrap_or_default().as_bytes(),
    )
    .is_err()
    {
        return 255;
    }
    if proxmox_lxcri_lxc::pty::send_fds(&conn, &[0, 1, 2], b"stdio").is_err() {
        return 255;
    }
    // The connection stays: the init reports the exit status over it.
    // Only the container holds containerd's pipes from now on.
    if let Ok(null) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
    // Everything the child needs from the host, opened before the setns.
    let Ok(dir) = fs::File::open(exchange) else {
        return 255;
    };
    let dir = dir.as_raw_fd();
    // The CT's cgroups too (containerd reads the pid-file process's cgroup
    // for its stats and OOM events: they must be the CT's, not the shim's).
    // While our mount namespace still shows the host's hierarchies.
    for d in proxmox_lxcri_cgroups::tree::dirs_of(init.pid, true) {
        if let Err(e) = fs::write(d.join("cgroup.procs"), std::process::id().to_string()) {
            let msg = format!("joining the CT's cgroup {}: {e}", d.display());
            let _ = write_at(dir, FILE_MONITOR_ERROR, msg.as_bytes());
            return 255;
        }
    }
    if let Err(e) = enter_namespaces(init.pid) {
        let _ = write_at(dir, FILE_MONITOR_ERROR, e.as_bytes());
        return 255;
    }
    // SAFETY: single-threaded; the child only waits and reads files.
    match unsafe { fork() } {
        Err(e) => {
            let _ = write_at(dir, FILE_MONITOR_ERROR, format!("fork: {e}").as_bytes());
            255
        }
        Ok(ForkResult::Parent { child }) => {
            drop(conn);
            // The host pid (fork answers in our, the host's, pid namespace);
            // the runtime adds its start time (our /proc is the CT's now).
            if write_at(dir, FILE_MONITOR, child.as_raw().to_string().as_bytes()).is_err() {
                // SAFETY: kill(2) of our own child.
                unsafe { libc::kill(child.as_raw(), libc::SIGKILL) };
                return 255;
            }
            0
        }
        Ok(ForkResult::Child) => {
            // The init tells us the status and waits for us to leave: we
            // are in its pid namespace, which ends with it. The connection
            // must close only as we exit (_exit closes it, once the kernel
            // has us as exiting): closed earlier, the init ends first and
            // the namespace's SIGKILL would replace our exit status.
            let status = read_status(&conn);
            std::mem::forget(conn);
            if let Some(code) = status {
                return code;
            }
            match exit_code_at(dir) {
                Some(code) => code,
                // No status from the init: killed from outside (Proxmox
                // stopped the CT). Say so where `state` looks, too.
                None => {
                    let _ = write_at(dir, crate::exchange::FILE_KILLED, b"9");
                    128 + libc::SIGKILL
                }
            }
        }
    }
}

/// Join every namespace of `pid` that is not ours: user first (it owns the
/// others), then mnt, pid (for our children), net, ipc, uts, cgroup.
fn enter_namespaces(pid: i32) -> std::result::Result<(), String> {
    let mut fds = vec![];
    for (name, flag) in [
        ("user", CloneFlags::CLONE_NEWUSER),
        ("mnt", CloneFlags::CLONE_NEWNS),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("net", CloneFlags::CLONE_NEWNET),
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ] {
        let theirs = format!("/proc/{pid}/ns/{name}");
        let same =
            fs::read_link(&theirs).ok() == fs::read_link(format!("/proc/self/ns/{name}")).ok();
        if same {
            continue;
        }
        let f = fs::File::open(&theirs).map_err(|e| format!("opening {theirs}: {e}"))?;
        fds.push((name, flag, f));
    }
    for (name, flag, f) in fds {
        setns(f.as_fd(), flag)
            .map_err(|e| format!("joining the container's {name} namespace: {e}"))?;
    }
    Ok(())
}

/// Write `name` in the directory `dir` atomically (temp + rename), by fd.
fn write_at(dir: i32, name: &str, data: &[u8]) -> std::io::Result<()> {
    let tmp = format!(".{name}.tmp");
    let fd = openat(
        Some(dir),
        tmp.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )?;
    // SAFETY: openat returned a new fd we own.
    let mut f = unsafe { fs::File::from_raw_fd(fd) };
    f.write_all(data)?;
    f.sync_all()?;
    renameat(Some(dir), tmp.as_str(), Some(dir), name)?;
    Ok(())
}

fn read_at(dir: i32, name: &str) -> Option<String> {
    let fd = openat(
        Some(dir),
        name,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    // SAFETY: openat returned a new fd we own.
    let mut f = unsafe { fs::File::from_raw_fd(fd) };
    let mut s = String::new();
    std::io::Read::read_to_string(&mut f, &mut s).ok()?;
    Some(s)
}

/// [`crate::exchange::exit_code`], through the exchange dir's fd.
fn exit_code_at(dir: i32) -> Option<i32> {
    if let Some(text) = read_at(dir, proxmox_lxcri_lxc::init_config::FILE_EXIT) {
        if let Ok(st) =
            serde_json::from_str::<proxmox_lxcri_lxc::init_config::ExitStatus>(text.trim())
        {
            return Some(st.shell_code());
        }
    }
    let killed = read_at(dir, crate::exchange::FILE_KILLED)?;
    killed.trim().parse::<i32>().ok().map(|s| 128 + s)
}

/// The exit status the init sends when its process ended (None: the
/// connection ended without one).
fn read_status(conn: &std::os::unix::net::UnixStream) -> Option<i32> {
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(conn), &mut line).ok()?;
    let st: proxmox_lxcri_lxc::init_config::ExitStatus = serde_json::from_str(line.trim()).ok()?;
    Some(st.shell_code())
}

/// The pid-file process our monitor made (`who` names the monitor in
/// errors); our monitor leaves right after and is reaped here, so that the
/// pid-file process is the subreaper's (containerd's shim) to reap.
pub(crate) fn take_pid_file_process(cx: &mut Cx, who: &str) -> Result<ProcRef> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let pid_proc = loop {
        if let Some(m) = read_monitor(&cx.paths.exchange) {
            break m;
        }
        if let Some(e) = read_monitor_error(&cx.paths.exchange) {
            return Err(Error::Guest(format!("{who}: {e}")));
        }
        if Instant::now() > deadline {
            return Err(Error::Guest(format!(
                "{who} did not make the pid-file process"
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    if let Some(m) = cx.monitor.take() {
        let _ = nix::sys::wait::waitpid(m, None);
    }
    Ok(pid_proc)
}

/// How long an undone create waits for our monitor: without an init to
/// wait for it ends at once; with one, once the init is gone.
pub(crate) fn grace(paths: &Paths) -> Duration {
    match read_init(&paths.exchange) {
        None => Duration::ZERO,
        Some(_) => Duration::from_secs(2),
    }
}

/// The init's host pid, as the monitor recorded it.
pub fn read_init(exchange: &Path) -> Option<ProcRef> {
    let text = fs::read_to_string(exchange.join(FILE_INIT_PID)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The pid-file process the monitor made, as the host sees it.
pub fn read_monitor(exchange: &Path) -> Option<ProcRef> {
    let text = fs::read_to_string(exchange.join(FILE_MONITOR)).ok()?;
    proc::proc_ref(text.trim().parse().ok()?)
}

/// Why the monitor could not make the pid-file process, if it said.
pub fn read_monitor_error(exchange: &Path) -> Option<String> {
    fs::read_to_string(exchange.join(FILE_MONITOR_ERROR)).ok()
}
