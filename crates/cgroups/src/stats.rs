//! Container stats in runc's `events --stats` shape (the `data` object).
//!
//! Serialized, they are the JSON runc prints: sections the host has no
//! cgroup for are `{}`, values whose file could not be read are `null`.
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Serialize, Serializer};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub cpu: Cpu,
    /// None (`{}`) without a memory cgroup.
    #[serde(serialize_with = "or_empty")]
    pub memory: Option<Memory>,
    /// None (`{}`) without a pids cgroup.
    #[serde(serialize_with = "or_empty")]
    pub pids: Option<Pids>,
    pub blkio: Blkio,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Cpu {
    /// None (`{}`) without a cpuacct (v1) or unified cgroup.
    #[serde(serialize_with = "or_empty")]
    pub usage: Option<CpuUsage>,
    pub throttling: Throttling,
}

/// CPU time in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuUsage {
    pub total: Option<u64>,
    pub kernel: Option<u64>,
    pub user: Option<u64>,
    /// Per CPU, from cgroup v1's cpuacct only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percpu: Option<Vec<u64>>,
}

/// Not collected (yet): always `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Throttling {}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Memory {
    pub usage: MemoryUsage,
    /// memory.stat, as is.
    pub raw: BTreeMap<String, u64>,
}

/// Bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemoryUsage {
    pub usage: Option<u64>,
    /// None when unlimited (v2 `max`) or unreadable.
    pub limit: Option<u64>,
    /// Only cgroup v1 has these.
    #[serde(flatten)]
    pub v1: Option<MemoryUsageV1>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemoryUsageV1 {
    pub max: Option<u64>,
    pub failcnt: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Pids {
    pub current: Option<u64>,
    /// None when unlimited (`max`) or unreadable.
    pub limit: Option<u64>,
}

/// Not collected (yet): always `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Blkio {}

/// None as `{}`, as runc leaves a section it has nothing for.
fn or_empty<T: Serialize, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    match v {
        Some(v) => v.serialize(s),
        None => s.serialize_map(Some(0))?.end(),
    }
}

fn read_u64(p: PathBuf) -> Option<u64> {
    fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// "key number" lines (cpu.stat, memory.stat); other lines are skipped.
fn read_kv(p: PathBuf) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for l in fs::read_to_string(p).unwrap_or_default().lines() {
        if let Some((k, v)) = l.split_once(' ') {
            if let Ok(n) = v.trim().parse::<u64>() {
                m.insert(k.to_string(), n);
            }
        }
    }
    m
}

impl Stats {
    /// Stats from the cgroup directories `dir` finds: for a v1 controller,
    /// or the unified hierarchy with None (see [`crate::Cgroup::dir`]).
    pub(crate) fn read(dir: impl Fn(Option<&str>) -> Option<PathBuf>) -> Self {
        let usage = if let Some(d) = dir(Some("cpuacct")) {
            Some(cpu_v1(&d))
        } else {
            dir(None).map(|d| cpu_v2(&d))
        };
        let memory = if let Some(d) = dir(Some("memory")) {
            Some(Memory {
                usage: MemoryUsage {
                    usage: read_u64(d.join("memory.usage_in_bytes")),
                    limit: read_u64(d.join("memory.limit_in_bytes")),
                    v1: Some(MemoryUsageV1 {
                        max: read_u64(d.join("memory.max_usage_in_bytes")),
                        failcnt: read_u64(d.join("memory.failcnt")),
                    }),
                },
                raw: read_kv(d.join("memory.stat")),
            })
        } else {
            dir(None).map(|d| Memory {
                usage: MemoryUsage {
                    usage: read_u64(d.join("memory.current")),
                    limit: read_u64(d.join("memory.max")),
                    v1: None,
                },
                raw: read_kv(d.join("memory.stat")),
            })
        };
        let pids = dir(Some("pids")).or_else(|| dir(None)).map(|d| Pids {
            current: read_u64(d.join("pids.current")),
            limit: read_u64(d.join("pids.max")),
        });
        Stats {
            cpu: Cpu {
                usage,
                throttling: Throttling {},
            },
            memory,
            pids,
            blkio: Blkio {},
        }
    }
}

fn cpu_v1(d: &Path) -> CpuUsage {
    let percpu = fs::read_to_string(d.join("cpuacct.usage_percpu"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    CpuUsage {
        total: read_u64(d.join("cpuacct.usage")),
        kernel: read_u64(d.join("cpuacct.usage_sys")),
        user: read_u64(d.join("cpuacct.usage_user")),
        percpu: Some(percpu),
    }
}

/// cpu.stat counts microseconds.
fn cpu_v2(d: &Path) -> CpuUsage {
    let m = read_kv(d.join("cpu.stat"));
    let ns = |k: &str| m.get(k).map(|v| v * 1000);
    CpuUsage {
        total: ns("usage_usec"),
        kernel: ns("system_usec"),
        user: ns("user_usec"),
        percpu: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        fs::create_dir_all(dir).unwrap();
        for (name, text) in files {
            fs::write(dir.join(name), text).unwrap();
        }
    }

    #[test]
    fn nothing_found_is_runc_empty_sections() {
        let s = Stats::read(|_| None);
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({"cpu": {"usage": {}, "throttling": {}}, "memory": {}, "pids": {}, "blkio": {}})
        );
    }

    #[test]
    fn v1_files() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_path_buf();
        write(
            &root.join("cpuacct"),
            &[
                ("cpuacct.usage", "300\n"),
                ("cpuacct.usage_sys", "100\n"),
                ("cpuacct.usage_user", "200\n"),
                ("cpuacct.usage_percpu", "120 180 \n"),
            ],
        );
        write(
            &root.join("memory"),
            &[
                ("memory.usage_in_bytes", "4096\n"),
                ("memory.max_usage_in_bytes", "8192\n"),
                ("memory.limit_in_bytes", "134217728\n"),
                // failcnt unreadable: null
                ("memory.stat", "cache 10\nrss 20\nbogus x\n"),
            ],
        );
        write(
            &root.join("pids"),
            &[("pids.current", "3\n"), ("pids.max", "max\n")],
        );
        let s = Stats::read(|c| c.map(|c| root.join(c)).filter(|d| d.exists()));
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({
                "cpu": {"usage": {"total": 300, "kernel": 100, "user": 200, "percpu": [120, 180]}, "throttling": {}},
                "memory": {
                    "usage": {"usage": 4096, "max": 8192, "limit": 134217728, "failcnt": null},
                    "raw": {"cache": 10, "rss": 20}
                },
                "pids": {"current": 3, "limit": null},
                "blkio": {}
            })
        );
    }

    #[test]
    fn v2_files() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().to_path_buf();
        write(
            &d,
            &[
                ("cpu.stat", "usage_usec 5\nuser_usec 3\nsystem_usec 2\n"),
                ("memory.current", "4096\n"),
                ("memory.max", "max\n"),
                ("memory.stat", "anon 7\n"),
                ("pids.current", "2\n"),
                ("pids.max", "64\n"),
            ],
        );
        let s = Stats::read(|c| c.is_none().then(|| d.clone()));
        assert_eq!(s.cpu.usage.as_ref().unwrap().total, Some(5000));
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({
                "cpu": {"usage": {"total": 5000, "kernel": 2000, "user": 3000}, "throttling": {}},
                "memory": {"usage": {"usage": 4096, "limit": null}, "raw": {"anon": 7}},
                "pids": {"current": 2, "limit": 64},
                "blkio": {}
            })
        );
    }
}
