//! Which Proxmox privileges the pve-lxc engine needs, and which of them a
//! `GET /access/permissions` answer lacks.
use proxmox_lxcri_runtime::config::PveSection;

/// (ACL path, privilege) pairs pve-lxc uses: create/destroy/start CTs and
/// set their options, allocate rootfs volumes, upload its base template,
/// and put NICs on the bridge.
pub fn required_privileges(cfg: &PveSection) -> Vec<(String, &'static str)> {
    let mut out = vec![];
    for p in [
        "VM.Allocate",
        "VM.Audit",
        "VM.Config.CPU",
        "VM.Config.Disk",
        "VM.Config.Memory",
        "VM.Config.Network",
        "VM.Config.Options",
        "VM.PowerMgmt",
    ] {
        out.push(("/vms".to_string(), p));
    }
    out.push((
        format!("/storage/{}", cfg.storage),
        "Datastore.AllocateSpace",
    ));
    out.push((format!("/storage/{}", cfg.storage), "Datastore.Audit"));
    out.push((
        format!("/storage/{}", cfg.template_storage),
        "Datastore.AllocateTemplate",
    ));
    out.push((format!("/sdn/zones/localnetwork/{}", cfg.bridge), "SDN.Use"));
    out
}

/// The pairs of `required` that `perms` does not grant. An entry for a
/// path is the effective set there; a path without one inherits the
/// propagated privileges of its nearest ancestor that has one.
pub fn missing_privileges(
    perms: &pve_client::Permissions,
    required: &[(String, &'static str)],
) -> Vec<(String, &'static str)> {
    required
        .iter()
        .filter(|(path, privilege)| !granted(perms, path, privilege))
        .cloned()
        .collect()
}

fn granted(perms: &pve_client::Permissions, path: &str, privilege: &str) -> bool {
    let mut p = path.trim_end_matches('/').to_string();
    let mut exact = true;
    loop {
        let key = if p.is_empty() { "/" } else { p.as_str() };
        if let Some(set) = perms.get(key) {
            return match set.get(privilege) {
                Some(propagate) => exact || *propagate,
                None => false,
            };
        }
        if p.is_empty() {
            return false;
        }
        p.truncate(p.rfind('/').unwrap_or(0));
        exact = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(v: serde_json::Value) -> pve_client::Permissions {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn inheritance_follows_propagate_and_the_nearest_entry() {
        let req = vec![
            ("/vms".to_string(), "VM.Allocate"),
            ("/storage/local".to_string(), "Datastore.AllocateSpace"),
        ];
        let all =
            perms(serde_json::json!({"/": {"VM.Allocate": true, "Datastore.AllocateSpace": true}}));
        assert!(missing_privileges(&all, &req).is_empty());
        let not_propagated = perms(
            serde_json::json!({"/": {"VM.Allocate": false, "Datastore.AllocateSpace": true}}),
        );
        assert_eq!(
            missing_privileges(&not_propagated, &req),
            vec![req[0].clone()]
        );
        // A nearer entry without the privilege hides the root's.
        let nearer = perms(serde_json::json!({
            "/": {"VM.Allocate": true, "Datastore.AllocateSpace": true},
            "/storage": {"Datastore.Audit": true}
        }));
        assert_eq!(missing_privileges(&nearer, &req), vec![req[1].clone()]);
        assert_eq!(
            missing_privileges(&perms(serde_json::json!({})), &req).len(),
            2
        );
    }
}
