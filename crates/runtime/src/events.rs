//! `<root>/runtime/events.log`: one JSON line per operation.
use std::fs::OpenOptions;
use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use crate::state::{now_rfc3339, Store};

#[derive(Debug, Serialize)]
pub struct Event<'a> {
    pub time: String,
    pub id: &'a str,
    pub operation: &'a str,
    /// "ok" or the error message.
    pub result: String,
    pub duration_ms: f64,
    /// Proxmox API requests the operation made (0 on the lxc engine).
    pub api_calls: u32,
}

/// Append one line. O_APPEND writes of one small buffer do not interleave,
/// so concurrent commands need no lock. Failures to log never fail the
/// operation itself.
pub fn record(
    store: &Store,
    id: &str,
    operation: &str,
    result: &str,
    took: Duration,
    api_calls: u32,
) {
    let ev = Event {
        time: now_rfc3339(),
        id,
        operation,
        result: result.to_string(),
        duration_ms: (took.as_secs_f64() * 1e6).round() / 1e3,
        api_calls,
    };
    let mut line = serde_json::to_vec(&ev).unwrap_or_default();
    line.push(b'\n');
    let path = store.events_log();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(&path) {
        let _ = f.write_all(&line);
    }
}
