//! A pod on pve-lxc is one Proxmox CT (issue 14): containerd's CRI plugin (gRPC, as the
//! kubelet calls it) on a runtime whose engine is pve-lxc, against a pve-emulator started
//! here (real HTTPS, a token, real LXC behind it). The sandbox becomes the CT; the pod's
//! containers run inside it, started by the CT's pod agent without an API request.
//!
//! ```sh
//! cargo build --workspace --bins
//! cargo test -p proxmox-lxcri --test cri_pve
//! ```
//!
//! Needs root, containerd 1.6, lxc and Debian's containernetworking-plugins; fails, never
//! skips, without them. See `common/cri.rs` for the harness.

mod common {
    pub mod containerd;
    pub mod cri;
    #[path = "../support/emulator.rs"]
    pub mod emulator;
}

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::cri::{container_pid, host_get, ns_inode, sandbox_pid, Cri, HANDLER};

fn runtime() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_proxmox-lxcri"))
}

/// The node's tasks (every create, start, stop ... the runtime asks for makes one).
fn task_count(emu: &testkit::Emulator) -> usize {
    let auth = format!("Authorization: PVEAPIToken={}", emu.token());
    let (code, body) = emu.curl(
        "GET",
        &emu.api_url(&format!("/nodes/{}/tasks?limit=10000", emu.node())),
        &["-H", &auth],
    );
    assert_eq!(code, 200, "GET tasks: {body}");
    body["data"].as_array().map(Vec::len).unwrap_or(0)
}

fn ct_config(emu: &testkit::Emulator, vmid: u32) -> String {
    let p = emu
        .data_dir()
        .join("nodes")
        .join(emu.node())
        .join("lxc")
        .join(format!("{vmid}.conf"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A pod's mounts on the node (under the runtime's exchange dirs).
fn pod_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.contains("/pod/"))
        .map(String::from)
        .collect()
}

#[test]
fn a_pod_is_one_ct_whose_containers_share_its_network_and_run_their_own_rootfs() {
    // This binary runs on pve-lxc only (set before the harness reads it).
    std::env::set_var("LXCRI_TEST_ENGINE", "pve-lxc");
    let cri = Cri::start(&runtime());
    let emu = cri.pve.as_ref().expect("an emulator on pve-lxc");
    let host = format!("pod-p-{}", std::process::id());
    let mut config = cri.pod_config("pod-p", &host);
    // Pod-level resources (the kubelet's, for the whole pod) size the CT.
    config.linux.as_mut().unwrap().resources = Some(k8s_cri::v1::LinuxContainerResources {
        memory_limit_in_bytes: 300 << 20,
        cpu_period: 100_000,
        cpu_quota: 150_000,
        ..Default::default()
    });
    let uid = config.metadata.as_ref().unwrap().uid.clone();
    let pod = cri
        .run_pod(&config, HANDLER)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", cri.log_tail(40)));
    let ip = cri.pod_ip(&pod);

    // The pod is one CT, showing the pod; its net0 holds the pod IP CRI reports.
    let cts = emu.ct_ids();
    assert_eq!(cts.len(), 1, "CTs for one pod: {cts:?}");
    let conf = ct_config(emu, cts[0]);
    assert!(
        conf.lines().any(|l| l.starts_with("tags:")
            && l.contains("proxmox-lxcri")
            && l.contains("k8s-default")),
        "tags of the pod's CT:\n{conf}"
    );
    for want in ["memory: 300\n", "cpulimit: 1.5\n"] {
        assert!(
            conf.contains(want),
            "the pod's resources: no {want:?} in\n{conf}"
        );
    }
    assert!(
        conf.contains(&format!("hostname: {host}")),
        "hostname:\n{conf}"
    );
    for want in [
        "kubernetes pod namespace: default",
        "kubernetes pod name: pod-p",
    ] {
        assert!(conf.contains(want), "description lacks {want:?}:\n{conf}");
    }
    assert!(
        conf.contains(&uid),
        "description lacks the pod uid:\n{conf}"
    );
    assert!(
        conf.lines()
            .any(|l| l.starts_with("net0:") && l.contains(&format!("ip={ip}/24"))),
        "net0 does not hold the pod IP {ip}:\n{conf}"
    );

    // containerd's netns path and the sandbox's pid name the CT's network namespace.
    let (spid, info) = sandbox_pid(&cri, &pod);
    let netns = info["runtimeSpec"]["linux"]["namespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["type"] == "network")
        .and_then(|n| n["path"].as_str())
        .expect("a netns path in the sandbox spec")
        .to_string();
    assert_eq!(
        ns_inode(&netns),
        ns_inode(&format!("/proc/{spid}/ns/net")),
        "containerd's netns {netns} is not the CT's"
    );

    // Two containers: no API request, no second CT. The server serves a host directory
    // (a bind mount) on the pod's network.
    let www = cri.dir().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "pong\n").unwrap();
    let tasks_before = task_count(emu);
    let t0 = Instant::now();
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
    let client = cri
        .create_container(
            &pod,
            &config,
            "client",
            &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
        )
        .unwrap_or_else(|e| panic!("CreateContainer client: {e}\n{}", cri.log_tail(40)));
    cri.start_container(&client)
        .unwrap_or_else(|e| panic!("StartContainer client: {e}\n{}", cri.log_tail(40)));
    let two_containers = t0.elapsed();
    assert_eq!(
        task_count(emu),
        tasks_before,
        "adding containers to a running pod made Proxmox tasks"
    );
    assert_eq!(
        emu.ct_ids(),
        cts,
        "a container of the pod became a CT of its own"
    );
    eprintln!("two containers created and started in the pod's CT in {two_containers:?}");

    // Each container: the CT's network, IPC and UTS namespaces, a pid namespace and a
    // cgroup of its own under the CT's, its own image as its root.
    for c in [&server, &client] {
        let cpid = container_pid(&cri, c);
        for ns in ["net", "ipc", "uts", "user"] {
            assert_eq!(
                ns_inode(&format!("/proc/{cpid}/ns/{ns}")),
                ns_inode(&format!("/proc/{spid}/ns/{ns}")),
                "{c} does not share the CT's {ns} namespace"
            );
        }
        for ns in ["pid", "mnt"] {
            assert_ne!(
                ns_inode(&format!("/proc/{cpid}/ns/{ns}")),
                ns_inode(&format!("/proc/{spid}/ns/{ns}")),
                "{c} shares the sandbox's {ns} namespace"
            );
        }
        // Its processes (an exec joins them) are in a cgroup of its own under the CT's.
        let cg = cri.exec_ok(c, &["cat", "/proc/self/cgroup"]);
        let mem = cg
            .lines()
            .find(|l| {
                l.split(':')
                    .nth(1)
                    .is_some_and(|c| c.split(',').any(|x| x == "memory"))
            })
            .unwrap_or_else(|| panic!("no memory cgroup in {cg}"));
        assert!(
            mem.ends_with(&format!("/lxcri-{c}")),
            "{c}'s memory cgroup is not its own: {mem}"
        );
    }
    assert_eq!(
        cri.exec_ok(
            &client,
            &["sh", "-c", "test -e /pause && echo pause || echo busybox"]
        )
        .trim(),
        "busybox",
        "the container's root is not its own image"
    );
    // The CT is unprivileged, yet the image is the container root's own, as under runc:
    // owned by uid 0 inside and writable (idmapped through the CT's user namespace).
    assert_eq!(
        cri.exec_ok(&server, &["stat", "-c", "%u:%g", "/bin", "/www/index.html"])
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["0:0", "0:0"]
    );
    assert_eq!(
        cri.exec_ok(
            &client,
            &[
                "sh",
                "-c",
                "mkdir -p /var/new && echo w >/var/new/f && cat /var/new/f"
            ]
        )
        .trim(),
        "w",
        "root cannot write into its own image"
    );
    assert_eq!(cri.exec_ok(&client, &["hostname"]).trim(), host);
    let addr = cri.exec_ok(&client, &["ip", "-o", "-4", "addr", "show", "dev", "eth0"]);
    assert!(
        addr.contains(&format!("{ip}/24")),
        "eth0 in the pod: {addr}"
    );

    // localhost between the pod's containers, and the pod IP from the host.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = cri
            .exec_sync(&client, &["wget", "-qO-", "http://127.0.0.1:8080/"], 10)
            .expect("ExecSync wget");
        if r.exit_code == 0 {
            assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "pong");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server is not reachable on localhost: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        host_get(&format!("{ip}:8080")).as_deref(),
        Some("pong"),
        "the pod IP does not answer from the host"
    );

    // Exit codes reach containerd; a container restarted in the same pod.
    let job = cri
        .create_container(&pod, &config, "job", &["sh", "-c", "exit 3"])
        .expect("CreateContainer job");
    cri.start_container(&job).expect("StartContainer job");
    let st = cri.wait_exited(&job, Duration::from_secs(20));
    assert_eq!(st.exit_code, 3, "{st:?}");
    cri.remove_container(&job).expect("RemoveContainer job");

    // StopContainer: TERM reaches httpd.
    cri.stop_container(&server, 10).expect("StopContainer");
    let st = cri.wait_exited(&server, Duration::from_secs(10));
    assert_eq!(st.exit_code, 143, "httpd ends on SIGTERM: {st:?}");

    cri.stop_pod(&pod).expect("StopPodSandbox");
    cri.remove_pod(&pod).expect("RemovePodSandbox");
    assert!(emu.ct_ids().is_empty(), "CTs left: {:?}", emu.ct_ids());
    assert!(cri.leases().is_empty(), "leases left: {:?}", cri.leases());
    let ids = [pod.as_str(), server.as_str(), client.as_str(), job.as_str()];
    let left = cri.runtime_leftovers(HANDLER, &ids);
    assert!(left.is_empty(), "left in the runtime root: {left:?}");
    assert!(
        pod_mounts().is_empty(),
        "pod mounts left: {:?}",
        pod_mounts()
    );
    assert!(
        std::fs::read_to_string(www.join("index.html")).is_ok(),
        "removing the pod reached into a bind source"
    );
}
