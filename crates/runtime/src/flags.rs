//! runc's command-line flags as changes to the spec: `exec`'s flags over
//! the container's own process, `update`'s over its resources. The CLI
//! parses; the rules live here.
use oci_spec::runtime::{Capabilities, Capability, LinuxPids, LinuxResources, Process};

use crate::error::{Error, Result};
use crate::runtime::Runtime;

/// `exec` flags (runc: the container's process settings, overridden).
#[derive(Debug, Clone, Default)]
pub struct ExecFlags {
    pub args: Vec<String>,
    pub tty: bool,
    pub cwd: Option<String>,
    /// `KEY=VALUE`, added after the container's own.
    pub env: Vec<String>,
    /// `UID[:GID]`.
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    pub no_new_privs: bool,
    /// Capabilities added to bounding, effective and permitted.
    pub caps: Vec<String>,
}

impl Runtime {
    /// The process `exec` runs: the container's, changed by `flags`.
    pub fn exec_process(&self, id: &str, flags: &ExecFlags) -> Result<Process> {
        crate::id::validate(id)?;
        if flags.args.is_empty() {
            return Err(Error::Spec("exec needs a command or --process".into()));
        }
        let spec = self
            .stored_spec(id)
            .map_err(|_| Error::NotFound(id.to_string()))?;
        let mut p = spec.process().clone().unwrap_or_default();
        p.set_args(Some(flags.args.clone()));
        p.set_terminal(Some(flags.tty));
        if let Some(cwd) = &flags.cwd {
            p.set_cwd(cwd.into());
        }
        let mut env = p.env().clone().unwrap_or_default();
        env.extend(flags.env.iter().cloned());
        p.set_env(Some(env));
        if let Some(u) = &flags.user {
            let bad = || Error::Spec(format!("--user {u:?}: use UID or UID:GID (numbers)"));
            let (uid, gid) = match u.split_once(':') {
                Some((u, g)) => (u.parse().map_err(|_| bad())?, g.parse().map_err(|_| bad())?),
                None => (u.parse().map_err(|_| bad())?, 0),
            };
            let mut user = p.user().clone();
            user.set_uid(uid);
            user.set_gid(gid);
            p.set_user(user);
        }
        if !flags.additional_gids.is_empty() {
            let mut user = p.user().clone();
            user.set_additional_gids(Some(flags.additional_gids.clone()));
            p.set_user(user);
        }
        if flags.no_new_privs {
            p.set_no_new_privileges(Some(true));
        }
        if !flags.caps.is_empty() {
            let mut caps = p.capabilities().clone().unwrap_or_default();
            for name in &flags.caps {
                let c: Capability = name
                    .parse()
                    .map_err(|_| Error::Spec(format!("--cap {name}: unknown capability")))?;
                let add = |s: &Option<Capabilities>| {
                    let mut s = s.clone().unwrap_or_default();
                    s.insert(c);
                    Some(s)
                };
                let (b, e, pm) = (
                    add(caps.bounding()),
                    add(caps.effective()),
                    add(caps.permitted()),
                );
                caps.set_bounding(b);
                caps.set_effective(e);
                caps.set_permitted(pm);
            }
            p.set_capabilities(Some(caps));
        }
        Ok(p)
    }
}

/// `update` flags; each one given overrides that field of `--resources`.
#[derive(Debug, Clone, Default)]
pub struct ResourceFlags {
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub memory_reservation: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub pids_limit: Option<i64>,
}

impl ResourceFlags {
    pub fn apply(&self, r: &mut LinuxResources) {
        if self.memory.is_some() || self.memory_swap.is_some() || self.memory_reservation.is_some()
        {
            let mut m = (*r.memory()).unwrap_or_default();
            if let Some(v) = self.memory {
                m.set_limit(Some(v));
            }
            if let Some(v) = self.memory_swap {
                m.set_swap(Some(v));
            }
            if let Some(v) = self.memory_reservation {
                m.set_reservation(Some(v));
            }
            r.set_memory(Some(m));
        }
        if self.cpu_shares.is_some()
            || self.cpu_quota.is_some()
            || self.cpu_period.is_some()
            || self.cpuset_cpus.is_some()
            || self.cpuset_mems.is_some()
        {
            let mut c = r.cpu().clone().unwrap_or_default();
            if let Some(v) = self.cpu_shares {
                c.set_shares(Some(v));
            }
            if let Some(v) = self.cpu_quota {
                c.set_quota(Some(v));
            }
            if let Some(v) = self.cpu_period {
                c.set_period(Some(v));
            }
            if let Some(v) = &self.cpuset_cpus {
                c.set_cpus(Some(v.clone()));
            }
            if let Some(v) = &self.cpuset_mems {
                c.set_mems(Some(v.clone()));
            }
            r.set_cpu(Some(c));
        }
        if let Some(v) = self.pids_limit {
            let mut p = LinuxPids::default();
            p.set_limit(v);
            r.set_pids(Some(p));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_flags_override_only_what_is_given() {
        let mut r: LinuxResources = serde_json::from_value(serde_json::json!({
            "memory": {"limit": 100, "swap": 200},
            "cpu": {"shares": 512, "period": 100000}
        }))
        .unwrap();
        ResourceFlags {
            memory: Some(300),
            cpu_quota: Some(50000),
            pids_limit: Some(20),
            ..Default::default()
        }
        .apply(&mut r);
        let m = r.memory().unwrap();
        assert_eq!((m.limit(), m.swap()), (Some(300), Some(200)));
        let c = r.cpu().clone().unwrap();
        assert_eq!(
            (c.shares(), c.quota(), c.period()),
            (Some(512), Some(50000), Some(100000))
        );
        assert_eq!(r.pids().unwrap().limit(), 20);
    }
}
