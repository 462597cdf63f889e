//! Per-scrape readings: containers (cgroups, /proc, ZFS on the lxc engine;
//! the CT's status on pve-lxc) and storage pools. Series carry a container
//! id only while the container exists, so the label set stays bounded by the
//! live containers.
use std::path::Path;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use proxmox_lxcri_runtime::engine::{pve_lxc, EngineRecord};
use proxmox_lxcri_runtime::{Runtime, Status};

use crate::events::{EventMetrics, Source};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Gauge,
    Counter,
}

#[derive(Debug, Clone)]
struct Sample {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    labels: Vec<(&'static str, String)>,
    value: f64,
}

/// The readings of the last scrape, encoded by the registry.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    samples: Arc<Mutex<Vec<Sample>>>,
}

impl Collector for Usage {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<&'static str> = samples.iter().map(|s| s.name).collect();
        names.dedup();
        names.sort();
        names.dedup();
        for name in names {
            let group: Vec<&Sample> = samples.iter().filter(|s| s.name == name).collect();
            let first = group[0];
            let ty = match first.kind {
                Kind::Gauge => MetricType::Gauge,
                Kind::Counter => MetricType::Counter,
            };
            let mut family = encoder.encode_descriptor(name, first.help, None, ty)?;
            if group.len() == 1 && first.labels.is_empty() {
                // No labels: `name 1`, not `name{} 1`.
                match first.kind {
                    Kind::Gauge => ConstGauge::new(first.value).encode(family)?,
                    Kind::Counter => ConstCounter::new(first.value).encode(family)?,
                }
                continue;
            }
            for s in group {
                let enc = family.encode_family(&s.labels)?;
                match s.kind {
                    Kind::Gauge => ConstGauge::new(s.value).encode(enc)?,
                    Kind::Counter => ConstCounter::new(s.value).encode(enc)?,
                }
            }
        }
        Ok(())
    }
}

struct Out(Vec<Sample>);

impl Out {
    fn gauge(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
        v: f64,
    ) {
        self.push(name, help, Kind::Gauge, labels, v)
    }
    fn counter(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
        v: f64,
    ) {
        self.push(name, help, Kind::Counter, labels, v)
    }
    fn push(
        &mut self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        labels: &[(&'static str, &str)],
        v: f64,
    ) {
        self.0.push(Sample {
            name,
            help,
            kind,
            labels: labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            value: v,
        })
    }
}

/// Reads the usage of everything under one runtime root.
pub struct Reader {
    pub rt: Runtime,
    pve: Option<pve_client::Client>,
    pve_error: Option<String>,
}

impl Reader {
    /// `events` receives the exporter's own API requests.
    pub fn new(rt: Runtime, events: EventMetrics) -> Self {
        let (pve, pve_error) = match &rt.config.pve {
            Some(cfg) => match pve_lxc::connect(cfg) {
                Ok(mut c) => {
                    c.set_observer(Arc::new(move |r| {
                        events.api(
                            r.method,
                            &r.endpoint,
                            r.status,
                            r.duration.as_secs_f64(),
                            Source::Exporter,
                        )
                    }));
                    (Some(c), None)
                }
                Err(e) => (None, Some(e.to_string())),
            },
            None => (None, None),
        };
        Reader { rt, pve, pve_error }
    }

    /// Refresh `usage` with a reading taken now.
    pub fn read(&self, usage: &Usage) {
        let mut out = Out(vec![]);
        let mut failures: Vec<(&'static str, String)> = vec![];
        if let Some(e) = &self.pve_error {
            failures.push(("pve", e.clone()));
        }
        self.containers(&mut out, &mut failures);
        self.storage(&mut out, &mut failures);
        self.ipam(&mut out, &mut failures);
        for (part, why) in &failures {
            tracing::warn!(part, "metrics: {why}");
        }
        // An info metric as a gauge: promtool (Prometheus 2.42) knows no "info" type.
        out.gauge(
            "build_info",
            "Version of the exporter (always 1)",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        );
        out.gauge(
            "read_failures",
            "Parts of the last reading that failed (see the exporter's log)",
            &[],
            failures.len() as f64,
        );
        *usage.samples.lock().unwrap_or_else(|e| e.into_inner()) = out.0;
    }

    fn containers(&self, out: &mut Out, failures: &mut Vec<(&'static str, String)>) {
        let all = match self.rt.list() {
            Ok(a) => a,
            Err(e) => {
                failures.push(("containers", e.to_string()));
                return;
            }
        };
        let mut by_status: std::collections::BTreeMap<(&'static str, String), u64> =
            Default::default();
        for st in &all {
            *by_status
                .entry((st.engine.name(), st.status.to_string()))
                .or_default() += 1;
        }
        for ((engine, status), n) in by_status {
            out.gauge(
                "containers",
                "Containers of this runtime root by engine and status",
                &[("engine", engine), ("status", &status)],
                n as f64,
            );
        }
        for st in &all {
            if !matches!(
                st.status,
                Status::Created | Status::Running | Status::Paused
            ) {
                continue;
            }
            let engine = st.engine.name();
            let l = [("id", st.id.as_str()), ("engine", engine)];
            let pid = st.init.map(|p| p.pid);
            match &st.engine {
                EngineRecord::Lxc(rec) => {
                    if let Some(pid) = pid {
                        cgroup_usage(out, &l, pid);
                        net_usage(out, &l, pid);
                    }
                    if let Some(vol) = &rec.volume {
                        if let Err(e) = self.volume_usage(out, &l, vol) {
                            failures.push(("volume", format!("{}: {e}", st.id)));
                        }
                    }
                }
                EngineRecord::PveLxc(_) => {
                    // pids are not in the CT status; the CT runs on this
                    // node, so its cgroup is read here.
                    if let Some(pid) = pid {
                        let stats = proxmox_lxcri_cgroups::Cgroup::of_pid(pid).stats();
                        if let Some(n) = stats.pids.and_then(|p| p.current) {
                            out.gauge("container_pids", "Processes in the container", &l, n as f64);
                        }
                    }
                    if let Err(e) = self.ct_usage(out, &l, st) {
                        failures.push(("pve", format!("{}: {e}", st.id)));
                    }
                }
                EngineRecord::PveVm(_) => {
                    // The process runs in the guest: the VM's status is
                    // all the node knows (QEMU's memory, its CPU share).
                    if let Err(e) = self.vm_usage(out, &l, st) {
                        failures.push(("pve", format!("{}: {e}", st.id)));
                    }
                }
                // Inside the pod's VM: the VM's usage is the sandbox's.
                EngineRecord::VmMember(_) => {}
                // Inside the pod's CT: its own cgroup, the pod's network.
                EngineRecord::PodMember(_) => {
                    if let Some(pid) = pid {
                        cgroup_usage(out, &l, pid);
                    }
                }
            }
        }
    }

    fn volume_usage(
        &self,
        out: &mut Out,
        l: &[(&'static str, &str)],
        vol: &storage::Volume,
    ) -> Result<(), String> {
        let Some(s) = self.rt.storage().map_err(|e| e.to_string())? else {
            return Ok(());
        };
        if vol.kind != storage::Kind::Zfs {
            return Ok(());
        }
        let zfs = s.zfs();
        let used = zfs.get_u64(&vol.name, "used").map_err(|e| e.to_string())?;
        out.gauge(
            "container_rootfs_used_bytes",
            "Bytes used by the container's rootfs volume (ZFS used; CT disk on pve-lxc)",
            l,
            used as f64,
        );
        let quota = zfs.get_u64(&vol.name, "refquota").unwrap_or(0);
        let quota = if quota > 0 {
            quota
        } else {
            zfs.get_u64(&vol.name, "quota").unwrap_or(0)
        };
        if quota > 0 {
            out.gauge("container_rootfs_limit_bytes", "Size limit of the container's rootfs volume (ZFS refquota or quota; CT maxdisk on pve-lxc)", l, quota as f64);
        }
        Ok(())
    }

    fn vm_usage(
        &self,
        out: &mut Out,
        l: &[(&'static str, &str)],
        st: &proxmox_lxcri_runtime::ContainerState,
    ) -> Result<(), String> {
        let Some(rec) = proxmox_lxcri_runtime::engine::pve_vm::record_of(st) else {
            return Ok(());
        };
        let Some(vmid) = rec.vmid.filter(|_| rec.created) else {
            return Ok(());
        };
        let Some(c) = &self.pve else {
            return Err("no Proxmox client".into());
        };
        let s = c.qemu_status(&rec.node, vmid).map_err(|e| e.to_string())?;
        guest_gauges(out, l, s.cpu, s.mem, s.maxmem);
        Ok(())
    }

    fn ct_usage(
        &self,
        out: &mut Out,
        l: &[(&'static str, &str)],
        st: &proxmox_lxcri_runtime::ContainerState,
    ) -> Result<(), String> {
        let Some(rec) = pve_lxc::record_of(st) else {
            return Ok(());
        };
        let Some(vmid) = rec.vmid.filter(|_| rec.created) else {
            return Ok(());
        };
        let Some(c) = &self.pve else {
            return Err("no Proxmox client".into());
        };
        let s = c.lxc_status(&rec.node, vmid).map_err(|e| e.to_string())?;
        guest_gauges(out, l, s.cpu, s.mem, s.maxmem);
        out.counter(
            "container_network_receive_bytes",
            "Bytes received by the container's interfaces (all but lo)",
            l,
            s.netin as f64,
        );
        out.counter(
            "container_network_transmit_bytes",
            "Bytes sent by the container's interfaces (all but lo)",
            l,
            s.netout as f64,
        );
        out.gauge(
            "container_rootfs_used_bytes",
            "Bytes used by the container's rootfs volume (ZFS used; CT disk on pve-lxc)",
            l,
            s.disk as f64,
        );
        if s.maxdisk > 0 {
            out.gauge("container_rootfs_limit_bytes", "Size limit of the container's rootfs volume (ZFS refquota or quota; CT maxdisk on pve-lxc)", l, s.maxdisk as f64);
        }
        Ok(())
    }

    /// Per configured network and address family: the pool's size and
    /// how much of it is leased.
    fn ipam(&self, out: &mut Out, failures: &mut Vec<(&'static str, String)>) {
        if self.rt.config.network.is_empty() {
            return;
        }
        let ipam = proxmox_lxcri_runtime::network::ipam(&self.rt);
        for (name, net) in &self.rt.config.network {
            let leases = match ipam.leases(name) {
                Ok(l) => l,
                Err(e) => {
                    failures.push(("ipam", format!("{name}: {e}")));
                    continue;
                }
            };
            for (v4, family) in [(true, "ipv4"), (false, "ipv6")] {
                if !net.subnet.iter().any(|s| s.addr().is_ipv4() == v4) {
                    continue;
                }
                let l = [("network", name.as_str()), ("family", family)];
                let size = proxmox_lxcri_network::pool_size(net, v4);
                out.gauge(
                    "ipam_pool_addresses",
                    "Addresses the IPAM can hand out on a network (its ranges without network, broadcast and gateways)",
                    &l,
                    size as f64,
                );
                let used = leases
                    .iter()
                    .flat_map(|x| x.addrs.iter())
                    .filter(|a| a.addr().is_ipv4() == v4)
                    .count();
                out.gauge(
                    "ipam_leased_addresses",
                    "Addresses of a network's pool leased to containers",
                    &l,
                    used as f64,
                );
            }
        }
    }

    fn storage(&self, out: &mut Out, failures: &mut Vec<(&'static str, String)>) {
        match self.rt.storage() {
            Ok(Some(s)) => {
                let cfg = s.config();
                match cfg.kind {
                    storage::Kind::Zfs => {
                        let parent = cfg.zfs_parent.clone().unwrap_or_default();
                        let zfs = s.zfs();
                        match (
                            zfs.get_u64(&parent, "used"),
                            zfs.get_u64(&parent, "available"),
                        ) {
                            (Ok(used), Ok(avail)) => {
                                let name = format!("zfs:{parent}");
                                pool(out, &name, used, avail);
                            }
                            (Err(e), _) | (_, Err(e)) => failures.push(("storage", e.to_string())),
                        }
                    }
                    _ => match statvfs(&cfg.dir_root) {
                        Ok((used, avail)) => {
                            let name = format!("dir:{}", cfg.dir_root.display());
                            pool(out, &name, used, avail)
                        }
                        Err(e) => {
                            failures.push(("storage", format!("{}: {e}", cfg.dir_root.display())))
                        }
                    },
                }
                let images = s.images().map(|i| i.len()).unwrap_or(0);
                out.gauge(
                    "images_cached",
                    "Images in the image cache",
                    &[],
                    images as f64,
                );
            }
            Ok(None) => {}
            Err(e) => failures.push(("storage", e.to_string())),
        }
        if let (Some(c), Some(cfg)) = (&self.pve, &self.rt.config.pve) {
            match c.storage_list(&cfg.node) {
                Ok(list) => {
                    for s in list {
                        if s.storage != cfg.storage && s.storage != cfg.template_storage {
                            continue;
                        }
                        if let (Some(used), Some(avail)) = (s.used, s.avail) {
                            pool(out, &format!("pve:{}", s.storage), used, avail);
                        }
                    }
                }
                Err(e) => failures.push(("pve", e.to_string())),
            }
        }
    }
}

fn pool(out: &mut Out, name: &str, used: u64, avail: u64) {
    let l = [("storage", name)];
    out.gauge(
        "storage_used_bytes",
        "Bytes used in a storage pool the runtime puts rootfs volumes in",
        &l,
        used as f64,
    );
    out.gauge(
        "storage_available_bytes",
        "Bytes still available in that storage pool",
        &l,
        avail as f64,
    );
}

fn cgroup_usage(out: &mut Out, l: &[(&'static str, &str)], pid: i32) {
    let stats = proxmox_lxcri_cgroups::Cgroup::of_pid(pid).stats();
    if let Some(ns) = stats.cpu.usage.and_then(|u| u.total) {
        out.counter(
            "container_cpu_seconds",
            "CPU time used by the container (cgroup)",
            l,
            ns as f64 / 1e9,
        );
    }
    if let Some(m) = &stats.memory {
        if let Some(u) = m.usage.usage {
            out.gauge(
                "container_memory_bytes",
                "Memory in use by the container",
                l,
                u as f64,
            );
        }
        if let Some(lim) = m.usage.limit {
            out.gauge(
                "container_memory_limit_bytes",
                "Memory limit of the container",
                l,
                lim as f64,
            );
        }
    }
    if let Some(n) = stats.pids.and_then(|p| p.current) {
        out.gauge("container_pids", "Processes in the container", l, n as f64);
    }
}

/// Bytes through the container's interfaces, from its network namespace's
/// /proc/<pid>/net/dev (lo left out).
fn net_usage(out: &mut Out, l: &[(&'static str, &str)], pid: i32) {
    // A container in the host's network namespace has no traffic of its
    // own to report (its net/dev would be the host's).
    let ns = |p: &str| std::fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    match (ns(&format!("/proc/{pid}/ns/net")), ns("/proc/self/ns/net")) {
        (Ok(a), Ok(b)) if a != b => {}
        _ => return,
    }
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/dev")) else {
        return;
    };
    let (rx, tx) = parse_net_dev(&text);
    out.counter(
        "container_network_receive_bytes",
        "Bytes received by the container's interfaces (all but lo)",
        l,
        rx as f64,
    );
    out.counter(
        "container_network_transmit_bytes",
        "Bytes sent by the container's interfaces (all but lo)",
        l,
        tx as f64,
    );
}

fn parse_net_dev(text: &str) -> (u64, u64) {
    let (mut rx, mut tx) = (0u64, 0u64);
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if f.len() >= 9 {
            rx += f[0];
            tx += f[8];
        }
    }
    (rx, tx)
}

fn statvfs(p: &Path) -> std::io::Result<(u64, u64)> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::other("path has a NUL byte"))?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and a zeroed out-struct.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let f = s.f_frsize;
    Ok(((s.f_blocks - s.f_bfree) * f, s.f_bavail * f))
}

/// What a Proxmox guest's status/current says of CPU and memory, the same
/// metrics for a CT and a VM.
fn guest_gauges(out: &mut Out, l: &[(&'static str, &str)], cpu: f64, mem: u64, maxmem: u64) {
    out.gauge(
        "container_cpu_usage_ratio",
        "CPU use of a Proxmox guest as its status reports it (1 = one CPU busy)",
        l,
        cpu,
    );
    out.gauge(
        "container_memory_bytes",
        "Memory in use by the container",
        l,
        mem as f64,
    );
    if maxmem > 0 {
        out.gauge(
            "container_memory_limit_bytes",
            "Memory limit of the container",
            l,
            maxmem as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_sums_all_but_lo() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:  100 1 0 0 0 0 0 0  100 1 0 0 0 0 0 0\n  eth0: 2000 10 0 0 0 0 0 0 3000 20 0 0 0 0 0 0\n  eth1: 5 1 0 0 0 0 0 0 7 1 0 0 0 0 0 0\n";
        assert_eq!(parse_net_dev(text), (2005, 3007));
    }
}
