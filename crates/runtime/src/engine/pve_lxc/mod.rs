//! The pve-lxc engine: each OCI container is a Proxmox VE CT. Every Proxmox
//! API request of the runtime is made from this module.
//!
//! ```text
//! plan:      spec + annotations -> CT create parameters (nothing sent)
//! configure: nextid -> POST /nodes/N/lxc (base template, rootfs volume,
//!            limits, net0, tags) -> the bundle's rootfs into the CT's
//!            volume (the runtime runs on the node) -> raw lxc.* keys (our
//!            init, exchange dir, seccomp/caps via init, hooks) appended to
//!            the CT's config file on the node
//! start:     POST status/start: LXC starts our init, which waits for
//!            `start` exactly as on the lxc engine
//! ```
//! The CT is not our child, so the pid-file pid is a monitor of ours that
//! hands the init our stdio over a socket in the exchange dir, learns the
//! init's host pid from that connection (SO_PEERCRED), and exits with the
//! container's status when that pid ends (also when Proxmox stops the CT).
use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::{LinuxResources, Spec};
use proxmox_lxcri_lxc::config::{translate_excluding, TranslateContext, Translation};
use pve_client::props::{Features, MountPoint, NetConfig};
use pve_client::{Auth, Client, ClientConfig, Params, Secret, Tls, Upid};
use serde::{Deserialize, Serialize};

use super::{Cx, Engine, EngineRecord, Request};
use crate::config::PveSection;
use crate::error::{Context, Error, Result};
use crate::exchange::Paths;
use crate::proc::{self, ProcRef};
use crate::runtime::Runtime;
use crate::state::{write_atomic, ContainerState};

mod carry;
mod gc;
mod make;
pub(crate) use make::create_guest;
mod monitor;
mod node;
mod plan;
pub mod pod;
mod task_log;

pub use gc::OrphanCts;
pub use monitor::*;
pub use node::*;
pub use plan::*;

/// Every CT we make carries this tag (and one derived from the id).
pub const TAG: &str = "proxmox-lxcri";
/// `true`/`1`: a privileged CT (`unprivileged=0`).
pub const PRIVILEGED_ANNOTATION: &str = "io.proxmox-lxcri.privileged";
/// `nesting=1,fuse=1,keyctl=1`: the CT's `features`.
pub const FEATURES_ANNOTATION: &str = "io.proxmox-lxcri.features";
/// Prefix of the net0 annotations: bridge, vlan, ip, gw, ip6, gw6, hwaddr,
/// mtu, firewall, nameserver, searchdomain.
pub const NET_ANNOTATION_PREFIX: &str = "io.proxmox-lxcri.net.";
/// Rootfs size (`512M`, `8G`): the volume's size (refquota on ZFS).
pub use storage::QUOTA_ANNOTATION;
/// Host uid/gid of root in an unprivileged CT (Proxmox's fixed idmap).
pub const ID_SHIFT: u32 = 100_000;
/// The empty template every CT is created from (its rootfs is ours).
const BASE_TEMPLATE: &str = "proxmox-lxcri-base.tar";
/// Written by the monitor: the init's host pid and start time.
pub const FILE_INIT_PID: &str = "init-pid";

/// What the state file records of the CT (`"pve": {...}`), before each
/// step that makes something, so that a crash can be cleaned up.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PveLxcRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pve: Option<PveRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PveRecord {
    pub node: String,
    /// Reserved (and maybe created) VMID.
    #[serde(default)]
    pub vmid: Option<u32>,
    /// POST create succeeded for `vmid`: the CT is certainly ours.
    #[serde(default)]
    pub created: bool,
    #[serde(default)]
    pub unprivileged: bool,
}

/// The CT record of a state, if it has one.
pub fn record_of(st: &ContainerState) -> Option<&PveRecord> {
    match &st.engine {
        EngineRecord::PveLxc(r) => r.pve.as_ref(),
        _ => None,
    }
}

fn set_record(st: &mut ContainerState, rec: PveRecord) {
    st.engine = EngineRecord::PveLxc(PveLxcRecord { pve: Some(rec) });
}

/// A client for `[pve]`. Secrets come from files that must not be
/// readable by group or others.
pub fn connect(cfg: &PveSection) -> Result<Client> {
    let auth = match (&cfg.token_id, &cfg.token_secret_file) {
        (Some(id), Some(file)) => Auth::Token {
            id: id.clone(),
            secret: Secret::from_file(file)
                .map_err(|e| Error::Config(format!("pve.token_secret_file: {e}")))?,
        },
        _ => Auth::Password {
            username: cfg.username.clone().unwrap_or_default(),
            password: Secret::from_file(cfg.password_file.as_deref().unwrap_or(Path::new("")))
                .map_err(|e| Error::Config(format!("pve.password_file: {e}")))?,
        },
    };
    let tls = if cfg.insecure {
        Tls::Insecure
    } else if let Some(fp) = &cfg.fingerprint {
        Tls::Fingerprint(fp.clone())
    } else {
        Tls::Verify {
            ca_file: cfg.ca_file.clone(),
        }
    };
    let mut cc = ClientConfig::new(cfg.url.clone(), auth, tls);
    cc.timeout = Duration::from_secs(cfg.timeout_secs);
    cc.retries = cfg.retries;
    Client::new(cc).map_err(|e| Error::Config(format!("pve: {e}")))
}

/// The runtime's client for `[pve]`, made on first use.
pub fn client(rt: &Runtime) -> Result<&Client> {
    if let Some(c) = rt.pve_client.get() {
        return Ok(c);
    }
    let mut c = connect(rt.config.pve()?)?;
    let sink = rt.api_log.clone();
    c.set_observer(std::sync::Arc::new(move |r| {
        let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
        // A safety net for long-lived runtimes that never drain it.
        if log.len() < 10_000 {
            log.push(r.clone())
        }
    }));
    Ok(rt.pve_client.get_or_init(|| c))
}

/// Wrap a client error with what the runtime was doing.
pub fn api(what: &str) -> impl Fn(pve_client::Error) -> Error + '_ {
    move |source| Error::Pve {
        what: what.to_string(),
        source,
    }
}

/// Proxmox's answer to a create whose VMID is taken (in the message, or
/// as the `vmid` parameter's error).
fn is_taken(e: &pve_client::Error) -> bool {
    match e {
        pve_client::Error::Http {
            message, errors, ..
        } => {
            message.contains("already exists")
                || errors
                    .get("vmid")
                    .is_some_and(|m| m.contains("already exists"))
        }
        _ => false,
    }
}

/// Proxmox's answer to a create whose base template is gone.
fn is_missing_template(e: &pve_client::Error) -> bool {
    match e {
        pve_client::Error::Http {
            message, errors, ..
        } => message.contains("vztmpl") || errors.values().any(|m| m.contains("vztmpl")),
        _ => false,
    }
}

/// Proxmox's answer for a CT that a task holds locked.
fn is_locked(e: &pve_client::Error) -> bool {
    e.server_message().is_some_and(|m| m.contains("locked"))
}

/// How the CT's network is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetMode {
    /// A new network namespace: net0 through the API.
    Api,
    /// The host's, or a given namespace path: LXC's own keys, raw.
    Raw,
}

#[derive(Default)]
pub struct PveLxcEngine {
    plan: Option<CtPlan>,
    /// The init's stdio socket, handed to the monitor at start.
    stdio: Option<UnixListener>,
    /// The CT and its start task, once the start request was sent.
    start_task: Option<(u32, Upid)>,
    last_check: Option<Instant>,
    /// What the node would drop and the runtime applies to the init.
    carried: carry::Carried,
    /// A CRI pod's sandbox: the pod's CT.
    sandbox: Option<pod::SandboxPlan>,
}

impl PveLxcEngine {
    fn planned(&self) -> &CtPlan {
        self.plan.as_ref().expect("plan runs first")
    }
}

/// Port security with Proxmox's own firewall, before the guest starts: its
/// firewall on with `ipfilter` and `macfilter`, and an `ipfilter-net<i>`
/// IP set holding each secured NIC's lease (the NIC has `firewall=1`).
/// Enforced once the datacenter firewall is on, as on any node (an admin's
/// choice, not the runtime's). The same for a CT and a VM.
pub(crate) fn port_security(
    rt: &Runtime,
    guest: Guest,
    vmid: u32,
    leases: &[(proxmox_lxcri_network::Network, proxmox_lxcri_network::Lease)],
) -> Result<()> {
    let secured: Vec<(usize, &proxmox_lxcri_network::Lease)> = leases
        .iter()
        .enumerate()
        .filter(|(_, (n, _))| n.port_security)
        .map(|(i, (_, l))| (i, l))
        .collect();
    if secured.is_empty() {
        return Ok(());
    }
    let cfg = rt.config.pve()?;
    let client = client(rt)?;
    let what = format!("setting up the {}'s firewall (port security)", guest.name());
    let what = what.as_str();
    let kind = guest.api_type();
    client
        .firewall_options(
            kind,
            &cfg.node,
            vmid,
            &Params::new()
                .bool("enable", true)
                .bool("ipfilter", true)
                .bool("macfilter", true),
        )
        .map_err(api(what))?;
    for (i, lease) in secured {
        let set = format!("ipfilter-net{i}");
        client
            .ipset_create(kind, &cfg.node, vmid, &set, "proxmox-lxcri lease")
            .map_err(api(what))?;
        for a in &lease.addrs {
            client
                .ipset_add(kind, &cfg.node, vmid, &set, &a.addr().to_string())
                .map_err(api(what))?;
        }
    }
    Ok(())
}

/// The spec names an AppArmor profile (otherwise the node's default).
fn names_apparmor(spec: &Spec) -> bool {
    spec.process()
        .as_ref()
        .and_then(|p| p.apparmor_profile().as_deref())
        .is_some_and(|p| !p.is_empty())
}

impl Engine for PveLxcEngine {
    fn plan(&mut self, rt: &Runtime, req: &Request) -> Result<()> {
        // The [pve] section and its secrets, before anything is made.
        client(rt)?;
        let sandbox = pod::is_sandbox(&req.annotations);
        let pod_spec;
        let spec = match sandbox {
            true => {
                pod_spec = pod::sandbox_spec(&req.spec, &req.annotations)?;
                &pod_spec
            }
            false => &req.spec,
        };
        self.plan = Some(plan::plan(
            &req.id,
            spec,
            &req.annotations,
            rt.config.pve()?,
            &rt.store.root,
            {
                let nets = crate::network::chosen(rt, &req.annotations)?;
                if let Some((name, _)) = nets.iter().find(|(_, n)| n.isolated) {
                    return Err(Error::Unsupported(format!(
                        "network {name:?} is isolated, which the pve-lxc engine does not \
                         enforce yet (Proxmox's firewall); use the lxc engine or drop isolated"
                    )));
                }
                nets
            },
        )?);
        if sandbox {
            let plan = self.plan.as_mut().expect("just planned");
            self.sandbox = Some(pod::plan_sandbox(rt, req, plan)?);
        }
        Ok(())
    }

    fn record(&self) -> EngineRecord {
        EngineRecord::PveLxc(PveLxcRecord::default())
    }

    fn provision(&mut self, _cx: &mut Cx, req: &Request) -> Result<PathBuf> {
        // The CT's own volume comes with the CT (configure); no [storage]
        // volume of ours.
        Ok(req.rootfs.clone())
    }

    fn mapped_root(&self, _spec: &Spec) -> Option<(u32, u32)> {
        self.planned().unprivileged.then_some((ID_SHIFT, ID_SHIFT))
    }

    fn translate(&self, spec: &Spec, ctx: &TranslateContext) -> Result<Translation> {
        let plan = self.planned();
        let pod_spec;
        let spec = match &self.sandbox {
            Some(sp) => {
                pod_spec = pod::sandbox_spec(spec, &sp.annotations)?;
                &pod_spec
            }
            None => spec,
        };
        let owned = host_keys(plan.unprivileged, plan.net);
        // The bind mounts that became mount points are Proxmox's.
        let mut tr = if plan.mount_points.is_empty() {
            translate_excluding(spec, ctx, &owned)?
        } else {
            translate_excluding(&without_mounts(spec, &plan.mount_points), ctx, &owned)?
        };
        // The pod's CT: its init also starts the pod's other containers.
        tr.init.agent = self.sandbox.is_some();
        // Refused before anything is made.
        carry::split(tr.lxc.entries(), names_apparmor(spec))?;
        // The CT's mounts are made by Proxmox's LXC from the node's config:
        // nothing of ours could fill a tmpfs before them.
        if let Some(c) = tr.copyups.first() {
            return Err(crate::Error::Unsupported(format!(
                "mount /{}: the tmpcopyup option is supported on the lxc engine only; \
                 remove it (Podman: --read-only-tmpfs=false, or --tmpfs with notmpcopyup)",
                c.destination
            )));
        }
        Ok(tr)
    }

    fn configure(&mut self, cx: &mut Cx, req: &Request, tr: &Translation) -> Result<()> {
        let mut plan = self.plan.take().expect("plan runs first");
        // Leases before the CT (the id is claimed: a crash leaves a state
        // naming their owner; a failed create releases them).
        let mut leases = vec![];
        if !plan.networks.is_empty() {
            leases = crate::network::lease_all(cx.rt, &cx.state.id, &plan.networks, plan.fixed_ip)?;
            for (i, (net, lease)) in leases.iter().enumerate() {
                plan.params = plan
                    .params
                    .clone()
                    .set(&format!("net{i}"), leased_net(i, net, lease)?);
            }
        }
        let made = make::make_ct(cx, &plan, &req.rootfs);
        self.plan = Some(plan);
        let vmid = made?;
        // A pod's net0 holds the CNI lease: secured as a configured network's.
        if let Some(l) = self.sandbox.as_ref().and_then(|sp| sp.lease.clone()) {
            leases.push(l);
        }
        port_security(cx.rt, Guest::Ct, vmid, &leases)?;
        let (raw, carried) = carry::split(tr.lxc.entries(), names_apparmor(&req.spec))?;
        self.carried = carried;
        append_raw(&cx.rt.config.pve()?.config_dir, vmid, &raw)?;
        if let Some(sp) = &self.sandbox {
            pod::prepare_sandbox(sp, &cx.paths.exchange)?;
        }
        let stdio = crate::sockpath::bind(
            &cx.paths
                .exchange
                .join(proxmox_lxcri_lxc::init_config::SOCKET_STDIO),
        )
        .ctx(|| "binding the stdio socket".into())?;
        self.stdio = Some(stdio);
        Ok(())
    }

    fn start(&mut self, cx: &mut Cx, stdio: Option<&OwnedFd>) -> Result<Pid> {
        let rt = cx.rt;
        let cfg = rt.config.pve()?;
        let listener = self.stdio.take().expect("configure runs first");
        let (monitor, gate) = spawn_monitor(
            &cx.paths.exchange,
            listener,
            stdio,
            Duration::from_secs(cfg.task_timeout_secs + rt.config.lxc.start_timeout_secs),
        )?;
        if let Err(e) = cx.record_monitor(monitor) {
            drop(gate); // the monitor leaves at once
            let _ = nix::sys::wait::waitpid(monitor, None);
            return Err(e);
        }
        gate.open()?;
        let vmid = record_of(&cx.state)
            .and_then(|r| r.vmid)
            .expect("configure made the CT");
        let upid = client(rt)?
            .lxc_start(&cfg.node, vmid)
            .map_err(api(&format!("starting CT {vmid}")))?;
        self.start_task = Some((vmid, upid));
        self.last_check = Some(Instant::now());
        Ok(monitor)
    }

    fn start_failed(&mut self, rt: &Runtime, paths: &Paths) -> Option<String> {
        if let Some(e) = read_monitor_error(&paths.exchange) {
            return Some(format!("the CT's monitor: {e}"));
        }
        // Asked at most once a second: did Proxmox's start task fail?
        let (_, upid) = self.start_task.as_ref()?;
        if self
            .last_check
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return None;
        }
        self.last_check = Some(Instant::now());
        let err = make::task_error(client(rt).ok()?, upid)?;
        Some(format!("Proxmox start task: {err}"))
    }

    fn find_init(
        &self,
        rt: &Runtime,
        paths: &Paths,
        _monitor: Pid,
        early: bool,
    ) -> Option<ProcRef> {
        if !early {
            return read_init(&paths.exchange);
        }
        // At the mount hook the monitor has not heard from the init yet:
        // ask Proxmox for the CT's init pid.
        let (vmid, _) = self.start_task.as_ref()?;
        let st = client(rt)
            .ok()?
            .lxc_status(&rt.config.pve().ok()?.node, *vmid)
            .ok()?;
        proc::proc_ref(st.pid? as i32)
    }

    fn started(&mut self, rt: &Runtime) -> Result<()> {
        if let Some((vmid, upid)) = &self.start_task {
            wait(
                client(rt)?,
                rt.config.pve()?,
                upid,
                &format!("starting CT {vmid}"),
            )?;
        }
        Ok(())
    }

    fn still_starting(&self, paths: &Paths, monitor: Pid) -> bool {
        // The monitor leaves once it made the pid-file process (see monitor).
        crate::exchange::child_running(monitor)
            || read_monitor(&paths.exchange).is_some_and(|m| proc::is_alive(&m))
    }

    fn hand_over(&mut self, cx: &mut Cx, init: ProcRef) -> Result<ProcRef> {
        // Before the OCI process starts (the init waits for `start`).
        self.carried.apply(init.pid)?;
        if let Some(sp) = &self.sandbox {
            pod::take_over_netns(sp, init.pid)?;
        }
        // Proxmox's monitor is the CT init's parent: the pid-file process
        // is ours, made by our monitor in the container's namespaces.
        let pid_proc = take_pid_file_process(cx, "the CT's monitor")?;
        cx.state.monitor = Some(pid_proc);
        cx.save()?;
        Ok(pid_proc)
    }

    fn monitor_grace(&self, paths: &Paths) -> Duration {
        // With an init, once Proxmox has stopped the CT.
        monitor::grace(paths)
    }

    fn destroy(&self, rt: &Runtime, st: &ContainerState) -> Result<()> {
        let Some(rec) = record_of(st) else {
            return Ok(());
        };
        // The VMID is checked to be still this container's first: the CT
        // may have been destroyed from the Proxmox side and its VMID reused.
        destroy(
            client(rt)?,
            rt.config.pve()?,
            rec,
            &st.id,
            &rt.store.root,
            true,
        )
    }

    fn update_limits(
        &self,
        rt: &Runtime,
        st: &ContainerState,
        merged: &LinuxResources,
    ) -> Result<()> {
        // The CT's options follow, so Proxmox shows the new limits (the
        // cgroup values are what the kernel enforces).
        let Some(rec) = record_of(st) else {
            return Ok(());
        };
        let Some(vmid) = rec.vmid else {
            return Ok(());
        };
        let params = limit_params(Some(merged), Params::new())?;
        client(rt)?
            .lxc_set_config(&rec.node, vmid, &params)
            .map_err(api("updating the CT's limits"))?;
        Ok(())
    }
}
