//! hooks.startContainer, which our init runs (the runtime runs the others).
use oci_spec::runtime::{Hook, Spec};

use super::no_nul;
use crate::config::{check_abs_path, TranslateError};

pub(super) fn start_container(spec: &Spec) -> Result<Vec<Hook>, TranslateError> {
    let start_container_hooks = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().clone())
        .unwrap_or_default();
    for (i, h) in start_container_hooks.iter().enumerate() {
        let field = format!("hooks.startContainer[{i}]");
        check_abs_path(&format!("{field}.path"), &h.path().to_string_lossy())?;
        for (j, a) in h.args().iter().flatten().enumerate() {
            no_nul(&format!("{field}.args[{j}]"), a)?;
        }
        for (j, e) in h.env().iter().flatten().enumerate() {
            no_nul(&format!("{field}.env[{j}]"), e)?;
        }
    }
    Ok(start_container_hooks)
}
