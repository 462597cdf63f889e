//! `exec` on pve-vm: the process runs in the guest, started by its agent
//! on a stream of its own. We reach the agent through the container's
//! monitor (which holds the VM's serial port) over its exec socket, and
//! relay our stdio and signals (with a terminal: a pty of ours whose master
//! goes to the console socket, and its size); the exit status is the
//! process's.
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::{fork, ForkResult};
use proxmox_lxcri_agent_proto::{self as proto, Body, Frame, InitConfig};
use proxmox_lxcri_lxc::init::process::poll_in;

use crate::error::{Error, Result};
use crate::exchange::Paths;
use crate::running::ExecOptions;
use crate::state::ContainerState;

use super::monitor::SOCKET_EXEC;

/// Run `process` in the guest; its exit status, or 0 once started with
/// `detach` (the pid file then names our relay, which ends with it).
///
/// `member`: a container of a pod in its VM; `paths` are then the pod
/// sandbox's (whose monitor holds the VM's serial port) and the process
/// runs in that container's namespaces.
pub fn exec(
    paths: &Paths,
    st: &ContainerState,
    process: InitConfig,
    opts: &ExecOptions,
    member: Option<String>,
    pid_file: impl FnOnce(i32) -> Result<()>,
) -> Result<i32> {
    let fail = |reason: String| Error::Start {
        id: st.id.clone(),
        reason,
    };
    // A terminal: a pty of the guest's is the process's; ours, whose master
    // goes to the console socket, is relayed to it.
    let terminal = process.terminal;
    let slave = match (terminal, &opts.console_socket) {
        (false, _) => None,
        (true, None) => {
            return Err(Error::Unsupported(
                "exec with a terminal on pve-vm needs --console-socket (containerd gives one)"
                    .into(),
            ))
        }
        (true, Some(sock)) => Some(console(sock).map_err(fail)?),
    };
    let sock = paths.exchange.join(SOCKET_EXEC);
    let mut conn = crate::sockpath::connect(&sock).map_err(|e| {
        fail(format!(
            "the VM's monitor does not take exec requests ({e}); exec reaches the guest once \
             the container was started"
        ))
    })?;
    proto::write_frame(
        &mut conn,
        &Frame::main(Body::Exec {
            process: Box::new(process),
            member,
        }),
    )
    .map_err(|e| fail(format!("sending the exec request: {e}")))?;
    loop {
        match proto::read_frame(&mut conn) {
            Ok(Some(Frame {
                body: Body::Started,
                ..
            })) => break,
            Ok(Some(Frame {
                body: Body::Error { message },
                ..
            })) => return Err(fail(message)),
            Ok(Some(_)) => {}
            Ok(None) => return Err(fail("the VM ended before the process started".into())),
            Err(e) => return Err(fail(format!("from the VM's monitor: {e}"))),
        }
    }
    if !opts.detach {
        pid_file(std::process::id() as i32)?;
        if let Some(slave) = &slave {
            as_stdio(slave, false);
        }
        return Ok(relay(conn, terminal));
    }
    // SAFETY: the CLI is single-threaded here.
    match unsafe { fork() } {
        Err(e) => Err(fail(format!("fork: {e}"))),
        Ok(ForkResult::Parent { child }) => {
            pid_file(child.as_raw())?;
            Ok(0)
        }
        Ok(ForkResult::Child) => {
            let _ = nix::unistd::setsid();
            if let Some(slave) = &slave {
                as_stdio(slave, true);
            }
            let code = relay(conn, terminal);
            // SAFETY: leave without the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
    }
}

/// A pty whose master goes to `sock` (runc's console-socket protocol);
/// its slave, raw.
fn console(sock: &std::path::Path) -> std::result::Result<std::os::fd::OwnedFd, String> {
    let (master, slave) = proxmox_lxcri_lxc::pty::open_pty()?;
    let conn = crate::sockpath::connect(sock)
        .map_err(|e| format!("--console-socket {}: cannot connect: {e}", sock.display()))?;
    proxmox_lxcri_lxc::pty::send_fd(&conn, master.as_raw_fd())?;
    let mut t = nix::sys::termios::tcgetattr(&slave).map_err(|e| format!("tcgetattr: {e}"))?;
    nix::sys::termios::cfmakeraw(&mut t);
    nix::sys::termios::tcsetattr(&slave, nix::sys::termios::SetArg::TCSANOW, &t)
        .map_err(|e| format!("tcsetattr: {e}"))?;
    Ok(slave)
}

/// The pty's slave as our 0-2; as a session leader also our controlling
/// terminal, so that a resize reaches us (SIGWINCH).
fn as_stdio(slave: &std::os::fd::OwnedFd, ctty: bool) {
    for fd in 0..3 {
        let _ = nix::unistd::dup2(slave.as_raw_fd(), fd);
    }
    if ctty {
        // SAFETY: ioctl on fd 0 with an integer argument.
        unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
    }
}

/// fd 0's terminal size as a Resize frame, if it is a sized terminal.
fn window() -> Option<Body> {
    // SAFETY: TIOCGWINSZ into a winsize.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    if unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) } != 0 || ws.ws_row == 0 {
        return None;
    }
    Some(Body::Resize {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}

/// Our stdio and signals to the process, its output to ours, until it
/// exits; its status (137 if the VM went away first).
fn relay(mut conn: UnixStream, terminal: bool) -> i32 {
    let mut sigs = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
    ] {
        sigs.add(s);
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&sigs), None);
    let sigfd = SignalFd::with_flags(&sigs, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).ok();
    let mut decoder = proto::Decoder::default();
    let mut stdin_open = true;
    if let Some(resize) = window().filter(|_| terminal) {
        let _ = proto::write_frame(&mut conn, &Frame::main(resize));
    }
    loop {
        let fds = [
            if stdin_open { 0 } else { -1 },
            conn.as_raw_fd(),
            sigfd.as_ref().map(|s| s.as_raw_fd()).unwrap_or(-1),
        ];
        let r = poll_in(&fds, -1);
        if r[2] {
            while let Some(Ok(Some(si))) = sigfd.as_ref().map(|s| s.read_signal()) {
                let signal = si.ssi_signo as i32;
                let body = match (signal, window().filter(|_| terminal)) {
                    (libc::SIGWINCH, Some(resize)) => resize,
                    _ => Body::Signal { signal },
                };
                let _ = proto::write_frame(&mut conn, &Frame::main(body));
            }
        }
        if r[0] {
            let mut buf = vec![0u8; proto::MAX_DATA];
            match std::io::stdin().lock().read(&mut buf) {
                Ok(0) | Err(_) => {
                    stdin_open = false;
                    let _ = proto::write_frame(&mut conn, &Frame::main(Body::StdinClose));
                }
                Ok(n) => {
                    buf.truncate(n);
                    let _ = proto::write_frame(&mut conn, &Frame::main(Body::Stdin { data: buf }));
                }
            }
        }
        if r[1] {
            let mut buf = [0u8; 16 << 10];
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return 128 + libc::SIGKILL,
                Ok(n) => decoder.feed(&buf[..n]),
            }
            while let Ok(Some(f)) = decoder.next_frame() {
                match f.body {
                    Body::Stdout { data } => {
                        let _ = std::io::stdout().write_all(&data);
                        let _ = std::io::stdout().flush();
                    }
                    Body::Stderr { data } => {
                        let _ = std::io::stderr().write_all(&data);
                    }
                    Body::Exit { status } => return status.shell_code(),
                    _ => {}
                }
            }
        }
    }
}
