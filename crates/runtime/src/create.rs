//! `create`: one pipeline for every engine.
//!
//! ```text
//! request   bundle, spec, rootfs checked            (nothing made)
//! plan      the engine's checks                     (nothing made)
//! claim     the id's directory, locked, with state "creating"; config.json
//! provision the engine's rootfs storage             (recorded first)
//! translate OCI -> LXC keys + the init's config
//! launch    exchange files; the engine's config (and guest); the monitor
//!           started, the init waiting at `ready`
//! ready     hooks on the way; the init found; the container handed over
//!           to whoever reaps the pid-file process
//! finish    console handed over; state "created", --pid-file
//! ```
//! Everything made is undone by [`Creation`]'s drop if a step fails.
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{Hook, Hooks, Spec};
use proxmox_lxcri_cgroups::CgroupLayout;
use proxmox_lxcri_lxc::config::{TranslateContext, Translation};
use proxmox_lxcri_lxc::init_config::{FIFO_READY, SOCKET_CONSOLE, SOCKET_PRESERVE};

use crate::engine::{self, Cx, Engine, Request};
use crate::error::{Context, Error, Result};
use crate::exchange::{self, Paths};
use crate::hooks::{self, Place};
use crate::runtime::{absolute, CreateOptions, Runtime};
use crate::state::{now_rfc3339, write_replace, ContainerState, Status, OCI_VERSION};

impl Runtime {
    pub(crate) fn create_inner(&self, id: &str, opts: &CreateOptions) -> Result<Pid> {
        let req = request(id, opts)?;
        // The caller's fds 3..3+N, before anything of ours could take a
        // number among them.
        let preserved = take_preserved(opts.preserve_fds)?;
        let sandbox = engine::pod_member::pod_sandbox(self, &req.annotations)?;
        let backend = match &sandbox {
            Some(sb)
                if !req
                    .annotations
                    .contains_key(crate::config::BACKEND_ANNOTATION) =>
            {
                crate::config::Backend::parse(sb.engine.name())
                    .expect("engine names are backend names")
            }
            _ => self.config.backend_for(id, &req.annotations)?,
        };
        *self.chosen_engine.lock().unwrap_or_else(|e| e.into_inner()) = Some(backend.name());
        // A container of a pod whose sandbox is a CT runs inside that CT.
        let mut engine: Box<dyn Engine> = match sandbox {
            Some(sb) if engine::pod_member::runs_inside(&sb) => {
                Box::new(engine::pod_member::PodMemberEngine::for_sandbox(sb))
            }
            // A container of a pod whose sandbox is a VM runs inside that VM.
            Some(sb) if engine::vm_member::runs_inside(&sb) => {
                Box::new(engine::vm_member::VmMemberEngine::for_sandbox(sb))
            }
            _ => engine::for_backend(backend)?,
        };
        if !preserved.is_empty() && !engine.passes_fds() {
            return Err(Error::Unsupported(format!(
                "--preserve-fds is not supported by the {} engine (the guest's init is not \
                 started by this command); only the lxc engine passes fds",
                backend.name()
            )));
        }
        engine.plan(self, &req)?;

        // From here on everything made is undone if create fails.
        let (mut c, lock) = Creation::begin(self, &req, engine)?;
        c.preserved = preserved;
        let rootfs = c.engine.provision(&mut c.cx, &req)?;
        let (tr, ctx) = c.translate(&req, rootfs)?;
        c.launch(&req, &tr, &ctx)?;
        c.wait_ready(&req.spec)?;
        let monitor = c.finish(opts)?;
        drop(lock);
        Ok(monitor)
    }
}

/// Load and check the bundle; nothing is made.
fn request(id: &str, opts: &CreateOptions) -> Result<Request> {
    crate::id::validate(id)?;
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
    if process.terminal().unwrap_or(false) && opts.console_socket.is_none() {
        return Err(Error::Spec(
            "process.terminal is true but no --console-socket was given".into(),
        ));
    }
    let annotations = spec
        .annotations()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    Ok(Request {
        id: id.to_string(),
        bundle,
        spec,
        rootfs,
        annotations,
    })
}

/// `--preserve-fds n`: our duplicates of the caller's fds 3..3+n
/// (close-on-exec: lxc-start does not inherit them), as runc takes them.
fn take_preserved(n: u32) -> Result<Vec<OwnedFd>> {
    (3..3 + n as i32)
        .map(|fd| {
            // SAFETY: F_DUPFD_CLOEXEC on a number; EBADF if it is not open.
            let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
            if d < 0 {
                return Err(Error::Spec(format!(
                    "--preserve-fds {n}: fd {fd} is not open: {}",
                    std::io::Error::last_os_error()
                )));
            }
            // SAFETY: a fresh fd of ours.
            Ok(unsafe { OwnedFd::from_raw_fd(d) })
        })
        .collect()
}

/// Hands `fds` to the init, which connects to `listener` first thing, from
/// a thread: the init may start only after create has answered LXC's
/// mount hook.
fn serve_preserved(listener: UnixListener, fds: Vec<OwnedFd>) {
    std::thread::spawn(move || {
        let Ok((conn, _)) = listener.accept() else {
            return;
        };
        let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
        if let Err(e) = proxmox_lxcri_lxc::pty::send_fds_all(&conn, &raw) {
            tracing::error!("--preserve-fds: handing the fds to the container init: {e}");
        }
    });
}

pub fn load_spec(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let text = fs::read_to_string(&path).map_err(|e| Error::Bundle {
        path: path.clone(),
        reason: if e.kind() == std::io::ErrorKind::NotFound {
            "config.json not found".into()
        } else {
            e.to_string()
        },
    })?;
    let invalid = |e: serde_json::Error| Error::Bundle {
        path: path.clone(),
        reason: format!("invalid config.json: {e}"),
    };
    // runc's acceptance rules first (zero = unset, unraisable ambient caps
    // dropped, ...), on the raw JSON: an unknown capability name must not
    // fail the typed parse.
    let mut value: serde_json::Value = serde_json::from_str(&text).map_err(invalid)?;
    crate::compat::normalize_spec(&mut value).log();
    serde_json::from_value(value).map_err(invalid)
}

/// A create under way: what it made so far, and the engine that made it.
/// Dropped armed, it undoes everything (the rollback guard).
pub(crate) struct Creation<'a> {
    cx: Cx<'a>,
    engine: Box<dyn Engine>,
    dir: PathBuf,
    terminal: bool,
    /// Read side of the init's `ready` FIFO.
    ready: Option<fs::File>,
    /// Where the init sends the pty master (with a terminal).
    console: Option<UnixListener>,
    /// The --pid-file process, once the engine handed the container over.
    pid_file_proc: Option<crate::proc::ProcRef>,
    /// `--preserve-fds`: the caller's fds, for the init.
    preserved: Vec<OwnedFd>,
    armed: bool,
}

impl<'a> Creation<'a> {
    /// Claim the id with a state "creating" (the engine's empty record),
    /// then write config.json. The lock is the caller's to hold until the
    /// end of create (dropped after the guard).
    fn begin(
        rt: &'a Runtime,
        req: &Request,
        engine: Box<dyn Engine>,
    ) -> Result<(Self, crate::state::ContainerLock)> {
        let dir = rt.store.dir(&req.id);
        let state = ContainerState {
            oci_version: OCI_VERSION.into(),
            id: req.id.clone(),
            status: Status::Creating,
            bundle: req.bundle.clone(),
            rootfs: req.rootfs.clone(),
            created: now_rfc3339(),
            annotations: req.annotations.clone(),
            owner: String::new(),
            engine: engine.record(),
            init: None,
            monitor: None,
            exit_status: None,
        };
        let lock = rt.store.claim(&state)?;
        let c = Creation {
            cx: Cx {
                rt,
                state,
                paths: Paths::new(&dir, &req.id),
                monitor: None,
                init: None,
            },
            engine,
            dir: dir.clone(),
            terminal: req
                .spec
                .process()
                .as_ref()
                .and_then(|p| p.terminal())
                .unwrap_or(false),
            ready: None,
            console: None,
            pid_file_proc: None,
            preserved: Vec::new(),
            armed: true,
        };
        let spec_json = serde_json::to_vec_pretty(&req.spec).expect("spec serializes");
        write_replace(&dir.join("config.json"), &spec_json)?;
        Ok((c, lock))
    }

    /// The spec in the engine's terms, with our init's part.
    fn translate(
        &mut self,
        req: &Request,
        rootfs: PathBuf,
    ) -> Result<(Translation, TranslateContext)> {
        let mapped_root = self.engine.mapped_root(&req.spec);
        let exchange_dir = self.engine.exchange_dir(&mut self.cx, mapped_root)?;
        let rt = self.cx.rt;
        let paths = &self.cx.paths;
        let ctx = TranslateContext {
            id: req.id.clone(),
            rootfs,
            bundle: req.bundle.clone(),
            exchange_dir,
            init_binary: std::env::current_exe().ctx(|| "finding our own binary".into())?,
            log_file: paths.log.clone(),
            copyup_dir: paths.lxcpath.join("copyup"),
            log_level: rt.config.lxc.log_level.to_ascii_uppercase(),
            cgroups: CgroupLayout::detect()?,
            apparmor_enabled: apparmor_enabled(),
            selinux_enabled: Path::new("/sys/fs/selinux/enforce").exists(),
        };
        let mut tr = self.engine.translate(&req.spec, &ctx)?;
        if let Some(seccomp) = &tr.init.seccomp {
            proxmox_lxcri_lxc::init::seccomp::compile(seccomp)
                .map_err(|e| Error::Spec(e.to_string()))?;
        }
        let mut hook_state = self.cx.state.oci_json();
        hook_state["status"] = "created".into();
        hook_state["pid"] = 1.into();
        tr.init.hook_state = hook_state;
        tr.init.console_socket = self.terminal;
        tr.init.preserve_fds = self.preserved.len() as u32;
        let hooks = req.spec.hooks().clone().unwrap_or_default();
        let has = |h: &Option<Vec<Hook>>| h.as_ref().is_some_and(|v| !v.is_empty());
        if has(hooks.prestart()) || has(hooks.create_runtime()) || has(hooks.create_container()) {
            tr.lxc.insert_before_first(
                "lxc.hook.mount",
                exchange::mount_hook_line(&ctx.init_binary, &paths.exchange)?,
            )?;
        }
        Ok((tr, ctx))
    }

    /// Exchange files, the engine's config, then the start.
    fn launch(&mut self, req: &Request, tr: &Translation, ctx: &TranslateContext) -> Result<()> {
        exchange::prepare(&self.cx.paths, &tr.init)?;
        self.engine.configure(&mut self.cx, req, tr)?;
        let paths = &self.cx.paths;
        self.ready = Some(exchange::open_fifo_reader(
            &paths.exchange.join(FIFO_READY),
        )?);
        if self.terminal {
            // The init makes the pty inside the container and hands us the
            // master through this socket.
            self.console = Some(bind_nonblocking(&paths.exchange.join(SOCKET_CONSOLE))?);
        }
        let preserve = if self.preserved.is_empty() {
            None
        } else {
            let p = paths.exchange.join(SOCKET_PRESERVE);
            Some(crate::sockpath::bind(&p).ctx(|| format!("binding {}", p.display()))?)
        };
        // The mapped root's init (and the mount hook) must reach the
        // exchange files and sockets: given to it before anything starts.
        if let Some((uid, gid)) = self.engine.mapped_root(&req.spec) {
            exchange::chown_exchange(&ctx.exchange_dir, uid, gid)?;
            let hooks_dir = self.dir.join("hooks");
            fs::create_dir_all(&hooks_dir).ctx(|| "creating the hooks dir".into())?;
            exchange::chown_exchange(&hooks_dir, uid, gid)?;
        }
        // With a terminal the container's stdio is the pty; the monitor must
        // not hold on to ours (the shim waits for create's output pipes).
        let devnull = if self.terminal {
            Some(OwnedFd::from(
                fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/null")
                    .ctx(|| "opening /dev/null".into())?,
            ))
        } else {
            None
        };
        // The engine records its monitor before the monitor acts.
        self.engine.start(&mut self.cx, devnull.as_ref())?;
        if let Some(l) = preserve {
            serve_preserved(l, std::mem::take(&mut self.preserved));
        }
        Ok(())
    }

    /// Wait until the init reports ready, running the create-phase hooks
    /// when LXC's mount hook asks for them.
    fn wait_ready(&mut self, spec: &Spec) -> Result<()> {
        let rt = self.cx.rt;
        let id = self.cx.state.id.clone();
        let monitor = self.cx.monitor.expect("started");
        let deadline = Instant::now() + self.engine.ready_timeout(rt);
        let fail = |reason: String| Error::Start {
            id: id.clone(),
            reason,
        };
        let hooks = spec.hooks().clone().unwrap_or_default();
        let hook_dir = self.dir.join("hooks");
        let mut ready = self.ready.take().expect("configured");
        let mut start_failed: Option<String> = None;
        loop {
            let engine = &mut self.engine;
            let paths = &self.cx.paths;
            let line = exchange::read_status_line(&mut ready, deadline, || {
                match engine.start_failed(rt, paths) {
                    Some(why) => {
                        start_failed = Some(why);
                        false
                    }
                    None => engine.still_starting(paths, monitor),
                }
            });
            match line {
                Ok(l) if l == "ok" => break,
                Ok(l) if l == "hooks" => self.run_create_hooks(&hooks, &hook_dir, monitor)?,
                Ok(l) => {
                    let msg = l.strip_prefix("error: ").unwrap_or(&l).to_string();
                    return Err(fail(msg));
                }
                Err(e) => {
                    let paths = &self.cx.paths;
                    if let Ok(hook_err) =
                        fs::read_to_string(paths.exchange.join(exchange::FILE_HOOK_ERROR))
                    {
                        return Err(Error::Hook(hook_err));
                    }
                    let lxc_errors = engine::log_errors(paths);
                    if let Some(why) = start_failed.take() {
                        return Err(fail(format!("{why}; container log: {lxc_errors}")));
                    }
                    return Err(fail(if lxc_errors.is_empty() {
                        e
                    } else {
                        format!("{e}: {lxc_errors}")
                    }));
                }
            }
        }
        let init = self
            .engine
            .find_init(rt, &self.cx.paths, monitor, false)
            .ok_or_else(|| fail("cannot find the container init".into()))?;
        self.cx.init = Some(init);
        self.engine.started(rt)?;
        self.cx.state.init = Some(init);
        self.cx.save()?;
        self.pid_file_proc = Some(self.engine.hand_over(&mut self.cx, init)?);
        Ok(())
    }

    /// LXC's mount hook asks for prestart and createRuntime (runtime
    /// namespaces, container init known), then runs createContainer itself.
    fn run_create_hooks(&mut self, hooks: &Hooks, hook_dir: &Path, monitor: Pid) -> Result<()> {
        let rt = self.cx.rt;
        let paths = &self.cx.paths;
        let init = self
            .engine
            .find_init(rt, paths, monitor, true)
            .ok_or_else(|| Error::Start {
                id: self.cx.state.id.clone(),
                reason: "cannot find the container init".into(),
            })?;
        self.cx.init = Some(init);
        self.cx.state.init = Some(init);
        self.cx.save()?;
        let paths = &self.cx.paths;
        let hook_json = serde_json::to_vec(&self.cx.state.oci_json()).expect("state serializes");
        let res = hooks::run_all(
            "prestart",
            hooks.prestart().as_deref().unwrap_or_default(),
            &hook_json,
            Place::Runtime,
            hook_dir,
        )
        .and_then(|_| {
            hooks::run_all(
                "createRuntime",
                hooks.create_runtime().as_deref().unwrap_or_default(),
                &hook_json,
                Place::Runtime,
                hook_dir,
            )
        });
        if let Err(e) = res {
            let _ = exchange::answer_mount_hook(paths, &format!("error: {e}"));
            return Err(e);
        }
        let cc = exchange::CreateContainerHooks {
            hooks: hooks.create_container().clone().unwrap_or_default(),
            state: self.cx.state.oci_json(),
            log_dir: hook_dir.to_path_buf(),
        };
        write_replace(
            &paths.exchange.join(exchange::FILE_CREATE_CONTAINER),
            &serde_json::to_vec(&cc).expect("serializes"),
        )?;
        exchange::answer_mount_hook(paths, "ok")
    }

    /// Hand over the console, record "created", write the pid file.
    fn finish(mut self, opts: &CreateOptions) -> Result<Pid> {
        if let Some(listener) = self.console.take() {
            // The init connected and sent the master before answering ok.
            let (conn, _) = listener
                .accept()
                .ctx(|| "accepting the console from the init".into())?;
            conn.set_nonblocking(false)
                .ctx(|| "console socket".into())?;
            let master = proxmox_lxcri_lxc::pty::recv_fd(&conn).map_err(Error::Console)?;
            let sock = opts.console_socket.as_ref().expect("checked by request");
            crate::stdio::send_console(sock, &master)?;
        }
        self.cx.state.status = Status::Created;
        self.cx.save()?;
        let pid = Pid::from_raw(self.pid_file_proc.expect("handed over").pid);
        if let Some(pid_file) = &opts.pid_file {
            write_replace(&absolute(pid_file), pid.as_raw().to_string().as_bytes())?;
        }
        self.armed = false;
        Ok(pid)
    }
}

impl Drop for Creation<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let cx = &self.cx;
        if let Some(init) = &cx.init {
            let _ = exchange::signal_init(&cx.paths, init, Signal::SIGKILL);
        }
        if let Some(m) = cx.monitor {
            let deadline = Instant::now() + self.engine.monitor_grace(&cx.paths);
            while exchange::child_running(m) {
                if Instant::now() > deadline {
                    let _ = nix::sys::signal::kill(m, Signal::SIGKILL);
                    let _ = waitpid(m, None);
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if let Err(e) = self.engine.destroy(cx.rt, &cx.state) {
            // Keep the state: `gc` (or `delete`) finishes the job once the
            // engine can (the API answers again, the volume is free).
            tracing::error!(
                "create of {} failed and what it made could not be removed yet ({e}); run `proxmox-lxcri gc` later",
                cx.state.id
            );
            return;
        }
        crate::network::release_all(cx.rt, &cx.state.id);
        exchange::remove_exchange(&self.dir);
        if let Err(e) = cx.rt.store.remove(&cx.state.id) {
            tracing::error!("removing what create made: {e}; run `proxmox-lxcri gc` later");
        }
    }
}

fn apparmor_enabled() -> bool {
    fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .map(|s| s.trim() == "Y")
        .unwrap_or(false)
}

fn bind_nonblocking(p: &Path) -> Result<UnixListener> {
    let l = crate::sockpath::bind(p).ctx(|| format!("binding {}", p.display()))?;
    l.set_nonblocking(true).ctx(|| "console socket".into())?;
    Ok(l)
}
