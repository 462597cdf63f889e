//! A pod's sandbox (containerd's CRI: `io.kubernetes.cri.container-type:
//! sandbox`) as the pod's one CT:
//!
//! - its init is also the pod agent (the pod's other containers start
//!   inside the CT without an API request, see `engine::pod_member`), so
//!   its exchange dir is a shared mount on the node: what is mounted below
//!   it later appears inside the running CT;
//! - its network is the CT's `net0` with the address our CNI plugin leased
//!   for the pod (the pod IP containerd reports is the CT's address): the
//!   plugin's veth goes, and containerd's netns path is made to name the
//!   CT's network namespace once the CT runs;
//! - it shows the pod: tags `proxmox-lxcri;k8s-<namespace>`, the pod's
//!   namespace/name/uid in the description, the pod's hostname.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::*;

pub const SANDBOX_NAMESPACE_ANNOTATION: &str = "io.kubernetes.cri.sandbox-namespace";
pub const SANDBOX_NAME_ANNOTATION: &str = "io.kubernetes.cri.sandbox-name";
pub const SANDBOX_UID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-uid";

/// The interface containerd asks CNI for.
const POD_IFNAME: &str = "eth0";

/// Is this container a CRI pod's sandbox?
pub fn is_sandbox(annotations: &BTreeMap<String, String>) -> bool {
    annotations
        .get(crate::engine::pod_member::CONTAINER_TYPE_ANNOTATION)
        .is_some_and(|t| t == "sandbox")
}

/// What a sandbox needs beyond a CT.
#[derive(Debug, Clone)]
pub struct SandboxPlan {
    /// containerd's netns (CNI's), to name the CT's once it runs.
    pub netns: Option<PathBuf>,
    /// The veth our CNI plugin made there (replaced by the CT's net0).
    pub cni_host_ifname: Option<String>,
    /// The pod's annotations (its resources size the CT).
    pub annotations: BTreeMap<String, String>,
    /// The pod's lease (net0), for the CT's port security.
    pub lease: Option<(proxmox_lxcri_network::Network, proxmox_lxcri_network::Lease)>,
}

/// containerd's CRI: the pod's resources (the kubelet's pod-level limits),
/// beside the sandbox's own (its overhead, in the spec).
pub const SANDBOX_MEMORY_ANNOTATION: &str = "io.kubernetes.cri.sandbox-memory";
pub const SANDBOX_CPU_QUOTA_ANNOTATION: &str = "io.kubernetes.cri.sandbox-cpu-quota";
pub const SANDBOX_CPU_PERIOD_ANNOTATION: &str = "io.kubernetes.cri.sandbox-cpu-period";
pub const SANDBOX_CPU_SHARES_ANNOTATION: &str = "io.kubernetes.cri.sandbox-cpu-shares";

/// The sandbox's spec as the CT runs it: [`without_netns_path`], sized for
/// the whole pod (its overhead plus the pod's limits): the CT is the pod.
pub fn sandbox_spec(spec: &Spec, annotations: &BTreeMap<String, String>) -> Result<Spec> {
    use oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxResourcesBuilder};
    let mut s = without_netns_path(spec);
    let num = |k: &str| -> Result<Option<i64>> {
        match annotations.get(k) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<i64>()
                .map(|n| (n > 0).then_some(n))
                .map_err(|_| Error::Spec(format!("annotation {k}={v:?}: not a number"))),
        }
    };
    let pod_mem = num(SANDBOX_MEMORY_ANNOTATION)?;
    let pod_quota = num(SANDBOX_CPU_QUOTA_ANNOTATION)?;
    let pod_period = num(SANDBOX_CPU_PERIOD_ANNOTATION)?;
    let pod_shares = num(SANDBOX_CPU_SHARES_ANNOTATION)?;
    if pod_mem.is_none() && pod_quota.is_none() && pod_shares.is_none() {
        return Ok(s);
    }
    let own = s
        .linux()
        .as_ref()
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    let mut res = LinuxResourcesBuilder::default()
        .build()
        .expect("empty resources");
    let own_mem = own.memory().and_then(|m| m.limit()).filter(|l| *l > 0);
    if let Some(m) = pod_mem {
        let total = m + own_mem.unwrap_or(0);
        res.set_memory(Some(
            LinuxMemoryBuilder::default()
                .limit(total)
                .build()
                .expect("memory"),
        ));
    } else {
        res.set_memory(*own.memory());
    }
    let own_cpu = own.cpu().clone();
    let cpus_of = |q: Option<i64>, p: Option<u64>| match (q, p) {
        (Some(q), Some(p)) if q > 0 && p > 0 => q as f64 / p as f64,
        _ => 0.0,
    };
    let own_cpus = own_cpu
        .as_ref()
        .map(|c| cpus_of(c.quota(), c.period()))
        .unwrap_or(0.0);
    let pod_cpus = cpus_of(pod_quota, pod_period.map(|p| p as u64).or(Some(100_000)));
    let mut cpu = own_cpu
        .clone()
        .unwrap_or_else(|| LinuxCpuBuilder::default().build().expect("cpu"));
    if pod_cpus > 0.0 {
        const PERIOD: u64 = 100_000;
        cpu.set_period(Some(PERIOD));
        cpu.set_quota(Some(((own_cpus + pod_cpus) * PERIOD as f64).ceil() as i64));
    }
    if let Some(sh) = pod_shares {
        cpu.set_shares(Some(
            sh as u64 + own_cpu.as_ref().and_then(|c| c.shares()).unwrap_or(0),
        ));
    }
    res.set_cpu(Some(cpu));
    res.set_pids(*own.pids());
    if let Some(linux) = s.linux_mut() {
        linux.set_resources(Some(res));
    }
    Ok(s)
}

/// The sandbox's spec as the CT runs it: the network namespace the CT's
/// own (the CT cannot join containerd's; it takes over its address
/// instead), no bind mounts (containerd's sandbox files, /etc/resolv.conf
/// and /dev/shm, are for the pod's containers, which get them in their own
/// specs; an unprivileged CT's root could not even reach them), /dev/shm a
/// tmpfs of the CT's.
pub fn without_netns_path(spec: &Spec) -> Spec {
    let mut s = spec.clone();
    if let Some(mounts) = s.mounts_mut() {
        let is_bind = |m: &oci_spec::runtime::Mount| {
            m.typ().as_deref() == Some("bind")
                || m.options()
                    .as_ref()
                    .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"))
        };
        for m in mounts.iter_mut() {
            if m.destination() == Path::new("/dev/shm") && is_bind(m) {
                m.set_typ(Some("tmpfs".into()));
                m.set_source(Some("shm".into()));
                m.set_options(Some(
                    ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]
                        .map(String::from)
                        .to_vec(),
                ));
            }
        }
        mounts.retain(|m| !is_bind(m));
    }
    if let Some(linux) = s.linux_mut() {
        if let Some(nss) = linux.namespaces_mut() {
            for n in nss.iter_mut() {
                if n.typ() == LinuxNamespaceType::Network {
                    n.set_path(None);
                }
            }
        }
    }
    s
}

pub(crate) fn netns_path(spec: &Spec) -> Option<PathBuf> {
    spec.linux()
        .as_ref()?
        .namespaces()
        .as_ref()?
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Network)?
        .path()
        .clone()
}

/// The lease our CNI plugin took for the pod, on which configured network.
pub(crate) fn cni_lease(
    rt: &Runtime,
    id: &str,
) -> Result<Option<(proxmox_lxcri_network::Network, proxmox_lxcri_network::Lease)>> {
    let ipam = crate::network::ipam(rt);
    let owner = proxmox_lxcri_network::cni_owner(id, POD_IFNAME);
    for (name, net) in &rt.config.network {
        let leases = ipam.leases(name)?;
        if let Some(l) = leases.into_iter().find(|l| l.owner == owner) {
            return Ok(Some((net.clone(), l)));
        }
    }
    Ok(None)
}

/// A tag value in the characters Proxmox allows.
fn tag(s: &str) -> String {
    s.chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || "_-+.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Make `plan` the pod's CT: net0 from the CNI lease, the pod in tags and
/// description. Nothing is made here.
pub fn plan_sandbox(rt: &Runtime, req: &Request, plan: &mut CtPlan) -> Result<SandboxPlan> {
    let netns = netns_path(&req.spec);
    let mut out = SandboxPlan {
        netns: netns.clone(),
        cni_host_ifname: None,
        annotations: req.annotations.clone(),
        lease: None,
    };
    if netns.is_some() {
        let (net, lease) = cni_lease(rt, &req.id)?.ok_or_else(|| {
            Error::Unsupported(format!(
                "pod sandbox {}: containerd made the pod's network with a CNI plugin other \
                 than proxmox-lxcri-cni (no lease for {}/{POD_IFNAME} on a configured \
                 network); on pve-lxc the pod's network is its CT's net0, whose address comes \
                 from proxmox-lxcri-cni (docs/kubernetes.md)",
                req.id, req.id
            ))
        })?;
        plan.networks.clear();
        plan.net = NetMode::Api;
        plan.params = plan
            .params
            .clone()
            .set("net0", leased_net(0, &net, &lease)?);
        out.cni_host_ifname = Some(proxmox_lxcri_network::cni_host_ifname(&req.id, POD_IFNAME));
        out.lease = Some((net, lease));
    }
    let (tags, desc) = pod_labels(rt, req)?;
    plan.params = plan.params.clone().set("tags", tags);
    plan.params = plan.params.clone().set("description", desc);
    Ok(out)
}

/// The pod's guest in the Proxmox UI: its tags
/// (`proxmox-lxcri;lxcri-<id>;k8s-<namespace>`) and description (ours
/// first, which `gc` matches, then the pod's namespace, name and uid).
pub(crate) fn pod_labels(rt: &Runtime, req: &Request) -> Result<(String, String)> {
    let ann = |k: &str| req.annotations.get(k).cloned().unwrap_or_default();
    let ns = ann(SANDBOX_NAMESPACE_ANNOTATION);
    let mut tags = vec![TAG.to_string(), id_tag(&req.id)];
    if !ns.is_empty() {
        tags.push(format!("k8s-{}", tag(&ns)));
    }
    let cfg = rt.config.pve()?;
    // First line: ours (gc matches it); then the pod, one line each.
    let mut desc = description(&req.id, &rt.store.root, &cfg.node);
    for (what, k) in [
        ("namespace", SANDBOX_NAMESPACE_ANNOTATION),
        ("name", SANDBOX_NAME_ANNOTATION),
        ("uid", SANDBOX_UID_ANNOTATION),
    ] {
        let v = ann(k);
        // Proxmox keeps the description as comment lines: one line each.
        if !v.is_empty() && !v.contains(['\n', '\r']) {
            desc.push_str(&format!("\nkubernetes pod {what}: {v}"));
        }
    }
    Ok((tags.join(";"), desc))
}

/// Before the CT starts: the pod's exchange dir becomes a shared mount (so
/// members' mounts made below it reach the CT), and the CNI veth goes (its
/// address and MAC are the CT's net0 now).
pub fn prepare_sandbox(sp: &SandboxPlan, exchange: &Path) -> Result<()> {
    let sx = std::fs::canonicalize(exchange).ctx(|| format!("{}", exchange.display()))?;
    mount(Some(&sx), &sx, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| Error::Guest(format!("bind-mounting {} on itself: {e}", sx.display())))?;
    mount(
        None::<&str>,
        &sx,
        None::<&str>,
        MsFlags::MS_SHARED,
        None::<&str>,
    )
    .map_err(|e| Error::Guest(format!("making {} shared: {e}", sx.display())))?;
    if let Some(host) = &sp.cni_host_ifname {
        if proxmox_lxcri_network::bridge::exists(host) {
            proxmox_lxcri_network::bridge::ip(&["link", "del", host])
                .map_err(|e| Error::Guest(format!("removing the CNI interface {host}: {e}")))?;
        }
    }
    Ok(())
}

/// Once the CT runs: containerd's netns path names the CT's network
/// namespace (containerd and the kubelet enter the pod's network there:
/// port-forward, the pod's containers' specs).
pub fn take_over_netns(sp: &SandboxPlan, init: i32) -> Result<()> {
    let Some(path) = &sp.netns else {
        return Ok(());
    };
    let ns = format!("/proc/{init}/ns/net");
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
        Err(e) => {
            return Err(Error::Guest(format!(
                "unmounting containerd's netns {}: {e}",
                path.display()
            )))
        }
    }
    mount(
        Some(ns.as_str()),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        Error::Guest(format!(
            "binding the CT's network namespace at {}: {e}",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["/pause"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev/shm", "type": "bind", "source": "/run/c/shm",
                 "options": ["rbind", "ro"]},
                {"destination": "/etc/resolv.conf", "type": "bind",
                 "source": "/var/lib/c/resolv.conf", "options": ["rbind", "ro"]}
            ],
            "linux": {
                "namespaces": [{"type": "pid"}, {"type": "network", "path": "/var/run/netns/cni-1"}],
                "resources": {"memory": {"limit": 10485760},
                              "cpu": {"quota": 20000, "period": 100000, "shares": 2}}
            }
        }))
        .unwrap()
    }

    #[test]
    fn the_sandbox_ct_has_its_own_netns_no_binds_and_a_tmpfs_shm() {
        let s = sandbox_spec(&spec(), &BTreeMap::new()).unwrap();
        assert_eq!(netns_path(&s), None);
        let mounts = s.mounts().clone().unwrap();
        let dests: Vec<_> = mounts.iter().map(|m| m.destination().clone()).collect();
        assert_eq!(dests, [PathBuf::from("/proc"), PathBuf::from("/dev/shm")]);
        assert_eq!(mounts[1].typ().as_deref(), Some("tmpfs"));
        // Without pod resources the sandbox's own stay as they are.
        let r = s.linux().as_ref().unwrap().resources().clone().unwrap();
        assert_eq!(r.memory().unwrap().limit(), Some(10 << 20));
    }

    #[test]
    fn the_pods_resources_and_the_overhead_size_the_ct() {
        let ann: BTreeMap<String, String> = [
            (SANDBOX_MEMORY_ANNOTATION, "268435456"),
            (SANDBOX_CPU_QUOTA_ANNOTATION, "150000"),
            (SANDBOX_CPU_PERIOD_ANNOTATION, "100000"),
            (SANDBOX_CPU_SHARES_ANNOTATION, "1024"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let s = sandbox_spec(&spec(), &ann).unwrap();
        let r = s.linux().as_ref().unwrap().resources().clone().unwrap();
        assert_eq!(r.memory().unwrap().limit(), Some((256 + 10) << 20));
        let cpu = r.cpu().clone().unwrap();
        assert_eq!((cpu.quota(), cpu.period()), (Some(170_000), Some(100_000)));
        assert_eq!(cpu.shares(), Some(1026));
        let mut bad = ann.clone();
        bad.insert(SANDBOX_MEMORY_ANNOTATION.into(), "lots".into());
        assert!(sandbox_spec(&spec(), &bad).is_err());
    }

    #[test]
    fn pod_tags_are_what_proxmox_allows() {
        assert_eq!(tag("Kube-System"), "kube-system");
        assert_eq!(tag("a b/c"), "a-b-c");
    }
}
