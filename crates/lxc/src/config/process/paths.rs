//! Paths our init handles: linux.maskedPaths, linux.readonlyPaths and the
//! device nodes of linux.devices.
use oci_spec::runtime::{Linux, LinuxDevice, LinuxDeviceType};

use crate::config::{check_abs_path, TranslateError};

/// The checked linux.maskedPaths, readonlyPaths and devices.
pub(super) struct InitPaths {
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub devices: Vec<LinuxDevice>,
}

pub(super) fn translate(linux: &Linux) -> Result<InitPaths, TranslateError> {
    let masked_paths: Vec<String> = linux.masked_paths().clone().unwrap_or_default();
    for (i, p) in masked_paths.iter().enumerate() {
        check_abs_path(&format!("linux.maskedPaths[{i}]"), p)?;
    }
    let readonly_paths: Vec<String> = linux.readonly_paths().clone().unwrap_or_default();
    for (i, p) in readonly_paths.iter().enumerate() {
        check_abs_path(&format!("linux.readonlyPaths[{i}]"), p)?;
    }
    let devices = linux.devices().clone().unwrap_or_default();
    for (i, d) in devices.iter().enumerate() {
        let field = format!("linux.devices[{i}]");
        let p = d.path().to_string_lossy().to_string();
        check_abs_path(&format!("{field}.path"), &p)?;
        if !p.starts_with("/dev/") || p.len() <= "/dev/".len() {
            return Err(TranslateError::invalid(
                format!("{field}.path"),
                &p,
                "devices must be created under /dev",
                "use a path like /dev/fuse",
            ));
        }
        if p == crate::init_config::EXCHANGE_DIR
            || p.starts_with(&format!("{}/", crate::init_config::EXCHANGE_DIR))
            || p == crate::init_config::INIT_PATH
        {
            return Err(TranslateError::invalid(
                format!("{field}.path"),
                &p,
                "reserved for the runtime",
                "use another path",
            ));
        }
        match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::B | LinuxDeviceType::U | LinuxDeviceType::P => {}
            LinuxDeviceType::A => {
                return Err(TranslateError::invalid(
                    format!("{field}.type"),
                    "a",
                    "a device node must be c, b, u or p",
                    "fix the device type",
                ))
            }
        }
        if d.major() < 0 || d.minor() < 0 {
            return Err(TranslateError::invalid(
                format!("{field}.major/minor"),
                format!("{}:{}", d.major(), d.minor()),
                "negative device number",
                "use the real major:minor",
            ));
        }
    }
    Ok(InitPaths {
        masked_paths,
        readonly_paths,
        devices,
    })
}
