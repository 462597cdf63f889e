//! A foreground `run` whose process asks for a terminal and got no
//! `--console-socket` uses the caller's terminal, as runc does: we take the
//! pty master over a console socket of our own, put the caller's terminal
//! in raw mode (if it is one) and relay bytes both ways until the container
//! ends.
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use nix::sys::termios::{self, SetArg, Termios};

use crate::error::{Context, Error, Result};

/// Our console socket, before the container exists.
pub struct ConsoleListener {
    listener: UnixListener,
    /// Until unlinked.
    path: Option<PathBuf>,
}

impl ConsoleListener {
    /// Listens at `dir/name` (any depth: see sockpath).
    pub fn bind(dir: &Path, name: &str) -> Result<ConsoleListener> {
        std::fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        let listener =
            crate::sockpath::bind(&path).ctx(|| format!("binding {}", path.display()))?;
        Ok(ConsoleListener {
            listener,
            path: Some(path),
        })
    }

    /// What to pass as `--console-socket` to create.
    pub fn path(&self) -> &Path {
        self.path.as_deref().expect("not unlinked yet")
    }

    /// Removes the socket's name (connections made stay). `exec` does this
    /// before it enters the container's mount namespace, where the path
    /// would name something else.
    pub fn unlink(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Takes the pty master create sent, and starts relaying it to our
    /// stdin/stdout.
    pub fn relay(mut self) -> Result<Relay> {
        let (sock, _) = self
            .listener
            .accept()
            .ctx(|| "accepting on our console socket".into())?;
        self.unlink();
        let master = proxmox_lxcri_lxc::pty::recv_fd(&sock).map_err(Error::Console)?;
        Relay::start(master)
    }
}

impl ConsoleListener {
    /// [`ConsoleListener::relay`] in a child process, for `exec`: it joins
    /// the container's namespaces next, and a process that did cannot start
    /// threads (nor may it have any when it joins). The child ends when the
    /// process's terminal closes.
    pub fn relay_in_child(self) -> Result<RelayChild> {
        // Saved here too: if the relay must be killed, we give the caller
        // its terminal back.
        let saved = termios::tcgetattr(std::io::stdin().as_fd()).ok();
        // SAFETY: the caller is single-threaded (exec requires it); the
        // child only relays and leaves with _exit.
        match unsafe { nix::unistd::fork() }.ctx(|| "forking the terminal relay".into())? {
            nix::unistd::ForkResult::Child => {
                let code = match self.relay() {
                    Ok(relay) => {
                        drop(relay);
                        0
                    }
                    Err(e) => {
                        eprintln!("proxmox-lxcri: terminal relay: {e}");
                        1
                    }
                };
                // SAFETY: leave without the parent's destructors.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                // The child has the listener now.
                drop(self);
                Ok(RelayChild { pid: child, saved })
            }
        }
    }
}

/// The relay process of [`ConsoleListener::relay_in_child`]; dropping it
/// (once the exec'd process has ended) waits a moment for the last output.
/// A background process of the exec may still hold the terminal: then the
/// relay is ended, as runc's exec returns with its process.
pub struct RelayChild {
    pid: nix::unistd::Pid,
    saved: Option<Termios>,
}

impl Drop for RelayChild {
    fn drop(&mut self) {
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
        loop {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Ok(WaitStatus::StillAlive) => {
                    let _ = nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGKILL);
                    let _ = waitpid(self.pid, None);
                    break;
                }
                _ => break,
            }
        }
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}

impl Drop for ConsoleListener {
    fn drop(&mut self) {
        self.unlink();
    }
}

/// The caller's terminal joined to the container's pty.
pub struct Relay {
    saved: Option<Termios>,
    output: Option<JoinHandle<()>>,
}

impl Relay {
    fn start(master: OwnedFd) -> Result<Relay> {
        let stdin = std::io::stdin();
        // The container's terminal gets our size; ours goes raw, so that
        // keys (^C included) reach the container's line discipline.
        let saved = termios::tcgetattr(stdin.as_fd()).ok();
        if let Some(t) = &saved {
            copy_winsize(stdin.as_raw_fd(), master.as_raw_fd());
            let mut raw = t.clone();
            termios::cfmakeraw(&mut raw);
            let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        }
        let mut to_master = File::from(master.try_clone().ctx(|| "pty master".into())?);
        // stdin -> pty: ends with our stdin or the pty; never joined (a
        // read of our stdin may block past the container's end).
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut input = std::io::stdin().lock();
            while let Ok(n) = input.read(&mut buf) {
                if n == 0 || to_master.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        // pty -> stdout: until EIO, once every slave fd is closed.
        let mut from_master = File::from(master);
        let output = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut out = std::io::stdout().lock();
            while let Ok(n) = from_master.read(&mut buf) {
                if n == 0 || out.write_all(&buf[..n]).is_err() {
                    break;
                }
                let _ = out.flush();
            }
        });
        Ok(Relay {
            saved,
            output: Some(output),
        })
    }
}

impl Drop for Relay {
    /// Waits for the container's last output, then gives the caller its
    /// terminal back as it was.
    fn drop(&mut self) {
        if let Some(h) = self.output.take() {
            let _ = h.join();
        }
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}

fn copy_winsize(from: i32, to: i32) {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ with a winsize struct.
    unsafe {
        if libc::ioctl(from, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to, libc::TIOCSWINSZ, &ws);
        }
    }
}
