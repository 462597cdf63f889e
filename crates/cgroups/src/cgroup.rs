//! The cgroups of a live process.
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use crate::layout::mount_point;
use crate::stats::Stats;
use crate::{Error, Result};

/// The hierarchy a setting is written on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// A v1 hierarchy: the controller is the file's prefix (`memory.` ...).
    V1,
    /// The unified hierarchy.
    V2,
}

/// The cgroups of process `pid` (a container's init). Nothing is cached:
/// every call reads /proc/PID/cgroup and /proc/self/mountinfo afresh, so a
/// handle stays right for as long as the process lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cgroup {
    pid: i32,
}

impl Cgroup {
    pub fn of_pid(pid: i32) -> Self {
        Self { pid }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The cgroup path of the process, relative to the hierarchy's root, as
    /// in /proc/PID/cgroup: for a v1 controller (e.g. "freezer") or, with
    /// `None`, on the unified hierarchy.
    pub fn relative_path(&self, controller: Option<&str>) -> Option<String> {
        let s = fs::read_to_string(format!("/proc/{}/cgroup", self.pid)).ok()?;
        for line in s.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            match controller {
                None if ctrls.is_empty() => return Some(path.to_string()),
                Some(c) if ctrls.split(',').any(|x| x == c) => return Some(path.to_string()),
                _ => {}
            }
        }
        None
    }

    /// The directory of the process's cgroup for a v1 controller, or on the
    /// unified hierarchy with `None`.
    pub fn dir(&self, controller: Option<&str>) -> Option<PathBuf> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
        let rel = self.relative_path(controller)?;
        let mnt = mount_point(&mountinfo, controller.unwrap_or(""))?;
        Some(PathBuf::from(format!("{mnt}{rel}")))
    }

    /// Pids in the cgroup (from the v1 pids or freezer hierarchy, or the
    /// unified one); just the process itself if none can be read.
    pub fn pids(&self) -> Vec<i32> {
        for ctrl in [Some("pids"), Some("freezer"), None] {
            let Some(d) = self.dir(ctrl) else {
                continue;
            };
            if let Ok(s) = fs::read_to_string(d.join("cgroup.procs")) {
                return s.lines().filter_map(|l| l.trim().parse().ok()).collect();
            }
        }
        vec![self.pid]
    }

    /// Frozen by the v1 freezer or cgroup v2's cgroup.freeze.
    pub fn is_frozen(&self) -> bool {
        if let Some(d) = self.dir(Some("freezer")) {
            return fs::read_to_string(d.join("freezer.state"))
                .map(|s| s.trim() == "FROZEN")
                .unwrap_or(false);
        }
        if let Some(d) = self.dir(None) {
            if let Ok(s) = fs::read_to_string(d.join("cgroup.freeze")) {
                return s.trim() == "1";
            }
        }
        false
    }

    pub fn freeze(&self) -> Result<()> {
        self.set_frozen(true)
    }

    pub fn thaw(&self) -> Result<()> {
        self.set_frozen(false)
    }

    /// Freeze or thaw, and wait (up to about a second) until the kernel
    /// reports it done.
    pub fn set_frozen(&self, on: bool) -> Result<()> {
        let (file, done) = if let Some(d) = self.dir(Some("freezer")) {
            (
                d.join("freezer.state"),
                if on { "FROZEN" } else { "THAWED" },
            )
        } else if let Some(d) = self.dir(None) {
            (d.join("cgroup.freeze"), if on { "1" } else { "0" })
        } else {
            return Err(Error::NoFreezer);
        };
        fs::write(&file, done).map_err(|source| Error::Io {
            context: format!("writing {}", file.display()),
            source,
        })?;
        for _ in 0..500 {
            if fs::read_to_string(&file)
                .map(|s| s.trim() == done)
                .unwrap_or(false)
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Err(Error::FreezeTimeout { file, state: done })
    }

    /// Write one setting. `key` names the file as LXC's config does:
    /// `lxc.cgroup.<controller>.<file>` (v1) or `lxc.cgroup2.<file>` (v2).
    pub fn set(&self, key: &str, value: &str) -> Result<()> {
        let (version, file) = if let Some(file) = key.strip_prefix("lxc.cgroup2.") {
            (Version::V2, file)
        } else if let Some(file) = key.strip_prefix("lxc.cgroup.") {
            (Version::V1, file)
        } else {
            return Err(Error::NotASetting(key.to_string()));
        };
        self.set_file(version, file, value)
    }

    /// Write `value` to `file` of the process's cgroup on the `version`
    /// hierarchy (on v1, the controller's: the file's first component).
    pub fn set_file(&self, version: Version, file: &str, value: &str) -> Result<()> {
        let dir = match version {
            Version::V2 => self.dir(None),
            Version::V1 => self.dir(Some(file.split('.').next().unwrap_or_default())),
        };
        let dir = dir.ok_or(Error::NotFound)?;
        // Defence in depth: the file name comes from our own translation.
        if file.contains('/') || file.contains("..") {
            return Err(Error::BadFile(file.to_string()));
        }
        let path = dir.join(file);
        fs::write(&path, value).map_err(|source| Error::Io {
            context: path.display().to_string(),
            source,
        })
    }

    /// The memory cgroup's directory (v1 memory controller, else unified):
    /// kept by a caller that must read it after the process is gone.
    pub fn memory_dir(&self) -> Option<PathBuf> {
        self.dir(Some("memory")).or_else(|| self.dir(None))
    }

    /// Processes the kernel's OOM killer killed in the memory cgroup at
    /// `dir` (`oom_kill` of v1's memory.oom_control or v2's memory.events).
    pub fn oom_kills(dir: &std::path::Path) -> Option<u64> {
        ["memory.oom_control", "memory.events"]
            .iter()
            .find_map(|f| {
                fs::read_to_string(dir.join(f)).ok()?.lines().find_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse().ok())
                })
            })
    }

    /// Stats in runc's `events --stats` shape, from v1 or v2 files.
    pub fn stats(&self) -> Stats {
        Stats::read(|c| self.dir(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Cgroup {
        Cgroup::of_pid(std::process::id() as i32)
    }

    #[test]
    fn own_cgroup_holds_own_pid() {
        let cg = me();
        assert!(cg.relative_path(None).is_some() || cg.relative_path(Some("pids")).is_some());
        assert!(cg.pids().contains(&cg.pid()));
        assert!(!cg.is_frozen());
    }

    #[test]
    fn a_gone_process_has_only_itself() {
        let cg = Cgroup::of_pid(i32::MAX);
        assert_eq!(cg.dir(None), None);
        assert_eq!(cg.pids(), vec![i32::MAX]);
        assert!(!cg.is_frozen());
        assert!(matches!(cg.freeze(), Err(Error::NoFreezer)));
        assert_eq!(
            cg.set("lxc.cgroup2.memory.max", "1")
                .unwrap_err()
                .to_string(),
            "cgroup of the container not found"
        );
    }

    #[test]
    fn settings_are_checked() {
        let cg = me();
        assert_eq!(
            cg.set("lxc.rootfs.path", "x").unwrap_err().to_string(),
            "not a cgroup setting: lxc.rootfs.path"
        );
        // Our own cgroup exists on some hierarchy; the name is refused
        // before anything is written.
        let key = if cg.dir(None).is_some() {
            "lxc.cgroup2.memory.../../x"
        } else {
            "lxc.cgroup.memory.../../x"
        };
        assert_eq!(
            cg.set(key, "1").unwrap_err().to_string(),
            "bad cgroup file \"memory.../../x\""
        );
    }
}
