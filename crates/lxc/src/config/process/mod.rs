//! process, hostname/domainname, security labels, sysctl, rlimits and the
//! remaining linux.* fields -> InitConfig and LXC keys: one module per
//! concern, composed by [`translate`] (in this order, which is the order
//! of the checks).
use oci_spec::runtime::Spec;

use super::namespaces::Namespaces;
use super::{LxcConfig, TranslateContext, TranslateError};
use crate::init_config::InitConfig;

mod command;
mod hooks;
mod linux;
mod paths;
mod rlimits;
mod security;
mod sysctl;
#[cfg(test)]
mod tests;
mod user;
mod uts;

fn no_nul(field: &str, s: &str) -> Result<(), TranslateError> {
    if s.contains('\0') {
        return Err(TranslateError::invalid(
            field,
            s.escape_debug(),
            "contains a NUL byte",
            "remove it",
        ));
    }
    Ok(())
}

pub(crate) fn translate(
    spec: &Spec,
    ctx: &TranslateContext,
    ns: &Namespaces,
    lxc: &mut LxcConfig,
) -> Result<InitConfig, TranslateError> {
    let linux = spec
        .linux()
        .as_ref()
        .expect("checked by namespaces::translate");
    let process = spec.process().as_ref().ok_or_else(|| {
        TranslateError::missing(
            "process",
            "config.json needs a \"process\" object with args",
        )
    })?;

    let domainname = uts::translate(spec, ns, lxc)?;
    let command::Command { args, env, cwd } = command::translate(process)?;
    user::check(process)?;
    command::scheduling(process)?;
    security::labels(process, linux, ctx, lxc)?;
    rlimits::translate(process, lxc)?;
    let no_new_privileges = security::no_new_privs(process, lxc)?;
    sysctl::translate(linux, ns, lxc)?;
    linux::translate(linux, lxc)?;
    let paths::InitPaths {
        masked_paths,
        readonly_paths,
        devices,
    } = paths::translate(linux)?;
    security::seccomp(linux)?;
    let capabilities = security::capabilities(process);
    let start_container_hooks = hooks::start_container(spec)?;
    let user = process.user();

    Ok(InitConfig {
        args,
        env,
        cwd,
        uid: user.uid(),
        gid: user.gid(),
        additional_gids: user.additional_gids().clone().unwrap_or_default(),
        umask: user.umask(),
        domainname,
        terminal: process.terminal().unwrap_or(false),
        console_socket: false,
        capabilities,
        no_new_privileges,
        seccomp: linux.seccomp().clone(),
        masked_paths,
        readonly_paths,
        readonly_root: spec.root().as_ref().and_then(|r| r.readonly()) == Some(true),
        devices,
        start_container_hooks,
        hook_state: serde_json::Value::Null,
        exec_in_place: false,
        agent: false,
        preserve_fds: 0,
        mount_attrs: Vec::new(),
        mount_order: Vec::new(),
    })
}
