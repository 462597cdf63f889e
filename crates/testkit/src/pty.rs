//! Running a command on a fresh pseudo-terminal, as a user at a terminal
//! would (`docker exec -t`, a foreground `run` of a terminal process ...).
use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd` with the slave side of a new 80x24 pty as stdin, stdout and
/// stderr. Returns the exit status and everything read from the master;
/// on timeout the command is killed and the output so far is the `Err`.
pub fn run_in_pty(mut cmd: Command, timeout: Duration) -> Result<(ExitStatus, String), String> {
    let size = nix::pty::Winsize {
        ws_row: 24,
        ws_col: 80,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).expect("openpty");
    let slave: OwnedFd = pty.slave;
    cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {desc}: {e}"));
    // The Command still holds slave fds: without dropping it the master
    // never sees EIO.
    drop(cmd);
    let mut master = std::fs::File::from(pty.master);
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once every slave fd is closed.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = if status.is_some() || reader.is_finished() {
        String::from_utf8_lossy(&reader.join().unwrap()).into_owned()
    } else {
        String::new()
    };
    match status {
        Some(st) => Ok((st, out)),
        None => Err(format!(
            "timed out after {timeout:?}: {desc}\n--- terminal output:\n{out}"
        )),
    }
}
