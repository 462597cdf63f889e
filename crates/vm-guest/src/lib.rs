//! pid 1 of a pve-vm guest. The runtime boots the guest kernel with an
//! initramfs holding this very binary as `/init` and the kernel modules it
//! needs; the kernel command line carries [`CMDLINE_FLAG`]. Then:
//!
//! 1. mount devtmpfs, proc and sysfs; load the modules (virtio);
//! 2. speak the agent protocol on the first serial port (`serial0: socket`
//!    on the host): Hello, then take the container's Config;
//! 3. mount the container's disk (virtio0, ext4) and make it the root, with
//!    the spec's kernel file systems; hostname, devices, masked and
//!    read-only paths; check the process (the lxc init's own code) -> Ready;
//! 4. on Start fork the process (user, groups, caps, seccomp, rlimits, cwd,
//!    env exactly as the lxc engines' init does it), relay its stdio and
//!    signals, report its Exit, and power the VM off.
//!
//! In a pod's VM (the sandbox), the runtime adds the pod's other containers
//! with a `Member` frame on a stream of their own (see `member.rs`): each
//! on a disk hot-plugged through the Proxmox API, in mount and pid
//! namespaces of its own, started on `Start`, relayed like an exec.
//!
//! The kernel's own messages go to the second serial port (`console=ttyS1`),
//! never into the protocol.
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use agent_proto::{Body, ContainerConfig, Decoder, ExitStatus, Frame, Mount};
use nix::mount::{mount, MsFlags};
use nix::sys::signal::{SigSet, SigmaskHow};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, pipe2, ForkResult, Pid};
use proxmox_lxcri_agent_proto as agent_proto;
use proxmox_lxcri_lxc::init::{self, prepare, process};

pub use agent_proto::CMDLINE_FLAG;

mod member;
mod net;

/// The modules to load, one path a line in load order (written by the
/// runtime's initramfs builder).
pub const MODULES_LIST: &str = "/lxcri/modules";
/// The container's disk: the VM's `virtio0`.
pub const ROOT_DISK: &str = "/dev/vda";
/// The protocol's port: the VM's `serial0`.
pub const AGENT_PORT: &str = "/dev/ttyS0";
const NEW_ROOT: &str = "/newroot";

/// Whether this process is a pve-vm guest's init: pid 1, run by the kernel
/// as the initramfs's `/init`.
pub fn is_guest_init() -> bool {
    std::process::id() == 1 && std::env::args_os().next().is_some_and(|a| a == "/init")
}

/// A message for whoever watches the guest's console (the kernel log).
fn klog(msg: &str) {
    if let Ok(mut f) = OpenOptions::new().write(true).open("/dev/kmsg") {
        let _ = writeln!(f, "lxcri-agent: {msg}");
    }
}

fn power_off() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    // pid 1 must never exit (the kernel would panic).
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Entry point of the guest's init. Never returns: powers the VM off.
pub fn run() -> ! {
    if let Err(e) = early() {
        klog(&e);
        power_off();
    }
    let port = match open_port() {
        Ok(p) => p,
        Err(e) => {
            klog(&e);
            power_off();
        }
    };
    let mut agent = Agent {
        port,
        decoder: Decoder::default(),
    };
    match agent.serve() {
        Ok(()) => {}
        Err(e) => {
            klog(&e);
            let _ = agent.send(Body::Error { message: e });
        }
    }
    // The host has what it needs (or the channel is gone): the UART's
    // buffer out first, then off.
    let _ = nix::sys::termios::tcdrain(agent.port.as_fd());
    power_off();
}

fn mnt(
    src: &str,
    dst: &str,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), String> {
    let _ = fs::create_dir_all(dst);
    mount(Some(src), dst, Some(fstype), flags, data)
        .map_err(|e| format!("mounting {fstype} on {dst}: {e}"))
}

/// Kernel file systems, the command line check, the modules.
fn early() -> Result<(), String> {
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    mnt("devtmpfs", "/dev", "devtmpfs", MsFlags::MS_NOSUID, None)?;
    mnt("proc", "/proc", "proc", nosuid | MsFlags::MS_NODEV, None)?;
    mnt("sysfs", "/sys", "sysfs", nosuid | MsFlags::MS_NODEV, None)?;
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if !cmdline.split_whitespace().any(|w| w == CMDLINE_FLAG) {
        return Err(format!(
            "the kernel command line lacks {CMDLINE_FLAG}: not a proxmox-lxcri pve-vm guest"
        ));
    }
    let list = fs::read_to_string(MODULES_LIST).unwrap_or_default();
    for m in list.lines().filter(|l| !l.is_empty()) {
        load_module(m)?;
    }
    Ok(())
}

fn load_module(path: &str) -> Result<(), String> {
    let f = File::open(path).map_err(|e| format!("opening module {path}: {e}"))?;
    let params = CString::default();
    match nix::kmod::finit_module(&f, &params, nix::kmod::ModuleInitFlags::empty()) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(format!("loading module {path}: {e}")),
    }
}

/// The agent's serial port, raw: the tty layer must not touch the bytes.
fn open_port() -> Result<File, String> {
    let port = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(AGENT_PORT)
        .map_err(|e| format!("opening {AGENT_PORT}: {e}"))?;
    let mut t = nix::sys::termios::tcgetattr(port.as_fd())
        .map_err(|e| format!("tcgetattr {AGENT_PORT}: {e}"))?;
    nix::sys::termios::cfmakeraw(&mut t);
    t.control_flags |= nix::sys::termios::ControlFlags::CLOCAL;
    t.control_flags &= !nix::sys::termios::ControlFlags::CRTSCTS;
    nix::sys::termios::tcsetattr(port.as_fd(), nix::sys::termios::SetArg::TCSANOW, &t)
        .map_err(|e| format!("tcsetattr {AGENT_PORT}: {e}"))?;
    Ok(port)
}

struct Agent {
    port: File,
    decoder: Decoder,
}

/// How the process ended, or that it never started.
type Outcome = ExitStatus;

fn code(c: i32) -> ExitStatus {
    ExitStatus {
        code: Some(c),
        signal: None,
    }
}

impl Agent {
    fn send(&mut self, body: Body) -> Result<(), String> {
        agent_proto::write_frame(&mut self.port, &Frame::main(body))
            .map_err(|e| format!("writing to {AGENT_PORT}: {e}"))
    }

    /// The next frame from the host, waiting at most `timeout` (None:
    /// forever); Ok(None) on timeout.
    fn recv(&mut self, timeout: Option<Duration>) -> Result<Option<Frame>, String> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(f) = self.decoder.next_frame().map_err(|e| e.to_string())? {
                return Ok(Some(f));
            }
            let ms = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    left.as_millis().min(i32::MAX as u128) as i32
                }
            };
            if process::poll_in(&[self.port.as_raw_fd()], ms)[0] {
                self.read_port()?;
            }
        }
    }

    fn read_port(&mut self) -> Result<(), String> {
        let mut buf = [0u8; 4096];
        match self.port.read(&mut buf) {
            Ok(n) => {
                self.decoder.feed(&buf[..n]);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(format!("reading {AGENT_PORT}: {e}")),
        }
    }

    fn serve(&mut self) -> Result<(), String> {
        // Signals through a signalfd (SIGCHLD above all), as the lxc init.
        let all = SigSet::all();
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&all), None);
        let sigfd = SignalFd::with_flags(&all, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(|e| format!("signalfd: {e}"))?;
        self.send(Body::Hello {
            version: agent_proto::VERSION,
        })?;
        let cfg = loop {
            match self.recv(None)?.map(|f| f.body) {
                Some(Body::Config { container }) => break *container,
                Some(Body::Signal { .. }) | None => {}
                Some(other) => {
                    return Err(format!("expected the container's config, got {other:?}"))
                }
            }
        };
        let prepared = match enter_root(&cfg)
            .and_then(|()| init::prepare_process(cfg.init.clone()).map_err(|e| e.to_string()))
        {
            Ok(p) => p,
            Err(e) => {
                self.send(Body::Error { message: e })?;
                return self.finish(code(1));
            }
        };
        self.send(Body::Ready)?;
        // Until Start: a signal that would end a process ends the container.
        loop {
            match self.recv(None)?.map(|f| f.body) {
                Some(Body::Start) => break,
                Some(Body::Signal { signal }) if !harmless(signal) => {
                    return self.finish(ExitStatus {
                        code: None,
                        signal: Some(signal),
                    })
                }
                _ => {}
            }
        }
        let st = match self.run_process(&prepared, &cfg, &sigfd) {
            Ok(st) => st,
            Err((c, e)) => {
                self.send(Body::Error { message: e })?;
                code(c)
            }
        };
        self.finish(st)
    }

    /// Report the exit status; wait (bounded) for the host's Ack, so that
    /// it is not lost with the power.
    fn finish(&mut self, st: Outcome) -> Result<(), String> {
        self.send(Body::Exit { status: st })?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(f) = self.recv(Some(deadline.saturating_duration_since(Instant::now())))? {
            if f.body == Body::Ack {
                break;
            }
        }
        Ok(())
    }

    /// The container's process, then relay for it and every exec until it
    /// ends. Err: it could not start (exit code, message).
    fn run_process(
        &mut self,
        p: &init::Prepared,
        cfg: &ContainerConfig,
        sigfd: &SignalFd,
    ) -> Result<ExitStatus, (i32, String)> {
        let main = spawn(Target::Prepared(p), &cfg.rlimits)?;
        self.send(Body::Started).map_err(|e| (1, e))?;
        let mut procs = std::collections::BTreeMap::new();
        procs.insert(0u32, main);
        Ok(self.relay(procs, cfg, sigfd))
    }

    fn send_on(&mut self, stream: u32, body: Body) {
        let _ = agent_proto::write_frame(&mut self.port, &Frame { stream, body });
    }

    /// Stdio, signals and execs until the container's process (stream 0)
    /// ends; its status. Execs still running then end with the VM.
    fn relay(
        &mut self,
        mut procs: std::collections::BTreeMap<u32, Proc>,
        cfg: &ContainerConfig,
        sigfd: &SignalFd,
    ) -> ExitStatus {
        let mut port_ok = true;
        loop {
            // A process that ended: its output until its pipes close, or
            // a moment (a daemon it left may hold them open); then Exit.
            let done: Vec<u32> = procs
                .iter()
                .filter(|(_, p)| {
                    p.ended_at.is_some_and(|t| {
                        p.outs.iter().all(Option::is_none)
                            || t.elapsed() > Duration::from_millis(500)
                    })
                })
                .map(|(s, _)| *s)
                .collect();
            for s in done {
                let p = procs.remove(&s).expect("listed");
                let st = p.status.expect("ended");
                if s == 0 {
                    return st;
                }
                if let Some(m) = &p.mount {
                    member::unmount(m);
                }
                self.send_on(s, Body::Exit { status: st });
            }
            let mut fds = vec![
                sigfd.as_raw_fd(),
                if port_ok { self.port.as_raw_fd() } else { -1 },
            ];
            let mut slots = vec![];
            for (s, p) in &procs {
                for (i, o) in p.outs.iter().enumerate() {
                    if let Some(f) = o {
                        fds.push(f.as_raw_fd());
                        slots.push((*s, i));
                    }
                }
            }
            let waiting = procs.values().any(|p| p.ended_at.is_some());
            let ready = process::poll_in(&fds, if waiting { 50 } else { -1 });
            if ready[0] {
                let main = procs.get(&0).map(|p| p.pid);
                for s in process::drain_signals(sigfd) {
                    if let Some(pid) = main {
                        // SAFETY: kill(2) of our child.
                        unsafe { libc::kill(pid.as_raw(), s) };
                    }
                }
                reap_all(&mut procs);
            }
            if ready[1] {
                if self.read_port().is_err() {
                    port_ok = false;
                }
                while let Ok(Some(f)) = self.decoder.next_frame() {
                    self.handle_host_frame(f, &mut procs, cfg);
                }
            }
            for (k, (s, i)) in slots.into_iter().enumerate() {
                if !ready[2 + k] {
                    continue;
                }
                let Some(p) = procs.get_mut(&s) else { continue };
                let Some(f) = p.outs[i].as_mut() else {
                    continue;
                };
                let mut buf = vec![0u8; agent_proto::MAX_DATA];
                match f.read(&mut buf) {
                    Ok(0) | Err(_) => p.outs[i] = None,
                    Ok(n) => {
                        buf.truncate(n);
                        let body = if i == 1 {
                            Body::Stderr { data: buf }
                        } else {
                            Body::Stdout { data: buf }
                        };
                        self.send_on(s, body);
                    }
                }
            }
            // SIGCHLD may have been taken already by a poll above.
            reap_all(&mut procs);
        }
    }

    fn handle_host_frame(
        &mut self,
        f: Frame,
        procs: &mut std::collections::BTreeMap<u32, Proc>,
        cfg: &ContainerConfig,
    ) {
        let s = f.stream;
        match f.body {
            // One more process in a container of the pod: in its mount and
            // pid namespaces, prepared there (its executable is its own).
            Body::Exec {
                process,
                member: Some(id),
            } if s != 0 && !procs.contains_key(&s) => {
                let target = procs
                    .values()
                    .find(|p| {
                        p.member.as_ref().is_some_and(|(m, _)| *m == id)
                            && p.status.is_none()
                            && p.gate.is_none()
                    })
                    .map(|p| (p.pid, p.member.clone().expect("found").1));
                let r = match target {
                    None => Err((126, format!("container {id} does not run in this pod's VM"))),
                    Some((pid, rlimits)) => {
                        member::enter(pid)
                            .map_err(|e| (126, e))
                            .and_then(|(pid_ns, mnt_ns)| {
                                spawn(
                                    Target::Member {
                                        pid_ns,
                                        mnt_ns,
                                        process,
                                    },
                                    &rlimits,
                                )
                            })
                    }
                };
                match r {
                    Ok(p) => {
                        procs.insert(s, p);
                        self.send_on(s, Body::Started);
                    }
                    Err((c, msg)) => {
                        self.send_on(s, Body::Error { message: msg });
                        self.send_on(s, Body::Exit { status: code(c) });
                    }
                }
            }
            Body::Exec {
                process,
                member: None,
            } if s != 0 && !procs.contains_key(&s) => {
                match init::prepare_process(*process)
                    .map_err(|e| (126, e.to_string()))
                    .and_then(|p| spawn(Target::Prepared(&p), &cfg.rlimits))
                {
                    Ok(p) => {
                        procs.insert(s, p);
                        self.send_on(s, Body::Started);
                    }
                    Err((c, msg)) => {
                        self.send_on(s, Body::Error { message: msg });
                        self.send_on(s, Body::Exit { status: code(c) });
                    }
                }
            }
            // One more container of the pod: its disk (hot-plugged by the
            // runtime) mounted, its mount and pid namespaces made, its
            // process prepared and waiting for Start on this stream.
            Body::Member { member } if s != 0 && !procs.contains_key(&s) => {
                match member::prepare(&member) {
                    Ok(p) => {
                        procs.insert(s, p);
                        self.send_on(s, Body::Ready);
                    }
                    Err(message) => {
                        klog(&format!("member {}: {message}", member.id));
                        self.send_on(s, Body::Error { message });
                        self.send_on(s, Body::Exit { status: code(1) });
                    }
                }
            }
            Body::Start if s != 0 => {
                if let Some(p) = procs.get_mut(&s) {
                    match member::release(p) {
                        Ok(()) => self.send_on(s, Body::Started),
                        // The child exits with the code: Exit follows.
                        Err(message) => self.send_on(s, Body::Error { message }),
                    }
                }
            }
            Body::Stdin { data } => {
                if let Some(p) = procs.get_mut(&s) {
                    if let Some(w) = p.stdin.as_mut() {
                        if w.write_all(&data).is_err() {
                            p.stdin = None;
                        }
                    }
                }
            }
            Body::StdinClose => {
                if let Some(p) = procs.get_mut(&s) {
                    p.stdin = None;
                }
            }
            Body::Resize { rows, cols } => {
                if let Some(Some(master)) = procs.get(&s).filter(|p| p.pty).map(|p| &p.outs[0]) {
                    let ws = libc::winsize {
                        ws_row: rows,
                        ws_col: cols,
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    };
                    // SAFETY: TIOCSWINSZ with a winsize; the kernel signals
                    // the process's foreground group (SIGWINCH).
                    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
                }
            }
            Body::Signal { signal } => {
                if let Some(p) = procs.get(&s).filter(|p| p.status.is_none()) {
                    // SAFETY: kill(2) of our child.
                    unsafe { libc::kill(p.pid.as_raw(), signal) };
                }
            }
            _ => {}
        }
    }
}

/// A process of the container (its own or an exec) with its stdio pipes.
struct Proc {
    pid: Pid,
    stdin: Option<File>,
    /// stdout, stderr
    outs: [Option<File>; 2],
    status: Option<ExitStatus>,
    ended_at: Option<Instant>,
    /// outs[0] is a pty's master (process.terminal).
    pty: bool,
    /// A pod member waiting for Start: the byte that releases it, and
    /// the pipe on which its exec failure comes.
    gate: Option<(File, File)>,
    /// A pod member's disk, mounted by the agent (unmounted at its end).
    mount: Option<std::path::PathBuf>,
    /// A pod member: its container id and rlimits (for its execs).
    member: Option<(String, Vec<agent_proto::Rlimit>)>,
}

/// How a forked child becomes its process: prepared by the agent, or in a
/// pod member's namespaces (entered, then prepared there).
enum Target<'a> {
    Prepared(&'a init::Prepared),
    Member {
        pid_ns: File,
        mnt_ns: File,
        process: Box<agent_proto::InitConfig>,
    },
}

/// Fork and exec a prepared process with pipes for its stdio (the lxc
/// init's exec_user: user, groups, caps, seccomp, cwd, env), plus the
/// rlimits. Err: it could not start (exit code, message).
fn spawn(t: Target, rlimits: &[agent_proto::Rlimit]) -> Result<Proc, (i32, String)> {
    let fail = |e: nix::Error, what: &str| (1, format!("{what}: {e}"));
    let terminal = match &t {
        Target::Prepared(p) => p.cfg.terminal,
        Target::Member { process, .. } => process.terminal,
    };
    let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
    // process.terminal: a pty of the guest's devpts (its slave becomes the
    // controlling terminal in exec_user); the master is relayed as stdout.
    let (in_r, in_w, out_r, out_w, err_r, err_w) = if terminal {
        let (master, slave) = proxmox_lxcri_lxc::pty::open_pty().map_err(|e| (1, e))?;
        let dup = |f: &OwnedFd| f.try_clone().map_err(|e| (1, format!("dup: {e}")));
        (
            dup(&slave)?,
            dup(&master)?,
            master,
            dup(&slave)?,
            None,
            slave,
        )
    } else {
        let (in_r, in_w) = pipe2(cloexec).map_err(|e| fail(e, "pipe"))?;
        let (out_r, out_w) = pipe2(cloexec).map_err(|e| fail(e, "pipe"))?;
        let (err_r, err_w) = pipe2(cloexec).map_err(|e| fail(e, "pipe"))?;
        (in_r, in_w, out_r, out_w, Some(err_r), err_w)
    };
    let (x_r, x_w) = pipe2(cloexec).map_err(|e| fail(e, "pipe"))?;
    // A member's process: our next child in its pid namespace (ours set
    // back right after the fork, in the parent).
    let own_pid_ns = match &t {
        Target::Member { pid_ns, .. } => {
            let ours = File::open("/proc/self/ns/pid")
                .map_err(|e| (1, format!("/proc/self/ns/pid: {e}")))?;
            nix::sched::setns(pid_ns, nix::sched::CloneFlags::CLONE_NEWPID)
                .map_err(|e| fail(e, "entering the container's pid namespace"))?;
            Some(ours)
        }
        Target::Prepared(_) => None,
    };
    // SAFETY: single-threaded.
    let forked = unsafe { fork() };
    if let (Some(ours), Ok(ForkResult::Parent { .. }) | Err(_)) = (&own_pid_ns, &forked) {
        nix::sched::setns(ours, nix::sched::CloneFlags::CLONE_NEWPID)
            .map_err(|e| fail(e, "setns(pid)"))?;
    }
    let child = match forked.map_err(|e| fail(e, "fork"))? {
        ForkResult::Child => {
            drop(x_r);
            let res = (|| {
                let owned;
                let p = match &t {
                    Target::Prepared(p) => *p,
                    Target::Member {
                        mnt_ns, process, ..
                    } => {
                        nix::sched::setns(mnt_ns, nix::sched::CloneFlags::CLONE_NEWNS)
                            .map_err(|e| (1u8, format!("entering the container's mounts: {e}")))?;
                        nix::unistd::chdir("/").map_err(|e| (1u8, format!("chdir /: {e}")))?;
                        owned = init::prepare_process((**process).clone())
                            .map_err(|e| (126u8, e.to_string()))?;
                        &owned
                    }
                };
                for (fd, to) in [(&in_r, 0), (&out_w, 1), (&err_w, 2)] {
                    nix::unistd::dup2(fd.as_raw_fd(), to)
                        .map_err(|e| (1u8, format!("dup2: {e}")))?;
                }
                set_rlimits(rlimits).map_err(|e| (1u8, e))?;
                Err(process::exec_user(p))
            })();
            let (c, msg) = match res {
                Err(x) => x,
                Ok(()) => (1, String::new()),
            };
            let mut w = File::from(x_w);
            let mut buf = vec![c];
            buf.extend_from_slice(msg.as_bytes());
            let _ = w.write_all(&buf);
            // SAFETY: leave the forked child without destructors.
            unsafe { libc::_exit(c as i32) }
        }
        ForkResult::Parent { child } => child,
    };
    drop((in_r, out_w, err_w, x_w));
    let mut buf = vec![];
    let _ = File::from(x_r).read_to_end(&mut buf);
    if !buf.is_empty() {
        let _ = waitpid(child, None);
        return Err((
            buf[0] as i32,
            String::from_utf8_lossy(&buf[1..]).into_owned(),
        ));
    }
    Ok(Proc {
        pid: child,
        stdin: Some(File::from(in_w)),
        outs: [Some(File::from(out_r)), err_r.map(File::from)],
        status: None,
        ended_at: None,
        pty: terminal,
        gate: None,
        mount: None,
        member: None,
    })
}

/// Reap every zombie (we are pid 1) and note which of ours ended.
fn reap_all(procs: &mut std::collections::BTreeMap<u32, Proc>) {
    loop {
        let (pid, st) = match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, c)) => (p, code(c)),
            Ok(WaitStatus::Signaled(p, s, _)) => (
                p,
                ExitStatus {
                    code: None,
                    signal: Some(s as i32),
                },
            ),
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        };
        if let Some(p) = procs
            .values_mut()
            .find(|p| p.pid == pid && p.status.is_none())
        {
            p.status = Some(st);
            p.ended_at = Some(Instant::now());
            // Its stdin goes with it.
            p.stdin = None;
        }
    }
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

/// The container's disk as `/`, its kernel file systems, and what the
/// lxc init does before `ready` (hostname, domainname, devices, masked and
/// read-only paths).
fn enter_root(cfg: &ContainerConfig) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !Path::new(ROOT_DISK).exists() {
        if Instant::now() > deadline {
            return Err(format!("the container's disk {ROOT_DISK} did not appear"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    mnt(ROOT_DISK, NEW_ROOT, "ext4", MsFlags::empty(), None)?;
    // The initramfs's /dev, /proc and /sys move along; the rest of it
    // stays behind, unreachable.
    for d in ["/dev", "/proc", "/sys"] {
        let to = format!("{NEW_ROOT}{d}");
        let _ = fs::create_dir_all(&to);
        mount(
            Some(d),
            to.as_str(),
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )
        .map_err(|e| format!("moving {d} into the container's root: {e}"))?;
    }
    nix::unistd::chdir(NEW_ROOT).map_err(|e| format!("chdir {NEW_ROOT}: {e}"))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(|e| format!("moving the container's root to /: {e}"))?;
    nix::unistd::chroot(".").map_err(|e| format!("chroot: {e}"))?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))?;
    for m in &cfg.mounts {
        mount_fs(m)?;
    }
    if !cfg.network.is_empty() {
        net::configure(&cfg.network)?;
    }
    if let Some(h) = &cfg.hostname {
        nix::unistd::sethostname(h).map_err(|e| format!("setting hostname {h:?}: {e}"))?;
    }
    let c = &cfg.init;
    if let Some(d) = &c.domainname {
        prepare::set_domainname(d)?;
    }
    for (i, d) in c.devices.iter().enumerate() {
        prepare::create_device(i, d)?;
    }
    for (i, m) in c.masked_paths.iter().enumerate() {
        prepare::mask_path(i, m)?;
    }
    for (i, r) in c.readonly_paths.iter().enumerate() {
        prepare::readonly_path(i, r)?;
    }
    if c.readonly_root {
        prepare::readonly_root()?;
    }
    Ok(())
}

/// One of the spec's kernel file system mounts. `/proc`, `/sys` and `/dev`
/// are there already (moved from the initramfs).
fn mount_fs(m: &Mount) -> Result<(), String> {
    if matches!(m.destination.as_str(), "/proc" | "/sys" | "/dev") {
        return Ok(());
    }
    let (flags, data) = mount_options(&m.options);
    let fstype = match m.kind.as_str() {
        "cgroup" => "cgroup2",
        t => t,
    };
    fs::create_dir_all(&m.destination)
        .map_err(|e| format!("mount {}: creating it: {e}", m.destination))?;
    let data = (!data.is_empty()).then_some(data);
    mount(
        Some(m.source.as_str()),
        m.destination.as_str(),
        Some(fstype),
        flags,
        data.as_deref(),
    )
    .map_err(|e| format!("mount {} ({}): {e}", m.destination, m.kind))
}

/// Mount flags and the file system's own options (`size=`, `mode=` ...).
pub fn mount_options(opts: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = vec![];
    for o in opts {
        match o.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" | "defaults" | "private" | "rprivate" => {}
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            "suid" | "dev" | "exec" | "atime" | "async" => {}
            other => data.push(other.to_string()),
        }
    }
    (flags, data.join(","))
}

/// The spec's rlimits, set in the process before exec (LXC's job on the
/// other engines).
fn set_rlimits(limits: &[agent_proto::Rlimit]) -> Result<(), String> {
    for l in limits {
        let res = rlimit_resource(&l.kind)
            .ok_or_else(|| format!("process.rlimits: unknown type {:?}", l.kind))?;
        let r = libc::rlimit {
            rlim_cur: l.soft,
            rlim_max: l.hard,
        };
        // SAFETY: setrlimit with a valid struct.
        if unsafe { libc::setrlimit(res, &r) } != 0 {
            return Err(format!(
                "process.rlimits {}: {}",
                l.kind,
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// The resource number of an OCI rlimit type.
pub fn rlimit_resource(kind: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match kind {
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_options_split_into_flags_and_data() {
        let (f, d) = mount_options(&[
            "nosuid".into(),
            "strictatime".into(),
            "mode=755".into(),
            "size=65536k".into(),
        ]);
        assert_eq!(f, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(d, "mode=755,size=65536k");
    }

    #[test]
    fn rlimit_names() {
        assert_eq!(rlimit_resource("RLIMIT_NOFILE"), Some(libc::RLIMIT_NOFILE));
        assert_eq!(rlimit_resource("NOFILE"), None);
    }
}
