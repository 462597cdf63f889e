//! OCI hooks run by the runtime itself: prestart, createRuntime and
//! poststart, poststop (runtime namespaces) and createContainer (in the
//! container's namespaces, path resolved in ours). startContainer hooks run
//! inside the container, by its init (proxmox_lxcri_lxc::init).
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::Hook;

use crate::error::{Error, Result};

/// Where a hook runs.
#[derive(Debug, Clone, Copy)]
pub enum Place {
    /// The runtime's own namespaces.
    Runtime,
    /// The namespaces of this (host) pid, except the pid namespace.
    Container(i32),
}

/// Run hooks in order; the first failure stops and is returned.
pub fn run_all(
    kind: &str,
    hooks: &[Hook],
    state_json: &[u8],
    place: Place,
    log_dir: &Path,
) -> Result<()> {
    for (i, hook) in hooks.iter().enumerate() {
        run_one(kind, i, hook, state_json, place, log_dir)?;
    }
    Ok(())
}

fn run_one(
    kind: &str,
    index: usize,
    hook: &Hook,
    state_json: &[u8],
    place: Place,
    log_dir: &Path,
) -> Result<()> {
    let path = hook.path();
    let fail = |what: String| Error::Hook(format!("{kind} hook {}: {what}", path.display()));
    if let Some(t) = hook.timeout() {
        if t <= 0 {
            return Err(fail(format!("timeout must be > 0, got {t}")));
        }
    }
    let cstr = |s: &str, what: &str| {
        CString::new(s).map_err(|_| fail(format!("{what} contains a NUL byte")))
    };
    let args: Vec<CString> = match hook.args() {
        Some(a) if !a.is_empty() => a.iter().map(|s| cstr(s, "args")).collect::<Result<_>>()?,
        _ => vec![cstr(&path.to_string_lossy(), "path")?],
    };
    let env: Vec<CString> = hook
        .env()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|s| cstr(s, "env"))
        .collect::<Result<_>>()?;

    // Resolve the executable in our mount namespace, before any setns.
    let exe = File::open(path).map_err(|e| fail(format!("cannot open: {e}")))?;
    let _ = fs::create_dir_all(log_dir);
    let log_path = log_dir.join(format!("{kind}.{index}.log"));
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| fail(format!("cannot open {}: {e}", log_path.display())))?;
    let ns_fds = match place {
        Place::Runtime => vec![],
        Place::Container(pid) => container_namespaces(pid).map_err(&fail)?,
    };
    // Built before fork: the child must not allocate.
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    let (stdin_r, stdin_w) = nix::unistd::pipe().map_err(|e| fail(format!("pipe: {e}")))?;

    // SAFETY: the child only makes async-signal-safe calls (setns, dup2,
    // fcntl, execveat, _exit) and touches no allocator.
    let child = match unsafe { fork() }.map_err(|e| fail(format!("fork: {e}")))? {
        ForkResult::Child => {
            drop(stdin_w);
            for (fd, nstype) in &ns_fds {
                if nix::sched::setns(fd, *nstype).is_err() {
                    unsafe { libc::_exit(126) };
                }
            }
            unsafe {
                libc::dup2(stdin_r.as_raw_fd(), 0);
                libc::dup2(log.as_raw_fd(), 1);
                libc::dup2(log.as_raw_fd(), 2);
                // Keep the executable's fd open across exec: a script's
                // interpreter opens it through /dev/fd.
                let fd = exe.as_raw_fd();
                let flags = libc::fcntl(fd, libc::F_GETFD);
                libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
                libc::syscall(
                    libc::SYS_execveat,
                    fd,
                    c"".as_ptr(),
                    argv.as_ptr(),
                    envp.as_ptr(),
                    libc::AT_EMPTY_PATH,
                );
                libc::_exit(127);
            }
        }
        ForkResult::Parent { child } => child,
    };
    drop(stdin_r);
    drop(ns_fds);
    // A hook may not read its stdin; a failed write must not fail the hook.
    {
        let mut w = File::from(stdin_w);
        let _ = w.write_all(state_json);
    }
    let timeout = hook.timeout().map(|t| Duration::from_secs(t as u64));
    let status = wait_with_timeout(child, timeout).map_err(&fail)?;
    match status {
        WaitStatus::Exited(_, 0) => Ok(()),
        other => {
            let mut out = String::new();
            let _ = File::open(&log_path).and_then(|mut f| f.read_to_string(&mut out));
            let tail: String = out
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("; ");
            let how = match other {
                WaitStatus::Exited(_, 126) if matches!(place, Place::Container(_)) => {
                    "could not enter the container's namespaces".to_string()
                }
                WaitStatus::Exited(_, 127) => "could not be executed".to_string(),
                WaitStatus::Exited(_, c) => format!("exited with status {c}"),
                WaitStatus::Signaled(_, s, _) => format!("killed by {s}"),
                o => format!("ended: {o:?}"),
            };
            Err(fail(if tail.is_empty() {
                how
            } else {
                format!("{how}: {tail}")
            }))
        }
    }
}

fn wait_with_timeout(
    child: Pid,
    timeout: Option<Duration>,
) -> std::result::Result<WaitStatus, String> {
    let start = Instant::now();
    let mut nap = Duration::from_millis(1);
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(s) => return Ok(s),
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(format!("waiting: {e}")),
        }
        if let Some(t) = timeout {
            if start.elapsed() >= t {
                let _ = kill(child, Signal::SIGKILL);
                let _ = waitpid(child, None);
                return Err(format!(
                    "hook ran past specified timeout of {} seconds",
                    t.as_secs()
                ));
            }
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    }
}

/// Open the namespaces of `pid` that differ from ours (pid and user
/// namespaces excluded: setns into a pid namespace only affects children).
fn container_namespaces(
    pid: i32,
) -> std::result::Result<Vec<(OwnedFd, nix::sched::CloneFlags)>, String> {
    use nix::sched::CloneFlags as F;
    let mut out = vec![];
    for (name, flag) in [
        ("ipc", F::CLONE_NEWIPC),
        ("uts", F::CLONE_NEWUTS),
        ("net", F::CLONE_NEWNET),
        ("cgroup", F::CLONE_NEWCGROUP),
        ("mnt", F::CLONE_NEWNS),
    ] {
        let theirs = format!("/proc/{pid}/ns/{name}");
        let ours = format!("/proc/self/ns/{name}");
        let (Ok(a), Ok(b)) = (fs::metadata(&theirs), fs::metadata(&ours)) else {
            return Err(format!("cannot read {theirs}"));
        };
        if a.ino() == b.ino() && a.dev() == b.dev() {
            continue;
        }
        let f = File::open(&theirs).map_err(|e| format!("cannot open {theirs}: {e}"))?;
        // SAFETY: into_raw_fd hands over ownership.
        let fd = unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(f)) };
        out.push((fd, flag));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::HookBuilder;

    fn hook(script: &str, timeout: Option<i64>) -> Hook {
        let mut b = HookBuilder::default()
            .path("/bin/sh")
            .args(vec!["sh".to_string(), "-c".to_string(), script.to_string()])
            .env(vec!["HOOKVAR=x".to_string()]);
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        b.build().unwrap()
    }

    #[test]
    fn hooks_get_state_on_stdin_env_and_run_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let o = out.display();
        let hooks = vec![
            hook(&format!("cat > {o}.1; echo $HOOKVAR >> {o}.1"), Some(5)),
            hook(&format!("test -f {o}.1 && echo second > {o}.2"), None),
        ];
        run_all(
            "prestart",
            &hooks,
            br#"{"id":"c"}"#,
            Place::Runtime,
            tmp.path(),
        )
        .unwrap();
        assert_eq!(
            fs::read_to_string(format!("{o}.1")).unwrap(),
            "{\"id\":\"c\"}x\n"
        );
        assert_eq!(fs::read_to_string(format!("{o}.2")).unwrap(), "second\n");
    }

    #[test]
    fn failure_and_timeout_are_errors_with_output() {
        let tmp = tempfile::tempdir().unwrap();
        let err = run_all(
            "poststart",
            &[hook("echo boom >&2; exit 3", None)],
            b"{}",
            Place::Runtime,
            tmp.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("exited with status 3") && err.contains("boom"),
            "{err}"
        );
        let t = Instant::now();
        let err = run_all(
            "prestart",
            &[hook("sleep 10", Some(1))],
            b"{}",
            Place::Runtime,
            tmp.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("hook ran past specified timeout of 1 seconds"),
            "{err}"
        );
        assert!(t.elapsed() < Duration::from_secs(5));
        let err = run_all(
            "prestart",
            &[hook("true", Some(0))],
            b"{}",
            Place::Runtime,
            tmp.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("timeout must be > 0"), "{err}");
    }
}
