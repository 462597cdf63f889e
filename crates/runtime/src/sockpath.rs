//! Unix sockets at paths longer than `sun_path` (108 bytes). Deep roots are
//! common: Docker's shim passes `--root <exec-root>/runtime-runc/moby`, and
//! a container dir adds a 64-character id. Such a socket is reached through
//! its directory's fd instead: `/proc/self/fd/<n>/<name>` is short whatever
//! the depth, and names the same inode.
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// The longest path `sun_path` holds (108 bytes with the NUL).
const SUN_PATH_MAX: usize = 107;

/// `p` itself when it fits, else its directory held open (keep the returned
/// File alive while the path is used) and the path through that fd.
fn short(p: &Path) -> io::Result<(Option<File>, PathBuf)> {
    if p.as_os_str().len() <= SUN_PATH_MAX {
        return Ok((None, p.to_path_buf()));
    }
    let (Some(dir), Some(name)) = (p.parent(), p.file_name()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no file name"));
    };
    let d = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(dir)?;
    let via = Path::new(&format!("/proc/self/fd/{}", d.as_raw_fd())).join(name);
    if via.as_os_str().len() > SUN_PATH_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the socket's file name alone is longer than a unix socket path",
        ));
    }
    Ok((Some(d), via))
}

/// `UnixListener::bind`, for a path of any length.
pub fn bind(p: &Path) -> io::Result<UnixListener> {
    let (_dir, path) = short(p)?;
    UnixListener::bind(path)
}

/// `UnixStream::connect`, for a path of any length.
pub fn connect(p: &Path) -> io::Result<UnixStream> {
    let (_dir, path) = short(p)?;
    UnixStream::connect(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_paths_bind_and_connect() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("d".repeat(60)).join("e".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        let p = deep.join("console.sock");
        assert!(p.as_os_str().len() > 108);
        assert!(UnixListener::bind(&p).is_err(), "the kernel limit is real");
        let l = bind(&p).unwrap();
        // The socket is at the real path, not under /proc.
        assert!(std::fs::symlink_metadata(&p).is_ok());
        let _c = connect(&p).unwrap();
        l.accept().unwrap();
        let short = tmp.path().join("s.sock");
        let l = bind(&short).unwrap();
        let _c = connect(&short).unwrap();
        l.accept().unwrap();
    }
}
