use std::path::PathBuf;

/// Errors of the lifecycle. Messages are what `ctr` shows the user, and the
/// containerd shim matches some of them ("does not exist", "not running").
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId { id: String, reason: &'static str },
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("container with id {0} already exists")]
    Exists(String),
    #[error("container {id} is {status}: {action} needs a container that is {needs}")]
    BadState {
        id: String,
        status: String,
        action: &'static str,
        needs: &'static str,
    },
    #[error("cannot signal container {0}: container not running")]
    NotRunning(String),
    #[error("bundle {path}: {reason}")]
    Bundle { path: PathBuf, reason: String },
    #[error(transparent)]
    Storage(#[from] storage::Error),
    #[error(transparent)]
    Translate(#[from] proxmox_lxcri_lxc::config::TranslateError),
    #[error(transparent)]
    Cgroup(#[from] proxmox_lxcri_cgroups::Error),
    #[error("{0}")]
    Spec(String),
    #[error("{0}")]
    Hook(String),
    #[error("{0}")]
    Config(String),
    /// A Proxmox API failure, with what the runtime was doing.
    #[error("{0}")]
    Pve(String),
    #[error("container {id} failed to start: {reason}")]
    Start { id: String, reason: String },
    #[error("invalid signal {0:?}")]
    Signal(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Sys {
        context: String,
        #[source]
        source: nix::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a human context to io and nix errors.
pub trait Context<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, nix::Error> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Sys {
            context: context(),
            source,
        })
    }
}
