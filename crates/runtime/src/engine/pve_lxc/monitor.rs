//! The pid-file process of a pve-lxc container: hands the init our stdio,
//! learns its host pid, and ends with the container's exit status.
use super::*;

/// Start the CT's monitor. It is our child and the pid-file pid: it serves
/// `listener` once (the init's stdio), then waits for the init to end.
pub fn spawn_monitor(
    exchange: &Path,
    listener: UnixListener,
    stdio: Option<&OwnedFd>,
    wait_for_init: Duration,
) -> Result<Pid> {
    let exchange = exchange.to_path_buf();
    let slave = stdio.map(|f| f.as_raw_fd());
    // SAFETY: the CLI is single-threaded when it forks (the API client's
    // connections are plain blocking sockets).
    match unsafe { fork() }.ctx(|| "forking the monitor".to_string())? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
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
    drop(conn);
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
    wait_exit(&init);
    match crate::exchange::exit_code(exchange) {
        Some(code) => code,
        // No status from the init: killed from outside (Proxmox stopped
        // the CT). Say so where `state` looks, too.
        None => {
            let _ = fs::write(exchange.join(crate::exchange::FILE_KILLED), "9");
            128 + libc::SIGKILL
        }
    }
}

/// Block until `init` (not our child) has ended.
fn wait_exit(init: &ProcRef) {
    let pid = init.pid;
    // SAFETY: pidfd_open(2) returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // The pid may have ended (and been reused) before the pidfd was made.
    if !proc::is_alive(init) {
        return;
    }
    if fd >= 0 {
        // SAFETY: a new fd we own.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
        loop {
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::Error::EINTR) => continue,
                _ => return,
            }
        }
    }
    while proc::is_alive(init) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The init's host pid, as the monitor recorded it.
pub fn read_init(exchange: &Path) -> Option<ProcRef> {
    let text = fs::read_to_string(exchange.join(FILE_INIT_PID)).ok()?;
    serde_json::from_str(&text).ok()
}
