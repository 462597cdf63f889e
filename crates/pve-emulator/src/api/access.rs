//! /access: the login ticket, and the permission checks of the other calls
//! (this emulator knows root@pam and everyone else).

use serde_json::json;

use super::{ok, Ctx, P, R};
use crate::api::App;
use crate::auth::Identity;
use crate::error::ApiError;
use crate::propstr;

pub(super) fn login(app: &App, p: &P) -> R {
    let user = p.get("username").cloned().unwrap_or_default();
    match app
        .auth
        .login(&user, p.get("password").map(String::as_str).unwrap_or(""))
    {
        Some(u) => ok(json!({
            "username": u,
            "ticket": app.auth.make_ticket(&u),
            "CSRFPreventionToken": app.auth.make_csrf(&u),
            "cap": {"vms": {}, "storage": {}, "nodes": {}, "access": {}, "dc": {}, "sdn": {}, "mapping": {}},
        })),
        None => {
            std::thread::sleep(std::time::Duration::from_millis(app.auth_fail_delay_ms));
            Err(ApiError::new(401, "authentication failure"))
        }
    }
}

/// Every privilege Proxmox VE 9 knows (the role Administrator has them all).
pub const ALL_PRIVILEGES: &[&str] = &[
    "Datastore.Allocate",
    "Datastore.AllocateSpace",
    "Datastore.AllocateTemplate",
    "Datastore.Audit",
    "Group.Allocate",
    "Mapping.Audit",
    "Mapping.Modify",
    "Mapping.Use",
    "Permissions.Modify",
    "Pool.Allocate",
    "Pool.Audit",
    "Realm.Allocate",
    "Realm.AllocateUser",
    "SDN.Allocate",
    "SDN.Audit",
    "SDN.Use",
    "Sys.AccessNetwork",
    "Sys.Audit",
    "Sys.Console",
    "Sys.Incoming",
    "Sys.Modify",
    "Sys.PowerMgmt",
    "Sys.Syslog",
    "User.Modify",
    "VM.Allocate",
    "VM.Audit",
    "VM.Backup",
    "VM.Clone",
    "VM.Config.CDROM",
    "VM.Config.CPU",
    "VM.Config.Cloudinit",
    "VM.Config.Disk",
    "VM.Config.HWType",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.Options",
    "VM.Console",
    "VM.GuestAgent.Audit",
    "VM.GuestAgent.FileRead",
    "VM.GuestAgent.FileSystemMgmt",
    "VM.GuestAgent.FileWrite",
    "VM.GuestAgent.Unrestricted",
    "VM.Migrate",
    "VM.PowerMgmt",
    "VM.Replicate",
    "VM.Snapshot",
    "VM.Snapshot.Rollback",
];

/// `GET /access/permissions`: effective privileges, as a map path =>
/// {privilege => propagate}. The emulator checks no ACLs: every
/// authenticated user and token may do everything but root@pam's own
/// operations (so also read anyone's permissions, which needs Sys.Audit on
/// /access in Proxmox). What it reports is exactly that: every privilege,
/// propagated, on `/` (or on `path` when one is asked for).
pub(super) fn permissions(_ctx: &Ctx, p: &P) -> R {
    let privs: serde_json::Map<String, serde_json::Value> = ALL_PRIVILEGES
        .iter()
        .map(|p| (p.to_string(), json!(1)))
        .collect();
    let path = p.get("path").cloned().unwrap_or_else(|| "/".into());
    ok(json!({ path: privs }))
}

impl Ctx {
    fn who(&self) -> &Identity {
        self.identity.as_ref().expect("authenticated")
    }
    pub(super) fn user(&self) -> String {
        self.who().name()
    }
    pub(super) fn root_only(&self, what: &str) -> Result<(), ApiError> {
        if self.who().is_root_pam() {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "Permission check failed ({what})"
            )))
        }
    }
}

/// Keys that only root@pam may set (pve-container's check_ct_modify_config_perm).
pub(super) fn check_root_only(ctx: &Ctx, p: &P) -> Result<(), ApiError> {
    for (k, v) in p {
        let base = k.trim_end_matches(|c: char| c.is_ascii_digit());
        match base {
            "features" => {
                let f = propstr::parse_lxc("lxc-features", v).unwrap_or_default();
                if f.keys().any(|k| k != "nesting") {
                    ctx.root_only(
                        "changing feature flags (except nesting) is only allowed for root@pam",
                    )?;
                }
            }
            "mp" => {
                let m = propstr::parse_lxc("lxc-mp", v).unwrap_or_default();
                if m.get("volume").is_some_and(|v| v.starts_with('/')) {
                    ctx.root_only(&format!(
                        "only root can set '{k}' config for non-volume mount"
                    ))?;
                }
            }
            "dev" => ctx.root_only(&format!("only root can set '{k}' config"))?,
            "hookscript" => ctx.root_only("only root can set 'hookscript' config")?,
            // Raw QEMU options: root@pam only, as on a node.
            "args" => ctx.root_only("only root can set 'args' config")?,
            "skiplock" if v == "1" => ctx.root_only("Only root may use this option.")?,
            _ => {}
        }
    }
    Ok(())
}
