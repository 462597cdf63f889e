//! cgroupsPath placement and linux.resources -> `lxc.cgroup*` keys, for
//! the host's [`CgroupLayout`]: one module per concern, composed by
//! [`translate`]. A controller on a v1 hierarchy gets `lxc.cgroup.<file>`
//! keys, one on a pure v2 host `lxc.cgroup2.<file>` ([`target`]).
use oci_spec::runtime::{LinuxResources, Spec};
use proxmox_lxcri_cgroups::CgroupLayout;

use super::{LxcConfig, TranslateContext, TranslateError};

mod blkio;
mod cpu;
mod devices;
mod memory;
mod misc;
mod path;
#[cfg(test)]
mod tests;
mod unified;

/// The OCI field all of this is under.
const F: &str = "linux.resources";

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

pub(crate) fn translate(
    spec: &Spec,
    ctx: &TranslateContext,
    lxc: &mut LxcConfig,
) -> Result<(), TranslateError> {
    let dir = path::cgroup_dir(spec, &ctx.id)?;
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
    devices::translate(r, layout, &mut em)?;
    memory::translate(r, layout, &mut em)?;
    cpu::translate(r, layout, &mut em)?;
    misc::pids(r, layout, &mut em)?;
    blkio::translate(r, layout, &mut em)?;
    misc::hugetlb(r, layout, &mut em)?;
    misc::network(r, layout, &mut em)?;
    misc::rdma(r, layout, &mut em)?;
    unified::translate(r, layout, &mut em)?;
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
        copyup_dir: Default::default(),
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
