//! The protocol every engine shares with the container's init: the exchange
//! directory (bind-mounted into the container), its FIFOs and files, the
//! monitor's first steps and exit status, release on `start`, signals, and
//! the mount hook that runs createContainer hooks.
//!
//! ```text
//! <container dir>/exchange/   (or a symlink to it, for a mapped root)
//!   init.json    what the init does (InitConfig)       runtime -> init
//!   ready        "ok" / "hooks" / "error: ..."          init    -> create
//!   start        one byte releases the process          start   -> init
//!   started      "ok" / "error: ..."                    init    -> start
//!   hooks-done   answer to the mount hook               create  -> hook
//!   exit         the process's exit status (JSON)       init    -> monitor
//!   killed       the signal the runtime killed it with  runtime -> monitor
//! ```
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{mkfifo, Pid};
use proxmox_lxcri_lxc::init_config::{
    ExitStatus, InitConfig, FIFO_READY, FIFO_START, FIFO_STARTED, FILE_EXIT, FILE_INIT_CONFIG,
};

use crate::error::{Context, Error, Result};
use crate::proc::{self, ProcRef};
use crate::state::write_replace;

/// Marker the runtime writes before SIGKILLing the init, so the monitor can
/// report 137 although the init could not write its exit file.
pub(crate) const FILE_KILLED: &str = "killed";

/// Paths of one container's engine files.
#[derive(Debug, Clone)]
pub struct Paths {
    /// lxcpath for LXC (the container directory).
    pub lxcpath: PathBuf,
    pub name: String,
    pub exchange: PathBuf,
    pub log: PathBuf,
}

impl Paths {
    pub fn new(container_dir: &Path, id: &str) -> Self {
        Paths {
            lxcpath: container_dir.to_path_buf(),
            name: id.to_string(),
            exchange: container_dir.join("exchange"),
            log: container_dir.join("lxc.log"),
        }
    }
    /// The LXC config file of the lxc engine (`<lxcpath>/<name>/config`).
    pub fn config_file(&self) -> PathBuf {
        self.lxcpath.join(&self.name).join("config")
    }
}

/// Write the init config and make the exchange FIFOs.
pub fn prepare(paths: &Paths, init: &InitConfig) -> Result<()> {
    fs::create_dir_all(&paths.exchange).ctx(|| format!("creating {}", paths.exchange.display()))?;
    for fifo in [FIFO_READY, FIFO_START, FIFO_STARTED, FIFO_HOOKS_DONE] {
        let p = paths.exchange.join(fifo);
        mkfifo(&p, Mode::from_bits_truncate(0o600)).ctx(|| format!("mkfifo {}", p.display()))?;
    }
    File::create(paths.exchange.join(FILE_EXIT)).ctx(|| "creating the exit file".to_string())?;
    let json = serde_json::to_vec(init).expect("init config serializes");
    let p = paths.exchange.join(FILE_INIT_CONFIG);
    write_replace(&p, &json)?;
    // It holds the process's environment (often secrets): the container's
    // root only (the runtime chowns it for user namespaces).
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600))
        .ctx(|| format!("chmod {}", p.display()))
}

/// Open a FIFO's read side without blocking (no writer needed yet).
pub fn open_fifo_reader(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .ctx(|| format!("opening {}", path.display()))
}

/// First steps of a freshly forked monitor (both engines): its own session
/// (a terminal's ^C or hangup must not reach it, and the container outlives
/// the command that created it), `stdio` on 0-2 if given, `keep` moved to fd
/// 3, every other inherited fd closed (in particular the container lock),
/// and the usual terminal signals ignored.
pub(crate) fn detach_monitor(stdio: Option<i32>, keep: Option<i32>) {
    let _ = nix::unistd::setsid();
    // SAFETY: fd juggling in a fresh child; nothing else owns these fds.
    unsafe {
        if let Some(fd) = stdio {
            libc::dup2(fd, 0);
            libc::dup2(fd, 1);
            libc::dup2(fd, 2);
        }
        let first_closed = match keep {
            Some(fd) => {
                libc::dup2(fd, 3);
                4u32
            }
            None => 3u32,
        };
        libc::syscall(libc::SYS_close_range, first_closed, u32::MAX, 0u32);
        for s in [libc::SIGINT, libc::SIGHUP, libc::SIGPIPE, libc::SIGQUIT] {
            libc::signal(s, libc::SIG_IGN);
        }
    }
}

/// Record-before-act for a process we fork: the child waits at the gate
/// until the parent has recorded its pid. If the parent dies first, the
/// pipe closes without a byte and the child leaves having done nothing.
pub(crate) struct Gate {
    read: OwnedFd,
    write: OwnedFd,
}

impl Gate {
    pub fn new() -> Result<Gate> {
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "making a pipe".to_string())?;
        Ok(Gate { read, write })
    }

    /// In the child, first thing after fork: true once the parent opens
    /// the gate, false if it died (or gave up) before.
    pub fn pass(self) -> bool {
        drop(self.write);
        let mut b = [0u8; 1];
        loop {
            match nix::unistd::read(self.read.as_raw_fd(), &mut b) {
                Ok(1) => return true,
                Err(nix::Error::EINTR) => continue,
                _ => return false,
            }
        }
    }

    /// In the parent, once the child is recorded.
    pub fn open(self) -> Result<()> {
        drop(self.read);
        nix::unistd::write(&self.write, b"1").ctx(|| "opening the gate".to_string())?;
        Ok(())
    }
}

/// The container's exit status in shell form, once it is known.
pub fn exit_code(exchange: &Path) -> Option<i32> {
    if let Ok(text) = fs::read_to_string(exchange.join(FILE_EXIT)) {
        if let Ok(st) = serde_json::from_str::<ExitStatus>(text.trim()) {
            return Some(st.shell_code());
        }
    }
    let killed = fs::read_to_string(exchange.join(FILE_KILLED)).ok()?;
    killed.trim().parse::<i32>().ok().map(|s| 128 + s)
}

/// Read one status line ("ok" / "error: ...") from a FIFO, while `alive`
/// says the other side can still answer.
pub fn read_status_line(
    fifo: &mut File,
    deadline: Instant,
    alive: impl FnMut() -> bool,
) -> std::result::Result<String, String> {
    read_status(fifo, deadline, alive).map(|(line, _)| line)
}

/// [`read_status_line`], and what came after the line in the same read.
fn read_status(
    fifo: &mut File,
    deadline: Instant,
    mut alive: impl FnMut() -> bool,
) -> std::result::Result<(String, Vec<u8>), String> {
    let mut buf = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timed out waiting for the container init".into());
        }
        let ms = left.as_millis().min(20) as u16;
        let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) | Err(nix::Error::EINTR) => {}
            Ok(_) => {
                let mut chunk = [0u8; 4096];
                match fifo.read(&mut chunk) {
                    Ok(0) => {
                        // Writer closed. A complete line was handled below;
                        // no line at all means the init died mid-way.
                        if buf.is_empty() && !alive() {
                            return Err("the container init exited".into());
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(format!("reading status: {e}")),
                }
                if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    return Ok(split_line(&buf, pos));
                }
            }
            Err(e) => return Err(format!("poll: {e}")),
        }
        if !alive() {
            // One last look: the line may have arrived just before the end.
            let mut chunk = [0u8; 4096];
            if let Ok(n) = fifo.read(&mut chunk) {
                buf.extend_from_slice(&chunk[..n]);
            }
            if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                return Ok(split_line(&buf, pos));
            }
            return Err("the container init exited".into());
        }
    }
}

fn split_line(buf: &[u8], pos: usize) -> (String, Vec<u8>) {
    (
        String::from_utf8_lossy(&buf[..pos]).into_owned(),
        buf[pos + 1..].to_vec(),
    )
}

/// True while our child `pid` has not exited (reaps it when it has).
pub fn child_running(pid: Pid) -> bool {
    matches!(
        waitpid(pid, Some(WaitPidFlag::WNOHANG)),
        Ok(WaitStatus::StillAlive)
    )
}

/// Release a created container: one byte on `start`, then the init's answer
/// on `started`.
pub fn release(paths: &Paths, init: &ProcRef, timeout: Duration) -> Result<()> {
    let fail = |reason: String| Error::Start {
        id: paths.name.clone(),
        reason,
    };
    let mut started = open_fifo_reader(&paths.exchange.join(FIFO_STARTED))?;
    let start_path = paths.exchange.join(FIFO_START);
    let mut start = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&start_path)
        .map_err(|e| fail(format!("the container init is not waiting for start ({e})")))?;
    std::io::Write::write_all(&mut start, b"1")
        .map_err(|e| fail(format!("signalling start: {e}")))?;
    drop(start);
    let deadline = Instant::now() + timeout;
    let (line, rest) =
        read_status(&mut started, deadline, || proc::is_alive(init)).map_err(fail)?;
    match line.strip_prefix("error: ") {
        None if line == "ok" => Ok(()),
        // The init becomes the process: `started` closes on a successful
        // exec, or carries why it failed.
        None if line == "exec" => match read_after_exec(&mut started, rest, deadline) {
            None => Ok(()),
            Some(msg) => Err(fail(msg)),
        },
        Some(msg) => Err(fail(msg.to_string())),
        None => Err(fail(format!("unexpected answer from init: {line:?}"))),
    }
}

/// After `exec`: None once the FIFO's writer has closed (the exec
/// succeeded), or the error the init wrote before it gave up.
fn read_after_exec(fifo: &mut File, mut buf: Vec<u8>, deadline: Instant) -> Option<String> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Some("timed out waiting for the container process to exec".into());
        }
        let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        let ms = left.as_millis().min(100) as u16;
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) | Err(nix::Error::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Some(format!("poll: {e}")),
        }
        let mut chunk = [0u8; 4096];
        match fifo.read(&mut chunk) {
            // The writer existed (it wrote `exec`), so EOF means it closed.
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Some(format!("reading status: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&buf);
    text.lines()
        .find_map(|l| l.strip_prefix("error: "))
        .map(str::to_string)
}

/// Signal the container init; SIGKILL is recorded so the exit status is 137.
pub fn signal_init(paths: &Paths, init: &ProcRef, sig: Signal) -> Result<()> {
    // A process that already ended keeps the status it ended with.
    if !proc::is_alive(init) {
        return Ok(());
    }
    if sig == Signal::SIGKILL {
        let _ = fs::write(paths.exchange.join(FILE_KILLED), (sig as i32).to_string());
    }
    match kill(Pid::from_raw(init.pid), sig) {
        Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
        Err(e) => Err(e).ctx(|| format!("sending {sig} to pid {}", init.pid)),
    }
}

/// Hidden command LXC runs as `lxc.hook.mount` when the spec has
/// create-phase hooks. See [`mount_hook_main`].
pub const MOUNT_HOOK_ARG: &str = "__lxc-mount-hook";
/// FIFO through which create answers the mount hook.
pub const FIFO_HOOKS_DONE: &str = "hooks-done";
/// Hooks to run at the mount hook (createContainer), with their state.
pub const FILE_CREATE_CONTAINER: &str = "create-container.json";
/// Why the mount hook failed, for create's error message.
pub const FILE_HOOK_ERROR: &str = "hook-error";

/// What create hands to the mount hook.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct CreateContainerHooks {
    pub hooks: Vec<oci_spec::runtime::Hook>,
    pub state: serde_json::Value,
    pub log_dir: PathBuf,
}

/// The `lxc.hook.mount` line: LXC runs it through `sh -c` and appends the
/// container name, section and hook type, so every part must be a plain word.
pub fn mount_hook_line(exe: &Path, exchange: &Path) -> Result<String> {
    let plain = |p: &Path| {
        p.to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._+-".contains(&b)))
            .map(str::to_string)
            .ok_or_else(|| {
                Error::Spec(format!(
                    "path {} has characters that cannot go into an LXC hook line; use a --root and binary path of letters, digits and /._+-",
                    p.display()
                ))
            })
    };
    Ok(format!(
        "{} {MOUNT_HOOK_ARG} {}",
        plain(exe)?,
        plain(exchange)?
    ))
}

/// Runs inside LXC's container setup, after the container's mounts and
/// before pivot_root: in the container's namespaces with the host's root
/// still visible, which is where createContainer hooks belong. First it lets
/// `create` run prestart and createRuntime (runtime namespaces, before
/// createContainer as the spec orders them), then runs createContainer.
pub fn mount_hook_main(exchange: &Path) -> i32 {
    let fail = |msg: String| {
        let _ = fs::write(exchange.join(FILE_HOOK_ERROR), &msg);
        1
    };
    let mut done = match open_fifo_reader(&exchange.join(FIFO_HOOKS_DONE)) {
        Ok(f) => f,
        Err(e) => return fail(e.to_string()),
    };
    let ready = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(exchange.join(FIFO_READY));
    match ready {
        Ok(mut f) => {
            if let Err(e) = std::io::Write::write_all(&mut f, b"hooks\n") {
                return fail(format!("asking create to run hooks: {e}"));
            }
        }
        Err(e) => return fail(format!("create is not waiting: {e}")),
    }
    // create answers after prestart/createRuntime; no deadline of our own:
    // those hooks have theirs, and create kills us if it gives up.
    let answer = read_status_line(
        &mut done,
        Instant::now() + Duration::from_secs(24 * 3600),
        || true,
    );
    match answer.as_deref() {
        Ok("ok") => {}
        Ok(other) => return fail(other.strip_prefix("error: ").unwrap_or(other).to_string()),
        Err(e) => return fail(e.clone()),
    }
    let spec: CreateContainerHooks = match fs::read(exchange.join(FILE_CREATE_CONTAINER))
        .map_err(|e| e.to_string())
        .and_then(|d| serde_json::from_slice(&d).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => return fail(format!("reading createContainer hooks: {e}")),
    };
    let json = serde_json::to_vec(&spec.state).unwrap_or_default();
    match crate::hooks::run_all(
        "createContainer",
        &spec.hooks,
        &json,
        crate::hooks::Place::Runtime,
        &spec.log_dir,
    ) {
        Ok(()) => 0,
        Err(e) => fail(e.to_string()),
    }
}

/// Reply to the mount hook.
pub fn answer_mount_hook(paths: &Paths, answer: &str) -> Result<()> {
    let p = paths.exchange.join(FIFO_HOOKS_DONE);
    let mut f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&p)
        .ctx(|| format!("opening {}", p.display()))?;
    std::io::Write::write_all(&mut f, format!("{answer}\n").as_bytes())
        .ctx(|| "answering the mount hook".into())
}

/// The exchange directory of a container whose init runs as a mapped root
/// (a user namespace; every unprivileged Proxmox CT) lives under `base`,
/// traversable by that root, which LXC's bind mount of it runs as (a runtime
/// root such as containerd's `/run/containerd/runc` is not), with
/// `<container dir>/exchange` a symlink to it. Returns its real path.
pub fn make_exchange(base: &Path, root: &Path, id: &str, link: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    // FNV-1a of root and id: unique per container, short, no id in the path.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in root
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .chain(b"\0")
        .chain(id.as_bytes())
    {
        h = (h ^ *b as u64).wrapping_mul(0x100000001b3);
    }
    let mut p = PathBuf::from("/");
    for c in base.components().skip(1) {
        p.push(c);
        match fs::create_dir(&p) {
            // Made here: traversable, not listable.
            Ok(()) => fs::set_permissions(&p, fs::Permissions::from_mode(0o711))
                .ctx(|| format!("chmod {}", p.display()))?,
            // Concurrent creates race here; one of them makes it.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).ctx(|| format!("creating {}", p.display())),
        }
    }
    let dir = base.join(format!("{h:016x}"));
    // The link first: a crash right after leaves a dir that delete and gc
    // find through the container's own directory.
    std::os::unix::fs::symlink(&dir, link).ctx(|| format!("linking {}", link.display()))?;
    match fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // A crashed create of the same container: start afresh.
            fs::remove_dir_all(&dir).ctx(|| format!("removing {}", dir.display()))?;
            fs::create_dir(&dir).ctx(|| format!("creating {}", dir.display()))?;
        }
        Err(e) => return Err(e).ctx(|| format!("creating {}", dir.display())),
    }
    // Only the container's root may look inside (init.json holds the
    // process's environment).
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
        .ctx(|| format!("chmod {}", dir.display()))?;
    Ok(dir)
}

/// Remove the exchange directory behind `<container dir>/exchange`.
pub fn remove_exchange(container_dir: &Path) {
    if let Ok(target) = fs::read_link(container_dir.join("exchange")) {
        // A pod's exchange dir holds its members' rootfs and bind mounts:
        // unmounted first, so removing it never reaches into them.
        if unmount_all_under(&target).is_ok() {
            let _ = fs::remove_dir_all(target);
        }
    }
}

/// The mount points at or under `dir` in our mountinfo, deepest first.
fn mount_points_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(mi) = fs::read_to_string("/proc/self/mountinfo") else {
        return vec![];
    };
    let mut out: Vec<PathBuf> = mi
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|p| p.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
pub(crate) fn unescape_mountinfo(s: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(n) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(n);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Unmount everything at or under `dir` (deepest first, lazily: a process
/// that still holds a mount cannot keep it on the node).
pub fn unmount_all_under(dir: &Path) -> Result<()> {
    for _ in 0..3 {
        let mps = mount_points_under(dir);
        if mps.is_empty() {
            return Ok(());
        }
        for mp in mps {
            let _ = nix::mount::umount2(&mp, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    match mount_points_under(dir).first() {
        None => Ok(()),
        Some(mp) => Err(crate::Error::Guest(format!(
            "{} is still mounted",
            mp.display()
        ))),
    }
}

/// Give the exchange directory to the container's root (user namespaces).
pub fn chown_exchange(dir: &Path, uid: u32, gid: u32) -> Result<()> {
    for e in std::iter::once(dir.to_path_buf()).chain(
        fs::read_dir(dir)
            .ctx(|| format!("reading {}", dir.display()))?
            .flatten()
            .map(|e| e.path()),
    ) {
        std::os::unix::fs::lchown(&e, Some(uid), Some(gid))
            .ctx(|| format!("chown {}", e.display()))?;
    }
    Ok(())
}
