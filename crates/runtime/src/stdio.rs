//! The console socket: with process.terminal the init makes a pty inside
//! the container and the runtime hands its master to `--console-socket`.
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use crate::error::{Error, Result};

/// Send the pty master to the console socket (one fd via SCM_RIGHTS, as runc).
pub fn send_console(socket: &Path, master: &OwnedFd) -> Result<()> {
    let stream = crate::sockpath::connect(socket).map_err(|e| {
        Error::Console(format!(
            "--console-socket {}: cannot connect: {e}",
            socket.display()
        ))
    })?;
    proxmox_lxcri_lxc::pty::send_fd(&stream, master.as_raw_fd())
        .map_err(|e| Error::Console(format!("--console-socket {}: {e}", socket.display())))
}
