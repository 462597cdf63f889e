//! linux.resources.memory.
use oci_spec::runtime::LinuxResources;
use proxmox_lxcri_cgroups::CgroupLayout;

use super::{max_or, target, Emitter, Target, F};
use crate::config::TranslateError;

pub(super) fn translate(
    r: &LinuxResources,
    layout: &CgroupLayout,
    em: &mut Emitter,
) -> Result<(), TranslateError> {
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
    Ok(())
}
