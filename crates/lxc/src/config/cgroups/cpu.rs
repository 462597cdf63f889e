//! linux.resources.cpu: the cpu controller (shares, quota, period, ...)
//! and cpuset (cpus, mems).
use oci_spec::runtime::LinuxResources;
use proxmox_lxcri_cgroups::CgroupLayout;

use super::{target, Emitter, Target, F};
use crate::config::TranslateError;

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

pub(super) fn translate(
    r: &LinuxResources,
    layout: &CgroupLayout,
    em: &mut Emitter,
) -> Result<(), TranslateError> {
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
    Ok(())
}
