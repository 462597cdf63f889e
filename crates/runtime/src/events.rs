//! `<root>/runtime/events.log`: one JSON line per operation, rotated by
//! size (`events.log` -> `events.log.1` -> ... -> `events.log.<keep>`).
//!
//! Writers hold a shared flock on `events.lock` while they append and the
//! rotator an exclusive one while it renames, so once `events.log` has been
//! renamed nobody writes to the old file again: a reader that still has it
//! open (the metrics server) drains it to its end and then opens the new
//! `events.log` without losing a line.
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::state::{now_rfc3339, Store};

/// `[events]` in the config file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// Rotate once `events.log` reaches this many bytes (0: never).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept (`events.log.1` .. `events.log.<keep>`); 0 drops
    /// the old lines at rotation.
    #[serde(default = "default_keep")]
    pub keep: u32,
}

fn default_max_bytes() -> u64 {
    10 << 20
}
fn default_keep() -> u32 {
    3
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            max_bytes: default_max_bytes(),
            keep: default_keep(),
        }
    }
}

/// One Proxmox API exchange made by the operation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApiCall {
    pub method: String,
    /// Endpoint template (`/nodes/{node}/lxc/{vmid}/status/current`).
    pub endpoint: String,
    /// HTTP status; absent when no answer came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub duration_ms: f64,
}

impl From<&pve_client::ApiRequest> for ApiCall {
    fn from(r: &pve_client::ApiRequest) -> Self {
        ApiCall {
            method: r.method.to_string(),
            endpoint: r.endpoint.clone(),
            status: r.status,
            duration_ms: ms(r.duration),
        }
    }
}

/// One line of the log. Fields after `api_calls` were added for metrics;
/// readers must accept lines without them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub time: String,
    pub id: String,
    pub operation: String,
    /// "ok" or the error message.
    pub result: String,
    pub duration_ms: f64,
    /// Proxmox API requests the operation made (0 on the lxc engine).
    pub api_calls: u32,
    /// The engine of the container (absent when no engine was chosen,
    /// e.g. a create refused before routing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// A short, bounded word for the error (`bundle`, `pve`, `not_found` ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    /// The API exchanges, one per HTTP request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api: Vec<ApiCall>,
    /// Image cache lookups of the operation.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub image_cache_hits: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub image_cache_misses: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

pub(crate) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// What the runtime knows when an operation ends.
pub struct Outcome<'a> {
    pub id: &'a str,
    pub operation: &'a str,
    pub result: &'a str,
    pub error_kind: Option<&'static str>,
    pub took: Duration,
    pub engine: Option<&'static str>,
    pub api: Vec<ApiCall>,
    pub image_cache: (u32, u32),
}

/// The lock file next to the log.
pub fn lock_path(log: &Path) -> PathBuf {
    log.with_file_name("events.lock")
}

/// The n-th rotated file (`events.log.n`).
pub fn rotated_path(log: &Path, n: u32) -> PathBuf {
    let mut s = log.as_os_str().to_os_string();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Append one line, rotating when the log has grown past `max_bytes`.
/// Failures to log never fail the operation itself.
pub fn record(store: &Store, cfg: &EventsConfig, o: Outcome<'_>) {
    let ev = Event {
        time: now_rfc3339(),
        id: o.id.to_string(),
        operation: o.operation.to_string(),
        result: o.result.to_string(),
        duration_ms: ms(o.took),
        api_calls: o.api.len() as u32,
        engine: o.engine.map(str::to_string),
        error_kind: o.error_kind.map(str::to_string),
        api: o.api,
        image_cache_hits: o.image_cache.0,
        image_cache_misses: o.image_cache.1,
    };
    let path = store.events_log();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = append(&path, cfg, &ev);
}

/// Append `ev` to `path` under the shared lock, then rotate if needed.
pub fn append(path: &Path, cfg: &EventsConfig, ev: &Event) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(ev).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let lock = OpenOptions::new()
        .create(true)
        .append(true)
        .open(lock_path(path))?;
    let size = {
        flock(&lock, libc::LOCK_SH)?;
        // One write of one small buffer with O_APPEND: concurrent writers'
        // lines never interleave.
        let mut f = OpenOptions::new().create(true).append(true).open(path)?;
        f.write_all(&line)?;
        let size = f.metadata()?.len();
        flock(&lock, libc::LOCK_UN)?;
        size
    };
    if cfg.max_bytes > 0 && size >= cfg.max_bytes {
        flock(&lock, libc::LOCK_EX)?;
        // Another writer may have rotated while we waited.
        let r = match std::fs::metadata(path) {
            Ok(m) if m.len() >= cfg.max_bytes => rotate(path, cfg.keep),
            _ => Ok(()),
        };
        flock(&lock, libc::LOCK_UN)?;
        r?;
    }
    Ok(())
}

/// Shift `events.log.(n)` to `.(n+1)`, dropping the oldest; the current log
/// becomes `.1` (or is removed with keep = 0). Caller holds the lock.
fn rotate(path: &Path, keep: u32) -> std::io::Result<()> {
    if keep == 0 {
        return std::fs::remove_file(path);
    }
    let _ = std::fs::remove_file(rotated_path(path, keep));
    for n in (1..keep).rev() {
        let from = rotated_path(path, n);
        if from.exists() {
            std::fs::rename(&from, rotated_path(path, n + 1))?;
        }
    }
    std::fs::rename(path, rotated_path(path, 1))
}

fn flock(f: &File, op: libc::c_int) -> std::io::Result<()> {
    loop {
        // SAFETY: flock on a valid fd we own.
        let rc = unsafe { libc::flock(f.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(i: usize) -> Event {
        Event {
            time: now_rfc3339(),
            id: format!("c{i:04}"),
            operation: "create".into(),
            result: "ok".into(),
            duration_ms: 1.0,
            api_calls: 0,
            engine: Some("lxc".into()),
            error_kind: None,
            api: vec![],
            image_cache_hits: 0,
            image_cache_misses: 0,
        }
    }

    #[test]
    fn rotates_by_size_and_keeps_every_line_up_to_keep_files() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("events.log");
        let cfg = EventsConfig {
            max_bytes: 1000,
            keep: 2,
        };
        let line_len = serde_json::to_vec(&ev(0)).unwrap().len() + 1;
        let per_file = 1000usize.div_ceil(line_len);
        // Exactly enough lines for the current file plus two rotations.
        let n = per_file * 2 + 1;
        for i in 0..n {
            append(&log, &cfg, &ev(i)).unwrap();
        }
        assert!(rotated_path(&log, 1).exists());
        assert!(rotated_path(&log, 2).exists());
        assert!(!rotated_path(&log, 3).exists());
        let mut ids = vec![];
        for p in [rotated_path(&log, 2), rotated_path(&log, 1), log.clone()] {
            for l in std::fs::read_to_string(&p).unwrap().lines() {
                let e: Event = serde_json::from_str(l).unwrap();
                ids.push(e.id);
            }
            assert!(std::fs::metadata(&p).unwrap().len() < 1000 + line_len as u64);
        }
        let want: Vec<String> = (0..n).map(|i| format!("c{i:04}")).collect();
        assert_eq!(ids, want);
        // One more round drops the oldest file's lines.
        for i in n..n + per_file {
            append(&log, &cfg, &ev(i)).unwrap();
        }
        let first: Event = serde_json::from_str(
            std::fs::read_to_string(rotated_path(&log, 2))
                .unwrap()
                .lines()
                .next()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(first.id, format!("c{per_file:04}"));
    }

    #[test]
    fn old_lines_without_the_new_fields_still_parse() {
        let e: Event = serde_json::from_str(
            r#"{"time":"t","id":"a","operation":"start","result":"ok","duration_ms":2.5,"api_calls":0}"#,
        )
        .unwrap();
        assert_eq!(e.engine, None);
        assert!(e.api.is_empty());
    }
}
