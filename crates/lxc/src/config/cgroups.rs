//! cgroupsPath placement and linux.resources -> `lxc.cgroup*` keys, for
//! the host's [`CgroupLayout`].
use oci_spec::runtime::{
    LinuxDeviceCgroup, LinuxDeviceType, LinuxResources, LinuxThrottleDevice, Spec,
};

use proxmox_lxcri_cgroups::CgroupLayout;

use super::{LxcConfig, TranslateContext, TranslateError};

/// Where a controller's limits go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    V1,
    V2,
}

/// Where limits for `controller` go, or why they cannot be set.
fn target(
    layout: &CgroupLayout,
    controller: &str,
    field: &str,
    value: &str,
) -> Result<Target, TranslateError> {
    if layout.has_v1(controller) {
        return Ok(Target::V1);
    }
    // On cgroup v2 the device controller is a BPF program LXC attaches,
    // not a listed controller.
    let on_v2 =
        layout.has_v2(controller) || (controller == "devices" && layout.unified_mount().is_some());
    if on_v2 && layout.is_pure_v2() {
        return Ok(Target::V2);
    }
    if on_v2 {
        return Err(TranslateError::unsupported(
                field,
                value,
                format!("the {controller} controller is only on the cgroup v2 hierarchy of this hybrid host, and LXC 5.0 ignores lxc.cgroup2.* limits unless the host is pure cgroup v2"),
                format!("remove {field}, or enable {controller} on a cgroup v1 hierarchy"),
            ));
    }
    Err(TranslateError::unsupported(
        field,
        value,
        format!("the {controller} cgroup controller is not available on this host"),
        format!("remove {field} or enable the {controller} controller"),
    ))
}

/// Resolves linux.cgroupsPath to a path relative to the hierarchy roots.
pub(crate) fn cgroup_dir(spec: &Spec, id: &str) -> Result<String, TranslateError> {
    let field = "linux.cgroupsPath";
    let Some(raw) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
    else {
        return Ok(format!("proxmox-lxcri/{id}"));
    };
    let raw = raw.to_string_lossy().to_string();
    if raw.is_empty() {
        return Ok(format!("proxmox-lxcri/{id}"));
    }
    let bad = |problem: &str| {
        TranslateError::invalid(
            field,
            raw.escape_debug(),
            problem,
            "use a path like /kubepods/pod1/ctr1 or the systemd form slice:prefix:name",
        )
    };
    if raw
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return Err(bad(
            "contains whitespace, control characters or a backslash",
        ));
    }
    // systemd form "slice:prefix:name" (runc's systemd driver); approximated
    // as the cgroupfs path systemd would use: <slice path>/<prefix>-<name>.scope.
    let path = if !raw.starts_with('/') && raw.matches(':').count() == 2 {
        let mut it = raw.splitn(3, ':');
        let (slice, prefix, name) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
        if name.is_empty() || name.contains('/') || prefix.contains('/') || slice.contains('/') {
            return Err(bad("bad systemd cgroupsPath (slice:prefix:name)"));
        }
        let mut parts: Vec<String> = Vec::new();
        if !slice.is_empty() && slice != "-.slice" {
            let base = slice
                .strip_suffix(".slice")
                .ok_or_else(|| bad("the slice must end in .slice"))?;
            if base.is_empty()
                || base.starts_with('-')
                || base.ends_with('-')
                || base.contains("--")
            {
                return Err(bad("invalid slice name"));
            }
            let mut acc = String::new();
            for comp in base.split('-') {
                if !acc.is_empty() {
                    acc.push('-');
                }
                acc.push_str(comp);
                parts.push(format!("{acc}.slice"));
            }
        }
        let unit = if name.ends_with(".slice") {
            name.to_string()
        } else if prefix.is_empty() {
            format!("{name}.scope")
        } else {
            format!("{prefix}-{name}.scope")
        };
        parts.push(unit);
        parts.join("/")
    } else {
        raw.clone()
    };
    let mut parts = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => return Err(bad("must not contain `..` components")),
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(bad("names the root cgroup"));
    }
    Ok(parts.join("/"))
}

fn dev_num(n: Option<i64>) -> String {
    match n {
        Some(n) if n >= 0 => n.to_string(),
        _ => "*".to_string(),
    }
}

fn device_rule(field: &str, d: &LinuxDeviceCgroup) -> Result<String, TranslateError> {
    let access = d.access().clone().unwrap_or_else(|| "rwm".to_string());
    if access.is_empty() || !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(TranslateError::invalid(
            format!("{field}.access"),
            access.escape_debug(),
            "access must be a combination of r, w and m",
            "use e.g. \"rwm\"",
        ));
    }
    let typ = d.typ().unwrap_or(LinuxDeviceType::A);
    if matches!(typ, LinuxDeviceType::U | LinuxDeviceType::P) {
        return Err(TranslateError::invalid(
            format!("{field}.type"),
            typ.as_str(),
            "device cgroup rules take a (all), c or b",
            "use \"c\" for character devices",
        ));
    }
    if typ == LinuxDeviceType::A {
        // "a" covers every device; major/minor/access are irrelevant to the kernel.
        return Ok(format!("a *:* {access}"));
    }
    Ok(format!(
        "{} {}:{} {access}",
        typ.as_str(),
        dev_num(d.major()),
        dev_num(d.minor())
    ))
}

/// runc's default allowed devices (libcontainer/specconv AllowedDevices),
/// appended after the spec's own rules.
const DEFAULT_ALLOWED_DEVICES: [&str; 10] = [
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",   // /dev/null
    "c 1:8 rwm",   // /dev/random
    "c 1:7 rwm",   // /dev/full
    "c 5:0 rwm",   // /dev/tty
    "c 1:5 rwm",   // /dev/zero
    "c 1:9 rwm",   // /dev/urandom
    "c 136:* rwm", // /dev/pts/*
    "c 5:2 rwm",   // /dev/ptmx
];

/// Pushes `lxc.cgroup.<file>` or `lxc.cgroup2.<file>`.
struct Emitter<'a> {
    lxc: &'a mut LxcConfig,
}

impl Emitter<'_> {
    fn put(
        &mut self,
        t: Target,
        file: &str,
        value: impl Into<String>,
    ) -> Result<(), TranslateError> {
        let key = match t {
            Target::V1 => format!("lxc.cgroup.{file}"),
            Target::V2 => format!("lxc.cgroup2.{file}"),
        };
        self.lxc.push(&key, value)
    }
}

fn max_or(v: i64) -> String {
    if v < 0 {
        "max".to_string()
    } else {
        v.to_string()
    }
}

fn check_cpuset(field: &str, s: &str) -> Result<(), TranslateError> {
    if s.is_empty()
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b',' || b == b'-')
    {
        return Err(TranslateError::invalid(
            field,
            s.escape_debug(),
            "a cpuset list is made of numbers, ',' and '-'",
            "use a list like 0-3,6",
        ));
    }
    Ok(())
}

fn throttle(
    em: &mut Emitter,
    t: Target,
    field: &str,
    devs: &Option<Vec<LinuxThrottleDevice>>,
    v1_file: &str,
    v2_key: &str,
) -> Result<(), TranslateError> {
    for (i, d) in devs.iter().flatten().enumerate() {
        if d.major() < 0 || d.minor() < 0 {
            return Err(TranslateError::invalid(
                format!("{field}[{i}]"),
                format!("{}:{}", d.major(), d.minor()),
                "negative device number",
                "use the block device's major:minor",
            ));
        }
        match t {
            Target::V1 => em.put(
                t,
                v1_file,
                format!("{}:{} {}", d.major(), d.minor(), d.rate()),
            )?,
            Target::V2 => em.put(
                t,
                "io.max",
                format!("{}:{} {v2_key}={}", d.major(), d.minor(), d.rate()),
            )?,
        }
    }
    Ok(())
}

pub(crate) fn translate(
    spec: &Spec,
    ctx: &TranslateContext,
    lxc: &mut LxcConfig,
) -> Result<(), TranslateError> {
    let dir = cgroup_dir(spec, &ctx.id)?;
    lxc.push("lxc.cgroup.dir.container", dir.clone())?;
    lxc.push("lxc.cgroup.dir.monitor", format!("{dir}.monitor"))?;

    let layout = &ctx.cgroups;
    let resources: LinuxResources = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    let mut em = Emitter { lxc };
    let r = &resources;
    const F: &str = "linux.resources";

    // --- devices: always default-deny plus runc's defaults, as runc.
    {
        let field = format!("{F}.devices");
        let rules = r.devices().clone().unwrap_or_default();
        let mut lines: Vec<(bool, String)> = vec![(false, "a".to_string())];
        for (i, d) in rules.iter().enumerate() {
            lines.push((d.allow(), device_rule(&format!("{field}[{i}]"), d)?));
        }
        for d in DEFAULT_ALLOWED_DEVICES {
            lines.push((true, d.to_string()));
        }
        match target(layout, "devices", &field, "[...]") {
            Ok(t) => {
                for (allow, rule) in lines {
                    let file = if allow {
                        "devices.allow"
                    } else {
                        "devices.deny"
                    };
                    em.put(t, file, rule)?;
                }
            }
            // No device controller and no rules asked for: nothing to enforce.
            Err(_) if rules.is_empty() => {}
            Err(e) => return Err(e),
        }
    }

    // --- memory
    if let Some(m) = r.memory() {
        let f = format!("{F}.memory");
        let any = m.limit().is_some()
            || m.reservation().is_some()
            || m.swap().is_some()
            || m.swappiness().is_some()
            || m.disable_oom_killer() == Some(true)
            || m.use_hierarchy().is_some();
        if let Some(k) = m.kernel() {
            return Err(TranslateError::unsupported(
                format!("{f}.kernel"),
                k,
                "kernel memory limits are deprecated and not supported",
                "remove linux.resources.memory.kernel",
            ));
        }
        if let Some(k) = m.kernel_tcp() {
            return Err(TranslateError::unsupported(
                format!("{f}.kernelTCP"),
                k,
                "kernel TCP memory limits are not supported",
                "remove linux.resources.memory.kernelTCP",
            ));
        }
        if any {
            let t = target(layout, "memory", &f, "{...}")?;
            if let Some(l) = m.limit() {
                if l < -1 || l == 0 {
                    return Err(TranslateError::invalid(
                        format!("{f}.limit"),
                        l,
                        "must be positive or -1",
                        "give bytes, or -1 for unlimited",
                    ));
                }
            }
            if let Some(s) = m.swap() {
                if s < -1 || s == 0 {
                    return Err(TranslateError::invalid(
                        format!("{f}.swap"),
                        s,
                        "must be positive or -1",
                        "give bytes of memory+swap, or -1 for unlimited",
                    ));
                }
            }
            match t {
                Target::V1 => {
                    if let Some(l) = m.limit() {
                        em.put(t, "memory.limit_in_bytes", l.to_string())?;
                    }
                    if let Some(s) = m.swap() {
                        if let (Some(l), true) = (m.limit(), s > 0) {
                            if l > 0 && s < l {
                                return Err(TranslateError::invalid(
                                    format!("{f}.swap"),
                                    s,
                                    "memory+swap limit is below the memory limit",
                                    "make swap >= limit (swap is memory+swap)",
                                ));
                            }
                        }
                        em.put(t, "memory.memsw.limit_in_bytes", s.to_string())?;
                    }
                    if let Some(res) = m.reservation() {
                        em.put(t, "memory.soft_limit_in_bytes", res.to_string())?;
                    }
                    if let Some(sw) = m.swappiness() {
                        if sw > 100 {
                            return Err(TranslateError::invalid(
                                format!("{f}.swappiness"),
                                sw,
                                "must be 0..=100",
                                "use a value between 0 and 100",
                            ));
                        }
                        em.put(t, "memory.swappiness", sw.to_string())?;
                    }
                    if m.disable_oom_killer() == Some(true) {
                        em.put(t, "memory.oom_control", "1")?;
                    }
                    if let Some(h) = m.use_hierarchy() {
                        em.put(t, "memory.use_hierarchy", if h { "1" } else { "0" })?;
                    }
                }
                Target::V2 => {
                    if let Some(l) = m.limit() {
                        em.put(t, "memory.max", max_or(l))?;
                    }
                    if let Some(s) = m.swap() {
                        // runc's ConvertMemorySwapToCgroupV2Value.
                        let v = if s == -1 {
                            "max".to_string()
                        } else {
                            match m.limit() {
                                None | Some(-1) => {
                                    return Err(TranslateError::invalid(format!("{f}.swap"), s, "cannot set a swap limit without a memory limit on cgroup v2", "set linux.resources.memory.limit too"));
                                }
                                Some(l) if s < l => {
                                    return Err(TranslateError::invalid(
                                        format!("{f}.swap"),
                                        s,
                                        "memory+swap limit is below the memory limit",
                                        "make swap >= limit (swap is memory+swap)",
                                    ));
                                }
                                Some(l) => (s - l).to_string(),
                            }
                        };
                        em.put(t, "memory.swap.max", v)?;
                    } else if m.limit() == Some(-1) {
                        em.put(t, "memory.swap.max", "max")?;
                    }
                    if let Some(res) = m.reservation() {
                        em.put(t, "memory.low", max_or(res))?;
                    }
                    if let Some(sw) = m.swappiness() {
                        return Err(TranslateError::unsupported(
                            format!("{f}.swappiness"),
                            sw,
                            "cgroup v2 has no per-cgroup swappiness",
                            "remove linux.resources.memory.swappiness",
                        ));
                    }
                    if m.disable_oom_killer() == Some(true) {
                        return Err(TranslateError::unsupported(
                            format!("{f}.disableOOMKiller"),
                            true,
                            "cgroup v2 cannot disable the OOM killer",
                            "remove disableOOMKiller",
                        ));
                    }
                    if m.use_hierarchy() == Some(false) {
                        return Err(TranslateError::unsupported(
                            format!("{f}.useHierarchy"),
                            false,
                            "cgroup v2 is always hierarchical",
                            "remove useHierarchy",
                        ));
                    }
                }
            }
        }
    }

    // --- cpu
    if let Some(c) = r.cpu() {
        let f = format!("{F}.cpu");
        let cpu_any = c.shares().is_some_and(|s| s != 0)
            || c.quota().is_some()
            || c.period().is_some()
            || c.burst().is_some()
            || c.realtime_runtime().is_some()
            || c.realtime_period().is_some()
            || c.idle().is_some();
        if cpu_any {
            let t = target(layout, "cpu", &f, "{...}")?;
            if let Some(p) = c.period() {
                if !(1000..=1_000_000).contains(&p) {
                    return Err(TranslateError::invalid(
                        format!("{f}.period"),
                        p,
                        "must be between 1000 and 1000000 (microseconds)",
                        "use e.g. 100000",
                    ));
                }
            }
            match t {
                Target::V1 => {
                    if let Some(s) = c.shares().filter(|s| *s != 0) {
                        em.put(t, "cpu.shares", s.to_string())?;
                    }
                    if let Some(p) = c.period() {
                        em.put(t, "cpu.cfs_period_us", p.to_string())?;
                    }
                    if let Some(q) = c.quota() {
                        em.put(
                            t,
                            "cpu.cfs_quota_us",
                            if q < 0 {
                                "-1".to_string()
                            } else {
                                q.to_string()
                            },
                        )?;
                    }
                    if let Some(b) = c.burst() {
                        em.put(t, "cpu.cfs_burst_us", b.to_string())?;
                    }
                    if let Some(p) = c.realtime_period() {
                        em.put(t, "cpu.rt_period_us", p.to_string())?;
                    }
                    if let Some(rt) = c.realtime_runtime() {
                        em.put(t, "cpu.rt_runtime_us", rt.to_string())?;
                    }
                    if let Some(i) = c.idle() {
                        em.put(t, "cpu.idle", i.to_string())?;
                    }
                }
                Target::V2 => {
                    if let Some(s) = c.shares().filter(|s| *s != 0) {
                        // runc's ConvertCPUSharesToCgroupV2Value.
                        let s = s.clamp(2, 262_144);
                        em.put(
                            t,
                            "cpu.weight",
                            (1 + ((s - 2) * 9999) / 262_142).to_string(),
                        )?;
                    }
                    if c.quota().is_some() || c.period().is_some() {
                        let q = match c.quota() {
                            Some(q) if q > 0 => q.to_string(),
                            _ => "max".to_string(),
                        };
                        em.put(
                            t,
                            "cpu.max",
                            format!("{q} {}", c.period().unwrap_or(100_000)),
                        )?;
                    }
                    if let Some(b) = c.burst() {
                        em.put(t, "cpu.max.burst", b.to_string())?;
                    }
                    if c.realtime_runtime().is_some() || c.realtime_period().is_some() {
                        return Err(TranslateError::unsupported(
                            format!("{f}.realtimeRuntime"),
                            format!("{:?}/{:?}", c.realtime_runtime(), c.realtime_period()),
                            "cgroup v2 has no realtime CPU bandwidth",
                            "remove realtimeRuntime/realtimePeriod",
                        ));
                    }
                    if let Some(i) = c.idle() {
                        em.put(t, "cpu.idle", i.to_string())?;
                    }
                }
            }
        }
        let cpus = c.cpus().as_deref().filter(|s| !s.is_empty());
        let mems = c.mems().as_deref().filter(|s| !s.is_empty());
        if cpus.is_some() || mems.is_some() {
            let t = target(layout, "cpuset", &f, "{cpus/mems}")?;
            if let Some(s) = cpus {
                check_cpuset(&format!("{f}.cpus"), s)?;
                em.put(t, "cpuset.cpus", s.to_string())?;
            }
            if let Some(s) = mems {
                check_cpuset(&format!("{f}.mems"), s)?;
                em.put(t, "cpuset.mems", s.to_string())?;
            }
        }
    }

    // --- pids
    if let Some(p) = r.pids() {
        let f = format!("{F}.pids.limit");
        let l = p.limit();
        if l != 0 {
            let t = target(layout, "pids", &f, &l.to_string())?;
            em.put(t, "pids.max", max_or(l))?;
        }
    }

    // --- blockIO
    if let Some(b) = r.block_io() {
        let f = format!("{F}.blockIO");
        let any = b.weight().is_some()
            || b.leaf_weight().is_some()
            || b.weight_device().as_ref().is_some_and(|v| !v.is_empty())
            || [
                b.throttle_read_bps_device(),
                b.throttle_write_bps_device(),
                b.throttle_read_iops_device(),
                b.throttle_write_iops_device(),
            ]
            .iter()
            .any(|v| v.as_ref().is_some_and(|v| !v.is_empty()));
        if any {
            let t = target(
                layout,
                if layout.is_pure_v2() { "io" } else { "blkio" },
                &f,
                "{...}",
            )?;
            let check_weight = |field: String, w: u16| {
                if (10..=1000).contains(&w) {
                    Ok(())
                } else {
                    Err(TranslateError::invalid(
                        field,
                        w,
                        "weight must be 10..=1000",
                        "use a weight between 10 and 1000",
                    ))
                }
            };
            if let Some(lw) = b.leaf_weight() {
                return Err(TranslateError::unsupported(
                    format!("{f}.leafWeight"),
                    lw,
                    "leaf weights existed only for the CFQ scheduler, removed in Linux 5.0",
                    "remove leafWeight",
                ));
            }
            // BFQ weights (blkio.bfq.weight on v1, io.bfq.weight on v2); the
            // CFQ-era blkio.weight file no longer exists (Linux >= 5.0).
            let (wfile, wdfile) = match t {
                Target::V1 => ("blkio.bfq.weight", "blkio.bfq.weight_device"),
                Target::V2 => ("io.bfq.weight", "io.bfq.weight"),
            };
            if let Some(w) = b.weight() {
                check_weight(format!("{f}.weight"), w)?;
                em.put(t, wfile, w.to_string())?;
            }
            for (i, wd) in b.weight_device().iter().flatten().enumerate() {
                let field = format!("{f}.weightDevice[{i}]");
                if wd.leaf_weight().is_some() {
                    return Err(TranslateError::unsupported(
                        format!("{field}.leafWeight"),
                        wd.leaf_weight().unwrap_or(0),
                        "leaf weights existed only for the CFQ scheduler",
                        "remove leafWeight",
                    ));
                }
                if wd.major() < 0 || wd.minor() < 0 {
                    return Err(TranslateError::invalid(
                        field,
                        format!("{}:{}", wd.major(), wd.minor()),
                        "negative device number",
                        "use the block device's major:minor",
                    ));
                }
                if let Some(w) = wd.weight() {
                    check_weight(format!("{field}.weight"), w)?;
                    em.put(t, wdfile, format!("{}:{} {w}", wd.major(), wd.minor()))?;
                }
            }
            throttle(
                &mut em,
                t,
                &format!("{f}.throttleReadBpsDevice"),
                b.throttle_read_bps_device(),
                "blkio.throttle.read_bps_device",
                "rbps",
            )?;
            throttle(
                &mut em,
                t,
                &format!("{f}.throttleWriteBpsDevice"),
                b.throttle_write_bps_device(),
                "blkio.throttle.write_bps_device",
                "wbps",
            )?;
            throttle(
                &mut em,
                t,
                &format!("{f}.throttleReadIOPSDevice"),
                b.throttle_read_iops_device(),
                "blkio.throttle.read_iops_device",
                "riops",
            )?;
            throttle(
                &mut em,
                t,
                &format!("{f}.throttleWriteIOPSDevice"),
                b.throttle_write_iops_device(),
                "blkio.throttle.write_iops_device",
                "wiops",
            )?;
        }
    }

    // --- hugetlb
    for (i, h) in r.hugepage_limits().iter().flatten().enumerate() {
        let f = format!("{F}.hugepageLimits[{i}]");
        let size = h.page_size();
        let ok = size.len() > 2
            && (size.ends_with("KB") || size.ends_with("MB") || size.ends_with("GB"))
            && size[..size.len() - 2].bytes().all(|b| b.is_ascii_digit());
        if !ok {
            return Err(TranslateError::invalid(
                format!("{f}.pageSize"),
                size.escape_debug(),
                "not a huge page size",
                "use a size like 2MB or 1GB",
            ));
        }
        let t = target(layout, "hugetlb", &f, size)?;
        match t {
            Target::V1 => em.put(
                t,
                &format!("hugetlb.{size}.limit_in_bytes"),
                h.limit().to_string(),
            )?,
            Target::V2 => em.put(t, &format!("hugetlb.{size}.max"), max_or(h.limit()))?,
        }
    }

    // --- network (v1 only controllers)
    if let Some(n) = r.network() {
        let f = format!("{F}.network");
        if let Some(id) = n.class_id() {
            let t = target(layout, "net_cls", &format!("{f}.classID"), &id.to_string())?;
            em.put(t, "net_cls.classid", id.to_string())?;
        }
        for (i, p) in n.priorities().iter().flatten().enumerate() {
            let field = format!("{f}.priorities[{i}]");
            let t = target(layout, "net_prio", &field, p.name())?;
            let name = p.name();
            if name.is_empty()
                || name.len() > 15
                || name
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '/')
            {
                return Err(TranslateError::invalid(
                    format!("{field}.name"),
                    name.escape_debug(),
                    "not a network interface name",
                    "use an interface name like eth0",
                ));
            }
            em.put(t, "net_prio.ifpriomap", format!("{name} {}", p.priority()))?;
        }
    }

    // --- rdma
    if let Some(rdma) = r.rdma() {
        let mut names: Vec<&String> = rdma.keys().collect();
        names.sort();
        for dev in names {
            let field = format!("{F}.rdma.{dev}");
            if dev.is_empty() || dev.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(TranslateError::invalid(
                    field,
                    dev.escape_debug(),
                    "not an RDMA device name",
                    "use a device name like mlx5_0",
                ));
            }
            let l = &rdma[dev];
            let mut v = dev.clone();
            if let Some(h) = l.hca_handles() {
                v.push_str(&format!(" hca_handle={h}"));
            }
            if let Some(o) = l.hca_objects() {
                v.push_str(&format!(" hca_object={o}"));
            }
            let t = target(layout, "rdma", &field, &v)?;
            em.put(t, "rdma.max", v)?;
        }
    }

    // --- unified: raw cgroup v2 files
    if let Some(u) = r.unified() {
        let mut keys: Vec<&String> = u.keys().collect();
        keys.sort();
        for key in keys {
            let field = format!("{F}.unified.{key}");
            let ok = key.contains('.')
                && !key.starts_with('.')
                && !key.ends_with('.')
                && !key.contains("..")
                && key.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_')
                });
            if !ok {
                return Err(TranslateError::invalid(
                    field,
                    key.escape_debug(),
                    "not a cgroup v2 interface file name",
                    "use a name like memory.high",
                ));
            }
            let controller = key.split('.').next().unwrap_or_default();
            if controller == "cgroup" {
                return Err(TranslateError::unsupported(
                    field,
                    key,
                    "cgroup.* core files are managed by LXC",
                    "remove it",
                ));
            }
            if !layout.is_pure_v2() {
                return Err(TranslateError::unsupported(field, key, "linux.resources.unified needs a pure cgroup v2 host (LXC 5.0 ignores lxc.cgroup2.* on hybrid hosts)", "remove linux.resources.unified or use a cgroup v2 host"));
            }
            let builtin = matches!(
                controller,
                "cpu" | "io" | "memory" | "pids" | "cpuset" | "hugetlb" | "rdma" | "misc"
            );
            if builtin && !layout.has_v2(controller) {
                return Err(TranslateError::unsupported(
                    field,
                    key,
                    format!("the {controller} controller is not enabled on this host"),
                    "remove it or enable the controller",
                ));
            }
            em.lxc
                .push_field(&field, &format!("lxc.cgroup2.{key}"), u[key].clone())?;
        }
    }
    Ok(())
}

/// The cgroup settings (`lxc.cgroup.<controller>.<file>` or
/// `lxc.cgroup2.<file>` keys, with their values) that express `resources`
/// on this host, for `update` of a running container. Device rules are not
/// part of an update, as with runc.
pub fn resource_settings(
    resources: &LinuxResources,
    layout: &CgroupLayout,
) -> Result<Vec<(String, String)>, TranslateError> {
    let mut r = resources.clone();
    r.set_devices(None);
    let spec: Spec = serde_json::from_value(serde_json::json!({
        "ociVersion": "1.2.0",
        "linux": {"resources": r}
    }))
    .map_err(|e| {
        TranslateError::invalid(
            "linux.resources",
            "",
            e.to_string(),
            "fix the resources JSON",
        )
    })?;
    let ctx = TranslateContext {
        id: "update".into(),
        rootfs: Default::default(),
        bundle: Default::default(),
        exchange_dir: Default::default(),
        init_binary: Default::default(),
        log_file: Default::default(),
        log_level: "ERROR".into(),
        cgroups: layout.clone(),
        apparmor_enabled: false,
        selinux_enabled: false,
    };
    let mut lxc = LxcConfig::new();
    translate(&spec, &ctx, &mut lxc)?;
    Ok(lxc
        .entries()
        .iter()
        .filter(|(k, _)| !k.starts_with("lxc.cgroup.dir") && !k.contains(".devices."))
        .cloned()
        .collect())
}
