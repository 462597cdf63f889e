//! pvestatd's job: every interval, read the node, its storages and every
//! guest from the kernel and the storage backends, and add one sample each
//! to the RRD. Counters (CPU time, bytes) become per-second rates between
//! two readings, as RRD's DERIVE sources do.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::api::App;
use crate::stats;
use crate::store::Kind;

type Values = BTreeMap<String, f64>;

/// Runs [`sample`] now and then every `interval`, forever, in a thread.
pub fn spawn(app: Arc<App>, interval: Duration) {
    std::thread::spawn(move || {
        let mut prev = Prev::default();
        loop {
            sample(&app, &mut prev);
            std::thread::sleep(interval);
        }
    });
}

/// The last counter readings of each series, for rates.
#[derive(Default)]
pub struct Prev(HashMap<String, (f64, Values)>);

impl Prev {
    /// Rates of `counters` per second since `key`'s last reading. None the
    /// first time, or for a counter that went back (a restarted guest).
    fn rates(&mut self, key: &str, now: f64, counters: Values) -> Values {
        let mut out = Values::new();
        if let Some((t, old)) = self.0.get(key) {
            let dt = now - t;
            for (k, v) in &counters {
                if let Some(o) = old.get(k).filter(|o| *o <= v && dt > 0.0) {
                    out.insert(k.clone(), (v - o) / dt);
                }
            }
        }
        self.0.insert(key.to_string(), (now, counters));
        out
    }
}

fn vals(kv: &[(&str, f64)]) -> Values {
    kv.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// One round over everything the emulator has.
pub fn sample(app: &App, prev: &mut Prev) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let t = now as i64;
    for node in &app.nodes {
        let key = format!("node/{node}");
        let v = node_values(&key, now, prev);
        app.rrd.add(&key, t, &v);
        for s in &app.storages {
            let (total, used, _) = s.status();
            let v = vals(&[("total", total as f64), ("used", used as f64)]);
            app.rrd.add(&format!("storage/{node}/{}", s.id), t, &v);
        }
    }
    let mut guests = std::collections::HashSet::new();
    for (node, kind, id) in app.store.list() {
        let key = format!("{}/{id}", kind_name(kind));
        if let Some(v) = guest_values(app, &node, kind, id, &key, now, prev) {
            app.rrd.add(&key, t, &v);
        }
        guests.insert(key);
    }
    // Guests that are gone take their history along.
    let is_guest = |k: &str| k.starts_with("lxc/") || k.starts_with("qemu/");
    app.rrd.retain(|k| !is_guest(k) || guests.contains(k));
    prev.0.retain(|k, _| !is_guest(k) || guests.contains(k));
}

pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Lxc => "lxc",
        Kind::Qemu => "qemu",
    }
}

/// The node: CPU and I/O wait shares, load, memory, swap, root fs, NIC rates.
fn node_values(key: &str, now: f64, prev: &mut Prev) -> Values {
    let status = crate::api::node_status();
    let g = |a: &str, b: &str| status[a][b].as_f64().unwrap_or(0.0);
    let (swap_total, swap_used) = stats::swap();
    let mut v = vals(&[
        ("maxcpu", status["cpuinfo"]["cpus"].as_f64().unwrap_or(1.0)),
        (
            "loadavg",
            status["loadavg"][0]
                .as_str()
                .and_then(|l| l.parse().ok())
                .unwrap_or(0.0),
        ),
        ("memtotal", g("memory", "total")),
        ("memused", g("memory", "used")),
        ("swaptotal", swap_total as f64),
        ("swapused", swap_used as f64),
        ("roottotal", g("rootfs", "total")),
        ("rootused", g("rootfs", "used")),
    ]);
    let mut counters = Values::new();
    if let Some((busy, iowait, total)) = stats::cpu_times() {
        counters.insert("busy".into(), busy as f64);
        counters.insert("iowait".into(), iowait as f64);
        counters.insert("total".into(), total as f64);
    }
    let (rx, tx) = stats::host_net_bytes();
    counters.insert("netin".into(), rx as f64);
    counters.insert("netout".into(), tx as f64);
    let r = prev.rates(key, now, counters);
    if let (Some(b), Some(w), Some(t)) = (r.get("busy"), r.get("iowait"), r.get("total")) {
        if *t > 0.0 {
            v.insert("cpu".into(), b / t);
            v.insert("iowait".into(), w / t);
        }
    }
    for k in ["netin", "netout"] {
        if let Some(x) = r.get(k) {
            v.insert(k.into(), *x);
        }
    }
    v
}

/// A guest: what status/current shows, with CPU and traffic as rates.
fn guest_values(
    app: &App,
    node: &str,
    kind: Kind,
    id: u32,
    key: &str,
    now: f64,
    prev: &mut Prev,
) -> Option<Values> {
    let (conf, _) = app.store.read(node, kind, id).ok()?;
    let s = crate::api::guest_status(app, kind, id, &conf.main);
    let num = |k: &str| s[k].as_f64().unwrap_or(0.0);
    let maxcpu = num("cpus");
    let mut v = vals(&[
        ("maxcpu", maxcpu),
        ("mem", num("mem")),
        ("maxmem", num("maxmem")),
        ("disk", num("disk")),
        ("maxdisk", num("maxdisk")),
    ]);
    let running = s["status"] == "running";
    if !running {
        // Nothing runs, so nothing is used or moved.
        for k in ["cpu", "netin", "netout", "diskread", "diskwrite"] {
            v.insert(k.into(), 0.0);
        }
        prev.0.remove(key);
        return Some(v);
    }
    let mut counters = Values::new();
    // Only a CT has a real process (a QEMU guest's run is emulated).
    if let Some(pid) = s["pid"].as_u64().filter(|_| kind == Kind::Lxc) {
        counters.insert(
            "cpu".into(),
            crate::runner::cpu_seconds(pid as u32) / maxcpu.max(1.0),
        );
    }
    for k in ["netin", "netout", "diskread", "diskwrite"] {
        counters.insert(k.into(), num(k));
    }
    for (k, r) in prev.rates(key, now, counters) {
        let r = if k == "cpu" { r.min(1.0) } else { r };
        v.insert(k, r);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_between_readings() {
        let mut p = Prev::default();
        assert!(p.rates("x", 10.0, vals(&[("n", 100.0)])).is_empty());
        let r = p.rates("x", 12.0, vals(&[("n", 300.0)]));
        assert_eq!(r["n"], 100.0);
        // A counter that went back (restart) gives no rate, then resumes.
        assert!(p.rates("x", 14.0, vals(&[("n", 5.0)])).is_empty());
        assert_eq!(p.rates("x", 15.0, vals(&[("n", 10.0)]))["n"], 5.0);
    }
}
