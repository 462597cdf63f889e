//! Counters the kernel keeps, read as pvestatd reads them: the node's CPU
//! times, bytes through network interfaces, a cgroup's block I/O. All are
//! monotonic; rates come from two readings (see `sampler`).

use std::path::Path;

/// (busy, iowait, total) jiffies of all CPUs, from /proc/stat.
pub fn cpu_times() -> Option<(u64, u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is
    // already in user/nice).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0);
    let iowait = v.get(4).copied().unwrap_or(0);
    Some((total - idle - iowait, iowait, total))
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// (rx, tx) bytes of one interface; None when it does not exist.
pub fn iface_bytes(name: &str) -> Option<(u64, u64)> {
    let d = Path::new("/sys/class/net").join(name).join("statistics");
    Some((
        read_u64(&d.join("rx_bytes"))?,
        read_u64(&d.join("tx_bytes"))?,
    ))
}

/// (rx, tx) bytes summed over the host's own NICs: not loopback, not a
/// bridge, not a guest's veth/tap (their traffic is the guests').
pub fn host_net_bytes() -> (u64, u64) {
    let mut rx = 0;
    let mut tx = 0;
    for e in std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().to_string();
        let guest = ["veth", "tap", "fwbr", "fwpr", "fwln"]
            .iter()
            .any(|p| name.starts_with(p));
        if name == "lo" || guest || e.path().join("bridge").exists() {
            continue;
        }
        if let Some((r, t)) = iface_bytes(&name) {
            rx += r;
            tx += t;
        }
    }
    (rx, tx)
}

/// (read, written) bytes of a cgroup's block I/O: `io.stat` (v2) or
/// `blkio.throttle.io_service_bytes` (v1).
pub fn cgroup_io_bytes(dir: &Path) -> (u64, u64) {
    if let Ok(t) = std::fs::read_to_string(dir.join("io.stat")) {
        let mut r = 0;
        let mut w = 0;
        for field in t.split_whitespace() {
            if let Some(v) = field.strip_prefix("rbytes=") {
                r += v.parse::<u64>().unwrap_or(0);
            } else if let Some(v) = field.strip_prefix("wbytes=") {
                w += v.parse::<u64>().unwrap_or(0);
            }
        }
        return (r, w);
    }
    let t =
        std::fs::read_to_string(dir.join("blkio.throttle.io_service_bytes")).unwrap_or_default();
    let mut r = 0;
    let mut w = 0;
    for l in t.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let [_, op, n] = f[..] {
            match op {
                "Read" => r += n.parse::<u64>().unwrap_or(0),
                "Write" => w += n.parse::<u64>().unwrap_or(0),
                _ => {}
            }
        }
    }
    (r, w)
}

/// (total, used) swap bytes, from /proc/meminfo.
pub fn swap() -> (u64, u64) {
    let t = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let get = |k: &str| {
        t.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let total = get("SwapTotal:");
    (total, total.saturating_sub(get("SwapFree:")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_times_grow() {
        let (b1, _, t1) = cpu_times().unwrap();
        let mut x = 0u64;
        for i in 0..30_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let (b2, _, t2) = cpu_times().unwrap();
        assert!(t2 > t1 && b2 >= b1 && b2 - b1 <= t2 - t1);
    }

    #[test]
    fn loopback_counts_bytes() {
        let (_, tx1) = iface_bytes("lo").expect("lo exists");
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(&[7u8; 1000], rx.local_addr().unwrap()).unwrap();
        let (_, tx2) = iface_bytes("lo").unwrap();
        assert!(tx2 >= tx1 + 1000, "{tx1} -> {tx2}");
        assert!(iface_bytes("no-such-if0").is_none());
    }

    #[test]
    fn io_stat_is_summed() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("io.stat"),
            "8:0 rbytes=100 wbytes=20 rios=1 wios=1\n8:16 rbytes=5 wbytes=7 rios=1 wios=1\n",
        )
        .unwrap();
        assert_eq!(cgroup_io_bytes(d.path()), (105, 27));
        std::fs::remove_file(d.path().join("io.stat")).unwrap();
        std::fs::write(
            d.path().join("blkio.throttle.io_service_bytes"),
            "8:0 Read 40\n8:0 Write 2\n8:0 Total 42\nTotal 42\n",
        )
        .unwrap();
        assert_eq!(cgroup_io_bytes(d.path()), (40, 2));
    }
}
