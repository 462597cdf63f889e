//! Containers of a pod whose sandbox is a Proxmox CT (pve-lxc): they run
//! *inside* that CT, added by the sandbox's pod agent, with no API request.
//! See [`proxmox_lxcri_lxc::pod`] for the agent's side.
//!
//! ```text
//! plan:      the sandbox's state (a running pve-lxc CT whose init is the
//!            agent); the spec's namespace paths must be the CT's
//! exchange:  <sandbox exchange>/pod/<id>/{exchange,rootfs,src/<n>}
//! configure: mount points made in the image; the image (idmapped through
//!            the CT's user namespace when it is unprivileged, see idmap.rs)
//!            and each bind source mounted there on the node (the
//!            sandbox's exchange dir is a shared mount: they appear inside
//!            the CT); the stdio socket
//! start:     our monitor (as for a CT), then a `Member` frame to the agent:
//!            it makes the member's mount (and pid) namespace and starts our
//!            init, which speaks the exchange protocol from there
//! hand_over: the init moved to its own cgroup under the CT's, the spec's
//!            limits written there; the pid-file process as for a CT, moved
//!            into that cgroup too (containerd reads stats and OOMs there)
//! destroy:   cgroup, mounts and the member's directory removed
//! ```
use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::mount::{mount, MsFlags};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use proxmox_lxcri_lxc::config::{translate, TranslateContext, Translation};
use proxmox_lxcri_lxc::pod::{
    GuestMount, MemberSpec, MEMBER_EXCHANGE, MEMBER_ROOTFS, MEMBER_SOURCES, POD_DIR, SOCKET_AGENT,
};
use serde::{Deserialize, Serialize};

mod idmap;

use super::pve_lxc::{
    read_init, read_monitor, read_monitor_error, spawn_monitor, take_pid_file_process,
};
use super::{Cx, Engine, EngineRecord, Request};
use crate::error::{Context, Error, Result};
use crate::exchange::Paths;
use crate::proc::{self, ProcRef};
use crate::runtime::Runtime;
use crate::state::{ContainerState, Status};

/// containerd's CRI: `sandbox` or `container`.
pub const CONTAINER_TYPE_ANNOTATION: &str = "io.kubernetes.cri.container-type";
/// containerd's CRI: the pod's sandbox container id.
pub const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";

/// What state.json records of a member, before each step that makes it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PodMemberRecord {
    /// The sandbox's container id.
    pub sandbox: String,
    /// `<sandbox exchange>/pod/<id>` on the node, once made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// The member's cgroup directories (one per hierarchy), once made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroups: Vec<PathBuf>,
}

fn record_of(st: &ContainerState) -> Option<&PodMemberRecord> {
    match &st.engine {
        EngineRecord::PodMember(r) => Some(r),
        _ => None,
    }
}

fn record_mut(st: &mut ContainerState) -> &mut PodMemberRecord {
    match &mut st.engine {
        EngineRecord::PodMember(r) => r,
        _ => unreachable!("a member's state holds a member's record"),
    }
}

/// The state of the pod sandbox a new container joins (containerd's CRI
/// annotations name it), when that sandbox is one of this runtime root's.
/// Read once per create: it picks the container's engine (a pod's
/// containers run where its sandbox runs unless their own annotation says
/// otherwise; containerd passes pod annotations to the sandbox only) and,
/// for a pve-lxc sandbox, is the member engine's starting point.
pub fn pod_sandbox(
    rt: &Runtime,
    annotations: &std::collections::BTreeMap<String, String>,
) -> Result<Option<ContainerState>> {
    if annotations
        .get(CONTAINER_TYPE_ANNOTATION)
        .map(String::as_str)
        != Some("container")
    {
        return Ok(None);
    }
    let Some(sb) = annotations.get(SANDBOX_ID_ANNOTATION) else {
        return Ok(None);
    };
    if crate::id::validate(sb).is_err() {
        return Err(Error::Spec(format!(
            "annotation {SANDBOX_ID_ANNOTATION}={sb:?}: not a container id"
        )));
    }
    match rt.store.load(sb) {
        Ok(st) => Ok(Some(st)),
        // Another runtime root's (or gone): the container is created the
        // usual way and joins it by namespace paths.
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Does a container of this sandbox run inside it (a pve-lxc CT)?
pub fn runs_inside(sandbox: &ContainerState) -> bool {
    matches!(sandbox.engine, EngineRecord::PveLxc(_))
}

/// Where a member's files are, from the sandbox's exchange dir.
pub fn member_dir(sandbox_exchange: &Path, id: &str) -> PathBuf {
    sandbox_exchange.join(POD_DIR).join(id)
}

#[derive(Default)]
pub struct PodMemberEngine {
    sandbox: Option<ContainerState>,
    /// The sandbox's exchange dir on the node (canonical).
    sandbox_exchange: PathBuf,
    /// The CT's init (the pod agent).
    agent_init: Option<ProcRef>,
    mapped_root: Option<(u32, u32)>,
    own_pid_ns: bool,
    stdio: Option<UnixListener>,
    /// The guest-side mounts, bind sources rewritten under `src/<n>`, and
    /// the host sources to mount there.
    mounts: Vec<GuestMount>,
    sources: Vec<(usize, PathBuf)>,
    rlimits: Vec<(String, u64, u64)>,
    /// The spec's cgroup settings (LXC's key names), written at hand-over.
    cgroup_settings: Vec<(String, String)>,
}

impl PodMemberEngine {
    /// The engine for a new container of `sandbox`'s pod ([`pod_sandbox`]).
    pub fn for_sandbox(sandbox: ContainerState) -> Self {
        PodMemberEngine {
            sandbox: Some(sandbox),
            ..Default::default()
        }
    }
}

/// The inode of a namespace file.
fn ns_ino(path: &Path) -> Option<u64> {
    fs::metadata(path).ok().map(|m| m.ino())
}

impl PodMemberEngine {
    fn check_namespaces(&mut self, spec: &Spec) -> Result<()> {
        let init = self.agent_init.expect("planned");
        let nss = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();
        let mut own_pid = true;
        for (typ, name) in [
            (LinuxNamespaceType::Network, "net"),
            (LinuxNamespaceType::Ipc, "ipc"),
            (LinuxNamespaceType::Uts, "uts"),
        ] {
            let Some(ns) = nss.iter().find(|n| n.typ() == typ) else {
                return Err(Error::Unsupported(format!(
                    "linux.namespaces: the {name} namespace is the host's; a container of a \
                     pod on pve-lxc shares the pod CT's"
                )));
            };
            match ns.path() {
                // Its own: the pod's CT is as far as a member can go.
                None => {
                    return Err(Error::Unsupported(format!(
                        "linux.namespaces: a {name} namespace of its own; a container of a pod \
                         on pve-lxc shares the pod CT's"
                    )))
                }
                Some(p) => self.must_be_ct_ns(p, name, init)?,
            }
        }
        if let Some(ns) = nss.iter().find(|n| n.typ() == LinuxNamespaceType::Pid) {
            if let Some(p) = ns.path() {
                self.must_be_ct_ns(p, "pid", init)?;
                own_pid = false;
            }
        } else {
            return Err(Error::Unsupported(
                "linux.namespaces: the host's pid namespace is not available inside a pod CT"
                    .into(),
            ));
        }
        for n in &nss {
            match n.typ() {
                LinuxNamespaceType::Mount
                | LinuxNamespaceType::User
                | LinuxNamespaceType::Cgroup
                    if n.path().is_some() =>
                {
                    return Err(Error::Unsupported(format!(
                        "linux.namespaces: a {:?} namespace path cannot be joined by a \
                         container of a pod on pve-lxc",
                        n.typ()
                    )));
                }
                _ => {}
            }
        }
        self.own_pid_ns = own_pid;
        Ok(())
    }

    fn must_be_ct_ns(&self, path: &Path, name: &str, init: ProcRef) -> Result<()> {
        let want = ns_ino(Path::new(&format!("/proc/{}/ns/{name}", init.pid)));
        let got = ns_ino(path);
        if want.is_none() || got != want {
            return Err(Error::Spec(format!(
                "linux.namespaces: {name} path {} is not the pod CT's {name} namespace \
                 (the sandbox's); a container of a pod on pve-lxc can only share its pod's",
                path.display()
            )));
        }
        Ok(())
    }

    /// The spec's mounts as the agent makes them: bind sources become
    /// `src/<n>` under the member's dir (the node mounts them there).
    fn guest_mounts(&mut self, spec: &Spec, id: &str) -> Result<()> {
        let guest_dir = Path::new(proxmox_lxcri_lxc::init_config::EXCHANGE_DIR)
            .join(POD_DIR)
            .join(id)
            .join(MEMBER_SOURCES);
        for (i, m) in spec.mounts().clone().unwrap_or_default().iter().enumerate() {
            let typ = m.typ().clone().unwrap_or_default();
            let options = m.options().clone().unwrap_or_default();
            let is_bind = typ == "bind" || options.iter().any(|o| o == "bind" || o == "rbind");
            let dest = m.destination().to_string_lossy().into_owned();
            if dest.contains('\0') || !dest.starts_with('/') {
                return Err(Error::Spec(format!(
                    "mounts[{i}].destination {dest:?}: must be an absolute path"
                )));
            }
            let source = if is_bind {
                let src = m.source().clone().ok_or_else(|| {
                    Error::Spec(format!("mounts[{i}] ({dest}): a bind mount needs a source"))
                })?;
                let src = fs::canonicalize(&src).map_err(|e| {
                    Error::Spec(format!(
                        "mounts[{i}] ({dest}): source {}: {e}",
                        src.display()
                    ))
                })?;
                self.sources.push((i, src));
                guest_dir.join(i.to_string()).to_string_lossy().into_owned()
            } else {
                m.source()
                    .as_ref()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| typ.clone())
            };
            self.mounts.push(GuestMount {
                destination: dest,
                typ: if is_bind { "bind".into() } else { typ },
                source,
                options,
            });
        }
        Ok(())
    }

    fn dir(&self, st: &ContainerState) -> PathBuf {
        member_dir(&self.sandbox_exchange, &st.id)
    }
}

/// The sandbox's exchange dir on the node.
fn sandbox_exchange(rt: &Runtime, sandbox: &str) -> Result<PathBuf> {
    let link = rt.store.dir(sandbox).join("exchange");
    fs::canonicalize(&link).ctx(|| format!("the pod sandbox's exchange dir {}", link.display()))
}

/// Hand one member to the pod agent.
fn ask_agent(sandbox_exchange: &Path, member: MemberSpec) -> Result<()> {
    use proxmox_lxcri_agent_proto::{read_frame, write_frame, Body, Frame};
    let sock = sandbox_exchange.join(SOCKET_AGENT);
    let mut conn = UnixStream::connect(&sock)
        .ctx(|| format!("connecting to the pod agent at {}", sock.display()))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .ctx(|| "pod agent socket".into())?;
    let request = Frame::main(Body::Member {
        member: Box::new(member),
    });
    write_frame(&mut conn, &request).ctx(|| "sending to the pod agent".into())?;
    match read_frame(&mut conn) {
        Ok(Some(Frame {
            body: Body::Ready, ..
        })) => Ok(()),
        Ok(Some(Frame {
            body: Body::Error { message },
            ..
        })) => Err(Error::Guest(format!("the pod agent: {message}"))),
        Ok(other) => Err(Error::Guest(format!("the pod agent answered {other:?}"))),
        Err(e) => Err(Error::Guest(format!("reading the pod agent's answer: {e}"))),
    }
}

/// Remove a member's directory: unmounted first, so that removing it can
/// never reach into its image or a bind source.
fn remove_member_dir(dir: &Path) -> Result<()> {
    crate::exchange::unmount_all_under(dir)?;
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).ctx(|| format!("removing {}", dir.display())),
    }
}

fn bind(src: &Path, target: &Path, recursive: bool) -> Result<()> {
    let mut f = MsFlags::MS_BIND;
    if recursive {
        f |= MsFlags::MS_REC;
    }
    mount(Some(src), target, None::<&str>, f, None::<&str>).map_err(|e| {
        Error::Guest(format!(
            "mounting {} at {}: {e}",
            src.display(),
            target.display()
        ))
    })
}

/// The cgroup settings among LXC keys (devices are the CT's: a member
/// gets the default devices only).
fn cgroup_settings(tr: &Translation) -> Vec<(String, String)> {
    tr.lxc
        .entries()
        .iter()
        .filter(|(k, _)| {
            (k.starts_with("lxc.cgroup.") || k.starts_with("lxc.cgroup2."))
                && !k.starts_with("lxc.cgroup.dir")
                && k != "lxc.cgroup.relative"
                && !k.contains(".devices.")
                && !k.starts_with("lxc.cgroup2.devices")
        })
        .cloned()
        .collect()
}

impl Engine for PodMemberEngine {
    fn plan(&mut self, rt: &Runtime, req: &Request) -> Result<()> {
        let sb = self.sandbox.take().expect("made for_sandbox");
        let sandbox_id = sb.id.clone();
        if !matches!(sb.status, Status::Created | Status::Running) {
            return Err(Error::Spec(format!(
                "annotation {SANDBOX_ID_ANNOTATION}: the pod sandbox {sandbox_id} is {:?}, not running",
                sb.status
            )));
        }
        let init = sb.init.filter(proc::is_alive).ok_or_else(|| {
            Error::Spec(format!("the pod sandbox {sandbox_id} has no running CT"))
        })?;
        self.sandbox_exchange = sandbox_exchange(rt, &sandbox_id)?;
        if !self.sandbox_exchange.join(SOCKET_AGENT).exists() {
            return Err(Error::Spec(format!(
                "the pod sandbox {sandbox_id} runs no pod agent (created by an older runtime, \
                 or not as a CRI sandbox)"
            )));
        }
        self.agent_init = Some(init);
        // Mapped root: the CT's (its exchange files must be the member's root's).
        let st =
            fs::metadata(&self.sandbox_exchange).ctx(|| "the pod sandbox's exchange dir".into())?;
        self.mapped_root = (st.uid() != 0).then_some((st.uid(), st.gid()));
        self.check_namespaces(&req.spec)?;
        let hooks = req.spec.hooks().clone().unwrap_or_default();
        for (name, h) in [
            ("prestart", hooks.prestart()),
            ("createRuntime", hooks.create_runtime()),
            ("createContainer", hooks.create_container()),
        ] {
            if h.as_ref().is_some_and(|v| !v.is_empty()) {
                return Err(Error::Unsupported(format!(
                    "hooks.{name}: not supported for a container of a pod on pve-lxc (it \
                     starts inside the running CT, without LXC's mount hook)"
                )));
            }
        }
        self.guest_mounts(&req.spec, &req.id)?;
        self.rlimits = req
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.rlimits().clone())
            .unwrap_or_default()
            .iter()
            .map(|r| {
                let name = serde_json::to_value(r.typ())
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default();
                (name, r.soft(), r.hard())
            })
            .collect();
        self.sandbox = Some(sb);
        Ok(())
    }

    fn record(&self) -> EngineRecord {
        EngineRecord::PodMember(PodMemberRecord {
            sandbox: self
                .sandbox
                .as_ref()
                .map(|s| s.id.clone())
                .unwrap_or_default(),
            dir: None,
            cgroups: vec![],
        })
    }

    fn provision(&mut self, _cx: &mut Cx, req: &Request) -> Result<PathBuf> {
        Ok(req.rootfs.clone())
    }

    fn mapped_root(&self, _spec: &Spec) -> Option<(u32, u32)> {
        self.mapped_root
    }

    fn exchange_dir(&mut self, cx: &mut Cx, _mapped_root: Option<(u32, u32)>) -> Result<PathBuf> {
        let dir = self.dir(&cx.state);
        record_mut(&mut cx.state).dir = Some(dir.clone());
        cx.save()?;
        // Left by a create whose state is gone: start afresh.
        remove_member_dir(&dir)?;
        let pod = self.sandbox_exchange.join(POD_DIR);
        for d in [&pod, &dir] {
            match fs::create_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).ctx(|| format!("creating {}", d.display())),
            }
        }
        let exch = dir.join(MEMBER_EXCHANGE);
        for d in [
            exch.clone(),
            dir.join(MEMBER_ROOTFS),
            dir.join(MEMBER_SOURCES),
        ] {
            fs::create_dir(&d).ctx(|| format!("creating {}", d.display()))?;
        }
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&exch, fs::Permissions::from_mode(0o700))
            .ctx(|| format!("chmod {}", exch.display()))?;
        std::os::unix::fs::symlink(&exch, &cx.paths.exchange)
            .ctx(|| format!("linking {}", cx.paths.exchange.display()))?;
        Ok(exch)
    }

    fn translate(&self, spec: &Spec, ctx: &TranslateContext) -> Result<Translation> {
        // The LXC keys are not written anywhere: the cgroup settings are
        // taken from them (configure), the rest is the init's part.
        let mut tr = translate(spec, ctx)?;
        // The agent makes the member's mounts in the spec's order itself.
        tr.init.mount_order.clear();
        Ok(tr)
    }

    fn configure(&mut self, cx: &mut Cx, _req: &Request, tr: &Translation) -> Result<()> {
        let dir = self.dir(&cx.state);
        // The mount points first, made as the node's root in the image
        // itself (see make_mount_target); /dev's are on the member's tmpfs.
        let root = fs::File::open(&cx.state.rootfs).ctx(|| "opening the rootfs".into())?;
        for (i, m) in self.mounts.iter().enumerate() {
            if m.destination.starts_with("/dev/") {
                continue;
            }
            let file = self
                .sources
                .iter()
                .find(|(n, _)| *n == i)
                .is_some_and(|(_, src)| !src.is_dir());
            proxmox_lxcri_lxc::init::member::make_mount_target(&root, &m.destination, file)
                .map_err(|e| Error::Spec(format!("mounts[{i}] {}: {e}", m.destination)))?;
        }
        drop(root);
        // An unprivileged CT's root sees the image, and the bind sources,
        // through its own user namespace (idmapped), as runc's root does.
        let userns = match self.mapped_root {
            Some(_) => {
                let p = format!("/proc/{}/ns/user", self.agent_init.expect("planned").pid);
                Some(fs::File::open(&p).ctx(|| format!("opening {p}"))?)
            }
            None => None,
        };
        let target = dir.join(MEMBER_ROOTFS);
        match (&userns, self.mapped_root) {
            (Some(ns), Some(ids)) => {
                let staging = dir.join("layers");
                fs::create_dir(&staging).ctx(|| format!("creating {}", staging.display()))?;
                idmap::mount_rootfs(&cx.state.rootfs, &target, &staging, ns, ids)?;
            }
            _ => bind(&cx.state.rootfs, &target, true)?,
        }
        for (i, src) in &self.sources {
            let target = dir.join(MEMBER_SOURCES).join(i.to_string());
            if src.is_dir() {
                fs::create_dir(&target)
            } else {
                fs::File::create(&target).map(drop)
            }
            .ctx(|| format!("creating {}", target.display()))?;
            match &userns {
                // Not every filesystem can be idmapped (then as it is).
                Some(ns) if idmap::idmapped_bind(src, &target, ns).is_ok() => {}
                _ => bind(src, &target, true)?,
            }
        }
        self.cgroup_settings = cgroup_settings(tr);
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
        let listener = self.stdio.take().expect("configure runs first");
        let (monitor, gate) = spawn_monitor(
            &cx.paths.exchange,
            listener,
            stdio,
            Duration::from_secs(rt.config.lxc.start_timeout_secs),
        )?;
        if let Err(e) = cx.record_monitor(monitor) {
            drop(gate);
            let _ = nix::sys::wait::waitpid(monitor, None);
            return Err(e);
        }
        gate.open()?;
        ask_agent(
            &self.sandbox_exchange,
            MemberSpec {
                id: cx.state.id.clone(),
                mounts: self.mounts.clone(),
                own_pid_ns: self.own_pid_ns,
                rlimits: self.rlimits.clone(),
                ..Default::default()
            },
        )?;
        Ok(monitor)
    }

    fn start_failed(&mut self, _rt: &Runtime, paths: &Paths) -> Option<String> {
        if let Some(e) = read_monitor_error(&paths.exchange) {
            return Some(format!("the member's monitor: {e}"));
        }
        let init = self.agent_init?;
        (!proc::is_alive(&init)).then(|| "the pod's CT stopped".to_string())
    }

    fn still_starting(&self, paths: &Paths, monitor: Pid) -> bool {
        crate::exchange::child_running(monitor)
            || read_monitor(&paths.exchange).is_some_and(|m| proc::is_alive(&m))
    }

    fn find_init(
        &self,
        _rt: &Runtime,
        paths: &Paths,
        _monitor: Pid,
        early: bool,
    ) -> Option<ProcRef> {
        // No mount hook here (create-phase hooks are refused).
        (!early).then(|| read_init(&paths.exchange)).flatten()
    }

    fn hand_over(&mut self, cx: &mut Cx, init: ProcRef) -> Result<ProcRef> {
        // Its own cgroup under the CT's, before the OCI process starts
        // (the init waits for `start`; its child inherits the cgroup).
        let agent = self.agent_init.expect("planned");
        let dirs: Vec<PathBuf> = proxmox_lxcri_cgroups::tree::dirs_of(agent.pid, false)
            .into_iter()
            .map(|d| d.join(format!("lxcri-{}", cx.state.id)))
            .collect();
        record_mut(&mut cx.state).cgroups = dirs.clone();
        cx.save()?;
        for d in &dirs {
            match fs::create_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).ctx(|| format!("creating the cgroup {}", d.display())),
            }
            // cgroup v1's cpuset needs its parent's cpus and mems first.
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if let (Ok(v), true) = (
                    fs::read_to_string(d.parent().expect("a parent").join(f)),
                    d.join(f).exists(),
                ) {
                    let cur = fs::read_to_string(d.join(f)).unwrap_or_default();
                    if cur.trim().is_empty() {
                        let _ = fs::write(d.join(f), v.trim());
                    }
                }
            }
            fs::write(d.join("cgroup.procs"), init.pid.to_string())
                .ctx(|| format!("moving the member's init into {}", d.display()))?;
        }
        let cg = proxmox_lxcri_cgroups::Cgroup::of_pid(init.pid);
        for (k, v) in &self.cgroup_settings {
            cg.set(k, v)
                .map_err(|e| Error::Spec(format!("{k} = {v}: {e}")))?;
        }
        let pid_proc = take_pid_file_process(cx, "the member's monitor")?;
        // containerd's shim finds the container's cgroup from the pid-file
        // pid (its stats and OOM events): the member's, as under runc.
        for d in &dirs {
            fs::write(d.join("cgroup.procs"), pid_proc.pid.to_string())
                .ctx(|| format!("moving the pid-file process into {}", d.display()))?;
        }
        cx.state.monitor = Some(pid_proc);
        cx.save()?;
        Ok(pid_proc)
    }

    fn monitor_grace(&self, paths: &Paths) -> Duration {
        super::pve_lxc::grace(paths)
    }

    fn destroy(&self, _rt: &Runtime, st: &ContainerState) -> Result<()> {
        let Some(rec) = record_of(st) else {
            return Ok(());
        };
        // Children first: processes still in the member's cgroup (an exec'd
        // process that outlived the init), then the cgroup.
        for d in rec.cgroups.iter().rev() {
            for _ in 0..200 {
                let pids = fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
                if pids.trim().is_empty() {
                    break;
                }
                for p in pids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    let _ = nix::sys::signal::kill(Pid::from_raw(p), Signal::SIGKILL);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            match fs::remove_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).ctx(|| format!("removing the cgroup {}", d.display())),
            }
        }
        if let Some(dir) = &rec.dir {
            remove_member_dir(dir)?;
        }
        Ok(())
    }
}
