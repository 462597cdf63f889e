//! The controllers with a field or two each: pids, hugetlb, net_cls and
//! net_prio (linux.resources.network), rdma.
use oci_spec::runtime::LinuxResources;
use proxmox_lxcri_cgroups::CgroupLayout;

use super::{max_or, target, Emitter, Target, F};
use crate::config::TranslateError;

/// linux.resources.pids.
pub(super) fn pids(
    r: &LinuxResources,
    layout: &CgroupLayout,
    em: &mut Emitter,
) -> Result<(), TranslateError> {
    if let Some(p) = r.pids() {
        let f = format!("{F}.pids.limit");
        let l = p.limit();
        if l != 0 {
            let t = target(layout, "pids", &f, &l.to_string())?;
            em.put(t, "pids.max", max_or(l))?;
        }
    }
    Ok(())
}

/// linux.resources.hugepageLimits.
pub(super) fn hugetlb(
    r: &LinuxResources,
    layout: &CgroupLayout,
    em: &mut Emitter,
) -> Result<(), TranslateError> {
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
    Ok(())
}

/// linux.resources.network: v1-only controllers.
pub(super) fn network(
    r: &LinuxResources,
    layout: &CgroupLayout,
    em: &mut Emitter,
) -> Result<(), TranslateError> {
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
    Ok(())
}

/// linux.resources.rdma.
pub(super) fn rdma(
    r: &LinuxResources,
    layout: &CgroupLayout,
    em: &mut Emitter,
) -> Result<(), TranslateError> {
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
    Ok(())
}
