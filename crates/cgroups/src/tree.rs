//! A cgroup named by its path under every hierarchy's root (what
//! `lxc.cgroup.dir.container` names): the processes in it, killing them,
//! and removing it. The runtime owns this clean-up once no LXC monitor
//! stays behind a running container.
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::Error;

/// The mount points of every cgroup hierarchy (v1 and unified) on this
/// host, read once per process (a command walks them several times).
fn hierarchies() -> Vec<PathBuf> {
    static CACHE: std::sync::OnceLock<Vec<PathBuf>> = std::sync::OnceLock::new();
    CACHE.get_or_init(read_hierarchies).clone()
}

fn read_hierarchies() -> Vec<PathBuf> {
    let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else {
        return vec![];
    };
    let mut out: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split_whitespace().next()?;
            let mnt = pre.split_whitespace().nth(4)?;
            matches!(fstype, "cgroup" | "cgroup2").then(|| PathBuf::from(mnt))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Each hierarchy's directory of `pid`'s cgroup (host paths, as our
/// mountinfo names the hierarchies); named v1 hierarchies (name=systemd,
/// which carry no limits) only with `named`.
pub fn dirs_of(pid: i32, named: bool) -> Vec<PathBuf> {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return vec![];
    };
    let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else {
        return vec![];
    };
    let mut out = vec![];
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let mnt = match ctrls.strip_prefix("name=") {
            Some(_) if !named => continue,
            Some(_) => named_mount_point(&mountinfo, ctrls),
            None => crate::mount_point(&mountinfo, ctrls.split(',').next().unwrap_or("")),
        };
        if let Some(mnt) = mnt {
            out.push(PathBuf::from(format!("{mnt}{path}")));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The mount point of a named v1 hierarchy (`name=systemd`).
fn named_mount_point(mountinfo: &str, name: &str) -> Option<String> {
    mountinfo.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let mut post = post.split_whitespace();
        let (fstype, opts) = (post.next()?, post.nth(1)?);
        (fstype == "cgroup" && opts.split(',').any(|o| o == name))
            .then(|| pre.split_whitespace().nth(4).map(str::to_string))?
    })
}

/// `rel` as a path under a hierarchy root: relative, no `..`, no NUL.
fn checked(rel: &str) -> Result<&Path, Error> {
    let p = Path::new(rel.trim_start_matches('/'));
    let ok = !rel.contains('\0')
        && !p.as_os_str().is_empty()
        && p.components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if ok {
        Ok(p)
    } else {
        Err(Error::BadPath(rel.to_string()))
    }
}

/// Pids in the cgroup `rel` (and below it), in any hierarchy.
pub fn procs(rel: &str) -> Result<Vec<i32>, Error> {
    let rel = checked(rel)?;
    let mut pids = vec![];
    for h in hierarchies() {
        collect(&h.join(rel), &mut pids);
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

fn collect(dir: &Path, pids: &mut Vec<i32>) {
    if let Ok(s) = fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect(&e.path(), pids);
            }
        }
    }
}

/// SIGKILL every process in `rel` until none is left (a fork racing the
/// kill is caught by the next round), then remove the cgroup from every
/// hierarchy, children first. A cgroup that is not there is fine.
pub fn kill_and_remove(rel: &str, timeout: Duration) -> Result<(), Error> {
    let path = checked(rel)?;
    let deadline = Instant::now() + timeout;
    loop {
        let pids = procs(rel)?;
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            // SAFETY: kill(2) with a pid read from the cgroup.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if Instant::now() > deadline {
            return Err(Error::Busy(rel.to_string()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for h in hierarchies() {
        remove_tree(&h.join(path), deadline)?;
    }
    Ok(())
}

/// Make `rel` free for a new container, as runc does: a cgroup that holds
/// processes belongs to someone else and is refused; an empty one (left by a
/// container whose state is gone) is removed, as LXC refuses to reuse one.
pub fn claim(rel: &str) -> Result<(), Error> {
    let path = checked(rel)?;
    let pids = procs(rel)?;
    if !pids.is_empty() {
        return Err(Error::InUse {
            path: rel.to_string(),
            count: pids.len(),
        });
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for h in hierarchies() {
        remove_tree(&h.join(path), deadline)?;
    }
    Ok(())
}

/// Remove `dir` and every cgroup below it, children first.
fn remove_tree(dir: &Path, deadline: Instant) -> Result<(), Error> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Remove {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&e.path(), deadline)?;
        }
    }
    // A task that just died may still be leaving the cgroup: EBUSY a while.
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(source) => {
                return Err(Error::Remove {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked() {
        assert!(checked("proxmox-lxcri/c1").is_ok());
        assert!(checked("/kubepods/pod1/c1").is_ok());
        for bad in ["", "/", "a/../b", "..", "a\0b", "./a"] {
            assert!(checked(bad).is_err(), "{bad:?}");
        }
    }

    /// A real cgroup with a real process: killed and removed.
    #[test]
    fn kill_and_remove_a_real_cgroup() {
        if !nix::unistd::geteuid().is_root() {
            panic!("this test needs root (it makes a cgroup)");
        }
        let rel = format!("proxmox-lxcri-test/tree-{}", std::process::id());
        let mut made = vec![];
        for h in hierarchies() {
            let d = h.join(&rel);
            if fs::create_dir_all(&d).is_ok() && d.join("cgroup.procs").exists() {
                made.push(d);
            }
        }
        assert!(!made.is_empty(), "no writable cgroup hierarchy");
        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        fs::write(made[0].join("cgroup.procs"), child.id().to_string()).unwrap();
        assert_eq!(procs(&rel).unwrap(), vec![child.id() as i32]);
        kill_and_remove(&rel, Duration::from_secs(5)).unwrap();
        assert!(child.wait().unwrap().code().is_none(), "killed by a signal");
        assert!(made.iter().all(|d| !d.exists()));
        for h in hierarchies() {
            let _ = fs::remove_dir(h.join("proxmox-lxcri-test"));
        }
    }

    /// A busy cgroup is refused and left alone; an empty one is removed.
    #[test]
    fn claim_refuses_busy_and_removes_stale() {
        if !nix::unistd::geteuid().is_root() {
            panic!("this test needs root (it makes a cgroup)");
        }
        let rel = format!("proxmox-lxcri-test/claim-{}", std::process::id());
        let mut made = vec![];
        for h in hierarchies() {
            let d = h.join(&rel).join("child");
            if fs::create_dir_all(&d).is_ok() && d.join("cgroup.procs").exists() {
                made.push(d);
            }
        }
        assert!(!made.is_empty(), "no writable cgroup hierarchy");
        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        fs::write(made[0].join("cgroup.procs"), child.id().to_string()).unwrap();
        let err = claim(&rel).unwrap_err();
        assert!(matches!(err, Error::InUse { count: 1, .. }), "{err}");
        assert!(made.iter().all(|d| d.exists()), "a busy cgroup was touched");
        assert!(
            child.try_wait().unwrap().is_none(),
            "its process was touched"
        );
        let _ = child.kill();
        let _ = child.wait();
        // Now empty: a leftover, removed with its children.
        claim(&rel).unwrap();
        assert!(made.iter().all(|d| !d.parent().unwrap().exists()));
        for h in hierarchies() {
            let _ = fs::remove_dir(h.join("proxmox-lxcri-test"));
        }
    }
}
