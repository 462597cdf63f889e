//! A private containerd with its CRI plugin on, driven over gRPC as the kubelet drives it.
//!
//! [`Cri::start`] writes, under a fresh directory in `/tmp`:
//! - a containerd config with the CRI plugin enabled: its own root, state and sockets, the
//!   runtime under test as handler `test` (and runc as handler `runc`), both through the stock
//!   `io.containerd.runc.v2` shim with `BinaryName`, and a `Root` inside the directory so the
//!   runtime roots are private (`<dir>/rt-<handler>/k8s.io`);
//! - a CNI bin dir holding `proxmox-lxcri-cni` (the built binary) and Debian's `loopback`
//!   (containerd's CRI always sets up `lo` with it) and `portmap` plugins, and a conflist
//!   chaining our plugin and portmap (hostPort mappings);
//! - a runtime config (`lxcri.toml`) with one network on a bridge and a /24 unique to this
//!   instance and an `ipam_dir`, read by the CNI plugin (`configFile`) and, through
//!   `PROXMOX_LXCRI_CONFIG`, by the runtime the shim runs (with `LXCRI_TEST_ENGINE=pve-lxc`
//!   it also names a pve-emulator started here, as `common/containerd.rs` does);
//! - the sandbox ("pause") image: busybox-static with a `/pause` script that sleeps until
//!   SIGTERM/SIGINT, built with testkit and imported into `k8s.io` under the name the config's
//!   `sandbox_image` uses, so nothing is ever pulled (there is no registry here).
//!
//! On drop it stops and removes every pod through the CRI (so CNI DEL runs), stops containerd
//! and the shims it started, unmounts what is left under its directory, deletes the bridge and
//! removes the directory (kept with `LXCRI_TEST_KEEP`).
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

use super::containerd::{self as ctd, require_root, run_with_timeout, stdout, test_image};

/// The image pod containers run (`scripts/build-test-image.sh`).
pub const IMAGE: &str = ctd::IMAGE;
/// The sandbox image, built and imported by [`Cri::start`].
pub const PAUSE_IMAGE: &str = "localhost/pause:test";
/// The containerd namespace of everything the CRI makes.
pub const K8S_NS: &str = "k8s.io";
/// The runtime handler whose `BinaryName` is the runtime under test.
pub const HANDLER: &str = "test";
/// Timeout of one CRI call (a RunPodSandbox includes CNI ADD and the runtime's create+start).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(90);

/// A running containerd with the CRI plugin, and clients of its runtime and image services.
pub struct Cri {
    /// With LXCRI_TEST_ENGINE=pve-lxc: the Proxmox node the runtime uses. Dropped after
    /// the pods are removed, before `dir`.
    pub pve: Option<super::emulator::Emulator>,
    dir: Option<tempfile::TempDir>,
    child: Option<Child>,
    /// The gRPC socket (CRI and containerd's own API).
    pub address: PathBuf,
    /// The runtime binary behind handler [`HANDLER`].
    pub runtime: PathBuf,
    /// The runtime config (networks, `ipam_dir`), also the CNI plugin's `configFile`.
    pub config: PathBuf,
    /// The network pods are on, its bridge, and its subnet's first three octets.
    pub network: String,
    pub bridge: String,
    pub net_prefix: String,
    rt: tokio::runtime::Runtime,
    runtime_client: RuntimeServiceClient<Channel>,
    image_client: ImageServiceClient<Channel>,
}

static INSTANCES: AtomicU32 = AtomicU32::new(0);

/// The third octet of this instance's 10.236.X.0/24: one per process (pid) and instance, and
/// skipping subnets this host already has an address in, so parallel test runs on this host
/// do not share a subnet.
fn subnet_octet() -> u32 {
    // 8 instances per process (this suite has 7 tests) before the counter wraps.
    let first = (std::process::id() % 32) * 8 + INSTANCES.fetch_add(1, Ordering::SeqCst) % 8;
    let o = Command::new("ip").args(["-o", "-4", "addr"]).output();
    let used = o.map(|o| stdout(&o)).unwrap_or_default();
    (0..256)
        .map(|i| (first + i * 7) % 256)
        .find(|x| !used.contains(&format!(" 10.236.{x}.")))
        .expect("a free 10.236.X.0/24")
}

fn find_loopback_plugin() -> PathBuf {
    for d in ["/usr/lib/cni", "/opt/cni/bin"] {
        let p = Path::new(d).join("loopback");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "the CNI `loopback` plugin is in neither /usr/lib/cni nor /opt/cni/bin: the CRI tests \
         need it (Debian: apt-get install containernetworking-plugins)"
    );
}

/// The pause image as an OCI archive in `dir`: busybox-static and a `/pause` that waits for
/// SIGTERM/SIGINT (a pod's sandbox process only holds the namespaces).
fn pause_image(dir: &Path) -> PathBuf {
    let rootfs = testkit::Rootfs::busybox().applets(&["sleep"]).executable(
        "pause",
        "#!/bin/sh\ntrap 'exit 0' TERM INT\nwhile :; do sleep 3600 & wait; done\n",
    );
    testkit::OciImage::new()
        .layer(rootfs.layer(dir))
        .config(serde_json::json!({"Entrypoint": ["/pause"], "WorkingDir": "/"}))
        .name(PAUSE_IMAGE)
        .archive(dir)
}

fn spawn_containerd(d: &Path, config: &Path) -> Child {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(d.join("containerd.log"))
        .expect("containerd.log");
    let mut cmd = Command::new("containerd");
    cmd.env("PROXMOX_LXCRI_CONFIG", config)
        .arg("--config")
        .arg(d.join("config.toml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    // containerd must not outlive the test process.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().expect("spawn containerd")
}

impl Cri {
    /// Starts containerd with the CRI plugin, handler [`HANDLER`] running `runtime`, and
    /// imports the busybox and pause images into `k8s.io`.
    pub fn start(runtime: &Path) -> Cri {
        require_root();
        let loopback = find_loopback_plugin();
        let image = test_image();
        let dir = tempfile::Builder::new()
            .prefix("lxcri-cri.")
            .tempdir_in("/tmp")
            .expect("temp dir in /tmp");
        let d = dir.path().to_path_buf();
        let address = d.join("c.sock");
        for sock in ["c.sock", "c.sock.ttrpc", "d.sock"] {
            assert!(d.join(sock).as_os_str().len() < 108);
        }

        // CNI: our plugin and loopback, one conflist.
        let bin_dir = d.join("cni/bin");
        let conf_dir = d.join("cni/conf");
        fs::create_dir_all(&bin_dir).unwrap();
        fs::create_dir_all(&conf_dir).unwrap();
        // Another package's binary: next to ours in the target dir.
        let plugin =
            Path::new(env!("CARGO_BIN_EXE_proxmox-lxcri")).with_file_name("proxmox-lxcri-cni");
        assert!(
            plugin.is_file(),
            "{} missing: run `cargo build --workspace --bins` first",
            plugin.display()
        );
        fs::copy(&plugin, bin_dir.join("proxmox-lxcri-cni")).expect("copy the CNI plugin");
        fs::copy(&loopback, bin_dir.join("loopback")).expect("copy the loopback plugin");
        // hostPort mappings: the standard portmap plugin, chained after ours (it reads the
        // pod IP from our result).
        let portmap = loopback.with_file_name("portmap");
        fs::copy(&portmap, bin_dir.join("portmap")).expect("copy the portmap plugin");
        let octet = subnet_octet();
        let net_prefix = format!("10.236.{octet}");
        let bridge = testkit::unique_ifname("lcri");
        let network = "pods".to_string();
        let config = d.join("lxcri.toml");
        // With LXCRI_TEST_ENGINE=pve-lxc: a pve-emulator, and the runtime's config pointing at it.
        let on_vm = super::emulator::engine() == "pve-vm";
        let pve = super::emulator::on_pve().then(|| {
            use super::emulator::RuntimeConfig;
            let emu = super::emulator::start(&d);
            emu.write_config(&config, "pve-lxc");
            emu
        });
        // With LXCRI_TEST_ENGINE=pve-vm: pods as VMs (root@pam: a VM's `args` are root's).
        let pve = pve.or_else(|| {
            on_vm.then(|| {
                use super::emulator::RuntimeConfig;
                let emu = super::emulator::builder(&d)
                    .root_password("vm-secret")
                    .start();
                emu.write_config_root_pam(&config);
                let text = fs::read_to_string(&config)
                    .unwrap()
                    .replace(
                        "default_backend = \"pve-lxc\"",
                        "default_backend = \"pve-vm\"",
                    )
                    .replacen(
                        "[pve]\n",
                        &format!(
                            "[pve]\nqemu_run_dir = \"{}\"\nvm_boot_timeout_secs = 120\n",
                            emu.data_dir().join("run").join("qemu-server").display()
                        ),
                        1,
                    );
                fs::write(&config, text).unwrap();
                emu
            })
        });
        let pve_toml = fs::read_to_string(&config).unwrap_or_default();
        fs::write(
            &config,
            format!(
                "ipam_dir = \"{ipam}\"\n{pve_toml}\n[network.{network}]\nbridge = \"{bridge}\"\n\
                 subnet = \"{net_prefix}.0/24\"\ngateway = \"{net_prefix}.1\"\n\
                 dns = [\"{net_prefix}.1\"]\nsearch = [\"pods.test\"]\n",
                ipam = d.join("ipam").display()
            ),
        )
        .unwrap();
        fs::write(
            conf_dir.join("10-lxcri.conflist"),
            serde_json::json!({
                "cniVersion": "1.0.0",
                "name": network,
                "plugins": [{"type": "proxmox-lxcri-cni", "network": network,
                             "configFile": config},
                            {"type": "portmap", "capabilities": {"portMappings": true},
                             "snat": true}],
            })
            .to_string(),
        )
        .unwrap();
        // An empty registry config dir: no mirrors, no credentials; images are imported.
        fs::create_dir_all(d.join("certs.d")).unwrap();

        let runc = testkit::which("runc").unwrap_or_else(|| "/usr/sbin/runc".into());
        let handler = |name: &str, bin: &Path| {
            format!(
                r#"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{name}]
      runtime_type = "io.containerd.runc.v2"
      pod_annotations = ["io.proxmox-lxcri.*"]
      container_annotations = ["io.proxmox-lxcri.*"]
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{name}.options]
        BinaryName = "{bin}"
        Root = "{d}/rt-{name}"
"#,
                bin = bin.display(),
                d = d.display()
            )
        };
        let config_toml = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{address}"

[ttrpc]
  address = "{d}/c.sock.ttrpc"

[debug]
  address = "{d}/d.sock"
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # These machines lack CAP_SYS_RESOURCE, so no runtime (runc neither) may lower
  # oom_score_adj below containerd's own: the sandbox's -998 is clamped to it.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "{HANDLER}"
{test}{runc}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{bin_dir}"
    conf_dir = "{conf_dir}"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{d}/certs.d"
"#,
            d = d.display(),
            address = address.display(),
            test = handler(HANDLER, runtime),
            runc = handler("runc", &runc),
            bin_dir = bin_dir.display(),
            conf_dir = conf_dir.display(),
        );
        fs::write(d.join("config.toml"), config_toml).expect("write containerd config");

        let child = spawn_containerd(&d, &config);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let (runtime_client, image_client) = {
            let deadline = Instant::now() + Duration::from_secs(30);
            let channel = loop {
                if let Some(ch) = address
                    .exists()
                    .then(|| rt.block_on(connect(&address)).ok())
                    .flatten()
                {
                    break ch;
                }
                if Instant::now() > deadline {
                    panic!(
                        "containerd did not open {} within 30s; log:\n{}",
                        address.display(),
                        log_tail(&d, 60)
                    );
                }
                thread::sleep(Duration::from_millis(50));
            };
            (
                RuntimeServiceClient::new(channel.clone()),
                ImageServiceClient::new(channel),
            )
        };
        let mut cri = Cri {
            pve,
            dir: Some(dir),
            child: Some(child),
            address,
            runtime: runtime.to_path_buf(),
            config,
            network,
            bridge,
            net_prefix,
            rt,
            runtime_client,
            image_client,
        };
        cri.wait_ready();
        let pause = pause_image(cri.dir());
        for img in [image, pause.as_path()] {
            let o = cri.ctr(&["images", "import", img.to_str().unwrap()]);
            assert!(
                o.status.success(),
                "ctr -n {K8S_NS} images import {} failed:\n{}\n{}",
                img.display(),
                ctd::stderr(&o),
                cri.log_tail(20)
            );
        }
        // The CRI plugin learns of imported images through events: wait until it lists both.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let have: Vec<String> = cri.images().into_iter().flat_map(|i| i.repo_tags).collect();
            if [IMAGE, PAUSE_IMAGE]
                .iter()
                .all(|want| have.iter().any(|h| h == want))
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the CRI image service does not list {IMAGE} and {PAUSE_IMAGE} after import: \
                 {have:?}\n{}",
                cri.log_tail(20)
            );
            thread::sleep(Duration::from_millis(100));
        }
        cri
    }

    /// Waits until the CRI runtime service answers `Status` with RuntimeReady and
    /// NetworkReady (the CNI config was loaded).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "containerd exited early ({status}); log:\n{}",
                    self.log_tail(60)
                );
            }
            let st = self.runtime(|mut c| async move {
                c.status(cri::StatusRequest { verbose: false }).await
            });
            let conds = st
                .as_ref()
                .ok()
                .and_then(|s| s.status.clone())
                .map(|s| s.conditions)
                .unwrap_or_default();
            if !conds.is_empty() && conds.iter().all(|c| c.status) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "the CRI plugin is not ready within 30s: {st:?}\nlog:\n{}",
                    self.log_tail(60)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// This instance's private directory.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    /// The `--root` the shim passes to handler `handler`'s binary.
    pub fn runtime_root(&self, handler: &str) -> PathBuf {
        self.dir().join(format!("rt-{handler}")).join(K8S_NS)
    }

    /// `ctr --address <sock> -n k8s.io <args>`.
    pub fn ctr(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(&self.address)
            .args(["--namespace", K8S_NS])
            .args(args);
        run_with_timeout(cmd, ctd::CTR_TIMEOUT)
    }

    /// The last `n` lines of containerd's log.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(self.dir(), n)
    }

    /// One call on the runtime service, with [`CALL_TIMEOUT`]; a timeout panics with the
    /// tail of containerd's log.
    pub fn runtime<T, F>(
        &self,
        call: impl FnOnce(RuntimeServiceClient<Channel>) -> F,
    ) -> Result<T, tonic::Status>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let fut = call(self.runtime_client.clone());
        self.block(fut)
    }

    /// Like [`Cri::runtime`], but None when the call takes longer than `timeout` (a call
    /// that containerd may keep retrying, as a pod's stop while its runtime cannot delete).
    pub fn runtime_within<T, F>(
        &self,
        timeout: Duration,
        call: impl FnOnce(RuntimeServiceClient<Channel>) -> F,
    ) -> Option<Result<T, tonic::Status>>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let fut = call(self.runtime_client.clone());
        self.rt
            .block_on(async { tokio::time::timeout(timeout, fut).await })
            .ok()
            .map(|r| r.map(tonic::Response::into_inner))
    }

    /// Like [`Cri::runtime`] for cleanup: no panic (we may be unwinding), None on an error
    /// or after 30s.
    fn runtime_quiet<T, F>(
        &self,
        call: impl FnOnce(RuntimeServiceClient<Channel>) -> F,
    ) -> Option<T>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let fut = call(self.runtime_client.clone());
        self.rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(30), fut).await })
            .ok()?
            .ok()
            .map(tonic::Response::into_inner)
    }

    /// `n` calls on the runtime service at once (`call(i, client)` makes the i-th), all
    /// within `timeout`; the results in order of `i`.
    pub fn concurrently<T, F, Fut>(
        &self,
        n: usize,
        timeout: Duration,
        call: F,
    ) -> Vec<Result<T, tonic::Status>>
    where
        F: Fn(usize, RuntimeServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>> + Send + 'static,
        T: Send + 'static,
    {
        let mut set = tokio::task::JoinSet::new();
        let _guard = self.rt.enter();
        for i in 0..n {
            let fut = call(i, self.runtime_client.clone());
            set.spawn(async move { (i, fut.await) });
        }
        let all = self.rt.block_on(async move {
            tokio::time::timeout(timeout, async move {
                let mut out = Vec::new();
                while let Some(r) = set.join_next().await {
                    out.push(r.expect("a CRI call task"));
                }
                out
            })
            .await
        });
        let mut all = all.unwrap_or_else(|_| {
            panic!(
                "{n} concurrent CRI calls not done within {timeout:?}; containerd log:\n{}",
                self.log_tail(40)
            )
        });
        all.sort_by_key(|(i, _)| *i);
        all.into_iter()
            .map(|(_, r)| r.map(tonic::Response::into_inner))
            .collect()
    }

    /// RunPodSandbox of every config at once on `handler`; the pod ids, in order.
    pub fn run_pods_at_once(
        &self,
        configs: &[cri::PodSandboxConfig],
        handler: &str,
    ) -> Vec<String> {
        self.concurrently(configs.len(), Duration::from_secs(600), |i, mut c| {
            let req = cri::RunPodSandboxRequest {
                config: Some(configs[i].clone()),
                runtime_handler: handler.into(),
            };
            async move { c.run_pod_sandbox(req).await }
        })
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|e| panic!("RunPodSandbox {i}: {e}\n{}", self.log_tail(30)))
                .pod_sandbox_id
        })
        .collect()
    }

    /// StopPodSandbox + RemovePodSandbox of every pod at once.
    pub fn remove_pods_at_once(&self, ids: &[String]) {
        let removed = self.concurrently(ids.len(), Duration::from_secs(600), |i, mut c| {
            let id = ids[i].clone();
            async move {
                c.stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                })
                .await?;
                c.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
                    .await
            }
        });
        for (id, r) in ids.iter().zip(removed) {
            r.unwrap_or_else(|e| panic!("Stop/RemovePodSandbox {id}: {e}\n{}", self.log_tail(30)));
        }
    }

    /// One call on the image service, with [`CALL_TIMEOUT`].
    pub fn image<T, F>(
        &self,
        call: impl FnOnce(ImageServiceClient<Channel>) -> F,
    ) -> Result<T, tonic::Status>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let fut = call(self.image_client.clone());
        self.block(fut)
    }

    fn block<T>(
        &self,
        fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        match self
            .rt
            .block_on(async { tokio::time::timeout(CALL_TIMEOUT, fut).await })
        {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => panic!(
                "CRI call timed out after {CALL_TIMEOUT:?}; containerd log:\n{}",
                self.log_tail(40)
            ),
        }
    }

    /// The images the CRI image service lists.
    pub fn images(&self) -> Vec<cri::Image> {
        self.image(
            |mut c| async move { c.list_images(cri::ListImagesRequest { filter: None }).await },
        )
        .map(|r| r.images)
        .unwrap_or_default()
    }

    /// A pod's config as the kubelet would send it (net/ipc shared, pid per container, no
    /// seccomp/AppArmor profile), logs under this instance's directory.
    pub fn pod_config(&self, name: &str, hostname: &str) -> cri::PodSandboxConfig {
        let logs = self.dir().join("logs").join(name);
        fs::create_dir_all(&logs).unwrap();
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}-{}", std::process::id()),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: hostname.into(),
            log_directory: logs.to_string_lossy().into_owned(),
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(pod_namespaces()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// RunPodSandbox on `handler`; returns the pod id.
    pub fn run_pod(
        &self,
        config: &cri::PodSandboxConfig,
        handler: &str,
    ) -> Result<String, tonic::Status> {
        let req = cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.into(),
        };
        self.runtime(|mut c| async move { c.run_pod_sandbox(req).await })
            .map(|r| r.pod_sandbox_id)
    }

    /// PodSandboxStatus (not verbose).
    pub fn pod_status(&self, id: &str) -> cri::PodSandboxStatus {
        let req = cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: false,
        };
        self.runtime(|mut c| async move { c.pod_sandbox_status(req).await })
            .unwrap_or_else(|e| panic!("PodSandboxStatus {id}: {e}\n{}", self.log_tail(20)))
            .status
            .expect("a status")
    }

    /// The pod's IP as PodSandboxStatus reports it.
    pub fn pod_ip(&self, id: &str) -> String {
        self.pod_status(id)
            .network
            .map(|n| n.ip)
            .unwrap_or_default()
    }

    /// CreateContainer of `IMAGE` running `command` in pod `pod`; returns the container id.
    pub fn create_container(
        &self,
        pod: &str,
        pod_config: &cri::PodSandboxConfig,
        name: &str,
        command: &[&str],
    ) -> Result<String, tonic::Status> {
        self.create_container_cfg(pod, pod_config, self.container_config(name, command))
    }

    /// CreateContainer with a config of the caller's (see [`Cri::container_config`]).
    pub fn create_container_cfg(
        &self,
        pod: &str,
        pod_config: &cri::PodSandboxConfig,
        config: cri::ContainerConfig,
    ) -> Result<String, tonic::Status> {
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(config),
            sandbox_config: Some(pod_config.clone()),
        };
        self.runtime(|mut c| async move { c.create_container(req).await })
            .map(|r| r.container_id)
    }

    /// A container's config as the kubelet would send it: `IMAGE` running `command`, the
    /// kubelet's namespace modes, its log as `<name>.log` in the pod's log directory.
    pub fn container_config(&self, name: &str, command: &[&str]) -> cri::ContainerConfig {
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
            command: command.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}.log"),
            linux: Some(cri::LinuxContainerConfig {
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(pod_namespaces()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub fn start_container(&self, id: &str) -> Result<(), tonic::Status> {
        let req = cri::StartContainerRequest {
            container_id: id.into(),
        };
        self.runtime(|mut c| async move { c.start_container(req).await })
            .map(|_| ())
    }

    /// StopContainer with a grace period of `timeout` seconds.
    pub fn stop_container(&self, id: &str, timeout: i64) -> Result<(), tonic::Status> {
        let req = cri::StopContainerRequest {
            container_id: id.into(),
            timeout,
        };
        self.runtime(|mut c| async move { c.stop_container(req).await })
            .map(|_| ())
    }

    pub fn remove_container(&self, id: &str) -> Result<(), tonic::Status> {
        let req = cri::RemoveContainerRequest {
            container_id: id.into(),
        };
        self.runtime(|mut c| async move { c.remove_container(req).await })
            .map(|_| ())
    }

    /// Waits until container `id` has exited; returns its status.
    pub fn wait_exited(&self, id: &str, timeout: Duration) -> cri::ContainerStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.container_status(id);
            if st.state == cri::ContainerState::ContainerExited as i32 {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "container {id} has not exited within {timeout:?}: {st:?}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// ContainerStatus (not verbose).
    pub fn container_status(&self, id: &str) -> cri::ContainerStatus {
        let req = cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        self.runtime(|mut c| async move { c.container_status(req).await })
            .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e}\n{}", self.log_tail(20)))
            .status
            .expect("a status")
    }

    /// ExecSync `cmd` in container `id` (timeout in seconds, 0 = none).
    pub fn exec_sync(
        &self,
        id: &str,
        cmd: &[&str],
        timeout: i64,
    ) -> Result<cri::ExecSyncResponse, tonic::Status> {
        let req = cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout,
        };
        self.runtime(|mut c| async move { c.exec_sync(req).await })
    }

    /// ExecSync that must succeed; returns its stdout.
    pub fn exec_ok(&self, id: &str, cmd: &[&str]) -> String {
        let r = self
            .exec_sync(id, cmd, 30)
            .unwrap_or_else(|e| panic!("ExecSync {cmd:?} in {id}: {e}\n{}", self.log_tail(20)));
        assert_eq!(
            r.exit_code,
            0,
            "ExecSync {cmd:?} in {id} exited {}:\n--- stdout:\n{}\n--- stderr:\n{}",
            r.exit_code,
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr)
        );
        String::from_utf8_lossy(&r.stdout).into_owned()
    }

    pub fn stop_pod(&self, id: &str) -> Result<(), tonic::Status> {
        let req = cri::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.runtime(|mut c| async move { c.stop_pod_sandbox(req).await })
            .map(|_| ())
    }

    pub fn remove_pod(&self, id: &str) -> Result<(), tonic::Status> {
        let req = cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.runtime(|mut c| async move { c.remove_pod_sandbox(req).await })
            .map(|_| ())
    }

    /// The ids of every pod sandbox the CRI knows.
    pub fn pods(&self) -> Vec<String> {
        self.runtime(|mut c| async move {
            c.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
                .await
        })
        .map(|r| r.items.into_iter().map(|p| p.id).collect())
        .unwrap_or_default()
    }

    /// The ids of every container the CRI knows.
    pub fn containers(&self) -> Vec<String> {
        self.runtime(|mut c| async move {
            c.list_containers(cri::ListContainersRequest { filter: None })
                .await
        })
        .map(|r| r.containers.into_iter().map(|p| p.id).collect())
        .unwrap_or_default()
    }

    /// `proxmox-lxcri --config <config> network leases -f json` (the runtime under test's
    /// view of the IPAM the CNI plugin leases from): owner id -> addresses.
    pub fn leases(&self) -> HashMap<String, Vec<String>> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_proxmox-lxcri"));
        cmd.arg("--config").arg(&self.config).args([
            "network",
            "leases",
            "-f",
            "json",
            &self.network,
        ]);
        let o = run_with_timeout(cmd, Duration::from_secs(20));
        assert!(
            o.status.success(),
            "network leases: {}",
            ctd::stderr(&o).trim()
        );
        let v: serde_json::Value = serde_json::from_str(&stdout(&o))
            .unwrap_or_else(|e| panic!("network leases -f json: {e}: {}", stdout(&o)));
        v.as_array()
            .expect("a JSON array of leases")
            .iter()
            .map(|l| {
                let addrs = l["addrs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str().map(str::to_string))
                    .collect();
                (
                    l["owner"]["id"].as_str().unwrap_or_default().to_string(),
                    addrs,
                )
            })
            .collect()
    }

    /// Entries under the runtime root of `handler` (up to 3 levels) whose name contains one
    /// of `ids`: what the runtime left of those containers.
    pub fn runtime_leftovers(&self, handler: &str, ids: &[&str]) -> Vec<PathBuf> {
        fn walk(dir: &Path, ids: &[&str], depth: usize, out: &mut Vec<PathBuf>) {
            for e in fs::read_dir(dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if ids.iter().any(|id| name.contains(id)) {
                    out.push(e.path());
                } else if depth > 1 && e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    walk(&e.path(), ids, depth - 1, out);
                }
            }
        }
        let mut out = vec![];
        walk(&self.runtime_root(handler), ids, 3, &mut out);
        out
    }

    fn cleanup(&mut self) {
        // Pods first, through the CRI while containerd runs: CNI DEL releases the leases
        // and the runtime deletes its containers.
        if self.child.is_some() {
            let pods = self
                .runtime_quiet(|mut c| async move {
                    c.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
                        .await
                })
                .map(|r| r.items)
                .unwrap_or_default();
            for p in pods {
                let id = p.id.clone();
                self.runtime_quiet(|mut c| async move {
                    c.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id })
                        .await
                });
                let id = p.id;
                self.runtime_quiet(|mut c| async move {
                    c.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
                        .await
                });
            }
        }
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let addr = self.address.to_string_lossy().into_owned();
        for (pid, cmdline) in ctd::Containerd::processes_mentioning(&addr) {
            if cmdline.contains("containerd-shim") {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        drop(self.pve.take());
        if let Some(dir) = &self.dir {
            for m in ctd::mounts_under(dir.path()) {
                let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
        if let Some(dir) = self.dir.take() {
            if std::env::var_os("LXCRI_TEST_KEEP").is_some() {
                eprintln!("keeping {}", dir.keep().display());
            } else {
                let _ = dir.close();
            }
        }
    }
}

impl Drop for Cri {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Network and IPC shared with the pod, PID per container: the kubelet's defaults.
pub fn pod_namespaces() -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: cri::NamespaceMode::Pod as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

async fn connect(path: &Path) -> Result<Channel, tonic::transport::Error> {
    let path = path.to_path_buf();
    // The URI is required by tonic and ignored by the connector: gRPC goes over the socket.
    Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
}

fn log_tail(dir: &Path, n: usize) -> String {
    let log = fs::read_to_string(dir.join("containerd.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The verbose `info` of a PodSandboxStatus or ContainerStatus (containerd's JSON).
pub fn verbose_info(info: &std::collections::HashMap<String, String>) -> serde_json::Value {
    let raw = info
        .get("info")
        .expect("verbose status has an `info` entry");
    serde_json::from_str(raw).unwrap_or_else(|e| panic!("info is not JSON ({e}): {raw}"))
}

/// The pid containerd knows for a pod's sandbox (the runtime's `--pid-file` pid).
pub fn sandbox_pid(cri: &Cri, pod: &str) -> (u32, serde_json::Value) {
    let req = k8s_cri::v1::PodSandboxStatusRequest {
        pod_sandbox_id: pod.into(),
        verbose: true,
    };
    let r = cri
        .runtime(|mut c| async move { c.pod_sandbox_status(req).await })
        .expect("PodSandboxStatus verbose");
    let info = verbose_info(&r.info);
    let pid = info["pid"].as_u64().expect("sandbox pid") as u32;
    (pid, info)
}

pub fn container_pid(cri: &Cri, id: &str) -> u32 {
    let req = k8s_cri::v1::ContainerStatusRequest {
        container_id: id.into(),
        verbose: true,
    };
    let r = cri
        .runtime(|mut c| async move { c.container_status(req).await })
        .expect("ContainerStatus verbose");
    verbose_info(&r.info)["pid"]
        .as_u64()
        .expect("container pid") as u32
}

/// The inode of a namespace file (`/proc/<pid>/ns/<kind>` or a bind-mounted netns).
pub fn ns_inode(path: &str) -> u64 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .ino()
}

/// GET `/` of `addr` (ip:port) from the host over plain HTTP/1.0: the body, or None when it
/// does not answer. (busybox-static's wget crashes in glibc's NSS on the host.)
pub fn host_get(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let sa: std::net::SocketAddr = addr.parse().expect("ip:port");
    let mut s = std::net::TcpStream::connect_timeout(&sa, Duration::from_secs(3)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then(|| body.trim().to_string())
}

/// The host path of `pid`'s cgroup in `controller` (cgroup v1) or the unified hierarchy.
pub fn cgroup_dir(pid: u32, controller: &str) -> PathBuf {
    let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("/proc/PID/cgroup");
    for l in cg.lines() {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        if ctrls.split(',').any(|c| c == controller) {
            return Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(path.trim_start_matches('/'));
        }
        if ctrls.is_empty() && Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            return Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
        }
    }
    panic!("no {controller} cgroup for pid {pid}: {cg}");
}

/// A container with a non-root user, a read-only rootfs, no_new_privs and containerd's
/// default seccomp profile in pod `pod`: each shows inside (read from its CRI log). Returns
/// its id.
pub fn security_context_reaches(
    cri: &Cri,
    pod: &str,
    pod_config: &k8s_cri::v1::PodSandboxConfig,
) -> String {
    // A non-root user, a read-only rootfs and containerd's default seccomp profile.
    let mut c = cri.container_config(
        "sec",
        &[
            "sh",
            "-c",
            "id -u; grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; \
             touch /x 2>/dev/null && echo rootfs-writable || echo rootfs-readonly",
        ],
    );
    let sc = c.linux.as_mut().unwrap().security_context.as_mut().unwrap();
    sc.run_as_user = Some(k8s_cri::v1::Int64Value { value: 65534 });
    sc.readonly_rootfs = true;
    sc.no_new_privs = true;
    sc.seccomp = Some(k8s_cri::v1::SecurityProfile {
        profile_type: k8s_cri::v1::security_profile::ProfileType::RuntimeDefault as i32,
        localhost_ref: String::new(),
    });
    let sec = cri
        .create_container_cfg(pod, pod_config, c)
        .unwrap_or_else(|e| panic!("CreateContainer sec: {e}\n{}", cri.log_tail(30)));
    cri.start_container(&sec).expect("StartContainer sec");
    let st = cri.wait_exited(&sec, Duration::from_secs(20));
    let log = std::fs::read_to_string(Path::new(&pod_config.log_directory).join("sec.log"))
        .unwrap_or_default();
    assert_eq!(st.exit_code, 0, "{st:?}\n{log}");
    for want in [
        " stdout F 65534",
        " stdout F Seccomp:\t2",
        " stdout F NoNewPrivs:\t1",
        " stdout F rootfs-readonly",
    ] {
        assert!(
            log.lines().any(|l| l.ends_with(want)),
            "{want:?} not in the container's log:\n{log}"
        );
    }
    sec
}

/// `wget -qO- url` in container `id`, retried for up to 20 s (a server just started):
/// its output.
pub fn wget_in(cri: &Cri, id: &str, url: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = cri
            .exec_sync(id, &["wget", "-qO-", url], 10)
            .expect("ExecSync wget");
        if r.exit_code == 0 {
            return String::from_utf8_lossy(&r.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "{url} does not answer in {id}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        thread::sleep(Duration::from_millis(200));
    }
}

/// UpdateContainerResources of container `id` to a memory limit (and cpu shares): the
/// limit is in the cgroup of its pid, and ContainerStats reads a working set from there.
pub fn update_reaches_the_cgroup(cri: &Cri, id: &str, limit: i64) -> PathBuf {
    let req = cri::UpdateContainerResourcesRequest {
        container_id: id.into(),
        linux: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: limit,
            cpu_shares: 512,
            ..Default::default()
        }),
        ..Default::default()
    };
    cri.runtime(|mut c| async move { c.update_container_resources(req).await })
        .unwrap_or_else(|e| panic!("UpdateContainerResources: {e}\n{}", cri.log_tail(30)));
    let mem = cgroup_dir(container_pid(cri, id), "memory");
    let got = ["memory.limit_in_bytes", "memory.max"]
        .iter()
        .find_map(|f| fs::read_to_string(mem.join(f)).ok())
        .unwrap_or_else(|| panic!("no memory limit file in {}", mem.display()));
    assert_eq!(got.trim(), limit.to_string(), "in {}", mem.display());
    let req = cri::ContainerStatsRequest {
        container_id: id.into(),
    };
    let stats = cri
        .runtime(|mut c| async move { c.container_stats(req).await })
        .unwrap_or_else(|e| panic!("ContainerStats: {e}\n{}", cri.log_tail(30)))
        .stats
        .expect("stats");
    let ws = stats
        .memory
        .and_then(|m| m.working_set_bytes)
        .map(|v| v.value)
        .unwrap_or(0);
    assert!(ws > 0, "no memory working set in ContainerStats: {ws}");
    mem
}
