//! Worker tasks: UPIDs in Proxmox's format, a thread per task, the log and
//! the final status kept under `DIR/tasks/` so a restart keeps them.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::auth::now;

#[derive(Debug, Clone, PartialEq)]
pub struct Upid {
    pub node: String,
    pub pid: u32,
    pub pstart: u64,
    pub starttime: i64,
    pub kind: String,
    pub id: String,
    pub user: String,
}

impl Upid {
    pub fn to_string_upid(&self) -> String {
        format!(
            "UPID:{}:{:08X}:{:08X}:{:08X}:{}:{}:{}:",
            self.node, self.pid, self.pstart, self.starttime, self.kind, self.id, self.user
        )
    }

    /// Parses (and so validates: the UPID becomes a file name) a UPID.
    pub fn parse(s: &str) -> Option<Upid> {
        let re = regex::Regex::new(
            r"^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):([0-9A-Fa-f]{8}):([^:\s/]+):([^:\s/]*):([^:\s/]+):$",
        )
        .unwrap();
        let c = re.captures(s)?;
        Some(Upid {
            node: c[1].to_string(),
            pid: u32::from_str_radix(&c[3], 16).ok()?,
            pstart: u64::from_str_radix(&c[4], 16).ok()?,
            starttime: i64::from_str_radix(&c[5], 16).ok()?,
            kind: c[6].to_string(),
            id: c[7].to_string(),
            user: c[8].to_string(),
        })
    }
}

#[derive(Serialize, Deserialize)]
struct Done {
    exitstatus: String,
    endtime: i64,
}

pub struct Tasks {
    dir: PathBuf,
    pid: u32,
    pstart: u64,
    /// Tasks of this process still running.
    active: Mutex<HashSet<String>>,
}

/// A running task's handle: its log and an injected failure.
pub struct Task {
    pub upid: String,
    log: Mutex<std::fs::File>,
    fail: Option<String>,
}

impl Task {
    pub fn log(&self, line: impl AsRef<str>) {
        if let Ok(mut f) = self.log.lock() {
            for l in line.as_ref().lines() {
                let _ = writeln!(f, "{l}");
            }
        }
    }
    /// Fails the task here when a fault rule asked for it.
    pub fn injected(&self) -> anyhow::Result<()> {
        match &self.fail {
            Some(m) => Err(anyhow::anyhow!("{m}")),
            None => Ok(()),
        }
    }
}

fn process_start() -> u64 {
    // Field 22 of /proc/self/stat (after the parenthesized comm).
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.to_string()))
        .and_then(|r| r.split_whitespace().nth(19).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

impl Tasks {
    pub fn new(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            pid: std::process::id(),
            pstart: process_start(),
            active: Mutex::new(HashSet::new()),
        })
    }

    fn log_path(&self, upid: &str) -> PathBuf {
        self.dir.join(format!("{upid}log"))
    }
    fn done_path(&self, upid: &str) -> PathBuf {
        self.dir.join(format!("{upid}status"))
    }

    /// Starts `work` in a thread and returns the UPID at once. The log ends
    /// with `TASK OK` or `TASK ERROR: msg`.
    pub fn spawn<F>(
        self: &Arc<Self>,
        node: &str,
        kind: &str,
        id: &str,
        user: &str,
        fail: Option<String>,
        work: F,
    ) -> std::io::Result<String>
    where
        F: FnOnce(&Task) -> anyhow::Result<()> + Send + 'static,
    {
        let mut upid = Upid {
            node: node.to_string(),
            pid: self.pid,
            pstart: self.pstart,
            starttime: now(),
            kind: kind.to_string(),
            id: id.to_string(),
            user: user.to_string(),
        };
        // Two tasks in the same second would collide: bump the start time.
        let file = loop {
            let s = upid.to_string_upid();
            match std::fs::OpenOptions::new()
                .append(true)
                .create_new(true)
                .open(self.log_path(&s))
            {
                Ok(f) => break f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => upid.starttime += 1,
                Err(e) => return Err(e),
            }
        };
        let s = upid.to_string_upid();
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(s.clone());
        let task = Task {
            upid: s.clone(),
            log: Mutex::new(file),
            fail,
        };
        let me = self.clone();
        std::thread::spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&task)))
                .unwrap_or_else(|_| Err(anyhow::anyhow!("task panicked")));
            let exitstatus = match result {
                Ok(()) => {
                    task.log("TASK OK");
                    "OK".to_string()
                }
                Err(e) => {
                    let msg = format!("{e:#}").replace('\n', " ");
                    task.log(format!("TASK ERROR: {msg}"));
                    msg
                }
            };
            let done = Done {
                exitstatus,
                endtime: now(),
            };
            // Atomically (temp + rename): a status read never sees half a file.
            let p = me.done_path(&task.upid);
            let tmp = p.with_extension("tmp");
            if std::fs::write(&tmp, serde_json::to_vec(&done).unwrap_or_default()).is_ok() {
                let _ = std::fs::rename(&tmp, &p);
            }
            me.active
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&task.upid);
        });
        Ok(s)
    }

    pub fn exists(&self, upid: &str) -> bool {
        // Parsed first: the UPID becomes a file name.
        Upid::parse(upid).is_some() && self.log_path(upid).exists()
    }

    /// `status`: running/stopped and `exitstatus` once stopped. A task left
    /// unfinished by an earlier process shows "unexpected status" as in PVE.
    pub fn status(&self, upid: &str) -> Option<Value> {
        let u = Upid::parse(upid)?;
        if !self.exists(upid) {
            return None;
        }
        let (user, tokenid) = match u.user.split_once('!') {
            Some((a, b)) => (a.to_string(), Some(b.to_string())),
            None => (u.user.clone(), None),
        };
        let mut v = json!({
            "upid": upid, "node": u.node, "pid": u.pid, "pstart": u.pstart,
            "starttime": u.starttime, "type": u.kind, "id": u.id, "user": user,
        });
        if let Some(t) = tokenid {
            v["tokenid"] = json!(t);
        }
        // `running` first: a task leaves `active` only after its done file
        // is in place, so "not running and no done file" is really a task
        // an earlier process left unfinished.
        let running = self
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(upid);
        let done: Option<Done> = std::fs::read(self.done_path(upid))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        match done {
            Some(d) => {
                v["status"] = json!("stopped");
                v["exitstatus"] = json!(d.exitstatus);
                v["endtime"] = json!(d.endtime);
            }
            None if running => v["status"] = json!("running"),
            None => {
                v["status"] = json!("stopped");
                v["exitstatus"] = json!("unexpected status");
            }
        }
        Some(v)
    }

    /// Log lines `start..start+limit` as `[{n,t}]` (n from 1) and the total.
    pub fn log(&self, upid: &str, start: usize, limit: usize) -> Option<(Vec<Value>, usize)> {
        Upid::parse(upid)?;
        let text = std::fs::read_to_string(self.log_path(upid)).ok()?;
        let lines: Vec<&str> = text.lines().collect();
        let total = lines.len();
        let page = lines
            .iter()
            .enumerate()
            .skip(start)
            .take(limit)
            .map(|(i, t)| json!({"n": i + 1, "t": t}))
            .collect();
        Some((page, total))
    }

    /// The tasks of a node, newest first, filtered as GET /nodes/{node}/tasks
    /// filters them; returns the page `start..start+limit` and how many
    /// matched (the answer's `total`).
    pub fn list(&self, node: &str, f: &ListFilter) -> (Vec<Value>, usize) {
        let mut all: Vec<Value> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                let upid = n.strip_suffix("log")?.to_string();
                let u = Upid::parse(&upid)?;
                if u.node != node {
                    return None;
                }
                let mut s = self.status(&upid)?;
                // The list shows a finished task's exit status as its
                // status, and no status while it runs.
                match s["status"].as_str() {
                    Some("stopped") => s["status"] = s["exitstatus"].clone(),
                    _ => {
                        s.as_object_mut()?.remove("status");
                    }
                }
                s.as_object_mut()?.remove("exitstatus");
                f.admits(&u, &s).then_some(s)
            })
            .collect();
        // Newest first; the UPID breaks ties (one second, several tasks).
        all.sort_by_key(|v| {
            std::cmp::Reverse((
                v["starttime"].as_i64().unwrap_or(0),
                v["upid"].as_str().unwrap_or("").to_string(),
            ))
        });
        let total = all.len();
        let page = all.into_iter().skip(f.start).take(f.limit).collect();
        (page, total)
    }
}

/// The filters of GET /nodes/{node}/tasks (pve-manager's node_tasks).
#[derive(Debug, Clone)]
pub struct ListFilter {
    pub start: usize,
    pub limit: usize,
    /// `archive` (finished, the default), `active` (running) or `all`.
    pub source: String,
    /// Exact task type (`vzstart`).
    pub typefilter: Option<String>,
    /// Case-insensitive part of the user (`root@pam`, `root@pam!tok`).
    pub userfilter: Option<String>,
    /// The task's id (a VMID for guest tasks).
    pub vmid: Option<u32>,
    /// Only tasks that did not end OK.
    pub errors: bool,
    /// Started at or after / at or before these epochs.
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// `ok`, `warning`, `error`, `unknown` (comma-separated in the request).
    pub statusfilter: Option<Vec<String>>,
}

impl Default for ListFilter {
    fn default() -> Self {
        Self {
            start: 0,
            limit: 50,
            source: "archive".into(),
            typefilter: None,
            userfilter: None,
            vmid: None,
            errors: false,
            since: None,
            until: None,
            statusfilter: None,
        }
    }
}

impl ListFilter {
    /// `s` is the task as listed (`status` absent while it runs).
    fn admits(&self, u: &Upid, s: &Value) -> bool {
        let status = s["status"].as_str();
        let running = status.is_none();
        let by_source = match self.source.as_str() {
            "active" => running,
            "all" => true,
            _ => !running,
        };
        let class = match status {
            None => "running",
            Some("OK") => "ok",
            Some(x) if x.starts_with("WARNINGS") => "warning",
            Some("unexpected status") => "unknown",
            Some(_) => "error",
        };
        by_source
            && self.typefilter.as_ref().is_none_or(|t| *t == u.kind)
            && self
                .userfilter
                .as_ref()
                .is_none_or(|f| u.user.to_lowercase().contains(&f.to_lowercase()))
            && self.vmid.is_none_or(|v| u.id == v.to_string())
            && !(self.errors && class == "ok")
            && self.since.is_none_or(|t| u.starttime >= t)
            && self.until.is_none_or(|t| u.starttime <= t)
            && self
                .statusfilter
                .as_ref()
                .is_none_or(|l| l.iter().any(|c| c == class))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upid_format_roundtrip() {
        let u = Upid {
            node: "pve".into(),
            pid: 0x1234,
            pstart: 0xabcdef,
            starttime: 0x65000000,
            kind: "vzcreate".into(),
            id: "100".into(),
            user: "root@pam!tok".into(),
        };
        let s = u.to_string_upid();
        assert_eq!(
            s,
            "UPID:pve:00001234:00ABCDEF:65000000:vzcreate:100:root@pam!tok:"
        );
        assert_eq!(Upid::parse(&s), Some(u));
        assert!(Upid::parse("UPID:pve:1:2:3:x:y:z").is_none());
        assert!(Upid::parse("UPID:pve:00001234:00ABCDEF:65000000:a/b:100:root@pam:").is_none());
    }

    #[test]
    fn tasks_log_and_status() {
        let d = tempfile::tempdir().unwrap();
        let t = Arc::new(Tasks::new(d.path().to_path_buf()).unwrap());
        let ok = t
            .spawn("pve", "vzstart", "100", "root@pam", None, |task| {
                task.log("hello");
                Ok(())
            })
            .unwrap();
        let bad = t
            .spawn(
                "pve",
                "vzstop",
                "100",
                "root@pam",
                Some("boom".into()),
                |task| {
                    task.injected()?;
                    Ok(())
                },
            )
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(t.status(&ok).unwrap()["exitstatus"], "OK");
        assert_eq!(t.status(&bad).unwrap()["exitstatus"], "boom");
        let (lines, total) = t.log(&bad, 0, 50).unwrap();
        assert_eq!(total, 1);
        assert_eq!(lines[0]["t"], "TASK ERROR: boom");
        let (lines, _) = t.log(&ok, 1, 1).unwrap();
        assert_eq!(lines[0]["n"], 2);
        assert_eq!(lines[0]["t"], "TASK OK");
    }
}
