//! linux.resources.unified: raw cgroup v2 files, on pure cgroup v2 hosts.
use oci_spec::runtime::LinuxResources;
use proxmox_lxcri_cgroups::CgroupLayout;

use super::{Emitter, F};
use crate::config::TranslateError;

pub(super) fn translate(
    r: &LinuxResources,
    layout: &CgroupLayout,
    em: &mut Emitter,
) -> Result<(), TranslateError> {
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
