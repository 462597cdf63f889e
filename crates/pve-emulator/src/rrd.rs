//! Round-robin statistics, as pvestatd keeps them in RRD files: every
//! sample is added to one bucket per time frame, and `rrddata` reads the
//! last [`ROWS`] buckets of a frame, averaged or maximal. Buckets no sample
//! reached carry only their `time` (RRD's unknown values are left out).
//!
//! Kept in memory: a restarted emulator starts with empty history, as a
//! node whose RRD files were removed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use serde_json::{json, Map, Value};

/// Rows per answer (pve-manager's RRDs have 70 rows per archive).
pub const ROWS: usize = 70;

/// (time frame, seconds per row). `decade` exists for nodes only.
pub const FRAMES: &[(&str, i64)] = &[
    ("hour", 60),
    ("day", 30 * 60),
    ("week", 3 * 3600),
    ("month", 12 * 3600),
    ("year", 7 * 86400),
    ("decade", 70 * 86400),
];

#[derive(Default, Clone)]
struct Bucket {
    start: i64,
    /// Per value: (sum, samples).
    sum: BTreeMap<String, (f64, u32)>,
    max: BTreeMap<String, f64>,
}

#[derive(Default)]
struct Series {
    /// One ring of buckets per entry of [`FRAMES`].
    frames: Vec<VecDeque<Bucket>>,
}

/// Consolidation function of `rrddata`'s `cf`.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Cf {
    Average,
    Max,
}

impl Cf {
    pub fn parse(s: Option<&str>) -> Cf {
        match s {
            Some("MAX") => Cf::Max,
            _ => Cf::Average,
        }
    }
}

/// Series by resource key (`node/pve`, `lxc/100`, `storage/pve/local`).
#[derive(Default)]
pub struct Rrd {
    series: Mutex<HashMap<String, Series>>,
}

impl Rrd {
    /// Adds one sample of `values` taken at `time` (epoch seconds).
    pub fn add(&self, key: &str, time: i64, values: &BTreeMap<String, f64>) {
        let mut all = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let s = all.entry(key.to_string()).or_default();
        if s.frames.is_empty() {
            s.frames = vec![VecDeque::new(); FRAMES.len()];
        }
        for (ring, (_, step)) in s.frames.iter_mut().zip(FRAMES) {
            let start = time - time.rem_euclid(*step);
            if ring.back().is_none_or(|b| b.start != start) {
                ring.push_back(Bucket {
                    start,
                    ..Default::default()
                });
                while ring.len() > ROWS {
                    ring.pop_front();
                }
            }
            let b = ring.back_mut().expect("just pushed");
            for (k, v) in values {
                if !v.is_finite() {
                    continue;
                }
                let e = b.sum.entry(k.clone()).or_default();
                e.0 += v;
                e.1 += 1;
                let m = b.max.entry(k.clone()).or_insert(*v);
                *m = m.max(*v);
            }
        }
    }

    /// Keeps only the series `keep` admits: a destroyed guest's history
    /// goes with it, so memory stays bounded by what exists.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| keep(k));
    }

    /// The last [`ROWS`] rows of `frame` up to `now`, oldest first. None
    /// for an unknown frame.
    pub fn rows(&self, key: &str, frame: &str, cf: Cf, now: i64) -> Option<Vec<Value>> {
        let idx = FRAMES.iter().position(|(f, _)| *f == frame)?;
        let step = FRAMES[idx].1;
        let last = now - now.rem_euclid(step);
        let all = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let ring = all.get(key).and_then(|s| s.frames.get(idx));
        let rows = (0..ROWS as i64)
            .rev()
            .map(|i| {
                let t = last - i * step;
                let mut row = Map::new();
                row.insert("time".into(), json!(t));
                if let Some(b) = ring.and_then(|r| r.iter().find(|b| b.start == t)) {
                    for (k, (sum, n)) in &b.sum {
                        let v = match cf {
                            Cf::Average => sum / *n as f64,
                            Cf::Max => b.max[k],
                        };
                        row.insert(k.clone(), json!(v));
                    }
                }
                Value::Object(row)
            })
            .collect();
        Some(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(kv: &[(&str, f64)]) -> BTreeMap<String, f64> {
        kv.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn consolidates_per_frame() {
        let r = Rrd::default();
        // Two samples in one minute, one in the next.
        r.add("lxc/100", 6000, &vals(&[("cpu", 0.2), ("mem", 100.0)]));
        r.add("lxc/100", 6030, &vals(&[("cpu", 0.4), ("mem", 300.0)]));
        r.add("lxc/100", 6060, &vals(&[("cpu", 1.0), ("mem", f64::NAN)]));
        let rows = r.rows("lxc/100", "hour", Cf::Average, 6070).unwrap();
        assert_eq!(rows.len(), ROWS);
        let last = &rows[ROWS - 1];
        assert_eq!(last["time"], 6060);
        assert_eq!(last["cpu"], 1.0);
        assert!(last.get("mem").is_none(), "NaN is unknown: {last}");
        let prev = &rows[ROWS - 2];
        assert_eq!(prev["time"], 6000);
        assert!((prev["cpu"].as_f64().unwrap() - 0.3).abs() < 1e-9);
        assert_eq!(prev["mem"], 200.0);
        // No sample: the row has only its time.
        assert_eq!(rows[0].as_object().unwrap().len(), 1);
        let max = r.rows("lxc/100", "hour", Cf::Max, 6070).unwrap();
        assert_eq!(max[ROWS - 2]["mem"], 300.0);
        // The day frame's bucket (30 min) holds all three.
        let day = r.rows("lxc/100", "day", Cf::Average, 6070).unwrap();
        let b = &day[ROWS - 1];
        assert_eq!(b["time"], 5400);
        assert!((b["cpu"].as_f64().unwrap() - 1.6 / 3.0).abs() < 1e-9);
        assert!(r.rows("lxc/100", "fortnight", Cf::Max, 0).is_none());
        r.retain(|k| k != "lxc/100");
        let gone = r.rows("lxc/100", "hour", Cf::Average, 6070).unwrap();
        assert!(gone.iter().all(|row| row.as_object().unwrap().len() == 1));
    }
}
