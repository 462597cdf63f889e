//! `state.json` and the per-container directory under `--root`.
//!
//! ```text
//! <root>/containers/<id>/state.json   ContainerState (OCI state + engine data)
//! <root>/containers/<id>/config.json  the spec as created
//! <root>/containers/<id>/hooks/       hook output
//! <root>/containers/<id>/exchange/    FIFOs and files shared with the container init
//! <root>/containers/<id>/<id>/config  the LXC config (lxcpath = the container dir)
//! ```
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::EngineRecord;
use crate::error::{Context, Error, Result};
use crate::proc::ProcRef;

/// OCI runtime-spec version we implement and report.
pub const OCI_VERSION: &str = "1.2.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    /// Status as last recorded; [`crate::Runtime::refresh`] reconciles it
    /// with the processes (a container that exited reads as stopped).
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339 with nanoseconds, UTC, as runc prints it.
    pub created: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub owner: String,
    /// The engine that runs the container and what it made (`"engine":
    /// "lxc"` with its volume, `"engine": "pve-lxc"` with its CT).
    #[serde(flatten)]
    pub engine: EngineRecord,
    /// The container's init, as seen from the host.
    #[serde(default)]
    pub init: Option<ProcRef>,
    /// Our monitor: the pid in --pid-file, ends when the container ends.
    #[serde(default)]
    pub monitor: Option<ProcRef>,
    /// Exit status (shell form) once known.
    #[serde(default)]
    pub exit_status: Option<i32>,
}

impl ContainerState {
    /// The JSON `state` prints: runc's fields, 2-space indent.
    pub fn oci_json(&self) -> serde_json::Value {
        let pid = match self.status {
            Status::Created | Status::Running | Status::Paused | Status::Creating => {
                self.init.map(|p| p.pid).unwrap_or(0)
            }
            Status::Stopped => 0,
        };
        let mut v = serde_json::json!({
            "ociVersion": self.oci_version,
            "id": self.id,
            "pid": pid,
            "status": self.status,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": self.owner,
        });
        if !self.annotations.is_empty() {
            v["annotations"] = serde_json::to_value(&self.annotations).unwrap_or_default();
        }
        v
    }
}

/// Paths under `--root`.
#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }
    pub fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }
    pub fn dir(&self, id: &str) -> PathBuf {
        self.containers_dir().join(id)
    }
    pub fn state_file(&self, id: &str) -> PathBuf {
        self.dir(id).join("state.json")
    }
    pub fn events_log(&self) -> PathBuf {
        self.root.join("runtime").join("events.log")
    }

    pub fn ensure_layout(&self) -> Result<()> {
        for d in [self.containers_dir(), self.root.join("runtime")] {
            fs::create_dir_all(&d).ctx(|| format!("creating {}", d.display()))?;
        }
        Ok(())
    }

    /// Claim the id: its directory appears with `initial` as its state and
    /// locked by us, or not at all (fails if the id is taken). The directory
    /// is made and filled under a staging name, then renamed into place
    /// without replacing anything, so a crash never leaves an id directory
    /// without a readable state.
    pub fn claim(&self, initial: &ContainerState) -> Result<ContainerLock> {
        self.ensure_layout()?;
        let id = &initial.id;
        let staging = self.staging_dir("new");
        fs::create_dir(&staging).ctx(|| format!("creating {}", staging.display()))?;
        let lock = ContainerLock::acquire(&staging, id)?;
        let data = serde_json::to_vec_pretty(initial).expect("state serializes");
        let write = if initial.engine.outlives_reboot() {
            write_atomic
        } else {
            write_replace
        };
        let placed = write(&staging.join("state.json"), &data).and_then(|()| {
            let dir = self.dir(id);
            match rename_noreplace(&staging, &dir) {
                Ok(()) => Ok(()),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY)) => {
                    Err(Error::Exists(id.to_string()))
                }
                Err(e) => Err(e).ctx(|| format!("creating {}", dir.display())),
            }
        });
        if let Err(e) = placed {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
        Ok(lock)
    }

    /// Remove a container's directory: renamed out of the way first (the id
    /// is free and `state` says it is gone at once), then deleted, so a
    /// crash half-way leaves no half-emptied id directory.
    pub fn remove(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        let gone = self.staging_dir("gone");
        match fs::rename(&dir, &gone) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).ctx(|| format!("removing {}", dir.display())),
        }
        fs::remove_dir_all(&gone).ctx(|| format!("removing {}", gone.display()))
    }

    /// A fresh name in the containers dir that no id can take (`#` is not
    /// allowed in ids).
    fn staging_dir(&self, what: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        self.containers_dir()
            .join(format!("#{what}-{}-{nanos}", std::process::id()))
    }

    /// Directories a crashed command left: staging names no command holds,
    /// and id directories without a state (made before claims were staged).
    pub fn leftover_dirs(&self) -> Result<Vec<PathBuf>> {
        let dir = self.containers_dir();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(e).ctx(|| format!("reading {}", dir.display())),
        };
        let mut out = vec![];
        for e in rd.flatten() {
            let path = e.path();
            if !e.file_type().is_ok_and(|t| t.is_dir()) || path.join("state.json").exists() {
                continue;
            }
            // Held: a create or delete is at work on it.
            if matches!(ContainerLock::try_acquire(&path, "leftover"), Ok(Some(_))) {
                out.push(path);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Lock an existing container (waits for other commands on it).
    pub fn lock(&self, id: &str) -> Result<ContainerLock> {
        let dir = self.dir(id);
        let lock = match ContainerLock::acquire(&dir, id) {
            Ok(l) => l,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_string()))
            }
            Err(e) => return Err(e),
        };
        // The container may have been deleted while we waited.
        if !self.state_file(id).exists() {
            return Err(Error::NotFound(id.to_string()));
        }
        Ok(lock)
    }

    pub fn load(&self, id: &str) -> Result<ContainerState> {
        let path = self.state_file(id);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_string()))
            }
            Err(e) => return Err(e).ctx(|| format!("reading {}", path.display())),
        };
        serde_json::from_slice(&data).map_err(|e| Error::CorruptState {
            path,
            reason: e.to_string(),
        })
    }

    /// Writes the state atomically; durably (fsync) when it names something
    /// that outlives a reboot. Everything else of a container ends with the
    /// machine, and a state torn by a power loss reads as corrupt, which
    /// `delete --force` and `gc` clear.
    pub fn save(&self, state: &ContainerState) -> Result<()> {
        let data = serde_json::to_vec_pretty(state).expect("state serializes");
        let path = self.state_file(&state.id);
        if state.engine.outlives_reboot() {
            write_atomic(&path, &data)
        } else {
            write_replace(&path, &data)
        }
    }

    /// Lock a container if no other command holds it (None if one does).
    pub fn try_lock(&self, id: &str) -> Result<Option<ContainerLock>> {
        ContainerLock::try_acquire(&self.dir(id), id)
    }

    /// Ids of all containers (directories with a state file), sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        let dir = self.containers_dir();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(e).ctx(|| format!("reading {}", dir.display())),
        };
        let mut ids: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|id| crate::id::validate(id).is_ok() && self.state_file(id).exists())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// An exclusive flock on the container directory. Commands on one container
/// serialize; different containers never share a lock.
#[derive(Debug)]
pub struct ContainerLock {
    _file: File,
}

impl ContainerLock {
    fn acquire(dir: &Path, id: &str) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(dir)
            .ctx(|| format!("opening container {id}"))?;
        loop {
            // SAFETY: flock on a valid fd we own.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                break;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err).ctx(|| format!("locking container {id}"));
            }
        }
        Ok(ContainerLock { _file: file })
    }

    fn try_acquire(dir: &Path, id: &str) -> Result<Option<Self>> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(dir)
            .ctx(|| format!("opening container {id}"))?;
        // SAFETY: flock on a valid fd we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Some(ContainerLock { _file: file }));
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(None)
        } else {
            Err(err).ctx(|| format!("locking container {id}"))
        }
    }
}

/// rename(2) that fails with EEXIST instead of replacing `to`.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    nix::fcntl::renameat2(
        None,
        from,
        None,
        to,
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    )
    .map_err(std::io::Error::from)
}

/// Write a file atomically: temp file in the same directory, fsync, rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_renamed(path, data, true)
}

/// Like [`write_atomic`] (readers see the old or the new content, never a
/// part), without the fsync: for files only a live container needs (the
/// spec's copy, the init's and LXC's configs, the pid file). After a power
/// loss the container is gone anyway and its state.json, written with
/// [`write_atomic`], is what recovery reads. An fsync costs 1-5 ms on a
/// busy disk, several per create.
pub fn write_replace(path: &Path, data: &[u8]) -> Result<()> {
    write_renamed(path, data, false)
}

fn write_renamed(path: &Path, data: &[u8], sync: bool) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(data)?;
        if sync {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res.ctx(|| format!("writing {}", path.display()))
}

/// Current time as runc prints it: RFC 3339, nanoseconds, UTC.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: &str) -> ContainerState {
        ContainerState {
            oci_version: OCI_VERSION.into(),
            id: id.into(),
            status: Status::Created,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: now_rfc3339(),
            annotations: BTreeMap::new(),
            owner: String::new(),
            engine: EngineRecord::Lxc(Default::default()),
            init: Some(ProcRef {
                pid: 42,
                start_time: 7,
            }),
            monitor: None,
            exit_status: None,
        }
    }

    #[test]
    fn claim_is_exclusive_and_state_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        let lock = store.claim(&sample("c1")).unwrap();
        assert!(matches!(store.claim(&sample("c1")), Err(Error::Exists(_))));
        // The losing claim left nothing; the winner's dir holds its state.
        assert_eq!(fs::read_dir(store.containers_dir()).unwrap().count(), 1);
        store.save(&sample("c1")).unwrap();
        drop(lock);
        let st = store.load("c1").unwrap();
        assert_eq!(st.init.unwrap().pid, 42);
        assert_eq!(store.list().unwrap(), vec!["c1".to_string()]);
        assert!(matches!(store.load("nope"), Err(Error::NotFound(_))));
        assert!(matches!(store.lock("nope"), Err(Error::NotFound(_))));
    }

    #[test]
    fn old_state_files_without_a_volume_still_load() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        let _l = store.claim(&sample("old")).unwrap();
        let mut v = serde_json::to_value(sample("old")).unwrap();
        v.as_object_mut().unwrap().remove("volume");
        fs::write(store.state_file("old"), v.to_string()).unwrap();
        let st = store.load("old").unwrap();
        assert!(matches!(&st.engine, EngineRecord::Lxc(r) if r.volume.is_none()));
        assert!(
            store.try_lock("old").unwrap().is_none(),
            "claim holds the lock"
        );
    }

    #[test]
    fn oci_json_omits_empty_annotations_and_zeroes_pid_when_stopped() {
        let mut st = sample("c1");
        let v = st.oci_json();
        assert_eq!(v["pid"], 42);
        assert!(v.get("annotations").is_none());
        st.status = Status::Stopped;
        st.annotations.insert("k".into(), "v".into());
        let v = st.oci_json();
        assert_eq!(v["pid"], 0);
        assert_eq!(v["annotations"]["k"], "v");
    }

    #[test]
    fn atomic_write_leaves_no_temp_files() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f.json");
        write_atomic(&p, b"1").unwrap();
        write_atomic(&p, b"2").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"2");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn remove_frees_the_id_and_leftovers_are_found_unless_held() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        drop(store.claim(&sample("c1")).unwrap());
        fs::write(store.dir("c1").join("config.json"), "{}").unwrap();
        store.remove("c1").unwrap();
        assert!(!store.dir("c1").exists());
        assert_eq!(fs::read_dir(store.containers_dir()).unwrap().count(), 0);
        store.remove("c1").unwrap();
        drop(store.claim(&sample("c1")).unwrap());

        // What crashes leave: a staging dir, an id dir without a state.
        let staged = store.containers_dir().join("#new-1-2");
        fs::create_dir(&staged).unwrap();
        fs::create_dir(store.dir("bare")).unwrap();
        fs::write(store.dir("bare").join(".config.json.7.tmp"), "").unwrap();
        assert_eq!(store.list().unwrap(), vec!["c1".to_string()]);
        assert_eq!(
            store.leftover_dirs().unwrap(),
            vec![staged.clone(), store.dir("bare")]
        );
        // Held by a command at work: not a leftover.
        let _held = ContainerLock::acquire(&staged, "x").unwrap();
        assert_eq!(store.leftover_dirs().unwrap(), vec![store.dir("bare")]);
    }
}
