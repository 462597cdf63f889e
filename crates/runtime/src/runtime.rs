//! The OCI lifecycle: create, start, state, kill, delete, run, list.
//!
//! creating -> created -> running -> stopped, as the runtime spec says;
//! `refresh` reconciles a recorded status with the processes, so a container
//! whose process exited reads as stopped without another command.
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::Spec;
use proxmox_lxcri_cgroups::{Cgroup, CgroupLayout};
use proxmox_lxcri_lxc::config::{translate, TranslateContext};
use proxmox_lxcri_lxc::init_config::FIFO_READY;

use crate::config::{Backend, Config};
use crate::error::{Context, Error, Result};
use crate::events;
use crate::hooks::{self, Place};
use crate::id;
use crate::lxc_engine::{self as lxc, LxcPaths};
use crate::proc;
use crate::pve_engine::{self as pve, PveRecord};
use crate::state::{
    now_rfc3339, write_atomic, ContainerState, ProcRef, Status, Store, OCI_VERSION,
};

#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
}

pub struct Runtime {
    pub store: Store,
    pub config: Config,
    /// The Proxmox API client, made on first use (pve-* engines only).
    pve_client: std::sync::OnceLock<pve_client::Client>,
}

impl Runtime {
    pub fn new(root: impl Into<PathBuf>, config: Config) -> Self {
        // One spelling per root: it goes into CT descriptions and volume
        // owners, which cleanup compares.
        let root = normalize(&absolute(&root.into()));
        Runtime {
            store: Store::new(root),
            config,
            pve_client: std::sync::OnceLock::new(),
        }
    }

    /// The Proxmox API client for `[pve]`.
    pub fn pve(&self) -> Result<&pve_client::Client> {
        if let Some(c) = self.pve_client.get() {
            return Ok(c);
        }
        let c = pve::connect(self.config.pve()?)?;
        Ok(self.pve_client.get_or_init(|| c))
    }

    fn api_requests(&self) -> u64 {
        self.pve_client.get().map(|c| c.requests()).unwrap_or(0)
    }

    /// Run `op`, then append its outcome (and its API requests) to the
    /// events log.
    fn logged<T>(&self, id: &str, op: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let t = Instant::now();
        let before = self.api_requests();
        let r = f();
        let result = match &r {
            Ok(_) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        let calls = self.api_requests().saturating_sub(before);
        events::record(&self.store, id, op, &result, t.elapsed(), calls as u32);
        r
    }

    pub fn create(&self, id: &str, opts: &CreateOptions) -> Result<()> {
        self.logged(id, "create", || self.create_inner(id, opts).map(|_| ()))
    }

    fn create_inner(&self, id: &str, opts: &CreateOptions) -> Result<Pid> {
        id::validate(id)?;
        let bundle = fs::canonicalize(&opts.bundle).map_err(|e| Error::Bundle {
            path: opts.bundle.clone(),
            reason: format!("cannot open the bundle directory: {e}"),
        })?;
        let spec = load_spec(&bundle)?;
        let root = spec.root().as_ref().ok_or_else(|| Error::Bundle {
            path: bundle.clone(),
            reason: "config.json has no root".into(),
        })?;
        let rootfs = bundle.join(root.path());
        let rootfs = match fs::canonicalize(&rootfs) {
            Ok(p) if p.is_dir() => p,
            _ => {
                return Err(Error::Bundle {
                    path: bundle.clone(),
                    reason: format!("root.path {} is not a directory", rootfs.display()),
                })
            }
        };
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| Error::Spec("process: required by create".into()))?;
        let terminal = process.terminal().unwrap_or(false);
        if terminal && opts.console_socket.is_none() {
            return Err(Error::Spec(
                "process.terminal is true but no --console-socket was given".into(),
            ));
        }
        if opts.preserve_fds > 0 {
            return Err(Error::Spec(
                "--preserve-fds is not supported by the lxc engine (LXC closes inherited fds)"
                    .into(),
            ));
        }
        let annotations: BTreeMap<String, String> = spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let backend = self.config.backend_for(id, &annotations)?;
        if backend == Backend::PveVm {
            return Err(Error::Config(
                "engine pve-vm is not available in this build; use lxc or pve-lxc".into(),
            ));
        }
        // Check the [pve] section and its secrets before anything is made.
        let plan = match backend {
            Backend::PveLxc => {
                self.pve()?;
                Some(pve::plan(
                    id,
                    &spec,
                    &annotations,
                    self.config.pve()?,
                    &self.store.root,
                )?)
            }
            _ => None,
        };

        // [storage]: checked now, made after the state records it. A pve-lxc
        // CT has its own volume on the Proxmox storage instead.
        let volume_plan = match &plan {
            None => crate::storage_glue::plan(self, id, &annotations, &spec)?,
            Some(_) => None,
        };

        // From here on everything made is undone if create fails.
        let lock = self.store.claim(id)?;
        let dir = self.store.dir(id);
        let mut guard = CreateGuard {
            rt: self,
            id: id.to_string(),
            dir: dir.clone(),
            paths: LxcPaths::new(&dir, id),
            monitor: None,
            init: None,
            pve: None,
            volume: None,
            armed: true,
        };
        let paths = guard.paths.clone();

        let spec_json = serde_json::to_vec_pretty(&spec).expect("spec serializes");
        write_atomic(&dir.join("config.json"), &spec_json)?;
        let mut state = ContainerState {
            oci_version: OCI_VERSION.into(),
            id: id.into(),
            status: Status::Creating,
            bundle: bundle.clone(),
            rootfs: rootfs.clone(),
            created: now_rfc3339(),
            annotations,
            owner: String::new(),
            engine: backend.name().into(),
            init: None,
            monitor: None,
            exit_status: None,
            pve: None,
            volume: None,
        };
        self.store.save(&state)?;
        let rootfs = match &volume_plan {
            Some((storage, plan)) => {
                guard.volume = Some((storage.clone(), plan.volume.clone()));
                crate::storage_glue::make(self, &mut state, storage, plan, &rootfs)?
            }
            None => rootfs,
        };

        // The host uid/gid of the container's root, when it is mapped (an
        // unprivileged CT, a user namespace): its exchange files are its.
        let mapped_root = match &plan {
            Some(p) => p.unprivileged.then_some((pve::ID_SHIFT, pve::ID_SHIFT)),
            None => crate::storage_glue::id_shift(&spec).and_then(|s| Some((s.uid(0)?, s.gid(0)?))),
        };
        let ctx = TranslateContext {
            id: id.into(),
            rootfs: rootfs.clone(),
            bundle: bundle.clone(),
            exchange_dir: match mapped_root {
                None => paths.exchange.clone(),
                Some(_) => lxc::make_exchange(
                    &self.config.lxc.exchange_dir,
                    &self.store.root,
                    id,
                    &paths.exchange,
                )?,
            },
            init_binary: std::env::current_exe().ctx(|| "finding our own binary".into())?,
            log_file: paths.log.clone(),
            log_level: self.config.lxc.log_level.to_ascii_uppercase(),
            cgroups: CgroupLayout::detect()?,
            apparmor_enabled: apparmor_enabled(),
            selinux_enabled: Path::new("/sys/fs/selinux/enforce").exists(),
        };
        // pve-lxc: the bind mounts that became mount points are Proxmox's.
        let mut tr = match &plan {
            Some(p) if !p.mount_points.is_empty() => {
                translate(&pve::without_mounts(&spec, &p.mount_points), &ctx)?
            }
            _ => translate(&spec, &ctx)?,
        };
        if let Some(seccomp) = &tr.init.seccomp {
            proxmox_lxcri_lxc::init::seccomp::compile(seccomp)
                .map_err(|e| Error::Spec(e.to_string()))?;
        }
        let mut hook_state = state.oci_json();
        hook_state["status"] = "created".into();
        hook_state["pid"] = 1.into();
        tr.init.hook_state = hook_state;
        tr.init.console_socket = terminal;
        let hooks = spec.hooks().clone().unwrap_or_default();
        let has =
            |h: &Option<Vec<oci_spec::runtime::Hook>>| h.as_ref().is_some_and(|v| !v.is_empty());
        let create_hooks =
            has(hooks.prestart()) || has(hooks.create_runtime()) || has(hooks.create_container());
        if create_hooks {
            tr.lxc.insert_before_first(
                "lxc.hook.mount",
                lxc::mount_hook_line(&ctx.init_binary, &paths.exchange)?,
            )?;
        }
        // With a terminal, the init makes the pty inside the container and
        // hands us the master through this socket.
        let console_path = paths
            .exchange
            .join(proxmox_lxcri_lxc::init_config::SOCKET_CONSOLE);
        // With a terminal the container's stdio is the pty; the monitor must
        // not hold on to ours (the shim waits for create's output pipes).
        let devnull = if terminal {
            Some(std::os::fd::OwnedFd::from(
                fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/null")
                    .ctx(|| "opening /dev/null".into())?,
            ))
        } else {
            None
        };
        // The mapped root's init (and the mount hook) must reach the
        // exchange files and sockets: given to it before anything starts.
        let give_to_mapped_root = || -> Result<()> {
            if let Some((uid, gid)) = mapped_root {
                lxc::chown_exchange(&ctx.exchange_dir, uid, gid)?;
                let hooks_dir = dir.join("hooks");
                fs::create_dir_all(&hooks_dir).ctx(|| "creating the hooks dir".into())?;
                lxc::chown_exchange(&hooks_dir, uid, gid)?;
            }
            Ok(())
        };
        let mut start_task = None;
        let (monitor, mut ready, console_listener) = match &plan {
            None => {
                lxc::prepare(&paths, &tr.lxc.render(), &tr.init)?;
                let ready = lxc::open_fifo_reader(&paths.exchange.join(FIFO_READY))?;
                let console = terminal
                    .then(|| bind_nonblocking(&console_path))
                    .transpose()?;
                give_to_mapped_root()?;
                let monitor =
                    lxc::spawn_monitor(&paths, &self.config.lxc.lxc_start, devnull.as_ref())?;
                (monitor, ready, console)
            }
            Some(plan) => {
                let cfg = self.config.pve()?;
                let client = self.pve()?;
                let vmid = self.pve_make_ct(id, plan, &rootfs, &mut state, &mut guard)?;
                let raw = pve::raw_keys(tr.lxc.entries(), plan.unprivileged, plan.net);
                pve::append_raw(&cfg.config_dir, vmid, &raw)?;
                let mut raw_text = proxmox_lxcri_lxc::config::LxcConfig::new();
                for (k, v) in &raw {
                    raw_text.push(k, v.clone())?;
                }
                lxc::prepare(&paths, &raw_text.render(), &tr.init)?;
                let stdio = std::os::unix::net::UnixListener::bind(
                    paths
                        .exchange
                        .join(proxmox_lxcri_lxc::init_config::SOCKET_STDIO),
                )
                .ctx(|| "binding the stdio socket".into())?;
                let ready = lxc::open_fifo_reader(&paths.exchange.join(FIFO_READY))?;
                let console = terminal
                    .then(|| bind_nonblocking(&console_path))
                    .transpose()?;
                give_to_mapped_root()?;
                let monitor = pve::spawn_monitor(
                    &paths.exchange,
                    stdio,
                    devnull.as_ref(),
                    Duration::from_secs(cfg.task_timeout_secs + self.config.lxc.start_timeout_secs),
                )?;
                guard.monitor = Some(monitor);
                // Recorded before the start request, which may take long: a
                // create killed meanwhile leaves a monitor `delete` can find.
                state.monitor = proc::proc_ref(monitor.as_raw());
                self.store.save(&state)?;
                let upid = client
                    .lxc_start(&cfg.node, vmid)
                    .map_err(pve::api(&format!("starting CT {vmid}")))?;
                start_task = Some((vmid, upid));
                (monitor, ready, console)
            }
        };
        drop(devnull);
        guard.monitor = Some(monitor);
        state.monitor = proc::proc_ref(monitor.as_raw());
        self.store.save(&state)?;

        let deadline = Instant::now() + Duration::from_secs(self.config.lxc.start_timeout_secs);
        let fail = |reason: String| Error::Start {
            id: id.into(),
            reason,
        };
        let hook_dir = dir.join("hooks");
        // Is the container still on its way? On pve-lxc, also ask (at most
        // once a second) whether Proxmox's start task failed.
        let mut last_check = Instant::now();
        let start_failed: std::cell::Cell<Option<String>> = Default::default();
        let mut alive = || {
            if !lxc::child_running(monitor) {
                return false;
            }
            if let Some((_, upid)) = &start_task {
                if last_check.elapsed() >= Duration::from_secs(1) {
                    last_check = Instant::now();
                    if let Ok(Some(err)) = self.pve().map(|c| pve::task_error(c, upid)) {
                        start_failed.set(Some(err));
                        return false;
                    }
                }
            }
            true
        };
        let find_init = |pve_hooks: bool| -> Option<ProcRef> {
            match &start_task {
                None => lxc::find_init(monitor),
                Some(_) if !pve_hooks => pve::read_init(&paths.exchange),
                Some((vmid, _)) => {
                    let c = self.pve().ok()?;
                    let st = c.lxc_status(&self.config.pve().ok()?.node, *vmid).ok()?;
                    proc::proc_ref(st.pid? as i32)
                }
            }
        };
        loop {
            let line = lxc::read_status_line(&mut ready, deadline, &mut alive);
            match line {
                Ok(l) if l == "ok" => break,
                Ok(l) if l == "hooks" => {
                    // LXC's mount hook asks for prestart and createRuntime
                    // (runtime namespaces, container init known), then runs
                    // createContainer itself.
                    let init = find_init(true)
                        .ok_or_else(|| fail("cannot find the container init".into()))?;
                    guard.init = Some(init);
                    state.init = Some(init);
                    self.store.save(&state)?;
                    let hook_json =
                        serde_json::to_vec(&state.oci_json()).expect("state serializes");
                    let res = hooks::run_all(
                        "prestart",
                        hooks.prestart().as_deref().unwrap_or_default(),
                        &hook_json,
                        Place::Runtime,
                        &hook_dir,
                    )
                    .and_then(|_| {
                        hooks::run_all(
                            "createRuntime",
                            hooks.create_runtime().as_deref().unwrap_or_default(),
                            &hook_json,
                            Place::Runtime,
                            &hook_dir,
                        )
                    });
                    if let Err(e) = res {
                        let _ = lxc::answer_mount_hook(&paths, &format!("error: {e}"));
                        return Err(e);
                    }
                    let cc = lxc::CreateContainerHooks {
                        hooks: hooks.create_container().clone().unwrap_or_default(),
                        state: state.oci_json(),
                        log_dir: hook_dir.clone(),
                    };
                    write_atomic(
                        &paths.exchange.join(lxc::FILE_CREATE_CONTAINER),
                        &serde_json::to_vec(&cc).expect("serializes"),
                    )?;
                    lxc::answer_mount_hook(&paths, "ok")?;
                }
                Ok(l) => {
                    let msg = l.strip_prefix("error: ").unwrap_or(&l).to_string();
                    return Err(fail(msg));
                }
                Err(e) => {
                    if let Ok(hook_err) =
                        fs::read_to_string(paths.exchange.join(lxc::FILE_HOOK_ERROR))
                    {
                        return Err(Error::Hook(hook_err));
                    }
                    if let Some(task_err) = start_failed.take() {
                        let lxc_errors = lxc::log_errors(&paths);
                        return Err(fail(format!(
                            "Proxmox start task: {task_err}; container log: {lxc_errors}"
                        )));
                    }
                    let lxc_errors = lxc::log_errors(&paths);
                    return Err(fail(if lxc_errors.is_empty() {
                        e
                    } else {
                        format!("{e}: {lxc_errors}")
                    }));
                }
            }
        }
        let init = find_init(false).ok_or_else(|| fail("cannot find the container init".into()))?;
        guard.init = Some(init);
        if let Some((vmid, upid)) = &start_task {
            pve::wait(
                self.pve()?,
                self.config.pve()?,
                upid,
                &format!("starting CT {vmid}"),
            )?;
        }
        state.init = Some(init);
        self.store.save(&state)?;

        if let Some(listener) = console_listener {
            // The init connected and sent the master before answering ok.
            let (conn, _) = listener
                .accept()
                .ctx(|| "accepting the console from the init".into())?;
            conn.set_nonblocking(false)
                .ctx(|| "console socket".into())?;
            let master = proxmox_lxcri_lxc::pty::recv_fd(&conn).map_err(Error::Spec)?;
            let sock = opts.console_socket.as_ref().expect("checked above");
            crate::stdio::send_console(sock, &master)?;
        }

        state.status = Status::Created;
        self.store.save(&state)?;
        if let Some(pid_file) = &opts.pid_file {
            let pid_file = absolute(pid_file);
            write_atomic(&pid_file, monitor.as_raw().to_string().as_bytes())?;
        }
        guard.armed = false;
        drop(lock);
        Ok(monitor)
    }

    pub fn start(&self, id: &str) -> Result<()> {
        self.logged(id, "start", || {
            id::validate(id)?;
            let _lock = self.store.lock(id)?;
            let mut st = self.refresh(self.store.load(id)?);
            if st.status != Status::Created {
                return Err(bad_state(&st, "start", "created"));
            }
            let init = st.init.expect("created containers have an init");
            let paths = LxcPaths::new(&self.store.dir(id), id);
            let timeout = Duration::from_secs(self.config.lxc.start_timeout_secs);
            if let Err(e) = lxc::release(&paths, &init, timeout) {
                // A failed start (startContainer hook, exec) ends the container.
                let _ = lxc::signal_init(&paths, &init, Signal::SIGKILL);
                return Err(e);
            }
            st.status = Status::Running;
            self.store.save(&st)?;
            let spec = self.stored_spec(id)?;
            if let Some(h) = spec.hooks().as_ref().and_then(|h| h.poststart().clone()) {
                let json = serde_json::to_vec(&st.oci_json()).expect("state serializes");
                // runtime-spec 1.2: a poststart failure is a warning.
                if let Err(e) = hooks::run_all(
                    "poststart",
                    &h,
                    &json,
                    Place::Runtime,
                    &self.store.dir(id).join("hooks"),
                ) {
                    tracing::warn!("{e}");
                }
            }
            Ok(())
        })
    }

    /// The container's state, reconciled with its processes.
    pub fn state(&self, id: &str) -> Result<ContainerState> {
        id::validate(id)?;
        Ok(self.refresh(self.store.load(id)?))
    }

    pub fn list(&self) -> Result<Vec<ContainerState>> {
        let mut out = vec![];
        for id in self.store.list()? {
            if let Ok(st) = self.store.load(&id) {
                out.push(self.refresh(st));
            }
        }
        Ok(out)
    }

    /// Reconcile a recorded status with reality (no lock, no write).
    pub fn refresh(&self, mut st: ContainerState) -> ContainerState {
        let paths = LxcPaths::new(&self.store.dir(&st.id), &st.id);
        match st.status {
            Status::Created | Status::Running | Status::Paused => {
                if !st.init.as_ref().is_some_and(proc::is_alive) {
                    st.status = Status::Stopped;
                }
            }
            Status::Creating => {
                // A create that died half-way: stopped once nothing runs.
                let live = st.init.as_ref().is_some_and(proc::is_alive)
                    || st.monitor.as_ref().is_some_and(proc::is_alive);
                if !live {
                    st.status = Status::Stopped;
                }
            }
            Status::Stopped => {}
        }
        if st.status == Status::Running
            && st.init.is_some_and(|i| Cgroup::of_pid(i.pid).is_frozen())
        {
            st.status = Status::Paused;
        }
        if st.status == Status::Stopped && st.exit_status.is_none() {
            st.exit_status = lxc::exit_code(&paths.exchange);
        }
        st
    }

    pub fn kill(&self, id: &str, sig: Signal, all: bool) -> Result<()> {
        self.logged(id, "kill", || {
            id::validate(id)?;
            let _lock = self.store.lock(id)?;
            let st = self.refresh(self.store.load(id)?);
            if !matches!(
                st.status,
                Status::Created | Status::Running | Status::Paused
            ) {
                return Err(Error::NotRunning(id.into()));
            }
            let init = st.init.expect("live containers have an init");
            let paths = LxcPaths::new(&self.store.dir(id), id);
            if all {
                for pid in Cgroup::of_pid(init.pid).pids() {
                    let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
                }
            }
            lxc::signal_init(&paths, &init, sig)?;
            // A frozen task dies of SIGKILL only once thawed.
            if st.status == Status::Paused && sig == Signal::SIGKILL {
                let _ = Cgroup::of_pid(init.pid).thaw();
            }
            Ok(())
        })
    }

    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        self.delete_if(id, force, |_| true)
    }

    /// `delete`, but only if the recorded state, read under the lock, still
    /// passes `still`: `gc` must not remove a container that was deleted and
    /// created anew under the same id after it looked.
    pub(crate) fn delete_if(
        &self,
        id: &str,
        force: bool,
        still: impl FnOnce(&ContainerState) -> bool,
    ) -> Result<()> {
        self.logged(id, "delete", || {
            id::validate(id)?;
            let lock = match self.store.lock(id) {
                // runc: deleting what is not there is fine with --force
                // (containerd's shim always calls delete --force).
                Err(Error::NotFound(_)) if force => {
                    lxc::remove_exchange(&self.store.dir(id));
                    let _ = fs::remove_dir_all(self.store.dir(id));
                    return Ok(());
                }
                other => other?,
            };
            let recorded = self.store.load(id)?;
            if !still(&recorded) {
                return Ok(());
            }
            let st = self.refresh(recorded);
            let paths = LxcPaths::new(&self.store.dir(id), id);
            match st.status {
                Status::Stopped => {}
                // runc deletes a created container by killing it.
                Status::Created | Status::Creating => {}
                Status::Running | Status::Paused if force => {}
                _ => return Err(bad_state(&st, "delete", "stopped (or use --force)")),
            }
            if let Some(init) = st.init {
                lxc::signal_init(&paths, &init, Signal::SIGKILL)?;
                if st.status == Status::Paused {
                    let _ = Cgroup::of_pid(init.pid).thaw();
                }
            } else if let (Some(_), Some(m)) = (&st.pve, &st.monitor) {
                // A create that died before the init was known: the pve
                // monitor may still wait for it.
                if proc::is_alive(m) {
                    let _ = nix::sys::signal::kill(Pid::from_raw(m.pid), Signal::SIGKILL);
                }
            }
            wait_gone(&st, Duration::from_secs(10));
            if let Ok(spec) = self.stored_spec(id) {
                if let Some(h) = spec.hooks().as_ref().and_then(|h| h.poststop().clone()) {
                    let mut s = st.clone();
                    s.status = Status::Stopped;
                    let json = serde_json::to_vec(&s.oci_json()).expect("state serializes");
                    // A poststop failure is a warning (runtime-spec).
                    if let Err(e) = hooks::run_all(
                        "poststop",
                        &h,
                        &json,
                        Place::Runtime,
                        &self.store.dir(id).join("hooks"),
                    ) {
                        tracing::warn!("{e}");
                    }
                }
            }
            if let Some(rec) = &st.pve {
                self.pve_destroy(id, rec)?;
            }
            // The volume first: if it cannot go, the state stays to retry.
            crate::storage_glue::destroy(self, &st)?;
            let dir = self.store.dir(id);
            lxc::remove_exchange(&dir);
            fs::remove_dir_all(&dir).ctx(|| format!("removing {}", dir.display()))?;
            drop(lock);
            Ok(())
        })
    }

    /// create + start, then (unless detached) wait for the container's end,
    /// delete it and return its exit status.
    pub fn run(&self, id: &str, opts: &CreateOptions, detach: bool) -> Result<i32> {
        let monitor = self.logged(id, "create", || self.create_inner(id, opts))?;
        if let Err(e) = self.start(id) {
            let _ = self.delete(id, true);
            return Err(e);
        }
        if detach {
            return Ok(0);
        }
        let code = wait_monitor_forwarding_signals(self, id, monitor);
        let _ = self.delete(id, true);
        Ok(code)
    }

    fn stored_spec(&self, id: &str) -> Result<Spec> {
        let p = self.store.dir(id).join("config.json");
        Spec::load(&p).map_err(|e| Error::Spec(format!("{}: {e}", p.display())))
    }
}

/// Undoes a half-made create when dropped armed.
pub(crate) struct CreateGuard<'a> {
    rt: &'a Runtime,
    id: String,
    dir: PathBuf,
    paths: LxcPaths,
    monitor: Option<Pid>,
    init: Option<ProcRef>,
    /// The CT as far as it was made (pve-lxc).
    pub(crate) pve: Option<PveRecord>,
    /// The rootfs volume, once it may exist.
    volume: Option<(storage::Storage, storage::Volume)>,
    armed: bool,
}

impl Drop for CreateGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(init) = &self.init {
            let _ = lxc::signal_init(&self.paths, init, Signal::SIGKILL);
        }
        if let Some(m) = self.monitor {
            // The lxc monitor ends when lxc-start has torn the container
            // down; the pve monitor may still wait for an init that never
            // came, so it gets a shorter grace.
            // (The pve monitor without an init to wait for ends at once.)
            let grace = match &self.pve {
                Some(_) if pve::read_init(&self.paths.exchange).is_none() => 0,
                Some(_) => 2,
                None => 10,
            };
            let deadline = Instant::now() + Duration::from_secs(grace);
            while lxc::child_running(m) {
                if Instant::now() > deadline {
                    let _ = nix::sys::signal::kill(m, Signal::SIGKILL);
                    let _ = waitpid(m, None);
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if let Some(rec) = &self.pve {
            if let Err(e) = self.rt.pve_destroy(&self.id, rec) {
                // Keep the state: `gc` (or `delete`) finishes the job once
                // the API answers again.
                tracing::error!(
                    "create of {} failed and its CT could not be removed yet ({e}); run `proxmox-lxcri gc` later",
                    self.id
                );
                return;
            }
        }
        lxc::remove_exchange(&self.dir);
        if let Some((storage, vol)) = &self.volume {
            if let Err(e) = storage.destroy(vol) {
                // The state (and so the record) goes below; say what stays.
                tracing::error!("destroying volume {} of a failed create: {e}", vol.name);
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn load_spec(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let text = fs::read_to_string(&path).map_err(|e| Error::Bundle {
        path: path.clone(),
        reason: if e.kind() == std::io::ErrorKind::NotFound {
            "config.json not found".into()
        } else {
            e.to_string()
        },
    })?;
    serde_json::from_str(&text).map_err(|e| Error::Bundle {
        path,
        reason: format!("invalid config.json: {e}"),
    })
}

fn bad_state(st: &ContainerState, action: &'static str, needs: &'static str) -> Error {
    Error::BadState {
        id: st.id.clone(),
        status: st.status.to_string(),
        action,
        needs,
    }
}

/// `a/./b/../c/` -> `a/c`, without touching the file system.
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

pub(crate) fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

fn apparmor_enabled() -> bool {
    fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .map(|s| s.trim() == "Y")
        .unwrap_or(false)
}

/// Wait until the container's init and our monitor have ended (a zombie
/// monitor waiting for the shim's reaping counts as ended).
fn wait_gone(st: &ContainerState, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let init_live = st.init.as_ref().is_some_and(proc::exists);
        let mon_live = st.monitor.as_ref().is_some_and(proc::is_alive);
        if !init_live && !mon_live {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `run` in the foreground: forward the usual termination signals to the
/// container, and return its exit status when the monitor ends.
fn wait_monitor_forwarding_signals(rt: &Runtime, id: &str, monitor: Pid) -> i32 {
    proxmox_lxcri_lxc::attach::wait_forwarding(monitor, |s| {
        let _ = rt.kill(id, s, false);
    })
    .or_else(|| rt.state(id).ok().and_then(|s| s.exit_status))
    .unwrap_or(255)
}

fn bind_nonblocking(p: &Path) -> Result<std::os::unix::net::UnixListener> {
    let l = std::os::unix::net::UnixListener::bind(p).ctx(|| format!("binding {}", p.display()))?;
    l.set_nonblocking(true).ctx(|| "console socket".into())?;
    Ok(l)
}
