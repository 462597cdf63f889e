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
    /// runc's words, which scripts grep for.
    #[error("cannot delete container {id} that is not stopped: {status}")]
    NotStopped { id: String, status: String },
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
    /// The spec asks for something invalid or unsafe.
    #[error("{0}")]
    Spec(String),
    /// Valid, but this runtime or engine cannot do it.
    #[error("{0}")]
    Unsupported(String),
    /// A state file that cannot be read back.
    #[error("corrupt state file {}: {reason}", path.display())]
    CorruptState { path: PathBuf, reason: String },
    /// `update` could not write a limit.
    #[error("{0}")]
    Update(String),
    /// The terminal: --console-socket and the pty.
    #[error("{0}")]
    Console(String),
    #[error("{0}")]
    Hook(String),
    #[error("{0}")]
    Config(String),
    /// A Proxmox API request failed; `what` the runtime was doing. The
    /// client's error is kept, so callers match on its status and message.
    #[error("Proxmox API: {what}: {source}")]
    Pve {
        what: String,
        #[source]
        source: pve_client::Error,
    },
    /// The Proxmox guest is not as the runtime needs it (locked, no rootfs).
    #[error("{0}")]
    Guest(String),
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

impl Error {
    /// A short word for the kind of error, for metrics labels (bounded:
    /// one per variant, never the message).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidId { .. } => "invalid_id",
            Error::NotFound(_) => "not_found",
            Error::Exists(_) => "exists",
            Error::BadState { .. } | Error::NotStopped { .. } => "bad_state",
            Error::NotRunning(_) => "not_running",
            Error::Bundle { .. } => "bundle",
            Error::Storage(_) => "storage",
            Error::Translate(_) => "translate",
            Error::Cgroup(_) => "cgroup",
            Error::Spec(_) => "spec",
            Error::Unsupported(_) => "unsupported",
            Error::CorruptState { .. } => "corrupt_state",
            Error::Update(_) => "update",
            Error::Console(_) => "console",
            Error::Hook(_) => "hook",
            Error::Config(_) => "config",
            Error::Pve { .. } => "pve",
            Error::Guest(_) => "guest",
            Error::Start { .. } => "start",
            Error::Signal(_) => "signal",
            Error::Io { .. } => "io",
            Error::Sys { .. } => "sys",
        }
    }
}

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
