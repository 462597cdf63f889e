//! Host-wide flocks for the image cache: one file per image under the
//! configured lock directory.
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Context, Result};

/// Held until dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

fn open(dir: &Path, name: &str) -> Result<File> {
    fs::create_dir_all(dir).ctx(|| format!("creating lock directory {}", dir.display()))?;
    let p = dir.join(format!("{name}.lock"));
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(&p)
        .ctx(|| format!("opening lock {}", p.display()))
}

/// Wait for the lock `name`.
pub fn lock(dir: &Path, name: &str) -> Result<Lock> {
    let file = open(dir, name)?;
    loop {
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(Lock { _file: file });
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).ctx(|| format!("locking {name}"));
        }
    }
}

/// Take the lock `name` if nobody holds it.
pub fn try_lock(dir: &Path, name: &str) -> Result<Option<Lock>> {
    let file = open(dir, name)?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(Some(Lock { _file: file }));
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(None)
    } else {
        Err(e).ctx(|| format!("locking {name}"))
    }
}
