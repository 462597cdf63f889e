//! The remaining linux.* fields: intelRdt, memoryPolicy and netDevices
//! (errors), personality (`lxc.arch`) and rootfsPropagation.
use oci_spec::runtime::{Linux, LinuxPersonalityDomain};

use crate::config::{LxcConfig, TranslateError};

pub(super) fn translate(linux: &Linux, lxc: &mut LxcConfig) -> Result<(), TranslateError> {
    if linux.intel_rdt().is_some() {
        return Err(TranslateError::unsupported(
            "linux.intelRdt",
            "{...}",
            "Intel RDT (resctrl) is not supported",
            "remove linux.intelRdt",
        ));
    }
    if linux.memory_policy().is_some() {
        return Err(TranslateError::unsupported(
            "linux.memoryPolicy",
            "{...}",
            "NUMA memory policy (set_mempolicy) is not supported",
            "remove linux.memoryPolicy (linux.resources.cpu.mems restricts NUMA nodes)",
        ));
    }
    if linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(TranslateError::unsupported(
            "linux.netDevices",
            "{...}",
            "moving host network devices into the container is not supported",
            "remove linux.netDevices",
        ));
    }
    if let Some(p) = linux.personality() {
        if p.flags().as_ref().is_some_and(|f| !f.is_empty()) {
            return Err(TranslateError::unsupported(
                "linux.personality.flags",
                format!("{:?}", p.flags()),
                "personality flags are not supported",
                "remove the flags",
            ));
        }
        match p.domain() {
            LinuxPersonalityDomain::PerLinux => {}
            LinuxPersonalityDomain::PerLinux32 => {
                if cfg!(target_arch = "x86_64") {
                    lxc.push("lxc.arch", "i686")?;
                } else {
                    return Err(TranslateError::unsupported(
                        "linux.personality.domain",
                        "LINUX32",
                        "32-bit personality is only mapped (lxc.arch) on x86_64",
                        "remove linux.personality",
                    ));
                }
            }
        }
    }
    match linux.rootfs_propagation().as_deref() {
        None | Some("") | Some("private") | Some("rprivate") => {}
        // containerd's CRI asks for rslave whenever a mount wants host-to-container
        // propagation. LXC makes every mount of the container's namespace a dependent (slave)
        // of the host's before it mounts the rootfs, so slave is what LXC gives anyway; the
        // mount's own `rslave` (an lxc.mount.entry option) does the propagation.
        Some("slave") | Some("rslave") => {}
        Some(other) => {
            return Err(TranslateError::unsupported(
                "linux.rootfsPropagation",
                other.escape_debug(),
                "LXC 5.0 does not apply a propagation type to the rootfs; only private or slave (no propagation to the host) is guaranteed",
                "remove linux.rootfsPropagation or set it to rprivate or rslave",
            ));
        }
    }
    Ok(())
}
