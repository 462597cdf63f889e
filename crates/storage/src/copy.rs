//! Copy a root filesystem tree: owners (shifted for unprivileged
//! containers), modes, times, xattrs, hard links, symlinks, device nodes,
//! FIFOs, sockets and sparse files. Symlinks are never followed.
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{symlink, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, lseek, Gid, Uid, Whence};
use std::os::fd::AsRawFd;

use crate::config::XattrPolicy;
use crate::error::{Error, Result};
use crate::idshift::IdShift;
use crate::progress::{CopyStats, Progress};

/// How to copy.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyOptions<'a> {
    /// Shift owners through these mappings (unprivileged containers).
    pub shift: Option<&'a IdShift>,
    pub xattrs: XattrPolicy,
}

/// Copy the tree `src` into the existing, empty directory `dst` (whose own
/// owner, mode and times become those of `src`). See [`CopyOptions`].
pub fn copy_tree(
    src: &Path,
    dst: &Path,
    shift: Option<&IdShift>,
    progress: &mut dyn Progress,
) -> Result<CopyStats> {
    copy_tree_with(
        src,
        dst,
        &CopyOptions {
            shift,
            xattrs: XattrPolicy::Require,
        },
        progress,
    )
}

/// [`copy_tree`] with every option.
pub fn copy_tree_with(
    src: &Path,
    dst: &Path,
    opts: &CopyOptions,
    progress: &mut dyn Progress,
) -> Result<CopyStats> {
    let md = fs::symlink_metadata(src).map_err(|e| copy_err(src, e))?;
    if !md.is_dir() {
        return Err(Error::Refused(format!(
            "copy source {} is not a directory",
            src.display()
        )));
    }
    if !crate::zfs::dir_is_empty(dst)? {
        return Err(Error::Refused(format!(
            "copy target {} is not empty",
            dst.display()
        )));
    }
    let mut c = Copier {
        opts: *opts,
        links: HashMap::new(),
        stats: CopyStats::default(),
        buf: vec![0u8; 1 << 20],
        progress,
        root_dev: md.dev(),
    };
    c.dir_contents(src, dst)?;
    c.attrs(src, dst, &md)?;
    c.stats.dirs += 1;
    c.progress.finish(&c.stats);
    Ok(c.stats)
}

struct Copier<'a, 'p> {
    opts: CopyOptions<'a>,
    /// (dev, ino) of multiply-linked sources -> their first copy.
    links: HashMap<(u64, u64), PathBuf>,
    stats: CopyStats,
    buf: Vec<u8>,
    progress: &'p mut dyn Progress,
    root_dev: u64,
}

fn copy_err(path: &Path, source: std::io::Error) -> Error {
    Error::Copy {
        path: path.to_path_buf(),
        source,
    }
}

fn nix_err(path: &Path, e: nix::Error) -> Error {
    copy_err(path, std::io::Error::from_raw_os_error(e as i32))
}

impl Copier<'_, '_> {
    fn dir_contents(&mut self, src: &Path, dst: &Path) -> Result<()> {
        let rd = fs::read_dir(src).map_err(|e| copy_err(src, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| copy_err(src, e))?;
            let s = entry.path();
            let d = dst.join(entry.file_name());
            self.entry(&s, &d)?;
        }
        Ok(())
    }

    fn entry(&mut self, s: &Path, d: &Path) -> Result<()> {
        let md = fs::symlink_metadata(s).map_err(|e| copy_err(s, e))?;
        let ft = md.file_type();
        if ft.is_dir() {
            fs::create_dir(d).map_err(|e| copy_err(d, e))?;
            if md.dev() == self.root_dev {
                self.dir_contents(s, d)?;
            } else {
                // Another filesystem mounted inside the rootfs: its mount
                // point is copied empty, as `cp -x` does.
                tracing::warn!(
                    "{}: a mount point; copied as an empty directory",
                    s.display()
                );
            }
            self.attrs(s, d, &md)?;
            self.stats.dirs += 1;
            return Ok(());
        }
        if md.nlink() > 1 {
            if let Some(first) = self.links.get(&(md.dev(), md.ino())) {
                fs::hard_link(first, d).map_err(|e| copy_err(d, e))?;
                self.stats.hardlinks += 1;
                return Ok(());
            }
            self.links.insert((md.dev(), md.ino()), d.to_path_buf());
        }
        if ft.is_file() {
            self.file(s, d, &md)?;
            self.stats.files += 1;
        } else if ft.is_symlink() {
            let target = fs::read_link(s).map_err(|e| copy_err(s, e))?;
            symlink(&target, d).map_err(|e| copy_err(d, e))?;
            self.stats.symlinks += 1;
        } else {
            let kind = SFlag::from_bits_truncate(md.mode() & libc::S_IFMT);
            mknod(d, kind, Mode::from_bits_truncate(0o600), md.rdev())
                .map_err(|e| nix_err(d, e))?;
            self.stats.specials += 1;
        }
        self.attrs(s, d, &md)?;
        self.progress.update(&self.stats);
        Ok(())
    }

    /// Regular file data; holes stay holes.
    fn file(&mut self, s: &Path, d: &Path, md: &fs::Metadata) -> Result<()> {
        let src = File::open(s).map_err(|e| copy_err(s, e))?;
        let dst = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(d)
            .map_err(|e| copy_err(d, e))?;
        let len = md.len();
        let mut off: u64 = 0;
        while off < len {
            let data = match lseek(src.as_raw_fd(), off as i64, Whence::SeekData) {
                Ok(p) => p as u64,
                Err(nix::Error::ENXIO) => break, // only a hole is left
                Err(_) => off,                   // no SEEK_DATA here: copy all
            };
            if data >= len {
                break;
            }
            let hole = match lseek(src.as_raw_fd(), data as i64, Whence::SeekHole) {
                Ok(p) if (p as u64) > data => (p as u64).min(len),
                _ => len,
            };
            self.range(&src, &dst, data, hole, s, d)?;
            off = hole;
        }
        dst.set_len(len).map_err(|e| copy_err(d, e))?;
        Ok(())
    }

    fn range(
        &mut self,
        src: &File,
        dst: &File,
        from: u64,
        to: u64,
        s: &Path,
        d: &Path,
    ) -> Result<()> {
        let mut pos = from;
        while pos < to {
            let want = ((to - pos) as usize).min(self.buf.len());
            let n = src
                .read_at(&mut self.buf[..want], pos)
                .map_err(|e| copy_err(s, e))?;
            if n == 0 {
                break; // the file shrank under us
            }
            dst.write_all_at(&self.buf[..n], pos)
                .map_err(|e| copy_err(d, e))?;
            pos += n as u64;
            self.stats.bytes += n as u64;
            if self.stats.bytes % (64 << 20) < n as u64 {
                self.progress.update(&self.stats);
            }
        }
        Ok(())
    }

    /// Owner, mode, xattrs, times; in that order, because chown clears
    /// setuid bits and file capabilities.
    fn attrs(&mut self, s: &Path, d: &Path, md: &fs::Metadata) -> Result<()> {
        let (uid, gid) = match self.opts.shift {
            Some(sh) => (
                sh.uid(md.uid())
                    .ok_or_else(|| outside(s, "uid", md.uid()))?,
                sh.gid(md.gid())
                    .ok_or_else(|| outside(s, "gid", md.gid()))?,
            ),
            None => (md.uid(), md.gid()),
        };
        fchownat(
            None,
            d,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| nix_err(d, e))?;
        let symlink = md.file_type().is_symlink();
        if !symlink {
            fs::set_permissions(d, fs::Permissions::from_mode(md.mode() & 0o7777))
                .map_err(|e| copy_err(d, e))?;
        }
        self.xattrs(s, d)?;
        let at = TimeSpec::new(md.atime(), md.atime_nsec());
        let mt = TimeSpec::new(md.mtime(), md.mtime_nsec());
        utimensat(None, d, &at, &mt, UtimensatFlags::NoFollowSymlink).map_err(|e| nix_err(d, e))?;
        Ok(())
    }

    fn xattrs(&mut self, s: &Path, d: &Path) -> Result<()> {
        let names = match list_xattrs(s) {
            Ok(n) => n,
            // The source filesystem has no xattrs at all.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(()),
            Err(e) => return Err(copy_err(s, e)),
        };
        for name in names {
            let mut value = match get_xattr(s, &name) {
                Ok(v) => v,
                Err(e) if e.raw_os_error() == Some(libc::ENODATA) => continue,
                Err(e) => return Err(copy_err(s, e)),
            };
            if let Some(sh) = self.opts.shift {
                if name == "system.posix_acl_access" || name == "system.posix_acl_default" {
                    shift_acl(&mut value, sh).map_err(|why| {
                        Error::Refused(format!("{}: ACL {name}: {why}", s.display()))
                    })?;
                }
            }
            match rustix::fs::lsetxattr(d, name.as_str(), &value, rustix::fs::XattrFlags::empty())
            {
                Ok(()) => {}
                Err(e)
                    if e == rustix::io::Errno::OPNOTSUPP
                        && self.opts.xattrs == XattrPolicy::Skip =>
                {
                    self.stats.xattrs_skipped += 1;
                    if self.stats.xattrs_skipped == 1 {
                        tracing::warn!(
                            "{}: the target filesystem stores no extended attributes; dropping {name} (and any others)",
                            d.display()
                        );
                    }
                }
                Err(e) if e == rustix::io::Errno::OPNOTSUPP => {
                    return Err(Error::Refused(format!(
                        "{}: has extended attribute {name}, which the target filesystem cannot store (zfs-fuse stores none); set storage.xattrs = \"skip\" to drop such attributes",
                        s.display()
                    )))
                }
                Err(e) => return Err(copy_err(d, e.into())),
            }
        }
        Ok(())
    }
}

fn outside(path: &Path, what: &str, id: u32) -> Error {
    Error::Refused(format!(
        "{}: {what} {id} is outside the container's {what} mapping (linux.{what}Mappings); extend the mapping or fix the image",
        path.display()
    ))
}

fn list_xattrs(p: &Path) -> std::io::Result<Vec<String>> {
    loop {
        let n = rustix::fs::llistxattr_query(p)?;
        if n == 0 {
            return Ok(vec![]);
        }
        let mut buf = vec![0u8; n];
        match rustix::fs::llistxattr(p, &mut buf[..]) {
            Ok(len) => {
                return Ok(buf[..len]
                    .split(|b| *b == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect())
            }
            Err(rustix::io::Errno::RANGE) => continue, // grew meanwhile
            Err(e) => return Err(e.into()),
        }
    }
}

fn get_xattr(p: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    loop {
        let n = rustix::fs::lgetxattr_query(p, name)?;
        let mut buf = vec![0u8; n];
        match rustix::fs::lgetxattr(p, name, &mut buf[..]) {
            Ok(len) => {
                buf.truncate(len);
                return Ok(buf);
            }
            Err(rustix::io::Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Shift the uids/gids named in a POSIX ACL xattr (version 2: a u32
/// header, then entries of u16 tag, u16 perm, u32 id).
fn shift_acl(v: &mut [u8], sh: &IdShift) -> std::result::Result<(), String> {
    const ACL_USER: u16 = 2;
    const ACL_GROUP: u16 = 8;
    if v.len() < 4 || !(v.len() - 4).is_multiple_of(8) {
        return Err("malformed".into());
    }
    for e in v[4..].chunks_mut(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        let mapped = match tag {
            ACL_USER => sh.uid(id).ok_or(format!("uid {id} outside the mapping"))?,
            ACL_GROUP => sh.gid(id).ok_or(format!("gid {id} outside the mapping"))?,
            _ => continue,
        };
        e[4..8].copy_from_slice(&mapped.to_le_bytes());
    }
    Ok(())
}
