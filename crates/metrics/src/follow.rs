//! Following `events.log` across rotations without losing lines.
//!
//! The runtime renames `events.log` to `events.log.1` (shifting older files
//! up) under an exclusive lock, and writers append under a shared one, so a
//! renamed file never grows again. The follower keeps its file open: when
//! the path names another file, it drains the open one to its end, reads
//! any files rotated in between (found by walking `.N` back to the one it
//! had open), and continues with the new `events.log` from its start.
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// How many rotated files are looked at when catching up.
const MAX_ROTATED: u32 = 100;

/// A file's identity: its inode and its first line. The inode alone is not
/// enough: the oldest file is deleted at rotation and the filesystem may
/// give its inode to the next `events.log`. Lines carry a nanosecond time,
/// so two files never start with the same line.
type FileId = (u64, String);

fn identify(path: &Path) -> Option<FileId> {
    identify_file(&File::open(path).ok()?)
}

/// The identity of an open file (read with pread: its offset is not moved).
fn identify_file(f: &File) -> Option<FileId> {
    use std::os::unix::fs::FileExt;
    let ino = f.metadata().ok()?.ino();
    let mut buf = vec![0u8; 4096];
    let n = f.read_at(&mut buf, 0).ok()?;
    let end = buf[..n].iter().position(|b| *b == b'\n')?;
    // A file not yet holding a whole line has no identity yet.
    Some((ino, String::from_utf8_lossy(&buf[..=end]).into_owned()))
}

pub struct Follower {
    path: PathBuf,
    /// The file being read, with its identity once known.
    file: Option<(File, Option<FileId>)>,
    partial: Vec<u8>,
    /// Files already read (or there before the start), oldest first.
    seen: Vec<FileId>,
    initialized: bool,
    /// Replay what exists at the start.
    from_start: bool,
    /// Rotations seen, for a metric.
    pub rotations: u64,
}

impl Follower {
    /// Follows `path` from its current end: only operations after the start
    /// are counted, as a counter's reset says.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Follower {
            path: path.into(),
            file: None,
            partial: vec![],
            seen: vec![],
            initialized: false,
            from_start: false,
            rotations: 0,
        }
    }

    /// Follows `path` from the beginning of what exists.
    pub fn from_start(path: impl Into<PathBuf>) -> Self {
        let mut f = Self::new(path);
        f.from_start = true;
        f
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads every complete line written since the last call.
    pub fn poll(&mut self, on_line: &mut dyn FnMut(&str)) {
        if !self.initialized {
            self.initialized = true;
            if !self.from_start {
                for n in 1..=MAX_ROTATED {
                    if let Some(id) = identify(&rotated(&self.path, n)) {
                        self.seen.push(id);
                    }
                }
                if let Ok(mut f) = File::open(&self.path) {
                    let _ = f.seek(SeekFrom::End(0));
                    let id = identify_file(&f);
                    self.file = Some((f, id));
                }
            }
        }
        self.drain(on_line);
        let current = identify(&self.path);
        if let Some((f, id)) = self.file.as_mut() {
            let ino = f.metadata().map(|m| m.ino()).unwrap_or(0);
            let same = match (&*id, &current) {
                (Some(a), Some(b)) => a == b,
                // Ours had no whole line yet when opened: compare inodes.
                (None, Some(b)) => b.0 == ino,
                (_, None) => std::fs::metadata(&self.path).map(|m| m.ino()).ok() == Some(ino),
            };
            if same {
                if id.is_none() {
                    *id = current;
                }
                // Truncated by hand: start over.
                let pos = f.stream_position().unwrap_or(0);
                if f.metadata().map(|m| m.len() < pos).unwrap_or(false) {
                    let _ = f.seek(SeekFrom::Start(0));
                    self.partial.clear();
                }
                // A log can be born and rotated between our last walk and
                // our opening its successor: then `.1` is one we never read.
                if identify(&rotated(&self.path, 1)).is_some_and(|id| !self.seen.contains(&id)) {
                    self.catch_up(on_line);
                }
                return;
            }
            // Rotated: the old file is complete now (see the module comment).
            self.drain(on_line);
            self.rotations += 1;
            if let Some((f, id)) = self.file.take() {
                let id = id.or_else(|| identify_file(&f));
                self.seen.extend(id);
            }
            self.partial.clear();
        }
        self.catch_up(on_line);
        // The current log, from its start.
        if let Ok(f) = File::open(&self.path) {
            let id = identify_file(&f);
            if id.as_ref().is_none_or(|i| !self.seen.contains(i)) {
                self.file = Some((f, id));
                self.drain(on_line);
            }
        }
        // Forget the oldest identities: no more than MAX_ROTATED files can
        // exist. (Pruning by what exists now would race with a rotation
        // renaming files during the check, and read a file twice.)
        let excess = self.seen.len().saturating_sub(2 * MAX_ROTATED as usize + 2);
        self.seen.drain(..excess);
    }

    /// Read the rotated files not read yet, oldest first.
    fn catch_up(&mut self, on_line: &mut dyn FnMut(&str)) {
        // Files rotated since: oldest first, each one not read before. A
        // rotation during the walk shifts names under it, so walk again
        // until a walk finds nothing new.
        loop {
            let mut found = false;
            for n in (1..=MAX_ROTATED).rev() {
                let Ok(mut f) = File::open(rotated(&self.path, n)) else {
                    continue;
                };
                let Some(id) = identify_file(&f) else {
                    continue;
                };
                // The file we hold may have just been rotated: its rest is
                // read through our descriptor, not again from the start.
                let held = self.file.as_ref().is_some_and(|(h, hid)| match hid {
                    Some(hid) => *hid == id,
                    None => h.metadata().map(|m| m.ino()).ok() == Some(id.0),
                });
                if held || self.seen.contains(&id) {
                    continue;
                }
                let mut buf = String::new();
                let _ = f.read_to_string(&mut buf);
                buf.lines()
                    .filter(|l| !l.is_empty())
                    .for_each(&mut *on_line);
                self.rotations += 1;
                self.seen.push(id);
                found = true;
            }
            if !found {
                break;
            }
        }
    }

    fn drain(&mut self, on_line: &mut dyn FnMut(&str)) {
        let Some((f, _)) = self.file.as_mut() else {
            return;
        };
        let mut buf = vec![];
        if f.read_to_end(&mut buf).is_err() {
            return;
        }
        self.partial.extend_from_slice(&buf);
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return;
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        for line in String::from_utf8_lossy(&complete).lines() {
            if !line.is_empty() {
                on_line(line);
            }
        }
    }
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    proxmox_lxcri_runtime::events::rotated_path(path, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxmox_lxcri_runtime::events::{append, Event, EventsConfig};

    fn ev(i: usize) -> Event {
        serde_json::from_value(serde_json::json!({
            "time": "2026-01-01T00:00:00Z", "id": format!("c{i:05}"), "operation": "create",
            "result": "ok", "duration_ms": 1.0, "api_calls": 0
        }))
        .unwrap()
    }

    fn ids(lines: &[String]) -> Vec<usize> {
        lines
            .iter()
            .map(|l| {
                let e: Event = serde_json::from_str(l).unwrap();
                e.id[1..].parse().unwrap()
            })
            .collect()
    }

    /// Every line written after the start is seen exactly once, in order,
    /// whether the log rotates between polls once, several times, or not.
    #[test]
    fn no_line_is_lost_or_repeated_across_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("events.log");
        let cfg = EventsConfig {
            max_bytes: 600,
            keep: 5,
        };
        // Lines before the follower starts are not counted.
        for i in 0..3 {
            append(&log, &cfg, &ev(i)).unwrap();
        }
        let mut fol = Follower::new(&log);
        let mut seen = vec![];
        fol.poll(&mut |l| seen.push(l.to_string()));
        assert!(seen.is_empty());
        let mut next = 3;
        // Bursts of 1, 7 (one rotation) and 20 lines (several rotations between polls).
        for burst in [1usize, 7, 20, 2, 15] {
            for _ in 0..burst {
                append(&log, &cfg, &ev(next)).unwrap();
                next += 1;
            }
            fol.poll(&mut |l| seen.push(l.to_string()));
        }
        assert_eq!(ids(&seen), (3..next).collect::<Vec<_>>());
        assert!(fol.rotations >= 3, "rotations {}", fol.rotations);
    }

    /// Writers in parallel (each append opens the files anew, as separate
    /// processes do), rotating every ~18 lines, while the follower polls:
    /// every line is seen exactly once. (`keep` is large here because these
    /// writers rotate far faster than real operations could: more than
    /// `keep` rotations between two polls do lose the oldest file.)
    #[test]
    fn concurrent_writers_and_rotations_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("events.log");
        let cfg = EventsConfig {
            max_bytes: 2000,
            keep: 90,
        };
        let mut fol = Follower::new(&log);
        let mut seen = vec![];
        fol.poll(&mut |l| seen.push(l.to_string()));
        let (writers, each) = (4, 300);
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (log, cfg) = (log.clone(), cfg.clone());
                std::thread::spawn(move || {
                    for i in 0..each {
                        append(&log, &cfg, &ev(w * each + i)).unwrap();
                    }
                })
            })
            .collect();
        while !handles.iter().all(|h| h.is_finished()) {
            fol.poll(&mut |l| seen.push(l.to_string()));
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        for h in handles {
            h.join().unwrap();
        }
        fol.poll(&mut |l| seen.push(l.to_string()));
        let mut got = ids(&seen);
        got.sort();
        let mut count = vec![0; writers * each];
        for i in &got {
            count[*i] += 1;
        }
        let lost: Vec<usize> = (0..count.len()).filter(|i| count[*i] == 0).collect();
        let twice: Vec<usize> = (0..count.len()).filter(|i| count[*i] > 1).collect();
        assert!(
            lost.is_empty() && twice.is_empty(),
            "lost {lost:?}, repeated {twice:?}"
        );
        assert!(fol.rotations > 10, "rotations {}", fol.rotations);
    }

    /// The log is made and rotated away between two polls (one long line
    /// over max_bytes): its lines are still read, once.
    #[test]
    fn a_log_born_and_rotated_between_polls_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("events.log");
        let cfg = EventsConfig {
            max_bytes: 10,
            keep: 3,
        };
        let mut fol = Follower::new(&log);
        let mut seen = vec![];
        fol.poll(&mut |l| seen.push(l.to_string()));
        append(&log, &cfg, &ev(1)).unwrap();
        assert!(!log.exists());
        fol.poll(&mut |l| seen.push(l.to_string()));
        append(&log, &cfg, &ev(2)).unwrap();
        append(&log, &cfg, &ev(3)).unwrap();
        fol.poll(&mut |l| seen.push(l.to_string()));
        fol.poll(&mut |l| seen.push(l.to_string()));
        assert_eq!(ids(&seen), vec![1, 2, 3]);
    }

    #[test]
    fn a_partial_line_waits_for_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("events.log");
        let mut fol = Follower::new(&log);
        let mut seen = vec![];
        fol.poll(&mut |l| seen.push(l.to_string()));
        std::fs::write(&log, "{\"a\":").unwrap();
        fol.poll(&mut |l| seen.push(l.to_string()));
        assert!(seen.is_empty());
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(b"1}\n").unwrap();
        fol.poll(&mut |l| seen.push(l.to_string()));
        assert_eq!(seen, vec!["{\"a\":1}".to_string()]);
    }
}
