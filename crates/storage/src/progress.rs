//! Progress of long copies: a line on the terminal, nothing otherwise.
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::size::human;

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub specials: u64,
    /// Data bytes written (holes of sparse files are not written).
    pub bytes: u64,
    /// Extended attributes the target could not store (policy "skip").
    pub xattrs_skipped: u64,
}

impl CopyStats {
    pub fn entries(&self) -> u64 {
        self.files + self.dirs + self.symlinks + self.hardlinks + self.specials
    }
}

/// Told about a copy as it goes.
pub trait Progress {
    /// The bytes the copy will write, when known (for a percentage).
    fn set_total(&mut self, _bytes: u64) {}
    fn update(&mut self, stats: &CopyStats);
    fn finish(&mut self, _stats: &CopyStats) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn update(&mut self, _: &CopyStats) {}
}

/// One self-overwriting line on stderr when stderr is a terminal and the
/// copy has taken more than a second (containerd's pipes never see it).
pub struct TerminalProgress {
    label: String,
    total_bytes: Option<u64>,
    start: Instant,
    last: Option<Instant>,
    enabled: bool,
}

impl TerminalProgress {
    pub fn new(label: impl Into<String>, total_bytes: Option<u64>) -> Self {
        TerminalProgress {
            label: label.into(),
            total_bytes,
            start: Instant::now(),
            last: None,
            enabled: std::io::stderr().is_terminal(),
        }
    }

    fn line(&self, s: &CopyStats) -> String {
        let pct = match self.total_bytes {
            Some(t) if t > 0 => format!(" {:>3}%", (s.bytes.min(t) * 100) / t),
            _ => String::new(),
        };
        format!(
            "\r{}:{pct} {} in {} files, {:.0}s",
            self.label,
            human(s.bytes),
            s.entries(),
            self.start.elapsed().as_secs_f64()
        )
    }
}

impl Progress for TerminalProgress {
    fn set_total(&mut self, bytes: u64) {
        self.total_bytes = Some(bytes);
    }

    fn update(&mut self, s: &CopyStats) {
        if !self.enabled || self.start.elapsed() < Duration::from_secs(1) {
            return;
        }
        if self
            .last
            .is_some_and(|l| l.elapsed() < Duration::from_millis(200))
        {
            return;
        }
        self.last = Some(Instant::now());
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{}\x1b[K", self.line(s));
        let _ = err.flush();
    }

    fn finish(&mut self, s: &CopyStats) {
        if self.enabled && self.last.is_some() {
            let _ = writeln!(std::io::stderr().lock(), "{}\x1b[K", self.line(s));
        }
    }
}
