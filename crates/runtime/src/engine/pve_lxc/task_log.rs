//! A failed task told in full: Proxmox writes the reasons (LXC's error
//! lines, pve-container's warnings) into the task log above `TASK ERROR`,
//! while the exit status alone often says only "startup for container
//! '100' failed".
use pve_client::{Client, Upid};

/// How many log lines an error carries at most (the last ones).
const MAX_LINES: usize = 8;
/// How much of a long log is read (its end holds the reasons).
const TAIL: u64 = 200;

/// Words of lines that tell why a task failed.
fn tells_why(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    [
        "error", "fail", "unable", "cannot", "can't", "denied", "warn", "not ",
    ]
    .iter()
    .any(|w| l.contains(w))
}

/// The lines of a failed task's log worth showing: those that tell why
/// (or, when none does, the last ones), without the final `TASK ERROR`
/// line that repeats the exit status.
pub fn lines_that_matter(log: &[String]) -> Vec<String> {
    let body: Vec<&String> = log
        .iter()
        .filter(|l| {
            !l.starts_with("TASK ERROR:") && !l.starts_with("TASK OK") && !l.trim().is_empty()
        })
        .collect();
    let why: Vec<&String> = body.iter().copied().filter(|l| tells_why(l)).collect();
    let chosen = if why.is_empty() { body } else { why };
    let skip = chosen.len().saturating_sub(MAX_LINES);
    chosen.into_iter().skip(skip).cloned().collect()
}

/// `exitstatus`, followed by the task log's lines that matter when the
/// log can be read.
pub fn describe(client: &Client, upid: &Upid, exitstatus: &str) -> String {
    // Page through the log, keeping its last TAIL lines (the reasons are
    // at the end). A log that cannot be read leaves the exit status alone.
    let mut lines: Vec<String> = Vec::new();
    let mut start = 0;
    while let Ok(page) = client.task_log(upid, start, TAIL) {
        let n = page.len() as u64;
        lines.extend(page.into_iter().map(|l| l.t));
        let excess = lines.len().saturating_sub(TAIL as usize);
        lines.drain(..excess);
        if n < TAIL {
            break;
        }
        start += n;
    }
    let shown = lines_that_matter(&lines);
    if shown.is_empty() {
        exitstatus.to_string()
    } else {
        format!("{exitstatus}; task log: {}", shown.join(" | "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keeps_the_reasons() {
        let log = v(&[
            "starting CT",
            "__lxc_start: 2107 Failed to spawn container \"100\"",
            "main: 306 The container failed to start",
            "TASK ERROR: startup for container '100' failed",
        ]);
        assert_eq!(lines_that_matter(&log), log[1..3].to_vec());
        // Nothing says why: the last lines, still without TASK ERROR.
        let log = v(&["a", "b", "TASK ERROR: x"]);
        assert_eq!(lines_that_matter(&log), v(&["a", "b"]));
        let many: Vec<String> = (0..20).map(|i| format!("error {i}")).collect();
        assert_eq!(lines_that_matter(&many), many[12..].to_vec());
        assert!(lines_that_matter(&v(&["TASK ERROR: x"])).is_empty());
    }
}
