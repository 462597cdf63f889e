//! Cgroups, as the runtime sees them: which controllers are on cgroup v1
//! hierarchies and which on the unified (v2) one ([`CgroupLayout`]), and the
//! cgroups of a live process ([`Cgroup`]): their directories, the pids in
//! them, the freezer, writing a setting, and stats in runc's
//! `events --stats` shape ([`Stats`]).
//!
//! Hosts may be pure v1, pure v2, or hybrid (v1 hierarchies plus the unified
//! one at `/sys/fs/cgroup/unified`): every lookup tries the v1 controller
//! first and falls back to the unified hierarchy, as the kernel places a
//! controller on at most one of them.
mod cgroup;
mod layout;
mod stats;
pub mod tree;

pub use cgroup::{Cgroup, Version};
pub use layout::{mount_point, CgroupLayout, Mode};
pub use stats::{
    Blkio, Cpu, CpuUsage, Memory, MemoryUsage, MemoryUsageV1, Pids, Stats, Throttling,
};

/// What went wrong with a cgroup operation. The messages are what the
/// runtime shows the user.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the host's cgroup layout failed.
    #[error("cgroup layout detection: {0}")]
    Detect(String),
    /// Neither a v1 freezer hierarchy nor a unified one holds the process.
    #[error("no freezer: neither a v1 freezer nor a cgroup v2 hierarchy")]
    NoFreezer,
    /// The freezer did not reach the asked state in time.
    #[error("{} did not reach {state}", file.display())]
    FreezeTimeout {
        file: std::path::PathBuf,
        state: &'static str,
    },
    /// A cgroup path that is not a plain relative path.
    #[error("bad cgroup path {0:?}: must be relative, without `..`")]
    BadPath(String),
    /// Processes kept coming back to the cgroup.
    #[error("cgroup {0} still has processes after SIGKILL")]
    Busy(String),
    /// The cgroup a new container asks for holds processes already.
    #[error("cgroup {path} is in use by {count} process(es) of another container; give this container its own linux.cgroupsPath or id")]
    InUse { path: String, count: usize },
    /// Removing a cgroup directory failed.
    #[error("removing cgroup {}: {source}", path.display())]
    Remove {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// A setting key that is not `lxc.cgroup.*` / `lxc.cgroup2.*`.
    #[error("not a cgroup setting: {0}")]
    NotASetting(String),
    /// The process's cgroup for the setting's hierarchy was not found.
    #[error("cgroup of the container not found")]
    NotFound,
    /// A setting's file name that would leave the cgroup directory.
    #[error("bad cgroup file {0:?}")]
    BadFile(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
