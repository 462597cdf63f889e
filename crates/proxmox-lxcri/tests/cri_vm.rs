//! A pod on pve-vm is one Proxmox VM (issue 15, item 3): containerd's CRI plugin (gRPC, as
//! the kubelet calls it) on a runtime whose engine is pve-vm, against a pve-emulator started
//! here that runs real QEMU (TCG). The sandbox becomes the pod's VM, holding the pod's CNI
//! lease on net0; each of the pod's containers reaches the VM as a disk hot-plugged through
//! the API and runs inside it, started by the guest's agent.
//!
//! ```sh
//! cargo build --workspace --bins
//! cargo test -p proxmox-lxcri --test cri_vm
//! ```
//!
//! Needs root, containerd, qemu-system-x86_64 and Debian's cloud kernel; fails, never
//! skips, without them.

mod common {
    pub mod containerd;
    pub mod cri;
    #[path = "../support/emulator.rs"]
    pub mod emulator;
}

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cri::{host_get, Cri, HANDLER};
use common::emulator::RuntimeConfig as _;
use serde_json::json;

fn runtime() -> PathBuf {
    std::env::var_os("LXCRI_TEST_RUNTIME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_proxmox-lxcri")))
}

fn require_vm_host() {
    assert!(
        testkit::which("qemu-system-x86_64").is_some(),
        "qemu-system-x86_64 is missing: run scripts/install-deps.sh"
    );
    assert!(
        std::fs::read_dir("/boot")
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with("cloud-amd64")),
        "no /boot/vmlinuz-*-cloud-amd64: run scripts/install-deps.sh (linux-image-cloud-amd64)"
    );
}

fn vm_ids(emu: &testkit::Emulator) -> Vec<u64> {
    let v = emu.get(&format!("/nodes/{}/qemu", emu.node()))["data"].clone();
    let mut ids: Vec<u64> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["vmid"].as_u64())
        .collect();
    ids.sort();
    ids
}

fn vm_config(emu: &testkit::Emulator, vmid: u64) -> serde_json::Value {
    emu.get(&format!("/nodes/{}/qemu/{vmid}/config", emu.node()))["data"].clone()
}

/// The config's disk keys besides the sandbox's root (`virtio<n>`, n > 0) and `unused<n>`.
fn member_disks(conf: &serde_json::Value) -> Vec<(String, String)> {
    conf.as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| (k.starts_with("virtio") && *k != "virtio0") || k.starts_with("unused"))
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect()
}

fn log_of(config: &k8s_cri::v1::PodSandboxConfig, name: &str) -> String {
    std::fs::read_to_string(Path::new(&config.log_directory).join(format!("{name}.log")))
        .unwrap_or_default()
}

#[test]
fn a_pod_on_pve_vm_is_one_vm_whose_containers_run_inside_it() {
    // This binary runs on pve-vm only (set before the harness reads it).
    std::env::set_var("LXCRI_TEST_ENGINE", "pve-vm");
    require_vm_host();
    let cri = Cri::start(&runtime());
    let emu = cri.pve.as_ref().expect("an emulator on pve-vm");
    let host = format!("pod-v-{}", std::process::id());
    let config = cri.pod_config("pod-v", &host);
    let t0 = Instant::now();
    let pod = cri
        .run_pod(&config, HANDLER)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", cri.log_tail(40)));
    let pod_start = t0.elapsed();
    let ip = cri.pod_ip(&pod);
    assert!(!ip.is_empty(), "no pod IP");

    // The pod is one VM, showing the pod; its net0 is on the pods' bridge.
    let vms = vm_ids(emu);
    assert_eq!(vms.len(), 1, "VMs for one pod: {vms:?}");
    let vmid = vms[0];
    let conf = vm_config(emu, vmid);
    let tags = conf["tags"].as_str().unwrap_or_default();
    assert!(
        tags.contains("proxmox-lxcri") && tags.contains("k8s-default"),
        "tags of the pod's VM: {conf}"
    );
    let desc = conf["description"].as_str().unwrap_or_default();
    assert!(
        desc.contains("kubernetes pod name: pod-v"),
        "description of the pod's VM: {conf}"
    );
    assert!(
        conf["net0"]
            .as_str()
            .unwrap_or_default()
            .contains("bridge="),
        "net0: {conf}"
    );
    // Port security (the network's default): the VM's firewall holds the
    // pod IP, net0 has firewall=1.
    assert!(
        conf["net0"]
            .as_str()
            .unwrap_or_default()
            .contains("firewall=1"),
        "{conf}"
    );
    let set = emu.get(&format!(
        "/nodes/pve/qemu/{vmid}/firewall/ipset/ipfilter-net0"
    ))["data"]
        .clone();
    assert_eq!(set[0]["cidr"], ip.as_str(), "{set}");

    // Two containers in it: a long-running one, and one that prints (stdout, stderr, the
    // pod's address on the VM's eth0, the copied /etc/hosts) and exits 3.
    let t1 = Instant::now();
    let mut sleeper_cfg = cri.container_config("sleeper", &["sh", "-c", "echo up; exec sleep 600"]);
    let sc = sleeper_cfg
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap();
    sc.masked_paths = vec!["/proc/kcore".into()];
    sc.readonly_paths = vec!["/proc/sys".into()];
    let sleeper = cri
        .create_container_cfg(&pod, &config, sleeper_cfg)
        .unwrap_or_else(|e| panic!("CreateContainer sleeper: {e}\n{}", cri.log_tail(40)));
    cri.start_container(&sleeper)
        .unwrap_or_else(|e| panic!("StartContainer sleeper: {e}\n{}", cri.log_tail(40)));
    let add_first = t1.elapsed();
    let t2 = Instant::now();
    let job = cri
        .create_container(
            &pod,
            &config,
            "job",
            &[
                "sh",
                "-c",
                "echo out-job; echo err-job >&2; ip -4 addr show eth0; grep -c . /etc/hosts; \
                 cat /proc/1/cmdline | tr '\\0' ' '; echo; sleep 2; exit 3",
            ],
        )
        .unwrap_or_else(|e| panic!("CreateContainer job: {e}\n{}", cri.log_tail(40)));
    cri.start_container(&job)
        .unwrap_or_else(|e| panic!("StartContainer job: {e}\n{}", cri.log_tail(40)));
    let add_second = t2.elapsed();
    // Still one VM; each container a disk of the VM, with its serial (CRI's create is
    // metadata only: the runtime's create runs at StartContainer).
    assert_eq!(vm_ids(emu), vec![vmid], "VMs after two containers");
    let disks = member_disks(&vm_config(emu, vmid));
    assert_eq!(disks.len(), 2, "the containers' disks: {disks:?}");
    assert!(
        disks
            .iter()
            .all(|(k, v)| v.contains(&format!("serial=lxcri-{k}"))),
        "{disks:?}"
    );
    let st = cri.wait_exited(&job, Duration::from_secs(60));
    assert_eq!(st.exit_code, 3, "job's status: {st:?}");
    let log = log_of(&config, "job");
    for want in ["out-job", "err-job", &format!("inet {ip}/")] {
        assert!(log.contains(want), "job's CRI log lacks {want:?}:\n{log}");
    }
    // Its own pid namespace (the kubelet's default): its shell is its pid 1.
    assert!(log.contains("sh -c echo out-job"), "job's pid 1:\n{log}");
    // The job's container is deleted from the runtime once it exited (containerd's shim
    // does): its disk left the running VM and its volume is freed.
    let disks = member_disks(&vm_config(emu, vmid));
    assert_eq!(disks.len(), 1, "disks once the job exited: {disks:?}");
    assert_eq!(emu.volumes().len(), 2, "volumes: {:?}", emu.volumes());
    let st = cri.container_status(&sleeper);
    assert_eq!(
        st.state,
        k8s_cri::v1::ContainerState::ContainerRunning as i32,
        "sleeper: {st:?}"
    );
    assert!(log_of(&config, "sleeper").contains("up"), "sleeper's log");
    // ExecSync (the kubelet's probes) runs in the container's own namespaces in the VM:
    // its pid 1 is its `sleep`, its root its image; output and exit code come back.
    let r = cri
        .exec_sync(
            &sleeper,
            &[
                "sh",
                "-c",
                "tr '\\0' ' ' < /proc/1/cmdline; echo; ls -l /proc/kcore; echo oops >&2; exit 7",
            ],
            60,
        )
        .unwrap_or_else(|e| panic!("ExecSync: {e}\n{}", cri.log_tail(40)));
    let out = String::from_utf8_lossy(&r.stdout);
    assert_eq!(r.exit_code, 7, "ExecSync: {r:?}");
    assert!(out.contains("sleep 600"), "pid 1 seen by an exec: {out:?}");
    // The spec's masked paths (the kubelet's, through the CRI): /proc/kcore is /dev/null.
    assert!(
        out.lines()
            .any(|l| l.starts_with('c') && l.contains("/proc/kcore")),
        "/proc/kcore is not masked: {out:?}"
    );
    assert_eq!(String::from_utf8_lossy(&r.stderr), "oops\n");

    // A container whose executable is missing fails cleanly: no disk of it is left.
    let bad = cri.create_container(&pod, &config, "bad", &["/no/such/binary"]);
    let bad_failed = match &bad {
        Err(_) => true,
        Ok(id) => {
            let r = cri.start_container(id);
            eprintln!("the bad container's start: {r:?}");
            let failed = r.is_err() || cri.wait_exited(id, Duration::from_secs(30)).exit_code != 0;
            cri.remove_container(id)
                .unwrap_or_else(|e| panic!("RemoveContainer bad: {e}\n{}", cri.log_tail(40)));
            failed
        }
    };
    assert!(bad_failed, "a missing executable did not fail: {bad:?}");
    // Nothing of the bad container is left: the sleeper's disk only.
    let disks = member_disks(&vm_config(emu, vmid));
    assert_eq!(disks.len(), 1, "disks after the bad container: {disks:?}");
    assert_eq!(emu.volumes().len(), 2, "volumes: {:?}", emu.volumes());
    cri.remove_container(&job)
        .unwrap_or_else(|e| panic!("RemoveContainer job: {e}\n{}", cri.log_tail(40)));

    // An API error (or a lost answer) at each step of adding a container to the running
    // pod: the container fails, and nothing of it is left (no volume, no disk in the VM).
    let steps = [
        json!({"method": "POST", "path": "^/nodes/pve/storage/local/content$", "action": "error", "count": 1}),
        json!({"method": "POST", "path": "^/nodes/pve/storage/local/content$", "action": "drop", "count": 1}),
        json!({"method": "GET", "path": "^/nodes/pve/storage/local/content/.+", "action": "error", "count": 1}),
        json!({"method": "GET", "path": "^/nodes/pve/qemu/[0-9]+/config$", "action": "error", "count": 1}),
        json!({"method": "PUT", "path": "^/nodes/pve/qemu/[0-9]+/config$", "action": "error", "count": 1}),
        json!({"method": "PUT", "path": "^/nodes/pve/qemu/[0-9]+/config$", "action": "drop", "count": 1}),
    ];
    for (i, rule) in steps.iter().enumerate() {
        emu.request(
            "POST",
            "/_emulator/faults",
            &[],
            Some(&json!({ "rules": [rule] })),
        );
        let name = format!("fault{i}");
        let id = cri
            .create_container(&pod, &config, &name, &["true"])
            .unwrap_or_else(|e| panic!("CreateContainer {name}: {e}"));
        let r = cri.start_container(&id);
        let hits = emu.get("/_emulator/faults")["data"][0]["hits"]
            .as_u64()
            .unwrap_or(0);
        emu.request("DELETE", "/_emulator/faults", &[], None);
        assert!(hits >= 1, "{rule}: the fault was never hit");
        assert!(r.is_err(), "{rule}: the container started");
        cri.remove_container(&id)
            .unwrap_or_else(|e| panic!("RemoveContainer {name}: {e}\n{}", cri.log_tail(40)));
        let disks = member_disks(&vm_config(emu, vmid));
        assert_eq!(disks.len(), 1, "after {rule}: disks {disks:?}; {r:?}");
        assert_eq!(
            emu.volumes().len(),
            2,
            "after {rule}: volumes {:?}; {r:?}",
            emu.volumes()
        );
        let left = cri.runtime_leftovers(HANDLER, &[id.as_str()]);
        assert!(
            left.is_empty(),
            "after {rule}: runtime state left: {left:?}"
        );
    }

    // Four containers started at once: each gets a disk slot of its own (the config's
    // digest guards the choice), its output and its exit code.
    const N: usize = 4;
    let ids: Vec<String> = (0..N)
        .map(|i| {
            let cmd = format!("echo at-once-{i}; exit {}", 10 + i);
            cri.create_container(&pod, &config, &format!("par{i}"), &["sh", "-c", &cmd])
                .unwrap_or_else(|e| panic!("CreateContainer par{i}: {e}"))
        })
        .collect();
    let t3 = Instant::now();
    let started = cri.concurrently(N, Duration::from_secs(300), |i, mut c| {
        let req = k8s_cri::v1::StartContainerRequest {
            container_id: ids[i].clone(),
        };
        async move { c.start_container(req).await }
    });
    let at_once = t3.elapsed();
    for (i, r) in started.iter().enumerate() {
        assert!(
            r.is_ok(),
            "StartContainer par{i}: {r:?}\n{}",
            cri.log_tail(30)
        );
    }
    for (i, id) in ids.iter().enumerate() {
        let st = cri.wait_exited(id, Duration::from_secs(60));
        assert_eq!(st.exit_code, 10 + i as i32, "par{i}: {st:?}");
        assert!(log_of(&config, &format!("par{i}")).contains(&format!("at-once-{i}")));
        cri.remove_container(id)
            .unwrap_or_else(|e| panic!("RemoveContainer par{i}: {e}"));
    }
    let disks = member_disks(&vm_config(emu, vmid));
    assert_eq!(
        disks.len(),
        1,
        "disks after the parallel containers: {disks:?}"
    );
    assert_eq!(emu.volumes().len(), 2, "volumes: {:?}", emu.volumes());

    // A server in the pod answers on the pod IP from the node: net0 holds the pod's lease on
    // the pods' bridge. It serves a host directory, which reached the VM as a copy on the
    // container's disk.
    let www = cri.dir().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "pong-from-the-vm\n").unwrap();
    let mut server_cfg = cri.container_config(
        "server",
        &["httpd", "-f", "-p", "0.0.0.0:8080", "-h", "/www"],
    );
    server_cfg.mounts.push(k8s_cri::v1::Mount {
        container_path: "/www".into(),
        host_path: www.to_string_lossy().into_owned(),
        readonly: true,
        ..Default::default()
    });
    let server = cri
        .create_container_cfg(&pod, &config, server_cfg)
        .unwrap_or_else(|e| panic!("CreateContainer server: {e}\n{}", cri.log_tail(40)));
    cri.start_container(&server)
        .unwrap_or_else(|e| panic!("StartContainer server: {e}\n{}", cri.log_tail(40)));
    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        if let Some(body) = host_get(&format!("{ip}:8080")) {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "the pod IP {ip}:8080 does not answer from the VM"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(got, "pong-from-the-vm");
    cri.stop_container(&server, 2)
        .unwrap_or_else(|e| panic!("StopContainer server: {e}\n{}", cri.log_tail(40)));
    cri.remove_container(&server)
        .unwrap_or_else(|e| panic!("RemoveContainer server: {e}\n{}", cri.log_tail(40)));

    // Stop and remove the pod: no VM, no volume, no lease, no runtime state.
    cri.stop_container(&sleeper, 2)
        .unwrap_or_else(|e| panic!("StopContainer sleeper: {e}\n{}", cri.log_tail(40)));
    cri.remove_container(&sleeper)
        .unwrap_or_else(|e| panic!("RemoveContainer sleeper: {e}\n{}", cri.log_tail(40)));
    cri.stop_pod(&pod)
        .unwrap_or_else(|e| panic!("StopPodSandbox: {e}\n{}", cri.log_tail(40)));
    cri.remove_pod(&pod)
        .unwrap_or_else(|e| panic!("RemovePodSandbox: {e}\n{}", cri.log_tail(40)));
    assert_eq!(vm_ids(emu), Vec::<u64>::new(), "VMs left");
    assert_eq!(emu.volumes(), Vec::<PathBuf>::new(), "volumes left");
    let leases = cri.leases();
    assert!(
        !leases.keys().any(|k| k.contains(&pod)),
        "the pod's lease is left: {leases:?}"
    );
    let ids: Vec<&str> = vec![pod.as_str(), sleeper.as_str(), job.as_str()];
    let left = cri.runtime_leftovers(HANDLER, &ids);
    assert!(left.is_empty(), "runtime state left: {left:?}");
    eprintln!(
        "pod-vm timings: RunPodSandbox {pod_start:?}; first container create+start \
         {add_first:?}; second {add_second:?}; {N} started at once {at_once:?}"
    );
}

/// A pod that shares its pid namespace (`shareProcessNamespace`): its containers run in the
/// VM's own pid namespace, whose pid 1 is the guest's init (our agent).
#[test]
fn a_vm_pod_can_share_its_pid_namespace() {
    std::env::set_var("LXCRI_TEST_ENGINE", "pve-vm");
    require_vm_host();
    let cri = Cri::start(&runtime());
    let emu = cri.pve.as_ref().expect("an emulator on pve-vm");
    let host = format!("pod-s-{}", std::process::id());
    let mut config = cri.pod_config("pod-s", &host);
    let shared = |o: &mut Option<k8s_cri::v1::NamespaceOption>| {
        o.as_mut().unwrap().pid = k8s_cri::v1::NamespaceMode::Pod as i32;
    };
    shared(
        &mut config
            .linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap()
            .namespace_options,
    );
    let pod = cri
        .run_pod(&config, HANDLER)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", cri.log_tail(40)));
    let mut c = cri.container_config(
        "ps",
        &["sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline; echo; exit 4"],
    );
    shared(
        &mut c
            .linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap()
            .namespace_options,
    );
    let id = cri
        .create_container_cfg(&pod, &config, c)
        .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", cri.log_tail(40)));
    cri.start_container(&id)
        .unwrap_or_else(|e| panic!("StartContainer: {e}\n{}", cri.log_tail(40)));
    let st = cri.wait_exited(&id, Duration::from_secs(60));
    assert_eq!(st.exit_code, 4, "{st:?}");
    let log = log_of(&config, "ps");
    assert!(
        log.contains("/init"),
        "pid 1 of a shared pid namespace: {log}"
    );
    cri.remove_container(&id)
        .unwrap_or_else(|e| panic!("RemoveContainer: {e}\n{}", cri.log_tail(40)));
    cri.stop_pod(&pod)
        .unwrap_or_else(|e| panic!("StopPodSandbox: {e}\n{}", cri.log_tail(40)));
    cri.remove_pod(&pod)
        .unwrap_or_else(|e| panic!("RemovePodSandbox: {e}\n{}", cri.log_tail(40)));
    assert_eq!(vm_ids(emu), Vec::<u64>::new(), "VMs left");
    assert_eq!(emu.volumes(), Vec::<PathBuf>::new(), "volumes left");
}
