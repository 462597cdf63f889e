//! Terminals made inside the container (its own devpts instance), so that
//! `tty` and ttyname work there, and fd passing for their masters.
use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// Open a pty pair through `/dev/ptmx` of the current root.
pub fn open_pty() -> Result<(OwnedFd, OwnedFd), String> {
    // SAFETY: plain libc calls; each fd is checked before use.
    unsafe {
        let m = libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if m < 0 {
            return Err(format!(
                "opening /dev/ptmx: {}",
                std::io::Error::last_os_error()
            ));
        }
        let master = OwnedFd::from_raw_fd(m);
        if libc::grantpt(m) != 0 || libc::unlockpt(m) != 0 {
            return Err(format!(
                "unlocking the pty: {}",
                std::io::Error::last_os_error()
            ));
        }
        let mut buf = [0 as libc::c_char; 128];
        if libc::ptsname_r(m, buf.as_mut_ptr(), buf.len()) != 0 {
            return Err(format!("ptsname: {}", std::io::Error::last_os_error()));
        }
        let s = libc::open(
            buf.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if s < 0 {
            return Err(format!(
                "opening the pty slave: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok((master, OwnedFd::from_raw_fd(s)))
    }
}

/// Send one fd (runc's console-socket protocol: exactly one SCM_RIGHTS fd).
pub fn send_fd(sock: &UnixStream, fd: RawFd) -> Result<(), String> {
    send_fds(sock, &[fd], b"/dev/ptmx")
}

/// Send several fds in one SCM_RIGHTS message, with `tag` as the payload.
pub fn send_fds(sock: &UnixStream, fds: &[RawFd], tag: &[u8]) -> Result<(), String> {
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(tag)],
        &[ControlMessage::ScmRights(fds)],
        MsgFlags::empty(),
        None,
    )
    .map(|_| ())
    .map_err(|e| format!("sending fds: {e}"))
}

/// Receive one fd sent with [`send_fd`].
pub fn recv_fd(sock: &UnixStream) -> Result<OwnedFd, String> {
    recv_fds(sock, 1)?
        .pop()
        .ok_or_else(|| "no fd in the console message".into())
}

/// Receive exactly `n` fds sent with [`send_fds`] (at most 4).
pub fn recv_fds(sock: &UnixStream, n: usize) -> Result<Vec<OwnedFd>, String> {
    let mut buf = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| format!("receiving fds: {e}"))?;
    let mut out = Vec::new();
    for c in msg.cmsgs().map_err(|e| format!("fd message: {e}"))? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel just gave us these fds.
            out.extend(fds.iter().map(|fd| unsafe { OwnedFd::from_raw_fd(*fd) }));
        }
    }
    if out.len() != n {
        return Err(format!("expected {n} fds, got {}", out.len()));
    }
    Ok(out)
}

/// Receive fds sent with [`send_fds`] (any number of messages) until the
/// sender closes the connection.
pub fn recv_fds_until_eof(sock: &UnixStream) -> Result<Vec<OwnedFd>, String> {
    let mut out = Vec::new();
    loop {
        let mut buf = [0u8; 256];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([RawFd; FDS_PER_MESSAGE]);
        let msg = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| format!("receiving fds: {e}"))?;
        if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
            return Err("receiving fds: control message truncated".into());
        }
        let mut got = false;
        for c in msg.cmsgs().map_err(|e| format!("fd message: {e}"))? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                got = true;
                // SAFETY: the kernel just gave us these fds.
                out.extend(fds.iter().map(|fd| unsafe { OwnedFd::from_raw_fd(*fd) }));
            }
        }
        if msg.bytes == 0 && !got {
            return Ok(out);
        }
    }
}

/// At most this many fds in one message of [`send_fds_all`].
pub const FDS_PER_MESSAGE: usize = 64;

/// Send all of `fds` in messages of up to [`FDS_PER_MESSAGE`], for
/// [`recv_fds_until_eof`] (the caller then closes the connection).
pub fn send_fds_all(sock: &UnixStream, fds: &[RawFd]) -> Result<(), String> {
    for chunk in fds.chunks(FDS_PER_MESSAGE) {
        send_fds(sock, chunk, b"f")?;
    }
    Ok(())
}
