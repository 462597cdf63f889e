//! Terminals: with process.terminal the runtime makes a pty, hands the
//! master to `--console-socket` (exactly one fd via SCM_RIGHTS, as runc),
//! and gives the slave to the container as its stdio.
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::pty::openpty;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use crate::error::{Context, Error, Result};

pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

pub fn new_pty() -> Result<Pty> {
    let p = openpty(None, None).ctx(|| "allocating a pty".to_string())?;
    for fd in [&p.master, &p.slave] {
        // SAFETY: valid fds we own.
        unsafe {
            let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFD);
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, fl | libc::FD_CLOEXEC);
        }
    }
    Ok(Pty {
        master: p.master,
        slave: p.slave,
    })
}

/// Send the pty master to the console socket.
pub fn send_console(socket: &Path, master: &OwnedFd) -> Result<()> {
    let stream = UnixStream::connect(socket).map_err(|e| {
        Error::Spec(format!(
            "--console-socket {}: cannot connect: {e}",
            socket.display()
        ))
    })?;
    let fds = [master.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    // runc sends the pty name as the payload; go-runc ignores it.
    let name = b"/dev/ptmx";
    sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(name)],
        &cmsg,
        MsgFlags::empty(),
        None,
    )
    .ctx(|| format!("sending the console to {}", socket.display()))?;
    Ok(())
}
