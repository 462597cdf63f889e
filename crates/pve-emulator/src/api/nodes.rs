//! /version and /nodes: the host this emulator runs on, seen as PVE nodes.

use serde_json::{json, Value};

use super::{ok, App, R};

pub(super) fn version() -> R {
    ok(json!({"version": "9.1.3", "release": "9.1", "repoid": "pve-emulator"}))
}

fn meminfo() -> (u64, u64, u64) {
    let t = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let get = |k: &str| {
        t.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let total = get("MemTotal:");
    let avail = get("MemAvailable:");
    (total, total - avail, get("MemFree:"))
}

fn host_uptime() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split('.').next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

pub(super) fn ncpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn loadavg() -> Vec<String> {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .map(str::to_string)
        .collect()
}

pub(super) fn list(app: &App) -> Value {
    let (total, used, _) = meminfo();
    let load: f64 = loadavg()
        .first()
        .and_then(|l| l.parse().ok())
        .unwrap_or(0.0);
    json!(app
        .nodes
        .iter()
        .map(|n| json!({
            "node": n, "status": "online", "type": "node", "id": format!("node/{n}"),
            "cpu": (load / ncpus() as f64).min(1.0), "maxcpu": ncpus(), "mem": used, "maxmem": total,
            "uptime": host_uptime(), "level": "", "ssl_fingerprint": app.fingerprint,
        }))
        .collect::<Vec<_>>())
}

pub(super) fn status() -> Value {
    let (total, used, free) = meminfo();
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':').map(|x| x.1.trim().to_string()))
        .unwrap_or_default();
    let root = nix::sys::statvfs::statvfs("/").ok();
    let (rt, ra) = root
        .map(|s| {
            (
                s.blocks() * s.fragment_size(),
                s.blocks_available() * s.fragment_size(),
            )
        })
        .unwrap_or((0, 0));
    let kernel = nix::sys::utsname::uname().ok();
    let load: f64 = loadavg()
        .first()
        .and_then(|l| l.parse().ok())
        .unwrap_or(0.0);
    let boot = if std::path::Path::new("/sys/firmware/efi").exists() {
        "efi"
    } else {
        "legacy-bios"
    };
    json!({
        "cpu": (load / ncpus() as f64).min(1.0), "uptime": host_uptime(), "loadavg": loadavg(),
        "cpuinfo": {"cores": ncpus(), "cpus": ncpus(), "sockets": 1, "model": model},
        "memory": {"total": total, "used": used, "free": free, "available": total - used},
        "rootfs": {"total": rt, "avail": ra, "used": rt - ra, "free": ra},
        "pveversion": "pve-manager/9.1.3/pve-emulator",
        "current-kernel": {
            "sysname": kernel.as_ref().map(|k| k.sysname().to_string_lossy().to_string()).unwrap_or_default(),
            "release": kernel.as_ref().map(|k| k.release().to_string_lossy().to_string()).unwrap_or_default(),
            "version": kernel.as_ref().map(|k| k.version().to_string_lossy().to_string()).unwrap_or_default(),
            "machine": kernel.as_ref().map(|k| k.machine().to_string_lossy().to_string()).unwrap_or_default(),
        },
        "boot-info": {"mode": boot},
    })
}
