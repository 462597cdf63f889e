//! The pid-file process of a pve-vm container: our monitor on the host.
//! It stands for the guest's process (the lifecycle sees it as the init):
//!
//! 1. connects to the VM's serial0 socket (as QEMU makes it when the VM
//!    starts), hands the guest agent the container's config and answers
//!    create's `ready` FIFO with the guest's answer;
//! 2. on the `start` FIFO's byte tells the guest to start the process and
//!    answers `started`;
//! 3. relays its stdio (our 0-2: containerd's FIFOs) and the signals it
//!    gets, writes the exit status to the exchange dir and exits with it;
//!    the guest powers the VM off. A VM that goes away without a status
//!    (stopped through the API) ends as 137, as a killed container does.
//!
//! The kernel's log (serial1) is copied to `console.log` in the container
//! directory, for error messages.
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::{fork, ForkResult, Pid};
use proxmox_lxcri_agent_proto::{self as proto, Body, ContainerConfig, Decoder, ExitStatus, Frame};
use proxmox_lxcri_lxc::init::process::poll_in;
use proxmox_lxcri_lxc::init_config::{FIFO_READY, FIFO_START, FIFO_STARTED, FILE_EXIT};

use crate::error::{Context, Result};
use crate::exchange::Gate;
use crate::state::write_atomic;

/// Why the monitor gave up before the guest could say (create reports it).
pub const FILE_MONITOR_ERROR: &str = "monitor-error";
/// Where `exec` reaches the guest's agent through us: a client sends
/// Exec and then its stdin and signals, and gets its process's frames
/// (their stream numbers are ours to give).
pub const SOCKET_EXEC: &str = "exec.sock";

pub(crate) struct Args {
    pub exchange: PathBuf,
    pub serial: PathBuf,
    pub console: PathBuf,
    pub console_log: PathBuf,
    pub container: ContainerConfig,
    pub boot_timeout: Duration,
    /// process.terminal: hand create a pty master (for --console-socket)
    /// and relay its slave.
    pub terminal: bool,
    /// A container of a pod in the pod's VM: `serial` is then the
    /// sandbox monitor's exec socket, through which this member reaches
    /// the guest's agent on a stream of its own (Member, Start, stdio,
    /// Exit), and there is no console of its own.
    pub member: Option<proxmox_lxcri_agent_proto::pod::MemberSpec>,
}

/// Fork the monitor, held at a gate until recorded.
pub(crate) fn spawn(args: Args, stdio: Option<i32>) -> Result<(Pid, Gate)> {
    let gate = Gate::new()?;
    // SAFETY: the CLI is single-threaded when it forks.
    match unsafe { fork() }.ctx(|| "forking the VM's monitor".to_string())? {
        ForkResult::Parent { child } => Ok((child, gate)),
        ForkResult::Child => {
            if !gate.pass() {
                // SAFETY: leave without the parent's atexit handlers.
                unsafe { libc::_exit(255) }
            }
            crate::exchange::detach_monitor(stdio, None);
            let code = Monitor::new(args).run();
            // SAFETY: as above.
            unsafe { libc::_exit(code) }
        }
    }
}

struct Monitor {
    a: Args,
    decoder: Decoder,
    /// `started` has had its answer.
    answered: bool,
    /// exec clients: the stream each has in the guest.
    clients: Vec<Client>,
    next_stream: u32,
}

struct Client {
    stream: u32,
    conn: UnixStream,
    decoder: Decoder,
}

/// Signals the monitor forwards to the guest's process.
fn forwarded() -> SigSet {
    let mut s = SigSet::all();
    for sig in [
        nix::sys::signal::SIGKILL,
        nix::sys::signal::SIGSTOP,
        nix::sys::signal::SIGCHLD,
        nix::sys::signal::SIGPIPE,
    ] {
        s.remove(sig);
    }
    s
}

impl Monitor {
    fn new(a: Args) -> Self {
        Monitor {
            a,
            decoder: Decoder::default(),
            answered: false,
            clients: vec![],
            next_stream: 1,
        }
    }

    fn run(&mut self) -> i32 {
        // detach_monitor ignores the terminal signals; forwarded ones must
        // reach the signalfd instead (an ignored signal is never queued).
        for s in [libc::SIGINT, libc::SIGHUP, libc::SIGQUIT] {
            // SAFETY: resetting a disposition.
            unsafe { libc::signal(s, libc::SIG_DFL) };
        }
        let sigs = forwarded();
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&sigs), None);
        let sigfd =
            match SignalFd::with_flags(&sigs, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) {
                Ok(s) => s,
                Err(e) => return self.give_up(&format!("signalfd: {e}")),
            };
        // create holds the read side open while it waits.
        let mut ready = match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(self.a.exchange.join(FIFO_READY))
        {
            Ok(f) => f,
            Err(e) => return self.give_up(&format!("opening the ready FIFO: {e}")),
        };
        let deadline = Instant::now() + self.a.boot_timeout;
        if self.a.member.is_none() {
            self.copy_console(deadline);
        }
        let mut port = match self.connect(deadline) {
            Ok(p) => p,
            Err(e) => {
                let _ = ready.write_all(format!("error: {e}\n").as_bytes());
                return self.give_up(&e);
            }
        };
        // 1. Hello, Config, Ready (a pod member: Member, Ready).
        let prepared = (|| -> std::result::Result<Option<String>, String> {
            if let Some(member) = self.a.member.clone() {
                send(
                    &mut port,
                    Body::Member {
                        member: Box::new(member),
                    },
                )?;
                loop {
                    match self.recv(&mut port, Some(deadline))? {
                        Some(Body::Ready) => return Ok(None),
                        Some(Body::Error { message }) => return Ok(Some(message)),
                        None => {
                            return Err("the pod's VM ended before the container was ready".into())
                        }
                        _ => {}
                    }
                }
            }
            match self.recv(&mut port, Some(deadline))? {
                Some(Body::Hello { version }) if version == proto::VERSION => {}
                Some(Body::Hello { version }) => {
                    return Err(format!(
                        "the guest's agent speaks protocol {version}, we speak {}: its \
                         initramfs is of another build",
                        proto::VERSION
                    ))
                }
                other => return Err(format!("the guest's agent did not say hello ({other:?})")),
            }
            send(
                &mut port,
                Body::Config {
                    container: Box::new(self.a.container.clone()),
                },
            )?;
            loop {
                match self.recv(&mut port, Some(deadline))? {
                    Some(Body::Ready) => return Ok(None),
                    Some(Body::Error { message }) => return Ok(Some(message)),
                    None => return Err("the VM ended before its agent was ready".into()),
                    _ => {}
                }
            }
        })();
        match prepared {
            Ok(None) => {
                if self.a.terminal {
                    if let Err(e) = self.console() {
                        let _ = ready.write_all(format!("error: {}\n", one_line(&e)).as_bytes());
                        return self.give_up(&e);
                    }
                }
                let _ = ready.write_all(b"ok\n");
            }
            Ok(Some(msg)) => {
                let _ = ready.write_all(format!("error: {}\n", one_line(&msg)).as_bytes());
                drop(ready);
                return self.until_exit(&mut port, None, &sigfd);
            }
            Err(e) => {
                let e = format!("{e}{}", self.console_tail());
                let _ = ready.write_all(format!("error: {}\n", one_line(&e)).as_bytes());
                return self.give_up(&e);
            }
        }
        drop(ready);
        // 2. Wait for `start` (the guest ending meanwhile ends us too).
        let start = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(self.a.exchange.join(FIFO_START))
        {
            Ok(f) => f,
            Err(e) => return self.give_up(&format!("opening the start FIFO: {e}")),
        };
        loop {
            let r = poll_in(
                &[start.as_raw_fd(), port.as_raw_fd(), sigfd.as_raw_fd()],
                -1,
            );
            if r[2] {
                for s in drain(&sigfd) {
                    let _ = send(&mut port, Body::Signal { signal: s });
                }
            }
            if r[1] {
                // Only an Exit (a signal ended it) or the end can come now.
                if let Some(code) = self.pump(&mut port, None) {
                    return code;
                }
            }
            if r[0] {
                let mut b = [0u8; 1];
                match (&start).read(&mut b) {
                    Ok(1) => break,
                    // create gave up without starting: the VM goes with delete.
                    Ok(_) => return 255,
                    Err(_) => {}
                }
            }
        }
        let mut started = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(self.a.exchange.join(FIFO_STARTED))
            .ok();
        let started_ok = send(&mut port, Body::Start);
        // The size the console has now (later changes come as SIGWINCH).
        if let (Ok(()), Some(resize)) = (&started_ok, self.window()) {
            let _ = send(&mut port, resize);
        }
        if let Err(e) = started_ok {
            if let Some(s) = started.as_mut() {
                let _ = s.write_all(format!("error: {}\n", one_line(&e)).as_bytes());
            }
            return self.vm_gone();
        }
        self.until_exit(&mut port, started, &sigfd)
    }

    /// Relay until the guest reports the exit status; answer `started`
    /// on the way when there is one to answer. Serves `exec` meanwhile.
    fn until_exit(
        &mut self,
        port: &mut UnixStream,
        mut started: Option<File>,
        sigfd: &SignalFd,
    ) -> i32 {
        let mut stdin_open = true;
        // A member's execs would need streams of their own in the guest
        // (not yet): only the VM's own monitor takes exec requests.
        let exec = if self.a.member.is_some() {
            None
        } else {
            crate::sockpath::bind(&self.a.exchange.join(SOCKET_EXEC)).ok()
        };
        loop {
            let mut fds = vec![
                if stdin_open && started.is_none() {
                    0
                } else {
                    -1
                },
                port.as_raw_fd(),
                sigfd.as_raw_fd(),
                exec.as_ref().map(|l| l.as_raw_fd()).unwrap_or(-1),
            ];
            fds.extend(self.clients.iter().map(|c| c.conn.as_raw_fd()));
            let r = poll_in(&fds, -1);
            if r[2] {
                for s in drain(sigfd) {
                    let body = match (s, self.window()) {
                        (libc::SIGWINCH, Some(resize)) => resize,
                        _ => Body::Signal { signal: s },
                    };
                    let _ = send(port, body);
                }
            }
            if r[0] {
                let mut buf = vec![0u8; proto::MAX_DATA];
                // SAFETY: fd 0 is ours for the container's stdin.
                let mut stdin = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(0) });
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        stdin_open = false;
                        let _ = send(port, Body::StdinClose);
                    }
                    Ok(n) => {
                        buf.truncate(n);
                        let _ = send(port, Body::Stdin { data: buf });
                    }
                }
            }
            if r[3] {
                if let Some(Ok((conn, _))) = exec.as_ref().map(|l| l.accept()) {
                    self.clients.push(Client {
                        stream: self.next_stream,
                        conn,
                        decoder: Decoder::default(),
                    });
                    self.next_stream += 1;
                }
            }
            let ready: Vec<u32> = self
                .clients
                .iter()
                .zip(&r[4..])
                .filter(|(_, r)| **r)
                .map(|(c, _)| c.stream)
                .collect();
            for stream in ready {
                self.forward_client(port, stream);
            }
            if r[1] {
                if let Some(code) = self.pump(port, started.as_mut()) {
                    return code;
                }
                if self.answered {
                    started = None;
                }
            }
        }
    }

    /// Frames of an exec client, onto its stream in the guest. A client
    /// that goes away takes its process with it.
    fn forward_client(&mut self, port: &mut UnixStream, stream: u32) {
        let Some(i) = self.clients.iter().position(|c| c.stream == stream) else {
            return;
        };
        let mut buf = [0u8; 16 << 10];
        let gone = match (&self.clients[i].conn).read(&mut buf) {
            Ok(0) | Err(_) => true,
            Ok(n) => {
                self.clients[i].decoder.feed(&buf[..n]);
                false
            }
        };
        loop {
            match self.clients[i].decoder.next_frame() {
                Ok(Some(f)) => {
                    let body = match f.body {
                        b @ (Body::Exec { .. }
                        | Body::Member { .. }
                        | Body::Start
                        | Body::Stdin { .. }
                        | Body::StdinClose
                        | Body::Resize { .. }
                        | Body::Signal { .. }) => b,
                        _ => continue,
                    };
                    let _ = proto::write_frame(port, &Frame { stream, body });
                }
                Ok(None) => break,
                Err(_) => {
                    self.drop_client(port, i);
                    return;
                }
            }
        }
        if gone {
            self.drop_client(port, i);
        }
    }

    fn drop_client(&mut self, port: &mut UnixStream, i: usize) {
        let c = self.clients.remove(i);
        let _ = proto::write_frame(
            port,
            &Frame {
                stream: c.stream,
                body: Body::Signal {
                    signal: libc::SIGKILL,
                },
            },
        );
    }

    /// A frame of an exec's (or a pod member's) stream, to its client, as
    /// stream 0 of its connection.
    fn reply_to_client(&mut self, f: Frame) {
        let Some(i) = self.clients.iter().position(|c| c.stream == f.stream) else {
            return;
        };
        let f = Frame { stream: 0, ..f };
        let end = matches!(f.body, Body::Exit { .. });
        if proto::write_frame(&mut self.clients[i].conn, &f).is_err() || end {
            self.clients.remove(i);
        }
    }

    /// Read what the guest sent and act on it; Some(exit code) once the
    /// container ended.
    fn pump(&mut self, port: &mut UnixStream, mut started: Option<&mut File>) -> Option<i32> {
        let mut buf = [0u8; 16 << 10];
        let n = match port.read(&mut buf) {
            Ok(0) => return Some(self.vm_gone()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return None,
            Err(_) => return Some(self.vm_gone()),
        };
        self.decoder.feed(&buf[..n]);
        loop {
            let f = match self.decoder.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => return None,
                Err(_) => return Some(self.vm_gone()),
            };
            if f.stream != 0 {
                self.reply_to_client(f);
                continue;
            }
            match f.body {
                Body::Stdout { data } => write_fd(1, &data),
                Body::Stderr { data } => write_fd(2, &data),
                Body::Started => {
                    if let Some(s) = started.take() {
                        let _ = s.write_all(b"ok\n");
                    }
                    self.answered = true;
                }
                Body::Error { message } => {
                    if let Some(s) = started.take() {
                        let _ = s.write_all(format!("error: {}\n", one_line(&message)).as_bytes());
                        self.answered = true;
                    }
                }
                Body::Exit { status } => {
                    self.record_exit(status);
                    let _ = send(port, Body::Ack);
                    return Some(status.shell_code());
                }
                _ => {}
            }
        }
    }

    /// A pty of the host's: its master to create (which passes it to the
    /// --console-socket), its slave, raw, as our stdio. The guest's own
    /// pty (the process's terminal) does the line discipline.
    fn console(&self) -> std::result::Result<(), String> {
        let (master, slave) = proxmox_lxcri_lxc::pty::open_pty()?;
        let path = self
            .a
            .exchange
            .join(proxmox_lxcri_lxc::init_config::SOCKET_CONSOLE);
        let sock = crate::sockpath::connect(&path)
            .map_err(|e| format!("connecting {}: {e}", path.display()))?;
        proxmox_lxcri_lxc::pty::send_fd(&sock, master.as_raw_fd())?;
        let mut t = nix::sys::termios::tcgetattr(&slave).map_err(|e| format!("tcgetattr: {e}"))?;
        nix::sys::termios::cfmakeraw(&mut t);
        nix::sys::termios::tcsetattr(&slave, nix::sys::termios::SetArg::TCSANOW, &t)
            .map_err(|e| format!("tcsetattr: {e}"))?;
        for fd in 0..3 {
            nix::unistd::dup2(slave.as_raw_fd(), fd).map_err(|e| format!("dup2: {e}"))?;
        }
        // Our controlling terminal (we lead a session of our own): a resize
        // of the master (containerd's) reaches us as SIGWINCH.
        // SAFETY: ioctl on fd 0 with an integer argument.
        unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
        Ok(())
    }

    /// The host terminal's size, for the guest's pty (None: no terminal,
    /// or not sized yet).
    fn window(&self) -> Option<Body> {
        if !self.a.terminal {
            return None;
        }
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

    fn record_exit(&self, st: ExitStatus) {
        let _ = write_atomic(
            &self.a.exchange.join(FILE_EXIT),
            serde_json::to_string(&st).unwrap_or_default().as_bytes(),
        );
    }

    /// The VM went away without a status: stopped from outside.
    fn vm_gone(&self) -> i32 {
        let _ = write_atomic(&self.a.exchange.join(crate::exchange::FILE_KILLED), b"9");
        128 + libc::SIGKILL
    }

    fn give_up(&self, why: &str) -> i32 {
        let _ = write_atomic(&self.a.exchange.join(FILE_MONITOR_ERROR), why.as_bytes());
        255
    }

    /// serial0 appears once QEMU runs; wait for it (the start request is
    /// sent after we are recorded).
    fn connect(&self, deadline: Instant) -> std::result::Result<UnixStream, String> {
        if self.a.member.is_some() {
            return crate::sockpath::connect(&self.a.serial).map_err(|e| {
                format!(
                    "the pod VM's monitor takes no containers at {} ({e}): is the pod's sandbox running?",
                    self.a.serial.display()
                )
            });
        }
        loop {
            match UnixStream::connect(&self.a.serial) {
                Ok(s) => return Ok(s),
                Err(e) if Instant::now() > deadline => {
                    return Err(format!(
                        "the VM's serial port {} did not come up: {e}",
                        self.a.serial.display()
                    ))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn recv(
        &mut self,
        port: &mut UnixStream,
        deadline: Option<Instant>,
    ) -> std::result::Result<Option<Body>, String> {
        loop {
            match self.decoder.next_frame() {
                Ok(Some(Frame { body, .. })) => return Ok(Some(body)),
                Ok(None) => {}
                Err(e) => return Err(format!("from the guest's agent: {e}")),
            }
            let ms = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(format!(
                            "the guest's agent did not answer within {}s (pve.vm_boot_timeout_secs)",
                            self.a.boot_timeout.as_secs()
                        ));
                    }
                    left.as_millis().min(i32::MAX as u128) as i32
                }
            };
            if !poll_in(&[port.as_raw_fd()], ms)[0] {
                continue;
            }
            let mut buf = [0u8; 16 << 10];
            match port.read(&mut buf) {
                Ok(0) => return Ok(None),
                Ok(n) => self.decoder.feed(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("reading the VM's serial port: {e}")),
            }
        }
    }

    /// Copy the guest kernel's log (serial1) to console.log, in the
    /// background, while the VM runs.
    fn copy_console(&self, deadline: Instant) {
        let (path, log) = (self.a.console.clone(), self.a.console_log.clone());
        std::thread::spawn(move || {
            let stream = loop {
                match UnixStream::connect(&path) {
                    Ok(s) => break s,
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(_) => return,
                }
            };
            let Ok(mut f) = OpenOptions::new().create(true).append(true).open(&log) else {
                return;
            };
            let _ = std::io::copy(&mut &stream, &mut f);
        });
    }

    /// The last lines of the guest's kernel log, for an error message.
    fn console_tail(&self) -> String {
        console_tail(&self.a.console_log)
    }
}

/// `; guest console: <last lines>` when the kernel said anything.
pub fn console_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    format!(
        "; guest console: {}",
        lines[lines.len().saturating_sub(4)..].join(" | ")
    )
}

fn send(port: &mut UnixStream, body: Body) -> std::result::Result<(), String> {
    proto::write_frame(port, &Frame::main(body))
        .map_err(|e| format!("writing to the VM's serial port: {e}"))
}

fn drain(sigfd: &SignalFd) -> Vec<i32> {
    let mut out = vec![];
    while let Ok(Some(si)) = sigfd.read_signal() {
        out.push(si.ssi_signo as i32);
    }
    out
}

fn write_fd(fd: i32, data: &[u8]) {
    // SAFETY: fds 1 and 2 are the container's stdio, kept open by us.
    let mut f = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
    let _ = f.write_all(data);
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}
