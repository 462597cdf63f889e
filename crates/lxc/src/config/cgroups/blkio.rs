//! linux.resources.blockIO: BFQ weights and throttling (blkio on v1, io on
//! v2).
use oci_spec::runtime::{LinuxResources, LinuxThrottleDevice};
use proxmox_lxcri_cgroups::CgroupLayout;

use super::{target, Emitter, Target, F};
use crate::config::TranslateError;

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

pub(super) fn translate(
    r: &LinuxResources,
    layout: &CgroupLayout,
    em: &mut Emitter,
) -> Result<(), TranslateError> {
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
                em,
                t,
                &format!("{f}.throttleReadBpsDevice"),
                b.throttle_read_bps_device(),
                "blkio.throttle.read_bps_device",
                "rbps",
            )?;
            throttle(
                em,
                t,
                &format!("{f}.throttleWriteBpsDevice"),
                b.throttle_write_bps_device(),
                "blkio.throttle.write_bps_device",
                "wbps",
            )?;
            throttle(
                em,
                t,
                &format!("{f}.throttleReadIOPSDevice"),
                b.throttle_read_iops_device(),
                "blkio.throttle.read_iops_device",
                "riops",
            )?;
            throttle(
                em,
                t,
                &format!("{f}.throttleWriteIOPSDevice"),
                b.throttle_write_iops_device(),
                "blkio.throttle.write_iops_device",
                "wiops",
            )?;
        }
    }
    Ok(())
}
