use std::path::PathBuf;

/// Errors of the storage manager. Messages say what was wrong, with which
/// input, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} {value:?}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error("storage config: {0}")]
    Config(String),
    #[error("`{cmd}` failed: {stderr}")]
    Zfs { cmd: String, stderr: String },
    #[error("{0}")]
    Refused(String),
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("copying {path}: {source}")]
    Copy {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn invalid(what: &'static str, value: &str, reason: impl Into<String>) -> Error {
    Error::Invalid {
        what,
        value: value.to_string(),
        reason: reason.into(),
    }
}

pub(crate) trait Context<T> {
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
        self.map_err(|e| Error::Io {
            context: context(),
            source: std::io::Error::from_raw_os_error(e as i32),
        })
    }
}
