//! Which controllers are where on this host.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Controllers a v1 hierarchy can carry (the names in mount options).
const V1_CONTROLLERS: [&str; 13] = [
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
];

/// Which controllers are on cgroup v1 hierarchies and which on the unified
/// (v2) one, and where the unified hierarchy is mounted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CgroupLayout {
    v1: BTreeSet<String>,
    v2: BTreeSet<String>,
    /// Mount point of the unified hierarchy: `/sys/fs/cgroup` (pure v2) or
    /// `/sys/fs/cgroup/unified` (hybrid); None when there is none.
    unified_mount: Option<PathBuf>,
}

/// The kind of host, by its cgroup mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only v1 hierarchies.
    V1,
    /// v1 hierarchies plus the unified one (usually at /sys/fs/cgroup/unified).
    Hybrid,
    /// Only the unified hierarchy, at /sys/fs/cgroup.
    V2,
}

impl CgroupLayout {
    /// Reads /proc/self/mountinfo (cgroup mounts under /sys/fs/cgroup) and
    /// the unified hierarchy's cgroup.controllers.
    pub fn detect() -> Result<Self> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| Error::Detect(format!("reading /proc/self/mountinfo: {e}")))?;
        let mut layout = Self::from_mountinfo(&mountinfo);
        if let Some(m) = &layout.unified_mount {
            let p = m.join("cgroup.controllers");
            let c = std::fs::read_to_string(&p)
                .map_err(|e| Error::Detect(format!("reading {}: {e}", p.display())))?;
            layout.v2 = c.split_whitespace().map(str::to_string).collect();
        }
        if layout.v1.is_empty() && layout.unified_mount.is_none() {
            return Err(Error::Detect(
                "no cgroup hierarchy is mounted under /sys/fs/cgroup".to_string(),
            ));
        }
        Ok(layout)
    }

    /// The v1 part and the unified mount point from mountinfo text (the v2
    /// controllers come from cgroup.controllers, see [`Self::detect`]).
    pub fn from_mountinfo(mountinfo: &str) -> Self {
        let mut layout = Self::default();
        for line in mountinfo.lines() {
            // "36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices"
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mount_point) = pre.split(' ').nth(4) else {
                continue;
            };
            if !(mount_point == "/sys/fs/cgroup" || mount_point.starts_with("/sys/fs/cgroup/")) {
                continue;
            }
            let mut post = post.split(' ');
            let fstype = post.next().unwrap_or("");
            let _source = post.next();
            let superopts = post.next().unwrap_or("");
            match fstype {
                "cgroup" => {
                    for o in superopts.split(',') {
                        if V1_CONTROLLERS.contains(&o) {
                            layout.v1.insert(o.to_string());
                        }
                    }
                }
                "cgroup2" => layout.unified_mount = Some(PathBuf::from(mount_point)),
                _ => {}
            }
        }
        layout
    }

    /// Pure cgroup v1 (no unified hierarchy), for tests.
    pub fn v1(controllers: &[&str]) -> Self {
        Self {
            v1: controllers.iter().map(|s| s.to_string()).collect(),
            v2: BTreeSet::new(),
            unified_mount: None,
        }
    }

    /// Pure cgroup v2 (unified at /sys/fs/cgroup), for tests.
    pub fn v2(controllers: &[&str]) -> Self {
        Self {
            v1: BTreeSet::new(),
            v2: controllers.iter().map(|s| s.to_string()).collect(),
            unified_mount: Some(PathBuf::from("/sys/fs/cgroup")),
        }
    }

    /// Hybrid (v1 hierarchies plus unified at /sys/fs/cgroup/unified), for tests.
    pub fn hybrid(v1: &[&str], v2: &[&str]) -> Self {
        Self {
            v1: v1.iter().map(|s| s.to_string()).collect(),
            v2: v2.iter().map(|s| s.to_string()).collect(),
            unified_mount: Some(PathBuf::from("/sys/fs/cgroup/unified")),
        }
    }

    /// Only the unified hierarchy, mounted at /sys/fs/cgroup.
    pub fn is_pure_v2(&self) -> bool {
        self.v1.is_empty() && self.unified_mount.as_deref() == Some(Path::new("/sys/fs/cgroup"))
    }

    pub fn mode(&self) -> Mode {
        if self.is_pure_v2() {
            Mode::V2
        } else if self.unified_mount.is_some() {
            Mode::Hybrid
        } else {
            Mode::V1
        }
    }

    /// `controller` is on a v1 hierarchy.
    pub fn has_v1(&self, controller: &str) -> bool {
        self.v1.contains(controller)
    }

    /// `controller` is enabled on the unified hierarchy.
    pub fn has_v2(&self, controller: &str) -> bool {
        self.v2.contains(controller)
    }

    pub fn v1_controllers(&self) -> impl Iterator<Item = &str> {
        self.v1.iter().map(String::as_str)
    }

    pub fn v2_controllers(&self) -> impl Iterator<Item = &str> {
        self.v2.iter().map(String::as_str)
    }

    pub fn unified_mount(&self) -> Option<&Path> {
        self.unified_mount.as_deref()
    }
}

/// Mount point, in `mountinfo` text, of the hierarchy carrying all of the
/// comma-separated controllers `ctrls` (as in /proc/PID/cgroup, e.g.
/// `cpu,cpuacct` or `name=systemd`); `""` is the unified (v2) hierarchy.
pub fn mount_point(mountinfo: &str, ctrls: &str) -> Option<String> {
    let want: Vec<&str> = ctrls.split(',').filter(|s| !s.is_empty()).collect();
    for l in mountinfo.lines() {
        let (pre, post) = l.split_once(" - ")?;
        let mut post = post.split_whitespace();
        let fstype = post.next()?;
        let _src = post.next();
        let opts = post.next().unwrap_or("");
        let mnt = pre.split_whitespace().nth(4)?;
        match fstype {
            "cgroup2" if want.is_empty() => return Some(mnt.to_string()),
            "cgroup" if !want.is_empty() => {
                let have: Vec<&str> = opts.split(',').collect();
                if want.iter().all(|w| have.contains(w)) {
                    return Some(mnt.to_string());
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_from_mountinfo() {
        let hybrid_text = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/net_cls,net_prio rw,relatime - cgroup cgroup rw,net_cls,net_prio
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
99 23 0:50 / /other/cgroup rw - cgroup cgroup rw,pids
";
        let l = CgroupLayout::from_mountinfo(hybrid_text);
        assert_eq!(
            l.v1_controllers().collect::<Vec<_>>(),
            vec!["cpu", "cpuacct", "memory", "net_cls", "net_prio"]
        );
        assert_eq!(
            l.unified_mount(),
            Some(std::path::Path::new("/sys/fs/cgroup/unified"))
        );
        assert!(!l.is_pure_v2());
        assert_eq!(l.mode(), Mode::Hybrid);
        let v2 = CgroupLayout::from_mountinfo(
            "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        assert!(v2.v1_controllers().next().is_none());
        assert_eq!(
            v2.unified_mount(),
            Some(std::path::Path::new("/sys/fs/cgroup"))
        );
        assert_eq!(v2.mode(), Mode::V2);
        assert!(CgroupLayout::v2(&[]).is_pure_v2());
        assert_eq!(CgroupLayout::v1(&["memory"]).mode(), Mode::V1);
    }

    #[test]
    fn detect_on_this_host() {
        // Whatever the host is, detection must succeed and be self-consistent.
        let l = CgroupLayout::detect().expect("cgroups are mounted");
        assert!(l.v1_controllers().next().is_some() || l.unified_mount().is_some());
    }

    #[test]
    fn finds_cgroup_mounts() {
        let mi = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                  33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                  40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n\
                  41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(mount_point(mi, "cpu").unwrap(), "/sys/fs/cgroup/cpu");
        assert_eq!(
            mount_point(mi, "cpu,cpuacct").unwrap(),
            "/sys/fs/cgroup/cpu,cpuacct"
        );
        assert_eq!(
            mount_point(mi, "name=systemd").unwrap(),
            "/sys/fs/cgroup/systemd"
        );
        assert_eq!(mount_point(mi, "").unwrap(), "/sys/fs/cgroup/unified");
        assert!(mount_point(mi, "memory").is_none());
    }
}
