//! hostname and domainname.
use oci_spec::runtime::Spec;

use crate::config::namespaces::{Namespaces, NsMode};
use crate::config::{LxcConfig, TranslateError};

/// Hostname / domainname: what sethostname accepts and a config value can
/// carry: 1..=64 bytes, no whitespace or control characters.
fn check_uts_name(field: &str, s: &str) -> Result<(), TranslateError> {
    if s.is_empty() || s.len() > 64 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(TranslateError::invalid(
            field,
            s.escape_debug(),
            "must be 1 to 64 bytes without whitespace or control characters",
            "use a valid host name",
        ));
    }
    Ok(())
}

/// `lxc.uts.name` for the hostname; the domainname, which our init sets.
pub(super) fn translate(
    spec: &Spec,
    ns: &Namespaces,
    lxc: &mut LxcConfig,
) -> Result<Option<String>, TranslateError> {
    if let Some(h) = spec.hostname() {
        if !h.is_empty() {
            check_uts_name("hostname", h)?;
            if *ns.mode("uts") != NsMode::New {
                return Err(TranslateError::invalid(
                    "hostname",
                    h,
                    "setting the hostname needs a new UTS namespace",
                    "add {\"type\": \"uts\"} (without path) to linux.namespaces, or drop hostname",
                ));
            }
            lxc.push("lxc.uts.name", h.clone())?;
        }
    }
    let mut domainname = None;
    if let Some(d) = spec.domainname() {
        if !d.is_empty() {
            check_uts_name("domainname", d)?;
            if *ns.mode("uts") != NsMode::New {
                return Err(TranslateError::invalid(
                    "domainname",
                    d,
                    "setting the domainname needs a new UTS namespace",
                    "add {\"type\": \"uts\"} (without path) to linux.namespaces, or drop domainname",
                ));
            }
            domainname = Some(d.clone());
        }
    }
    Ok(domainname)
}
