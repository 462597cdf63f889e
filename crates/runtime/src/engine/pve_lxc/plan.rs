//! From the OCI spec and annotations to the CT's create parameters and its
//! raw `lxc.*` keys; nothing here talks to Proxmox.
use super::*;

/// The create parameters the spec and annotations ask for.
pub struct CtPlan {
    pub params: Params,
    pub unprivileged: bool,
    pub net: NetMode,
    /// Indexes of the spec's mounts that became `mp[n]` (the rest go raw).
    pub mount_points: Vec<usize>,
    /// Configured networks, one NIC each (`net0`, `net1`, ...), set once
    /// their leases are taken; empty: `net0` from the annotations.
    pub networks: Vec<(String, proxmox_lxcri_network::Network)>,
    /// `io.proxmox-lxcri.net.ip` with a network: the first NIC's address.
    pub fixed_ip: Option<std::net::IpAddr>,
}

/// Description of our CTs: names the container, the runtime root and the
/// node, so that cleanup never touches a CT that is not ours (another
/// node's runtime may use the same root path).
pub fn description(id: &str, root: &Path, node: &str) -> String {
    format!(
        "proxmox-lxcri container {id} (root {}, node {node})",
        root.display()
    )
}

/// The container id in a description of ours, if it names `root` and `node`.
pub fn description_id(desc: &str, root: &Path, node: &str) -> Option<String> {
    let rest = desc.trim().strip_prefix("proxmox-lxcri container ")?;
    let (id, _) = rest.split_once(' ')?;
    // The first line (a pod's CT says more below it).
    let first = desc.trim().lines().next().unwrap_or_default().trim();
    (first == description(id, root, node)).then(|| id.to_string())
}

/// `lxcri-<id>`, in the characters Proxmox allows in tags.
pub fn id_tag(id: &str) -> String {
    let t: String = id
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || "_-+.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("lxcri-{t}")
}

fn flag(v: &str) -> Option<bool> {
    match v {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

fn host_memory_mb() -> u64 {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(512)
}

use proxmox_lxcri_network::valid_domain as dns_name;

/// Map the spec and annotations to `POST /nodes/{node}/lxc` parameters
/// (everything but vmid and ostemplate).
pub fn plan(
    id: &str,
    spec: &Spec,
    annotations: &BTreeMap<String, String>,
    cfg: &PveSection,
    root: &Path,
    networks: Vec<(String, proxmox_lxcri_network::Network)>,
) -> Result<CtPlan> {
    let bad = |what: &str, v: &str, why: &str| Error::Spec(format!("{what}={v:?}: {why}"));
    let mut p = Params::new();
    p = p.set("ostype", "unmanaged");
    p = p.set("description", description(id, root, &cfg.node));
    p = p.set("tags", format!("{TAG};{}", id_tag(id)));

    let unprivileged = match annotations.get(PRIVILEGED_ANNOTATION) {
        None => true,
        Some(v) => !flag(v).ok_or_else(|| bad(PRIVILEGED_ANNOTATION, v, "use true or false"))?,
    };
    p = p.bool("unprivileged", unprivileged);

    if let Some(h) = spec.hostname() {
        if !dns_name(h) {
            return Err(bad(
                "hostname",
                h,
                "Proxmox needs a DNS name (letters, digits, '-', '.')",
            ));
        }
        p = p.set("hostname", h.clone());
    }

    // Limits: what the API can say; the exact cgroup values also go raw.
    let res = spec.linux().as_ref().and_then(|l| l.resources().clone());
    p = limit_params(res.as_ref(), p)?;

    let size = match annotations.get(QUOTA_ANNOTATION) {
        Some(v) => {
            // The same sizes as [storage] reads (it owns the annotation).
            let bytes = storage::size::parse(QUOTA_ANNOTATION, v)?;
            // Proxmox takes GiB with decimals; whole MiB (rounded up) are
            // exact binary fractions, so the volume gets exactly this size.
            format!("{}", bytes.div_ceil(1 << 20) as f64 / 1024.0)
        }
        None => cfg.rootfs_size_gb.to_string(),
    };
    p = p.set("rootfs", format!("{}:{size}", cfg.storage));

    let net = net_mode(spec);
    let ann = |k: &str| {
        annotations
            .get(&format!("{NET_ANNOTATION_PREFIX}{k}"))
            .cloned()
    };
    let mut fixed_ip = None;
    if networks.is_empty() {
        if net == NetMode::Api {
            p = p.set("net0", net0(annotations, cfg)?);
        }
    } else {
        if net != NetMode::Api {
            return Err(Error::Spec(format!(
                "annotation {}: a container on a configured network needs its own network \
                 namespace (linux.namespaces: network without a path)",
                crate::network::NETWORK_ANNOTATION
            )));
        }
        for k in [
            "bridge", "vlan", "gw", "ip6", "gw6", "hwaddr", "mtu", "firewall",
        ] {
            if let Some(v) = ann(k) {
                return Err(bad(
                    &format!("{NET_ANNOTATION_PREFIX}{k}"),
                    &v,
                    &format!("set by network {:?}; remove the annotation", networks[0].0),
                ));
            }
        }
        if let Some(v) = ann("ip") {
            let addr = v.split('/').next().unwrap_or_default();
            fixed_ip = Some(addr.parse().map_err(|_| {
                bad(
                    &format!("{NET_ANNOTATION_PREFIX}ip"),
                    &v,
                    "an address inside the network's subnet",
                )
            })?);
        }
    }
    // DNS: the annotations, else the first network's, else [pve]'s.
    let net_dns = networks.first().map(|(_, n)| {
        let ns: Vec<String> = n.dns.iter().map(|a| a.to_string()).collect();
        (ns.join(" "), n.search.join(" "))
    });
    let dns_of_net = net_dns
        .as_ref()
        .map(|d| d.0.clone())
        .filter(|s| !s.is_empty());
    let search_of_net = net_dns
        .as_ref()
        .map(|d| d.1.clone())
        .filter(|s| !s.is_empty());
    if let Some(ns) = ann("nameserver")
        .or(dns_of_net)
        .or_else(|| cfg.nameserver.clone())
    {
        if !ns.split(' ').all(|a| a.parse::<std::net::IpAddr>().is_ok()) {
            return Err(bad("nameserver", &ns, "space-separated IP addresses"));
        }
        p = p.set("nameserver", ns);
    }
    if let Some(sd) = ann("searchdomain")
        .or(search_of_net)
        .or_else(|| cfg.searchdomain.clone())
    {
        if !sd.split(' ').all(dns_name) {
            return Err(bad("searchdomain", &sd, "space-separated DNS names"));
        }
        p = p.set("searchdomain", sd);
    }
    if let Some(f) = annotations.get(FEATURES_ANNOTATION) {
        p = p.set("features", features(f)?);
    }
    // Bind mounts as mount points, which Proxmox allows root@pam only.
    let mut mount_points = vec![];
    if cfg.username.as_deref() == Some("root@pam") {
        for (n, (i, mp)) in bind_mount_points(spec)?.into_iter().enumerate() {
            p = p.set(&format!("mp{n}"), mp);
            mount_points.push(i);
        }
    }
    Ok(CtPlan {
        params: p,
        unprivileged,
        net,
        mount_points,
        networks,
        fixed_ip,
    })
}

/// `net<i>` for a NIC on a configured network with its lease: bridge, VLAN
/// tag, addresses and gateways, the lease's pinned MAC, MTU, and Proxmox's
/// firewall on the NIC for port security.
pub fn leased_net(
    i: usize,
    net: &proxmox_lxcri_network::Network,
    lease: &proxmox_lxcri_network::Lease,
) -> Result<String> {
    let mut n = NetConfig::new(format!("eth{i}"));
    n.bridge = Some(net.bridge.clone());
    n.tag = net.vlan;
    for a in &lease.addrs {
        let gw = net.gateway_for(a.addr()).map(|g| g.to_string());
        if a.addr().is_ipv4() {
            n.ip = Some(a.to_string());
            n.gw = gw;
        } else {
            n.ip6 = Some(a.to_string());
            n.gw6 = gw;
        }
    }
    n.hwaddr = Some(lease.mac.to_ascii_uppercase());
    n.mtu = net.mtu.map(|m| m.min(u16::MAX as u32) as u16);
    n.firewall = Some(net.port_security);
    n.to_property_string()
        .map_err(|e| Error::Spec(format!("net{i} on network {:?}: {e}", lease.network)))
}

/// The CT options for a spec's resources: `memory`/`swap` (without a limit:
/// the node's memory, Proxmox has no "unlimited"), `cpulimit`, `cpuunits`,
/// `cores`. Used at create and by `update`.
pub fn limit_params(
    res: Option<&oci_spec::runtime::LinuxResources>,
    mut p: Params,
) -> Result<Params> {
    let bad = |what: &str, v: &str, why: &str| Error::Spec(format!("{what}={v:?}: {why}"));
    let mem = res.and_then(|r| *r.memory());
    match mem.as_ref().and_then(|m| m.limit()).filter(|l| *l > 0) {
        Some(limit) => {
            let mb = (limit as u64).div_ceil(1 << 20).max(16);
            p = p.int("memory", mb as i64);
            let swap = mem
                .as_ref()
                .and_then(|m| m.swap())
                .filter(|s| *s > 0)
                .map(|s| (s as u64).saturating_sub(limit as u64).div_ceil(1 << 20))
                .unwrap_or(0);
            p = p.int("swap", swap as i64);
        }
        // No limit: Proxmox has no "unlimited", so the node's memory.
        None => {
            p = p.int("memory", host_memory_mb() as i64);
            p = p.int("swap", 0);
        }
    }
    if let Some(cpu) = res.and_then(|r| r.cpu().clone()) {
        if let (Some(q), Some(per)) = (cpu.quota(), cpu.period()) {
            if q > 0 && per > 0 {
                let limit = (q as f64 / per as f64 * 100.0).ceil() / 100.0;
                p = p.set("cpulimit", format!("{limit}"));
            }
        }
        if let Some(shares) = cpu.shares() {
            p = p.int("cpuunits", shares.clamp(1, 10000) as i64);
        }
        if let Some(cpus) = cpu.cpus() {
            let n = count_cpus(cpus)
                .ok_or_else(|| bad("linux.resources.cpu.cpus", cpus, "not a cpu list"))?;
            p = p.int("cores", n as i64);
        }
    }

    Ok(p)
}

/// The spec's bind mounts that Proxmox can express as `mp[n]`: a host
/// directory, plain options, and no other mount nested with it (the order
/// of mount points and LXC's own entries differs). Index and property string.
fn bind_mount_points(spec: &Spec) -> Result<Vec<(usize, String)>> {
    const PLAIN: &[&str] = &["bind", "rbind", "ro", "rw", "private", "rprivate"];
    let mounts = spec.mounts().clone().unwrap_or_default();
    let nested = |a: &Path, b: &Path| a != b && (a.starts_with(b) || b.starts_with(a));
    let mut out = vec![];
    for (i, m) in mounts.iter().enumerate() {
        let opts = m.options().clone().unwrap_or_default();
        let is_bind =
            m.typ().as_deref() == Some("bind") || opts.iter().any(|o| o == "bind" || o == "rbind");
        let Some(src) = m.source().as_ref() else {
            continue;
        };
        let dst = m.destination();
        if !is_bind
            || !src.is_absolute()
            || !src.is_dir()
            || !dst.is_absolute()
            || dst == Path::new("/")
            || !opts.iter().all(|o| PLAIN.contains(&o.as_str()))
            || mounts
                .iter()
                .enumerate()
                .any(|(j, o)| j != i && (o.destination() == dst || nested(o.destination(), dst)))
        {
            continue;
        }
        let (Some(src_s), Some(dst_s)) = (src.to_str(), dst.to_str()) else {
            continue;
        };
        let mut mp = MountPoint::new(src_s, dst_s);
        mp.ro = Some(opts.iter().any(|o| o == "ro"));
        mp.backup = Some(false);
        // A path the property string cannot carry stays a raw mount entry.
        if let Ok(s) = mp.to_property_string() {
            out.push((i, s));
        }
    }
    Ok(out)
}

/// The spec without the mounts that became mount points.
pub fn without_mounts(spec: &Spec, moved: &[usize]) -> Spec {
    let mut s = spec.clone();
    if let Some(m) = spec.mounts() {
        let kept = m
            .iter()
            .enumerate()
            .filter(|(i, _)| !moved.contains(i))
            .map(|(_, m)| m.clone())
            .collect();
        s.set_mounts(Some(kept));
    }
    s
}

/// How many CPUs a cpuset list (`0-3,6`) names.
pub fn count_cpus(list: &str) -> Option<u32> {
    let mut n = 0;
    for part in list.split(',') {
        let part = part.trim();
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                n += b.checked_sub(a)? + 1;
            }
            None => {
                part.parse::<u32>().ok()?;
                n += 1;
            }
        }
    }
    (n > 0).then_some(n)
}

fn net_mode(spec: &Spec) -> NetMode {
    let ns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    match ns
        .iter()
        .find(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Network)
    {
        Some(n) if n.path().is_none() => NetMode::Api,
        _ => NetMode::Raw,
    }
}

fn net0(annotations: &BTreeMap<String, String>, cfg: &PveSection) -> Result<String> {
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
    let mut n = NetConfig::new("eth0");
    n.bridge = Some(ann("bridge").unwrap_or_else(|| cfg.bridge.clone()));
    if let Some(v) = ann("vlan") {
        n.tag = Some(v.parse().map_err(|_| bad("vlan", &v, "a VLAN id 1-4094"))?);
    }
    n.ip = Some(ann("ip").unwrap_or_else(|| "dhcp".into()));
    n.gw = ann("gw");
    n.ip6 = ann("ip6");
    n.gw6 = ann("gw6");
    n.hwaddr = ann("hwaddr");
    if let Some(v) = ann("mtu") {
        n.mtu = Some(v.parse().map_err(|_| bad("mtu", &v, "a number"))?);
    }
    if let Some(v) = ann("firewall") {
        n.firewall = Some(flag(&v).ok_or_else(|| bad("firewall", &v, "use true or false"))?);
    }
    n.to_property_string().map_err(|e| {
        Error::Spec(format!(
            "net0 from the {NET_ANNOTATION_PREFIX}* annotations: {e}"
        ))
    })
}

fn features(s: &str) -> Result<String> {
    let mut f = Features::default();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, "1"));
        let on = flag(v).ok_or_else(|| {
            Error::Spec(format!(
                "annotation {FEATURES_ANNOTATION}: {part:?}: use name=1 or name=0"
            ))
        })?;
        match k {
            "nesting" => f.nesting = on,
            "fuse" => f.fuse = on,
            "keyctl" => f.keyctl = on,
            _ => {
                return Err(Error::Spec(format!(
                    "annotation {FEATURES_ANNOTATION}: unknown feature {k:?}; use nesting, fuse or keyctl"
                )))
            }
        }
    }
    f.to_property_string()
        .map_err(|e| Error::Spec(format!("annotation {FEATURES_ANNOTATION}: {e}")))
}

/// The LXC keys Proxmox writes itself from the API (rootfs, hostname, the
/// namespaces every CT gets, its cgroup, net0 when the API makes it, the
/// unprivileged idmap) or refuses (`lxc.rootfs.*`): never translated for a
/// CT. A pattern ending in `.` is a prefix.
pub fn host_keys(unprivileged: bool, net: NetMode) -> Vec<String> {
    let mut keys: Vec<String> = [
        "lxc.rootfs.",
        "lxc.uts.name",
        "lxc.cgroup.dir.",
        "lxc.namespace.clone",
        "lxc.namespace.keep",
    ]
    .map(String::from)
    .to_vec();
    if net == NetMode::Api {
        keys.push("lxc.net.".into());
    }
    if unprivileged {
        keys.push("lxc.idmap".into());
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_description_is_its_first_line() {
        let root = Path::new("/run/r");
        let d = description("c1", root, "pve");
        assert_eq!(description_id(&d, root, "pve").as_deref(), Some("c1"));
        let pod = format!("{d}\nkubernetes pod namespace: default\nkubernetes pod name: p");
        assert_eq!(description_id(&pod, root, "pve").as_deref(), Some("c1"));
        assert_eq!(description_id(&d, Path::new("/other"), "pve"), None);
        assert_eq!(description_id(&d, root, "other"), None);
        assert_eq!(description_id("kubernetes pod name: p", root, "pve"), None);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpus("0-3"), Some(4));
        assert_eq!(count_cpus("0,2,4-5"), Some(4));
        assert_eq!(count_cpus("3-1"), None);
        assert_eq!(count_cpus("x"), None);
    }

    #[test]
    fn tags_are_proxmox_safe() {
        assert_eq!(id_tag("My_Ctr.1"), "lxcri-my_ctr.1");
        assert_eq!(id_tag("a b"), "lxcri-a-b");
    }

    #[test]
    fn host_keys_name_what_the_api_sets() {
        let k = host_keys(true, NetMode::Api);
        assert!(k.contains(&"lxc.net.".to_string()));
        assert!(k.contains(&"lxc.idmap".to_string()));
        let k = host_keys(false, NetMode::Raw);
        assert!(!k.iter().any(|k| k == "lxc.net." || k == "lxc.idmap"));
        assert!(k.contains(&"lxc.rootfs.".to_string()));
    }

    /// Translating without the host's keys gives exactly what filtering a
    /// full translation gave (the raw keys written to a CT's config).
    #[test]
    fn excluding_host_keys_equals_filtering_a_full_translation() {
        use proxmox_lxcri_cgroups::CgroupLayout;
        use proxmox_lxcri_lxc::config::{translate, TranslateContext};
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs", "readonly": true},
            "hostname": "web",
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                        "oomScoreAdj": -200, "noNewPrivileges": true,
                        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20}]},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                       {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                        "options": ["nosuid", "size=65536k"]},
                       {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}],
            "linux": {
                "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "mount"},
                               {"type": "uts"}, {"type": "ipc"}, {"type": "user"}],
                "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
                "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
                "resources": {"memory": {"limit": 67108864}, "pids": {"limit": 50}},
                "sysctl": {"net.ipv4.ip_forward": "1"}
            }
        }))
        .unwrap();
        let ctx = TranslateContext {
            id: "c1".into(),
            rootfs: "/b/rootfs".into(),
            bundle: std::env::temp_dir(),
            exchange_dir: "/run/x/exch".into(),
            init_binary: "/usr/bin/proxmox-lxcri".into(),
            log_file: "/run/x/lxc.log".into(),
            copyup_dir: "/run/x/copyup".into(),
            log_level: "ERROR".into(),
            cgroups: CgroupLayout::hybrid(
                &["memory", "pids", "cpu", "cpuacct", "devices", "freezer"],
                &[],
            ),
            apparmor_enabled: false,
            selinux_enabled: false,
        };
        let full = translate(&spec, &ctx).unwrap();
        for (unprivileged, net) in [(true, NetMode::Api), (false, NetMode::Raw)] {
            let owned = host_keys(unprivileged, net);
            let filtered: Vec<_> = full
                .lxc
                .entries()
                .iter()
                .filter(|(k, _)| {
                    !(k.starts_with("lxc.rootfs.")
                        || k == "lxc.uts.name"
                        || k.starts_with("lxc.cgroup.dir")
                        || k == "lxc.namespace.clone"
                        || k == "lxc.namespace.keep"
                        || (net == NetMode::Api && k.starts_with("lxc.net."))
                        || (unprivileged && k == "lxc.idmap"))
                })
                .cloned()
                .collect();
            let raw = translate_excluding(&spec, &ctx, &owned).unwrap();
            assert_eq!(raw.lxc.entries(), filtered.as_slice());
            assert!(!raw.lxc.entries().is_empty());
            assert!(raw.lxc.entries().len() < full.lxc.entries().len());
            assert_eq!(
                serde_json::to_value(&raw.init).unwrap(),
                serde_json::to_value(&full.init).unwrap()
            );
            // What goes into the CT's config: only keys a node keeps.
            let (kept, carried) = super::super::carry::split(raw.lxc.entries(), false).unwrap();
            assert!(
                kept.iter()
                    .all(|(k, _)| proxmox_lxcri_pve_raw_keys::kept(k)),
                "{kept:?}"
            );
            assert_eq!(carried.oom_score_adj.as_deref(), Some("-200"));
            assert_eq!(
                carried.net_sysctls,
                vec![("net.ipv4.ip_forward".to_string(), "1".to_string())]
            );
        }
    }

    #[test]
    fn features_are_checked() {
        assert!(features("nesting=1,fuse=0").is_ok());
        assert!(features("mknod=1").is_err());
        assert!(features("nesting=yes").is_err());
    }
}
