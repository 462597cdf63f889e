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

pub struct Follower {
    path: PathBuf,
    file: Option<(File, u64)>,
    partial: Vec<u8>,
    /// Lines before the follower started are not replayed.
    started: bool,
    /// Rotations seen, for a metric.
    pub rotations: u64,
}

impl Follower {
    /// Follows `path` from its current end (only operations after the
    /// start are counted, as a counter's reset says).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Follower {
            path: path.into(),
            file: None,
            partial: vec![],
            started: false,
            rotations: 0,
        }
    }

    /// Follows `path` from its beginning.
    pub fn from_start(path: impl Into<PathBuf>) -> Self {
        let mut f = Self::new(path);
        f.started = true;
        f
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads every complete line written since the last call.
    pub fn poll(&mut self, on_line: &mut dyn FnMut(&str)) {
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(mut f) => {
                    if !self.started {
                        let _ = f.seek(SeekFrom::End(0));
                    }
                    let ino = f.metadata().map(|m| m.ino()).unwrap_or(0);
                    self.file = Some((f, ino));
                }
                Err(_) => {
                    // Nothing yet: whatever appears later is new.
                    self.started = true;
                    return;
                }
            }
            self.started = true;
        }
        self.drain(on_line);
        let (_, ino) = self.file.as_ref().expect("opened above");
        let ino = *ino;
        let current = std::fs::metadata(&self.path).map(|m| m.ino()).ok();
        if current == Some(ino) {
            // Truncated under us (by hand): start over.
            if let Some((f, _)) = self.file.as_mut() {
                let pos = f.stream_position().unwrap_or(0);
                if f.metadata().map(|m| m.len() < pos).unwrap_or(false) {
                    let _ = f.seek(SeekFrom::Start(0));
                    self.partial.clear();
                }
            }
            return;
        }
        // Rotated: the old file is complete now (see the module comment).
        self.drain(on_line);
        self.partial.clear();
        self.rotations += 1;
        // Files rotated after ours and before the current one: .k-1 .. .1,
        // where .k is the file we had open.
        let k = (1..=MAX_ROTATED).find(|n| {
            std::fs::metadata(rotated(&self.path, *n))
                .map(|m| m.ino() == ino)
                .unwrap_or(false)
        });
        if let Some(k) = k {
            for n in (1..k).rev() {
                if let Ok(mut f) = File::open(rotated(&self.path, n)) {
                    let mut buf = String::new();
                    let _ = f.read_to_string(&mut buf);
                    buf.lines()
                        .filter(|l| !l.is_empty())
                        .for_each(&mut *on_line);
                    self.rotations += 1;
                }
            }
        }
        // The new log, from its start; absent until the next line is written
        // (then the next poll opens it from its start).
        self.file = File::open(&self.path)
            .ok()
            .and_then(|f| f.metadata().ok().map(|m| (f, m.ino())));
        self.drain(on_line);
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
