//! Reading /proc: process start times (to tell a reused pid from ours),
//! liveness and parent/child links.
use std::fs;

use serde::{Deserialize, Serialize};

/// A process identified beyond its pid: the start time (clock ticks since
/// boot, /proc/<pid>/stat field 22) tells a reused pid from ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRef {
    pub pid: i32,
    pub start_time: u64,
}

/// Fields of /proc/<pid>/stat after the command name.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain ") ".
    let rest = &s[s.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Process state letter (R, S, Z, ...), parent pid and start time.
pub fn stat(pid: i32) -> Option<(char, i32, u64)> {
    let f = stat_fields(pid)?;
    // After the name: state(3) ppid(4) ... starttime(22), so index = field - 3.
    let state = f.first()?.chars().next()?;
    let ppid = f.get(1)?.parse().ok()?;
    let start = f.get(19)?.parse().ok()?;
    Some((state, ppid, start))
}

pub fn proc_ref(pid: i32) -> Option<ProcRef> {
    stat(pid).map(|(_, _, start_time)| ProcRef { pid, start_time })
}

/// True if the process still runs: same pid, same start time, not a zombie.
pub fn is_alive(p: &ProcRef) -> bool {
    matches!(stat(p.pid), Some((state, _, start)) if start == p.start_time && state != 'Z' && state != 'X')
}

/// True while the process exists at all (a zombie counts: not yet reaped).
pub fn exists(p: &ProcRef) -> bool {
    matches!(stat(p.pid), Some((_, _, start)) if start == p.start_time)
}

/// (pid, ppid) of every process, one pass over /proc.
pub fn all_parents() -> Vec<(i32, i32)> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return vec![];
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| stat(pid).map(|(_, ppid, _)| (pid, ppid)))
        .collect()
}

/// The children of `pid`: its threads' `children` files (a read each,
/// where the kernel has them), else a pass over /proc.
pub fn children(pid: i32) -> Vec<i32> {
    let from_tasks = || -> std::io::Result<Vec<i32>> {
        let mut out = Vec::new();
        for t in fs::read_dir(format!("/proc/{pid}/task"))? {
            let s = fs::read_to_string(t?.path().join("children"))?;
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
        Ok(out)
    };
    from_tasks().unwrap_or_else(|_| children_of(&all_parents(), pid))
}

pub fn children_of(parents: &[(i32, i32)], pid: i32) -> Vec<i32> {
    parents
        .iter()
        .filter(|(_, pp)| *pp == pid)
        .map(|(p, _)| *p)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_is_alive_and_a_changed_start_time_is_not() {
        let me = std::process::id() as i32;
        let r = proc_ref(me).unwrap();
        assert!(is_alive(&r));
        let other = ProcRef {
            pid: me,
            start_time: r.start_time + 1,
        };
        assert!(!is_alive(&other));
        assert!(!is_alive(&ProcRef {
            pid: i32::MAX,
            start_time: 0
        }));
    }

    #[test]
    fn finds_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let parents = all_parents();
        let kids = children_of(&parents, std::process::id() as i32);
        assert!(kids.contains(&(child.id() as i32)));
        assert!(children(std::process::id() as i32).contains(&(child.id() as i32)));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
