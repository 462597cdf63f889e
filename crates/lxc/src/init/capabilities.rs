//! process.capabilities: parsing (with the `caps` crate) and applying.
use std::str::FromStr;

use caps::Capability;

use crate::init_config::Capabilities;

/// The five sets as bit masks (bit n = capability n).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

fn parse_set(names: &[String], set: &str) -> Result<u64, String> {
    let mut mask = 0u64;
    for (i, n) in names.iter().enumerate() {
        let cap = Capability::from_str(n).map_err(|_| {
            format!("process.capabilities.{set}[{i}]: unknown capability {n:?} (expected a name like CAP_SYS_ADMIN)")
        })?;
        mask |= cap.bitmask();
    }
    Ok(mask)
}

/// Parses the sets; `None` means "no capabilities at all".
pub fn parse(c: Option<&Capabilities>) -> Result<CapSets, String> {
    let Some(c) = c else {
        return Ok(CapSets::default());
    };
    Ok(CapSets {
        bounding: parse_set(&c.bounding, "bounding")?,
        effective: parse_set(&c.effective, "effective")?,
        permitted: parse_set(&c.permitted, "permitted")?,
        inheritable: parse_set(&c.inheritable, "inheritable")?,
        ambient: parse_set(&c.ambient, "ambient")?,
    })
}

fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

fn errno_str() -> String {
    std::io::Error::last_os_error().to_string()
}

/// Drops every capability not in `keep` from the bounding set (needs
/// CAP_SETPCAP in the effective set).
pub fn drop_bounding(keep: u64) -> Result<(), String> {
    for cap in 0..=last_cap().min(63) {
        if keep & (1u64 << cap) != 0 {
            continue;
        }
        // SAFETY: plain prctl with integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINVAL) {
                continue; // not known to this kernel
            }
            return Err(format!(
                "dropping capability {cap} from the bounding set: {e}"
            ));
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Sets effective, permitted and inheritable in one capset(2).
pub fn set_eip(effective: u64, permitted: u64, inheritable: u64) -> Result<(), String> {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: effective as u32,
            permitted: permitted as u32,
            inheritable: inheritable as u32,
        },
        CapData {
            effective: (effective >> 32) as u32,
            permitted: (permitted >> 32) as u32,
            inheritable: (inheritable >> 32) as u32,
        },
    ];
    // SAFETY: header and two data structs as capset(2) expects for version 3.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
    if rc != 0 {
        return Err(format!(
            "setting the effective/permitted/inheritable capabilities: {} (the inheritable set must be within the bounding set, the effective within the permitted)",
            errno_str()
        ));
    }
    Ok(())
}

/// Reads the calling thread's permitted set.
pub fn get_permitted() -> Result<u64, String> {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: as for capset.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut hdr as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(format!("capget: {}", errno_str()));
    }
    Ok(data[0].permitted as u64 | ((data[1].permitted as u64) << 32))
}

/// Makes the ambient set exactly `ambient` (each must be permitted and inheritable).
pub fn set_ambient(ambient: u64) -> Result<(), String> {
    // SAFETY: plain prctl calls.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        if ambient == 0 {
            return Ok(()); // kernel without ambient capabilities
        }
        return Err(format!(
            "clearing the ambient capabilities: {}",
            errno_str()
        ));
    }
    for cap in 0..64u32 {
        if ambient & (1u64 << cap) == 0 {
            continue;
        }
        let rc = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                cap as libc::c_ulong,
                0,
                0,
            )
        };
        if rc != 0 {
            return Err(format!(
                "raising ambient capability {cap}: {} (an ambient capability must also be permitted and inheritable)",
                errno_str()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names() {
        let c = Capabilities {
            bounding: vec!["CAP_SYS_ADMIN".into(), "CAP_CHOWN".into()],
            effective: vec!["CAP_CHOWN".into()],
            permitted: vec!["CAP_CHOWN".into(), "CAP_KILL".into()],
            inheritable: vec![],
            ambient: vec!["CAP_NET_BIND_SERVICE".into()],
        };
        let s = parse(Some(&c)).unwrap();
        assert_eq!(s.bounding, (1 << 21) | 1);
        assert_eq!(s.effective, 1);
        assert_eq!(s.permitted, 1 | (1 << 5));
        assert_eq!(s.inheritable, 0);
        assert_eq!(s.ambient, 1 << 10);
        assert_eq!(parse(None).unwrap(), CapSets::default());
    }

    #[test]
    fn unknown_names_the_set() {
        let c = Capabilities {
            permitted: vec!["CAP_CHOWN".into(), "CAP_NOPE".into()],
            ..Default::default()
        };
        let e = parse(Some(&c)).unwrap_err();
        assert!(e.contains("process.capabilities.permitted[1]"), "{e}");
        assert!(e.contains("CAP_NOPE"), "{e}");
        // Lower case / without prefix is not the OCI form.
        let c = Capabilities {
            ambient: vec!["sys_admin".into()],
            ..Default::default()
        };
        assert!(parse(Some(&c)).unwrap_err().contains("ambient"));
    }
}
