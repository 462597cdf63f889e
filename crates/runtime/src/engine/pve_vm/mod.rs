//! The pve-vm engine: each OCI container is a Proxmox VE QEMU VM, made
//! through the API, with its own kernel.
//!
//! ```text
//! plan:      spec -> VM create parameters (nothing sent); the guest kernel
//! configure: our initramfs (cached) -> nextid -> POST /nodes/N/qemu
//!            (virtio0 sized from the rootfs, serial0/serial1 sockets,
//!            memory/cores/cpulimit, net0, tags, args: -kernel -initrd
//!            -append) -> the bundle's rootfs as ext4 into virtio0's
//!            volume (mkfs.ext4 -d; the runtime runs on the node)
//! start:     a monitor of ours (the pid-file process) connects to the VM's
//!            serial0 socket; POST status/start; the guest's init (our
//!            binary, see crates/vm-guest) takes the container's config
//!            and prepares the process; the monitor answers `ready`
//! `start`:   the monitor tells the guest to run the process, relays its
//!            stdio and signals, and exits with its status; the guest
//!            powers the VM off
//! ```
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::unistd::Pid;
use oci_spec::runtime::Spec;
use proxmox_lxcri_agent_proto::{ContainerConfig, Mount, Rlimit};
use proxmox_lxcri_lxc::config::{translate_excluding, TranslateContext, Translation};
use pve_client::{Client, Params, Upid};
use serde::{Deserialize, Serialize};

use super::pve_lxc::pod;
use super::pve_lxc::{
    api, client, description, description_id, id_tag, port_security, wait, Guest, PveRecord,
    NET_ANNOTATION_PREFIX, TAG,
};
use super::{Cx, Engine, EngineRecord, Request};
use crate::config::PveSection;
use crate::error::{Context, Error, Result};
use crate::exchange::Paths;
use crate::proc::{self, ProcRef};
use crate::runtime::Runtime;
use crate::state::ContainerState;

pub mod exec;
mod gc;
pub mod initramfs;
mod monitor;

pub use gc::OrphanVms;
pub(crate) use monitor::{
    spawn as spawn_monitor, Args as MonitorArgs, FILE_MONITOR_ERROR, SOCKET_EXEC,
};

/// The guest kernel's command line: its messages on the second serial
/// port (never in the protocol on the first), no reboot loop on a panic.
const CMDLINE: &str = "console=ttyS1 quiet panic=-1";
/// The smallest VM that boots the guest (kernel + our initramfs in RAM).
const MIN_MEMORY_MB: u64 = 128;
/// The kernel's file systems a guest can mount for the spec.
const GUEST_FS: &[&str] = &[
    "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2",
];

/// What the state file records of the VM (`"pve": {...}`), before each
/// step that makes something.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PveVmRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pve: Option<PveRecord>,
}

/// The VM record of a state, if it has one.
pub fn record_of(st: &ContainerState) -> Option<&PveRecord> {
    match &st.engine {
        EngineRecord::PveVm(r) => r.pve.as_ref(),
        _ => None,
    }
}

fn set_record(st: &mut ContainerState, rec: PveRecord) {
    st.engine = EngineRecord::PveVm(PveVmRecord { pve: Some(rec) });
}

/// What plan decided; configure and start use it.
struct VmPlan {
    params: Params,
    /// Configured networks, one NIC each, leased at configure.
    networks: Networks,
    fixed_ip: Option<std::net::IpAddr>,
    kernel: initramfs::Kernel,
    disk_gib: String,
    container: ContainerConfig,
}

#[derive(Default)]
pub struct PveVmEngine {
    plan: Option<VmPlan>,
    /// A pod sandbox: the CNI plugin's host veth, removed once the VM
    /// holds the pod's address.
    cni_host_ifname: Option<String>,
    /// A pod sandbox: its network and CNI lease (net0), for port security.
    cni_lease: Option<(proxmox_lxcri_network::Network, proxmox_lxcri_network::Lease)>,
    start_task: Option<(u32, Upid)>,
    last_check: Option<Instant>,
}

fn unsupported(msg: String) -> Error {
    Error::Unsupported(format!("{msg} (engine pve-vm)"))
}

/// Hooks that run in the container's namespaces cannot reach a guest:
/// refused by name (a VM and a VM pod's container alike).
pub(crate) fn refuse_hooks(spec: &Spec) -> Result<()> {
    let Some(h) = spec.hooks() else {
        return Ok(());
    };
    let has = |v: &Option<Vec<oci_spec::runtime::Hook>>| v.as_ref().is_some_and(|v| !v.is_empty());
    for (name, v) in [
        ("prestart", h.prestart()),
        ("createRuntime", h.create_runtime()),
        ("createContainer", h.create_container()),
        ("startContainer", h.start_container()),
    ] {
        if has(v) {
            return Err(unsupported(format!(
                "hooks.{name}: hooks that run in the container's namespaces cannot reach a VM"
            )));
        }
    }
    Ok(())
}

/// A mount destination the guest agent can take: absolute, no `..`, no
/// NUL or newline (it travels in a frame and becomes a path in the guest).
pub(crate) fn check_destination(i: usize, dest: &str) -> Result<()> {
    if !dest.starts_with('/') || dest.split('/').any(|c| c == "..") || dest.contains(['\0', '\n']) {
        return Err(Error::Spec(format!(
            "mounts[{i}].destination {dest:?}: must be absolute, without '..'"
        )));
    }
    Ok(())
}

/// An rlimit's name as the guest's init takes it (`RLIMIT_NOFILE`).
pub(crate) fn rlimit_name(r: &oci_spec::runtime::PosixRlimit) -> String {
    serde_json::to_value(r.typ())
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// The spec as the guest agent gets it, and everything a VM cannot do
/// refused with its field named. Nothing is made.
fn check_spec(spec: &Spec) -> Result<ContainerConfig> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::Spec("process: required by create".into()))?;
    refuse_hooks(spec)?;
    if let Some(ns) = spec.linux().as_ref().and_then(|l| l.namespaces().clone()) {
        if let Some(n) = ns.iter().find(|n| n.path().is_some()) {
            return Err(unsupported(format!(
                "linux.namespaces {:?} path: a VM has its own kernel and joins no namespace",
                n.typ()
            )));
        }
    }
    let mut mounts = vec![];
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let dest = m.destination().to_string_lossy().into_owned();
        let kind = m.typ().clone().unwrap_or_default();
        let opts = m.options().clone().unwrap_or_default();
        if kind == "bind" || opts.iter().any(|o| o == "bind" || o == "rbind") {
            return Err(unsupported(format!(
                "mounts[{i}] {dest}: a bind mount of a host path cannot reach a VM's guest \
                 (no shared directory yet); remove it or use the lxc or pve-lxc engine"
            )));
        }
        if !GUEST_FS.contains(&kind.as_str()) {
            return Err(unsupported(format!(
                "mounts[{i}] {dest}: type {kind:?} (a guest mounts {})",
                GUEST_FS.join(", ")
            )));
        }
        check_destination(i, &dest)?;
        mounts.push(Mount {
            destination: dest,
            kind,
            source: m
                .source()
                .as_ref()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "none".into()),
            options: opts,
        });
    }
    let mut rlimits = vec![];
    for r in process.rlimits().iter().flatten() {
        rlimits.push(Rlimit {
            kind: rlimit_name(r),
            soft: r.soft(),
            hard: r.hard(),
        });
    }
    let hostname = spec.hostname().clone().filter(|h| !h.is_empty());
    if let Some(h) = &hostname {
        if h.len() > 64 || h.contains(['\0', '/', '\n']) {
            return Err(Error::Spec(format!("hostname {h:?}: not a host name")));
        }
    }
    Ok(ContainerConfig {
        init: Default::default(),
        hostname,
        rlimits,
        mounts,
        network: vec![],
    })
}

/// Configured networks by name, one NIC each.
type Networks = Vec<(String, proxmox_lxcri_network::Network)>;

/// The spec gives the container a network namespace of its own.
fn own_netns(spec: &Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| {
            ns.iter()
                .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Network)
        })
}

/// Configured networks (`io.proxmox-lxcri.network`, or `default_network`):
/// checked here, leased at configure. Also the fixed address of
/// `io.proxmox-lxcri.net.ip`, the only net annotation they leave.
fn plan_networks(
    rt: &Runtime,
    spec: &Spec,
    annotations: &std::collections::BTreeMap<String, String>,
) -> Result<(Networks, Option<std::net::IpAddr>)> {
    let nets = crate::network::chosen(rt, annotations)?;
    if nets.is_empty() {
        return Ok((nets, None));
    }
    if !own_netns(spec) {
        return Err(Error::Spec(format!(
            "annotation {}: a container on a configured network needs its own network \
             namespace (linux.namespaces: network without a path)",
            crate::network::NETWORK_ANNOTATION
        )));
    }
    for (name, n) in &nets {
        if n.isolated {
            return Err(unsupported(format!(
                "network {name:?} is isolated, which is not enforced for VMs yet; use the lxc \
                 engine or drop isolated"
            )));
        }
    }
    let ann = |k: &str| annotations.get(&format!("{NET_ANNOTATION_PREFIX}{k}"));
    for k in [
        "bridge", "vlan", "gw", "ip6", "gw6", "hwaddr", "mtu", "firewall",
    ] {
        if let Some(v) = ann(k) {
            return Err(Error::Spec(format!(
                "annotation {NET_ANNOTATION_PREFIX}{k}={v:?}: set by network {:?}; remove the \
                 annotation",
                nets[0].0
            )));
        }
    }
    let fixed = match ann("ip") {
        None => None,
        Some(v) => Some(
            v.split('/')
                .next()
                .unwrap_or_default()
                .parse()
                .map_err(|_| {
                    Error::Spec(format!(
                "annotation {NET_ANNOTATION_PREFIX}ip={v:?}: an address inside the network's subnet"
            ))
                })?,
        ),
    };
    Ok((nets, fixed))
}

/// net{i} of a leased NIC and what the guest sets on eth{i}; the default
/// route through the first NIC whose network has an IPv4 gateway.
fn leased_nic(
    i: usize,
    net: &proxmox_lxcri_network::Network,
    lease: &proxmox_lxcri_network::Lease,
    route: bool,
) -> Result<(String, proxmox_lxcri_agent_proto::Nic)> {
    let bad = |why: &str| Error::Spec(format!("net{i} on network {:?}: {why}", lease.network));
    if !net
        .bridge
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(bad("its bridge is not an interface name"));
    }
    if !lease
        .mac
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || b == b':')
    {
        return Err(bad("its MAC is not one"));
    }
    let mut s = format!(
        "virtio={},bridge={}",
        lease.mac.to_ascii_uppercase(),
        net.bridge
    );
    if let Some(t) = net.vlan {
        s.push_str(&format!(",tag={t}"));
    }
    if let Some(m) = net.mtu {
        s.push_str(&format!(",mtu={}", m.min(65520)));
    }
    // Port security: the VM's firewall, set up once the VM exists.
    if net.port_security {
        s.push_str(",firewall=1");
    }
    let v4 = lease.addrs.iter().find(|a| a.addr().is_ipv4());
    let v6 = lease.addrs.iter().find(|a| a.addr().is_ipv6());
    let gateway_of = |a: Option<std::net::IpAddr>| {
        a.filter(|_| route)
            .and_then(|a| net.gateway_for(a))
            .map(|g| g.to_string())
    };
    Ok((
        s,
        proxmox_lxcri_agent_proto::Nic {
            name: format!("eth{i}"),
            address: v4.map(|a| a.to_string()),
            gateway: gateway_of(v4.map(|a| a.addr())),
            address6: v6.map(|a| a.to_string()),
            gateway6: gateway_of(v6.map(|a| a.addr())),
        },
    ))
}

/// net0 of the VM (Proxmox's property string) and what the guest sets on
/// its eth0, from `[pve] bridge` and the `io.proxmox-lxcri.net.*`
/// annotations (as for CTs). None: the spec keeps the host's network
/// namespace, which a VM cannot share, so it gets no NIC.
fn net0(
    spec: &Spec,
    annotations: &std::collections::BTreeMap<String, String>,
    cfg: &PveSection,
) -> Result<Option<(String, proxmox_lxcri_agent_proto::Nic)>> {
    if !own_netns(spec) {
        return Ok(None);
    }
    let ann = |k: &str| {
        annotations
            .get(&format!("{NET_ANNOTATION_PREFIX}{k}"))
            .cloned()
    };
    let bad = |k: &str, v: &str, why: &str| {
        Error::Spec(format!(
            "annotation {NET_ANNOTATION_PREFIX}{k}={v:?}: {why}"
        ))
    };
    for k in ["nameserver", "searchdomain"] {
        if let Some(v) = ann(k) {
            return Err(unsupported(format!(
                "annotation {NET_ANNOTATION_PREFIX}{k}={v:?}: the guest keeps the image's \
                 /etc/resolv.conf"
            )));
        }
    }
    let address6 = match ann("ip6") {
        None => None,
        Some(v) if v == "auto" || v == "dhcp" => {
            return Err(unsupported(format!(
                "annotation {NET_ANNOTATION_PREFIX}ip6={v:?}: the guest has no SLAAC or DHCPv6 \
                 client yet; give an address (fd00::2/64)"
            )))
        }
        Some(v) => {
            let ok = v.split_once('/').is_some_and(|(a, p)| {
                a.parse::<std::net::Ipv6Addr>().is_ok() && p.parse::<u8>().is_ok_and(|p| p <= 128)
            });
            if !ok {
                return Err(bad(
                    "ip6",
                    &v,
                    "an IPv6 address with its prefix, like fd00::2/64",
                ));
            }
            Some(v)
        }
    };
    let gateway6 = match ann("gw6") {
        None => None,
        Some(v) if v.parse::<std::net::Ipv6Addr>().is_ok() => Some(v),
        Some(v) => return Err(bad("gw6", &v, "an IPv6 address")),
    };
    let bridge = ann("bridge").unwrap_or_else(|| cfg.bridge.clone());
    if bridge.is_empty()
        || bridge.len() > 15
        || !bridge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(bad("bridge", &bridge, "not an interface name"));
    }
    let mut net0 = match ann("hwaddr") {
        Some(mac) => {
            let ok = mac.len() == 17
                && mac.split(':').count() == 6
                && mac
                    .split(':')
                    .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
            if !ok {
                return Err(bad("hwaddr", &mac, "a MAC address like BC:24:11:00:00:01"));
            }
            format!("virtio={mac},bridge={bridge}")
        }
        None => format!("virtio,bridge={bridge}"),
    };
    if let Some(v) = ann("vlan") {
        let tag: u16 = v
            .parse()
            .ok()
            .filter(|t| (1..=4094).contains(t))
            .ok_or_else(|| bad("vlan", &v, "a VLAN id 1-4094"))?;
        net0.push_str(&format!(",tag={tag}"));
    }
    if let Some(v) = ann("mtu") {
        let mtu: u16 = v
            .parse()
            .ok()
            .filter(|m| (576..=65520).contains(m))
            .ok_or_else(|| bad("mtu", &v, "an MTU 576-65520"))?;
        net0.push_str(&format!(",mtu={mtu}"));
    }
    if let Some(v) = ann("firewall") {
        let on = match v.as_str() {
            "1" | "true" => 1,
            "0" | "false" => 0,
            _ => return Err(bad("firewall", &v, "use true or false")),
        };
        net0.push_str(&format!(",firewall={on}"));
    }
    let address = match ann("ip") {
        None => None,
        Some(v) if v == "dhcp" => {
            return Err(unsupported(format!(
                "annotation {NET_ANNOTATION_PREFIX}ip=dhcp: the guest has no DHCP client yet; give \
                 an address (10.0.0.2/24)"
            )))
        }
        Some(v) => {
            let ok = v.split_once('/').is_some_and(|(a, p)| {
                a.parse::<std::net::Ipv4Addr>().is_ok() && p.parse::<u8>().is_ok_and(|p| p <= 32)
            });
            if !ok {
                return Err(bad(
                    "ip",
                    &v,
                    "an IPv4 address with its prefix, like 10.0.0.2/24",
                ));
            }
            Some(v)
        }
    };
    let gateway = match ann("gw") {
        None => None,
        Some(v) if v.parse::<std::net::Ipv4Addr>().is_ok() => Some(v),
        Some(v) => return Err(bad("gw", &v, "an IPv4 address")),
    };
    Ok(Some((
        net0,
        proxmox_lxcri_agent_proto::Nic {
            name: "eth0".into(),
            address,
            gateway,
            address6,
            gateway6,
        },
    )))
}

/// The VM's name: a DNS name Proxmox accepts, from the container id.
fn vm_name(id: &str) -> String {
    let mut n: String = id
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() {
                c
            } else {
                '-'
            }
        })
        .collect();
    n.truncate(50);
    format!("lxcri-{}", n.trim_matches('-'))
}

/// Memory, cores and cpulimit from the spec's resources (at create, and
/// for `update`).
fn limits(
    res: Option<&oci_spec::runtime::LinuxResources>,
    cfg: &PveSection,
    mut p: Params,
) -> Result<Params> {
    let mem = res
        .as_ref()
        .and_then(|r| r.memory().as_ref().and_then(|m| m.limit()))
        .filter(|l| *l > 0)
        .map(|l| (l as u64).div_ceil(1 << 20))
        .unwrap_or(cfg.vm_memory_mb);
    p = p.int("memory", mem.max(MIN_MEMORY_MB) as i64);
    let mut cores = 1u32;
    if let Some(cpu) = res.and_then(|r| r.cpu().clone()) {
        if let (Some(q), Some(per)) = (cpu.quota(), cpu.period()) {
            if q > 0 && per > 0 {
                let limit = (q as f64 / per as f64 * 100.0).ceil() / 100.0;
                p = p.set("cpulimit", format!("{limit}"));
                cores = cores.max(limit.ceil() as u32);
            }
        }
        if let Some(cpus) = cpu.cpus() {
            let n = super::pve_lxc::count_cpus(cpus).ok_or_else(|| {
                Error::Spec(format!("linux.resources.cpu.cpus={cpus:?}: not a cpu list"))
            })?;
            cores = n;
        }
    }
    Ok(p.int("cores", cores.clamp(1, 128) as i64))
}

/// Bytes the rootfs takes (apparent sizes, plus a block per inode).
pub(crate) fn tree_size(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = e.metadata() else { continue };
            total += 4096 + if m.is_file() { m.len() } else { 0 };
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

/// The disk's size in GiB as Proxmox takes it (`STORAGE:SIZE`): the
/// annotation's quota, else the rootfs with room to spare, in 1/16 GiB.
fn disk_gib(
    rootfs: &Path,
    annotations: &std::collections::BTreeMap<String, String>,
) -> Result<String> {
    let bytes = match annotations.get(storage::QUOTA_ANNOTATION) {
        Some(q) => storage::size::parse(storage::QUOTA_ANNOTATION, q)
            .map_err(|e| Error::Spec(e.to_string()))?,
        None => tree_size(rootfs) * 3 / 2 + (64 << 20),
    };
    let sixteenths = bytes.div_ceil(1 << 26).max(1);
    Ok(format!("{}", sixteenths as f64 / 16.0))
}

/// [`Guest::is_missing`] of a VM.
pub fn is_missing(e: &pve_client::Error, node: &str, vmid: u32) -> bool {
    Guest::Vm.is_missing(e, node, vmid)
}

/// Stop the VM if it runs, then destroy it with its disks.
pub fn destroy(
    client: &Client,
    cfg: &PveSection,
    rec: &PveRecord,
    id: &str,
    root: &Path,
) -> Result<()> {
    let Some(vmid) = rec.vmid else { return Ok(()) };
    if !Guest::Vm.owns(client, &rec.node, vmid, id, root)? {
        return Ok(());
    }
    Guest::Vm.wait_unlocked(client, cfg, &rec.node, vmid)?;
    stop(client, cfg, &rec.node, vmid)?;
    let upid = match client.qemu_destroy(&rec.node, vmid) {
        Ok(u) => u,
        Err(e) if is_missing(&e, &rec.node, vmid) => return Ok(()),
        Err(e) => return Err(api(&format!("destroying VM {vmid}"))(e)),
    };
    wait(client, cfg, &upid, &format!("destroying VM {vmid}"))
}

/// Stop the VM now if it runs (`qm stop`).
fn stop(client: &Client, cfg: &PveSection, node: &str, vmid: u32) -> Result<()> {
    let st = match client.qemu_status(node, vmid) {
        Ok(s) => s,
        Err(e) if is_missing(&e, node, vmid) => return Ok(()),
        Err(e) => return Err(api("reading the VM status")(e)),
    };
    if st.status == "stopped" {
        return Ok(());
    }
    let upid = match client.qemu_stop(node, vmid) {
        Ok(u) => u,
        // It powered off between the status and the stop (the guest does
        // when its process ends).
        Err(e)
            if e.server_message()
                .is_some_and(|m| m.contains("not running")) =>
        {
            return Ok(())
        }
        Err(e) if is_missing(&e, node, vmid) => return Ok(()),
        Err(e) => return Err(api(&format!("stopping VM {vmid}"))(e)),
    };
    wait(client, cfg, &upid, &format!("stopping VM {vmid}"))
}

/// The host path of the VM's `virtio0` volume.
fn disk_path(client: &Client, node: &str, vmid: u32) -> Result<PathBuf> {
    let conf = client
        .qemu_config(node, vmid)
        .map_err(api("reading the VM config"))?;
    let disk = conf
        .get("virtio0")
        .ok_or_else(|| Error::Guest(format!("VM {vmid} has no virtio0 disk")))?;
    let volid = disk.split(',').next().unwrap_or_default();
    let (storage, _) = volid.split_once(':').ok_or_else(|| {
        Error::Guest(format!(
            "VM {vmid}: virtio0 {disk:?} is not a storage volume"
        ))
    })?;
    let info = client
        .volume_info(node, storage, volid)
        .map_err(api("looking up the VM's disk"))?;
    let path = PathBuf::from(info.path);
    let ok = fs::metadata(&path)
        .map(|m| {
            use std::os::unix::fs::FileTypeExt;
            m.is_file() || m.file_type().is_block_device()
        })
        .unwrap_or(false);
    if !ok {
        return Err(Error::Config(format!(
            "storage {storage:?} gives VM {vmid} its disk {volid} as {}, which is no image \
             file or block device on this node (the runtime must run on the node)",
            path.display()
        )));
    }
    Ok(path)
}

/// The bundle's rootfs as an ext4 file system on the VM's disk.
fn fill_disk(rootfs: &Path, disk: &Path, label: &str) -> Result<()> {
    let o = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", label, "-d"])
        .arg(rootfs)
        .arg(disk)
        .output()
        .map_err(|e| {
            Error::Config(format!(
                "running mkfs.ext4 (install e2fsprogs) for the VM's disk: {e}"
            ))
        })?;
    if !o.status.success() {
        return Err(Error::Guest(format!(
            "mkfs.ext4 -d {} {} failed: {}",
            rootfs.display(),
            disk.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    Ok(())
}

impl PveVmEngine {
    /// Allocate a VMID and create the VM (stopped) with the rootfs on its
    /// disk; returns the VMID. Each step recorded before it is made.
    fn make_vm(&mut self, cx: &mut Cx, rootfs: &Path, args: String) -> Result<u32> {
        let rt = cx.rt;
        let cfg = rt.config.pve()?;
        let client = client(rt)?;
        let plan = self.plan.as_ref().expect("plan runs first");
        let rec = PveRecord {
            node: cfg.node.clone(),
            vmid: None,
            created: false,
            unprivileged: false,
        };
        let vmid = crate::engine::pve_lxc::create_guest(
            cx,
            rec,
            Guest::Vm,
            set_record,
            |vmid| {
                let params = plan
                    .params
                    .clone()
                    .int("vmid", vmid as i64)
                    .set("virtio0", format!("{}:{}", cfg.storage, plan.disk_gib))
                    .set("args", args.clone());
                client.qemu_create(&cfg.node, &params)
            },
            |_| {},
        )?;
        let disk = disk_path(client, &cfg.node, vmid)?;
        fill_disk(rootfs, &disk, "lxcri-root")?;
        Ok(vmid)
    }

    fn serial(&self, cfg: &PveSection, vmid: u32, n: u32) -> PathBuf {
        cfg.qemu_run_dir.join(format!("{vmid}.serial{n}"))
    }
}

impl Engine for PveVmEngine {
    fn plan(&mut self, rt: &Runtime, req: &Request) -> Result<()> {
        client(rt)?;
        let cfg = rt.config.pve()?;
        // A CRI pod's sandbox: the pod's VM (its containers run inside,
        // see engine::vm_member), sized for the pod, with no bind mounts
        // (containerd's sandbox files are for the pod's containers) and
        // its own network namespace (the pod's lease on net0).
        let is_sandbox = pod::is_sandbox(&req.annotations);
        let pod_spec;
        let spec = if is_sandbox {
            pod_spec = pod::sandbox_spec(&req.spec, &req.annotations)?;
            &pod_spec
        } else {
            &req.spec
        };
        let container = check_spec(spec)?;
        let kernel = initramfs::find_kernel(cfg.vm_kernel.as_deref())?;
        let root = &rt.store.root;
        let node = &cfg.node;
        let mut params = Params::new()
            .set("name", vm_name(&req.id))
            .set("description", description(&req.id, root, node))
            .set("tags", format!("{TAG};{}", id_tag(&req.id)))
            .set("ostype", "l26")
            .set("serial0", "socket")
            .set("serial1", "socket");
        let mut container = container;
        let (mut networks, mut fixed_ip) = (vec![], None);
        if is_sandbox {
            let (tags, desc) = pod::pod_labels(rt, req)?;
            params = params.set("tags", tags).set("description", desc);
        }
        if is_sandbox && pod::netns_path(&req.spec).is_some() {
            // containerd made the pod's network with our CNI plugin: its
            // lease (address, MAC, bridge) is the VM's net0.
            let (net, lease) = pod::cni_lease(rt, &req.id)?.ok_or_else(|| {
                Error::Unsupported(format!(
                    "pod sandbox {}: containerd made the pod's network with a CNI plugin other \
                     than proxmox-lxcri-cni (no lease for {}/eth0 on a configured network); on \
                     pve-vm the pod's network is its VM's net0, whose address comes from \
                     proxmox-lxcri-cni (docs/kubernetes.md)",
                    req.id, req.id
                ))
            })?;
            if net.isolated {
                return Err(unsupported(format!(
                    "network {:?} is isolated, which is not enforced for VMs yet; drop isolated \
                     on it for VM pods, or use the pve-lxc engine",
                    lease.network
                )));
            }
            let (conf, nic) = leased_nic(0, &net, &lease, true)?;
            params = params.set("net0", conf);
            container.network = vec![nic];
            // Secured as a configured network's, once the VM exists.
            self.cni_lease = Some((net, lease));
            self.cni_host_ifname = Some(proxmox_lxcri_network::cni_host_ifname(&req.id, "eth0"));
        } else {
            (networks, fixed_ip) = plan_networks(rt, spec, &req.annotations)?;
            if networks.is_empty() {
                if let Some((net0, nic)) = net0(spec, &req.annotations, cfg)? {
                    params = params.set("net0", net0);
                    container.network = vec![nic];
                }
            }
        }
        let res = spec.linux().as_ref().and_then(|l| l.resources().clone());
        params = limits(res.as_ref(), cfg, params)?;
        self.plan = Some(VmPlan {
            params,
            networks,
            fixed_ip,
            kernel,
            disk_gib: disk_gib(&req.rootfs, &req.annotations)?,
            container,
        });
        Ok(())
    }

    fn record(&self) -> EngineRecord {
        EngineRecord::PveVm(PveVmRecord::default())
    }

    fn provision(&mut self, _cx: &mut Cx, req: &Request) -> Result<PathBuf> {
        // The VM's disk comes with the VM (configure).
        Ok(req.rootfs.clone())
    }

    fn mapped_root(&self, _spec: &Spec) -> Option<(u32, u32)> {
        None
    }

    fn translate(&self, spec: &Spec, ctx: &TranslateContext) -> Result<Translation> {
        // Only the init's part is used: the guest agent runs it (and
        // makes the guest's mounts itself: no LXC order to correct).
        let mut tr = translate_excluding(spec, ctx, &[])?;
        tr.init.mount_order.clear();
        Ok(tr)
    }

    fn configure(&mut self, cx: &mut Cx, req: &Request, tr: &Translation) -> Result<()> {
        let rt = cx.rt;
        let exe = std::env::current_exe().ctx(|| "finding our own binary".into())?;
        let (kernel, cmdline) = {
            let plan = self.plan.as_mut().expect("plan runs first");
            plan.container.init = tr.init.clone();
            // The guest runs the process itself (it is not LXC's init).
            plan.container.init.exec_in_place = false;
            plan.container.init.console_socket = false;
            (
                plan.kernel.clone(),
                format!("{CMDLINE} {}", proxmox_lxcri_agent_proto::CMDLINE_FLAG),
            )
        };
        // Leases before the VM (the id is claimed: a crash leaves a state
        // naming their owner; a failed create releases them).
        let mut leases = vec![];
        {
            let plan = self.plan.as_mut().expect("plan runs first");
            if !plan.networks.is_empty() {
                leases =
                    crate::network::lease_all(rt, &cx.state.id, &plan.networks, plan.fixed_ip)?;
                let mut routed = false;
                for (i, (net, lease)) in leases.iter().enumerate() {
                    let route = !routed && !net.gateway.is_empty();
                    let (conf, nic) = leased_nic(i, net, lease, route)?;
                    routed |= nic.gateway.is_some();
                    plan.params = plan.params.clone().set(&format!("net{i}"), conf);
                    plan.container.network.push(nic);
                }
            }
        }
        let initrd = initramfs::ensure(&rt.store.root, &kernel, &exe)?;
        initramfs::check_arg("the initramfs", &initrd)?;
        let args = format!(
            "-kernel {} -initrd {} -append '{cmdline}' -no-reboot",
            kernel.image.display(),
            initrd.display()
        );
        let vmid = self.make_vm(cx, &req.rootfs, args)?;
        if let Some(l) = self.cni_lease.clone() {
            leases.push(l);
        }
        port_security(rt, Guest::Vm, vmid, &leases)?;
        // The pod's address is the VM's now: the CNI plugin's veth goes
        // (its netns stays, empty: a VM cannot live in it).
        if let Some(host) = &self.cni_host_ifname {
            if proxmox_lxcri_network::bridge::exists(host) {
                proxmox_lxcri_network::bridge::ip(&["link", "del", host])
                    .map_err(|e| Error::Guest(format!("removing the CNI interface {host}: {e}")))?;
            }
        }
        Ok(())
    }

    fn start(&mut self, cx: &mut Cx, stdio: Option<&OwnedFd>) -> Result<Pid> {
        let rt = cx.rt;
        let cfg = rt.config.pve()?;
        let vmid = record_of(&cx.state)
            .and_then(|r| r.vmid)
            .expect("configure made the VM");
        let plan = self.plan.as_ref().expect("plan runs first");
        let args = monitor::Args {
            exchange: cx.paths.exchange.clone(),
            serial: self.serial(cfg, vmid, 0),
            console: self.serial(cfg, vmid, 1),
            console_log: cx.paths.lxcpath.join("console.log"),
            container: plan.container.clone(),
            boot_timeout: Duration::from_secs(cfg.vm_boot_timeout_secs),
            terminal: plan.container.init.terminal,
            member: None,
        };
        let (mon, gate) = monitor::spawn(args, stdio.map(|f| f.as_raw_fd()))?;
        if let Err(e) = cx.record_monitor(mon) {
            drop(gate);
            let _ = nix::sys::wait::waitpid(mon, None);
            return Err(e);
        }
        gate.open()?;
        let upid = client(rt)?
            .qemu_start(&cfg.node, vmid)
            .map_err(api(&format!("starting VM {vmid}")))?;
        self.start_task = Some((vmid, upid));
        self.last_check = Some(Instant::now());
        Ok(mon)
    }

    fn ready_timeout(&self, rt: &Runtime) -> Duration {
        rt.config
            .pve()
            .map(|c| Duration::from_secs(c.vm_boot_timeout_secs + c.task_timeout_secs))
            .unwrap_or(Duration::from_secs(120))
    }

    fn start_failed(&mut self, rt: &Runtime, paths: &Paths) -> Option<String> {
        if let Ok(e) = fs::read_to_string(paths.exchange.join(monitor::FILE_MONITOR_ERROR)) {
            return Some(format!("the VM's monitor: {e}"));
        }
        let (_, upid) = self.start_task.as_ref()?;
        if self
            .last_check
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return None;
        }
        self.last_check = Some(Instant::now());
        let st = client(rt).ok()?.task_status(upid).ok()?;
        match (st.status.as_str(), st.exitstatus.as_deref()) {
            ("stopped", Some("OK")) | ("stopped", None) => None,
            ("stopped", Some(s)) => Some(format!("Proxmox start task: {s}")),
            _ => None,
        }
    }

    fn find_init(
        &self,
        _rt: &Runtime,
        _paths: &Paths,
        monitor: Pid,
        _early: bool,
    ) -> Option<ProcRef> {
        // The guest's process is behind the VM: our monitor stands for it
        // on the host (it ends with the process's status).
        proc::proc_ref(monitor.as_raw())
    }

    fn started(&mut self, rt: &Runtime) -> Result<()> {
        if let Some((vmid, upid)) = &self.start_task {
            wait(
                client(rt)?,
                rt.config.pve()?,
                upid,
                &format!("starting VM {vmid}"),
            )?;
        }
        Ok(())
    }

    fn hand_over(&mut self, _cx: &mut Cx, init: ProcRef) -> Result<ProcRef> {
        // The monitor is the pid-file process: create's exit hands it to
        // the caller's subreaper (containerd's shim, `run`).
        Ok(init)
    }

    fn monitor_grace(&self, _paths: &Paths) -> Duration {
        Duration::from_secs(2)
    }

    fn killed(&self, rt: &Runtime, st: &ContainerState) -> Result<()> {
        // SIGKILL cannot travel to the guest: the VM stops (`qm stop`).
        let Some(vmid) = record_of(st).and_then(|r| r.vmid) else {
            return Ok(());
        };
        let cfg = rt.config.pve()?;
        stop(client(rt)?, cfg, &cfg.node, vmid)
    }

    fn destroy(&self, rt: &Runtime, st: &ContainerState) -> Result<()> {
        let Some(rec) = record_of(st) else {
            return Ok(());
        };
        destroy(client(rt)?, rt.config.pve()?, rec, &st.id, &rt.store.root)
    }

    fn update_limits(
        &self,
        rt: &Runtime,
        st: &ContainerState,
        merged: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        // The VM's options: Proxmox applies cpulimit at once, memory and
        // cores when they can be hot-plugged (else they are pending).
        let Some(vmid) = record_of(st).and_then(|r| r.vmid) else {
            return Ok(());
        };
        let cfg = rt.config.pve()?;
        let params = limits(Some(merged), cfg, Params::new())?;
        client(rt)?
            .qemu_set_config(&cfg.node, vmid, &params)
            .map_err(api("updating the VM's limits"))
    }
}

/// In the exchange dir while the VM is suspended by `pause`.
pub const FILE_PAUSED: &str = "paused";

/// `pause` (the whole VM suspended, as `qm suspend`) or `resume`; the
/// marker file is what `state` reads (it asks no API).
pub fn pause(rt: &Runtime, st: &ContainerState, paths: &Paths, pause: bool) -> Result<()> {
    let Some(vmid) = record_of(st).and_then(|r| r.vmid) else {
        return Ok(());
    };
    let cfg = rt.config.pve()?;
    let client = client(rt)?;
    let what = format!(
        "{} VM {vmid}",
        if pause { "suspending" } else { "resuming" }
    );
    let upid = if pause {
        client.qemu_suspend(&cfg.node, vmid)
    } else {
        client.qemu_resume(&cfg.node, vmid)
    }
    .map_err(api(&what))?;
    wait(client, cfg, &upid, &what)?;
    let marker = paths.exchange.join(FILE_PAUSED);
    if pause {
        crate::state::write_atomic(&marker, b"1")
    } else {
        match fs::remove_file(&marker) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).ctx(|| format!("removing {}", marker.display()))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_sizes() {
        assert_eq!(vm_name("My_Box.1"), "lxcri-my-box-1");
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("f"), vec![0u8; 1 << 20]).unwrap();
        // 1 MiB * 1.5 + 64 MiB of room: two sixteenths of a GiB.
        assert_eq!(disk_gib(t.path(), &Default::default()).unwrap(), "0.125");
        let mut a = std::collections::BTreeMap::new();
        a.insert(storage::QUOTA_ANNOTATION.to_string(), "1G".to_string());
        assert_eq!(disk_gib(t.path(), &a).unwrap(), "1");
        assert_eq!(super::super::pve_lxc::count_cpus("0-1,3"), Some(3));
    }

    #[test]
    fn bind_mounts_and_namespace_paths_are_refused_with_the_field() {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "root": {"path": "rootfs"},
            "mounts": [{"destination": "/data", "type": "bind", "source": "/srv", "options": ["rbind"]}]
        }))
        .unwrap();
        let e = check_spec(&spec).unwrap_err().to_string();
        assert!(e.contains("mounts[0] /data") && e.contains("pve-vm"), "{e}");
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["sh"], "cwd": "/", "terminal": true, "user": {"uid": 0, "gid": 0}},
            "root": {"path": "rootfs"},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "linux": {"namespaces": [{"type": "network", "path": "/proc/1/ns/net"}]}
        }))
        .unwrap();
        let e = check_spec(&spec).unwrap_err().to_string();
        assert!(e.contains("linux.namespaces"), "{e}");
    }
}
