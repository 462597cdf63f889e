//! Task status, log and waiting.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::{seg, Client, Method};
use crate::error::{Error, Result};
use crate::params::Params;
use crate::types::{LogLine, TaskStatus};
use crate::upid::Upid;

/// Polling starts fast (most tasks take well under a second) and slows to
/// once a second.
/// A task has just been spawned when its UPID comes back: give it a moment
/// before the first look (a poll at once almost always reads "running").
const FIRST_POLL: Duration = Duration::from_millis(10);
const MAX_POLL: Duration = Duration::from_secs(1);

impl Client {
    fn task_path(upid: &Upid, tail: &str) -> Result<String> {
        Ok(format!(
            "/nodes/{}/tasks/{}{tail}",
            seg("node", &upid.node)?,
            seg("upid", &upid.to_string())?
        ))
    }

    /// `GET /nodes/{node}/tasks/{upid}/status` (the node is the UPID's).
    pub fn task_status(&self, upid: &Upid) -> Result<TaskStatus> {
        self.get(&Self::task_path(upid, "/status")?, &Params::new())
    }

    /// `GET /nodes/{node}/tasks/{upid}/log`: lines `start..start+limit`.
    pub fn task_log(&self, upid: &Upid, start: u64, limit: u64) -> Result<Vec<LogLine>> {
        let params = Params::new()
            .int("start", start.min(i64::MAX as u64) as i64)
            .int("limit", limit.min(i64::MAX as u64) as i64);
        self.get(&Self::task_path(upid, "/log")?, &params)
    }

    /// `DELETE /nodes/{node}/tasks/{upid}`: asks the task to stop.
    pub fn task_stop(&self, upid: &Upid) -> Result<()> {
        let _: Value = self.send(Method::Delete, &Self::task_path(upid, "")?, &Params::new())?;
        Ok(())
    }

    /// Polls the task until it stops (after 10 ms, then doubling to 1 s). A task that
    /// ends with anything but `OK` or `WARNINGS: N` gives [`Error::Task`]
    /// with its error text; one still running after `timeout` gives
    /// [`Error::Timeout`] (the task itself goes on).
    pub fn wait_task(&self, upid: &Upid, timeout: Duration) -> Result<TaskStatus> {
        let deadline = Instant::now() + timeout;
        let mut delay = FIRST_POLL;
        std::thread::sleep(FIRST_POLL.min(timeout));
        delay *= 2;
        loop {
            let status = self.task_status(upid)?;
            if !status.is_running() {
                if status.is_ok() {
                    return Ok(status);
                }
                let exitstatus = status
                    .exitstatus
                    .clone()
                    .unwrap_or_else(|| "task stopped without an exit status".to_string());
                return Err(Error::Task {
                    upid: upid.to_string(),
                    exitstatus,
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout(format!(
                    "task {upid} ({}) still running after {timeout:?}",
                    upid.kind
                )));
            }
            std::thread::sleep(delay.min(deadline - now));
            delay = (delay * 2).min(MAX_POLL);
        }
    }
}
