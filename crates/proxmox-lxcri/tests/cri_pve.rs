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
    pub mod streaming;
}

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::cri::{container_pid, host_get, ns_inode, sandbox_pid, Cri, HANDLER};
use common::emulator::RuntimeConfig as _;

/// The runtime under test: this crate's, or `$LXCRI_TEST_RUNTIME` (bench/cri.sh's release
/// build).
fn runtime() -> PathBuf {
    std::env::var_os("LXCRI_TEST_RUNTIME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_proxmox-lxcri")))
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

/// Mounts on the node made for the pod's containers `ids` (under its exchange dir).
fn pod_mounts(ids: &[&str]) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.contains("/pod/") && ids.iter().any(|id| m.contains(id)))
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
    // A hostPort (the CNI portmap plugin, chained after ours: DNAT to the pod IP, which is
    // the CT's address).
    let host_port = 30000 + (std::process::id() + 7) % 20000;
    config.port_mappings.push(k8s_cri::v1::PortMapping {
        protocol: k8s_cri::v1::Protocol::Tcp as i32,
        container_port: 8080,
        host_port: host_port as i32,
        host_ip: String::new(),
    });
    // The pod's (network and IPC namespace) sysctls, as the kubelet passes them.
    let sysctls = &mut config.linux.as_mut().unwrap().sysctls;
    sysctls.insert("net.ipv4.ping_group_range".into(), "0 2147483647".into());
    sysctls.insert("kernel.shm_rmid_forced".into(), "1".into());
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

    // The pods' network has port security (the default): Proxmox's firewall on the CT
    // with the pod IP as the only address net0 may use.
    let fw = emu.get(&format!(
        "/nodes/{}/lxc/{}/firewall/options",
        emu.node(),
        cts[0]
    ))["data"]
        .clone();
    assert_eq!(
        (&fw["enable"], &fw["ipfilter"], &fw["macfilter"]),
        (
            &serde_json::json!(1),
            &serde_json::json!(1),
            &serde_json::json!(1)
        ),
        "{fw}"
    );
    let set = emu.get(&format!(
        "/nodes/{}/lxc/{}/firewall/ipset/ipfilter-net0",
        emu.node(),
        cts[0]
    ))["data"]
        .clone();
    assert_eq!(set[0]["cidr"], ip.as_str(), "{set}");

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
        // The pid containerd knows is in the container's cgroup (the shim's stats and OOM
        // events read it from there, as under runc).
        let pid_cg = std::fs::read_to_string(format!("/proc/{cpid}/cgroup")).unwrap();
        assert!(
            pid_cg
                .lines()
                .any(|l| l.contains(":memory:") && l.ends_with(&format!("/lxcri-{c}"))),
            "the pid-file process of {c} is not in its memory cgroup:\n{pid_cg}"
        );
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
    // The pod's sysctls hold in its containers (they share the CT's namespaces). The
    // ping group range is written in the node's gids (all of them, so every gid of the
    // unprivileged CT); inside, unmapped gids read as 65534: read it from the node.
    assert_eq!(
        cri.exec_ok(&client, &["cat", "/proc/sys/kernel/shm_rmid_forced"])
            .trim(),
        "1"
    );
    let range = testkit::sh(
        "nsenter",
        &[
            &format!("--net=/proc/{spid}/ns/net"),
            "cat",
            "/proc/sys/net/ipv4/ping_group_range",
        ],
    );
    assert_eq!(
        range.split_whitespace().collect::<Vec<_>>(),
        ["0", "2147483647"]
    );
    let addr = cri.exec_ok(&client, &["ip", "-o", "-4", "addr", "show", "dev", "eth0"]);
    assert!(
        addr.contains(&format!("{ip}/24")),
        "eth0 in the pod: {addr}"
    );

    // localhost between the pod's containers, and the pod IP from the host.
    assert_eq!(
        common::cri::wget_in(&cri, &client, "http://127.0.0.1:8080/").trim(),
        "pong"
    );
    assert_eq!(
        host_get(&format!("{ip}:8080")).as_deref(),
        Some("pong"),
        "the pod IP does not answer from the host"
    );
    let gateway = format!("{}.1", cri.net_prefix);
    assert_eq!(
        host_get(&format!("{gateway}:{host_port}")).as_deref(),
        Some("pong"),
        "hostPort {host_port} -> {ip}:8080 does not answer"
    );

    // Exit codes reach containerd; a container restarted in the same pod.
    let job = cri
        .create_container(&pod, &config, "job", &["sh", "-c", "exit 3"])
        .expect("CreateContainer job");
    cri.start_container(&job).expect("StartContainer job");
    let st = cri.wait_exited(&job, Duration::from_secs(20));
    assert_eq!(st.exit_code, 3, "{st:?}");
    cri.remove_container(&job).expect("RemoveContainer job");
    // Its restart (attempt 1) runs in the same CT, on the pod's address.
    let mut again = cri.container_config("job", &["sh", "-c", "ip -o -4 addr show dev eth0"]);
    again.metadata.as_mut().unwrap().attempt = 1;
    again.log_path = "job_1.log".into();
    let job2 = cri
        .create_container_cfg(&pod, &config, again)
        .expect("CreateContainer job, attempt 1");
    cri.start_container(&job2)
        .expect("StartContainer job, attempt 1");
    let st = cri.wait_exited(&job2, Duration::from_secs(20));
    assert_eq!(st.exit_code, 0, "{st:?}");
    let log =
        std::fs::read_to_string(std::path::Path::new(&config.log_directory).join("job_1.log"))
            .unwrap_or_default();
    assert!(
        log.contains(&format!("{ip}/24")),
        "the restarted container is not on the pod IP {ip}: {log:?}"
    );
    // The CRI log format: `<RFC 3339 time> stdout F <line>`.
    assert!(
        log.lines().all(|l| {
            let f: Vec<&str> = l.splitn(4, ' ').collect();
            f.len() == 4 && f[0].contains('T') && f[1] == "stdout" && f[2] == "F"
        }),
        "not in the CRI log format: {log:?}"
    );
    assert_eq!(emu.ct_ids(), cts, "the restart made a CT");

    // UpdateContainerResources reaches the container's own cgroup in the CT; ContainerStats
    // reads it; the CRI lists the pod and its containers.
    let mem = common::cri::update_reaches_the_cgroup(&cri, &client, 80 * 1024 * 1024);
    assert!(
        mem.ends_with(format!("lxcri-{client}")),
        "{}",
        mem.display()
    );
    assert_eq!(cri.pods(), vec![pod.clone()]);
    let listed = cri.containers();
    assert!(
        listed.contains(&server) && listed.contains(&client),
        "ListContainers: {listed:?}"
    );

    // A member's own user, seccomp, no_new_privs and read-only rootfs.
    let sec = common::cri::security_context_reaches(&cri, &pod, &config);
    cri.remove_container(&sec).expect("RemoveContainer sec");

    // kubectl exec/attach/port-forward: the streaming server into the pod's CT.
    common::streaming::exec_attach_and_port_forward(&cri, &pod, &config, 8081);

    // StopContainer: TERM reaches httpd.
    cri.stop_container(&server, 10).expect("StopContainer");
    let st = cri.wait_exited(&server, Duration::from_secs(10));
    assert_eq!(st.exit_code, 143, "httpd ends on SIGTERM: {st:?}");

    cri.stop_pod(&pod).expect("StopPodSandbox");
    cri.remove_pod(&pod).expect("RemovePodSandbox");
    assert!(emu.ct_ids().is_empty(), "CTs left: {:?}", emu.ct_ids());
    assert!(
        emu.volumes().is_empty(),
        "volumes left: {:?}",
        emu.volumes()
    );
    assert!(cri.leases().is_empty(), "leases left: {:?}", cri.leases());
    let ids = [
        pod.as_str(),
        server.as_str(),
        client.as_str(),
        job.as_str(),
        job2.as_str(),
    ];
    let left = cri.runtime_leftovers(HANDLER, &ids);
    assert!(left.is_empty(), "left in the runtime root: {left:?}");
    assert!(
        pod_mounts(&ids).is_empty(),
        "pod mounts left: {:?}",
        pod_mounts(&ids)
    );
    for c in &ids[1..] {
        assert!(member_cgroups(c).is_empty(), "{:?}", member_cgroups(c));
    }
    assert!(
        std::fs::read_to_string(www.join("index.html")).is_ok(),
        "removing the pod reached into a bind source"
    );
}

/// Cgroup directories named `lxcri-<id>` anywhere in the node's hierarchies.
fn member_cgroups(id: &str) -> Vec<PathBuf> {
    fn walk(dir: &std::path::Path, name: &str, depth: usize, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name().to_string_lossy() == name {
                out.push(e.path());
            } else if depth > 0 {
                walk(&e.path(), name, depth - 1, out);
            }
        }
    }
    let mut out = vec![];
    walk(
        std::path::Path::new("/sys/fs/cgroup"),
        &format!("lxcri-{id}"),
        7,
        &mut out,
    );
    out
}

#[test]
fn a_failing_container_leaves_nothing_in_the_pod_and_a_pod_survives_an_api_outage() {
    std::env::set_var("LXCRI_TEST_ENGINE", "pve-lxc");
    let mut cri = Cri::start(&runtime());
    let config = cri.pod_config("pod-f", "pod-f");
    let pod = cri
        .run_pod(&config, HANDLER)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", cri.log_tail(40)));

    // A container whose executable is missing fails to start and leaves nothing: no
    // mount, no cgroup, no state; the pod goes on.
    let bad = cri
        .create_container(&pod, &config, "bad", &["/no/such/binary"])
        .expect("CreateContainer bad");
    let err = cri
        .start_container(&bad)
        .expect_err("StartContainer of a missing executable");
    assert!(
        err.message().contains("/no/such/binary"),
        "the error does not name the executable: {err}"
    );
    assert!(
        pod_mounts(&[&bad]).is_empty(),
        "mounts left: {:?}",
        pod_mounts(&[&bad])
    );
    assert!(
        member_cgroups(&bad).is_empty(),
        "{:?}",
        member_cgroups(&bad)
    );
    cri.remove_container(&bad).expect("RemoveContainer bad");
    let left = cri.runtime_leftovers(HANDLER, &[bad.as_str()]);
    assert!(left.is_empty(), "left in the runtime root: {left:?}");
    let good = cri
        .create_container(&pod, &config, "good", &["sleep", "1000"])
        .expect("CreateContainer good");
    cri.start_container(&good).expect("StartContainer good");
    assert_eq!(cri.exec_ok(&good, &["echo", "alive"]).trim(), "alive");

    // The Proxmox API goes away: the pod's removal fails (the CT cannot be destroyed)
    // and keeps what it could not remove; once the API is back, it is removed for good.
    // The runtime gives up on an API that does not answer at once.
    let text = std::fs::read_to_string(&cri.config).unwrap();
    let text = text.replacen("[pve]\n", "[pve]\ntimeout_secs = 3\nretries = 0\n", 1);
    std::fs::write(&cri.config, text).unwrap();
    let emu = cri.pve.as_mut().expect("an emulator");
    emu.stop();
    // containerd keeps retrying the sandbox's delete; the stop does not end meanwhile.
    let stop = |cri: &Cri, within: u64| {
        let id = pod.clone();
        cri.runtime_within(Duration::from_secs(within), |mut c| async move {
            c.stop_pod_sandbox(k8s_cri::v1::StopPodSandboxRequest { pod_sandbox_id: id })
                .await
        })
    };
    assert!(
        !matches!(stop(&cri, 10), Some(Ok(_))),
        "the pod was stopped while the Proxmox API was down"
    );
    assert_eq!(
        cri.pods(),
        vec![pod.clone()],
        "the pod is gone from containerd"
    );
    let emu = cri.pve.as_mut().expect("an emulator");
    emu.restart();
    let url = emu.url();
    let text = std::fs::read_to_string(&cri.config).unwrap();
    let text: String = text
        .lines()
        .map(|l| match l.starts_with("url = ") {
            true => format!("url = \"{url}\"\n"),
            false => format!("{l}\n"),
        })
        .collect();
    std::fs::write(&cri.config, text).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match stop(&cri, 30) {
            Some(Ok(_)) => break,
            other => assert!(
                Instant::now() < deadline,
                "the pod cannot be stopped after the API came back: {other:?}\n{}",
                cri.log_tail(30)
            ),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    cri.remove_pod(&pod).expect("RemovePodSandbox");
    let emu = cri.pve.as_ref().expect("an emulator");
    assert!(emu.ct_ids().is_empty(), "CTs left: {:?}", emu.ct_ids());
    assert!(cri.leases().is_empty(), "leases left: {:?}", cri.leases());
    let left = cri.runtime_leftovers(HANDLER, &[pod.as_str(), good.as_str()]);
    assert!(left.is_empty(), "left in the runtime root: {left:?}");
    assert!(
        pod_mounts(&[&pod, &good]).is_empty(),
        "pod mounts left: {:?}",
        pod_mounts(&[&pod, &good])
    );
    assert!(
        member_cgroups(&good).is_empty(),
        "{:?}",
        member_cgroups(&good)
    );
}

#[test]
fn twenty_pods_at_once_are_twenty_cts_with_distinct_addresses_and_leave_nothing() {
    const N: usize = 20;
    std::env::set_var("LXCRI_TEST_ENGINE", "pve-lxc");
    let cri = Cri::start(&runtime());
    let emu = cri.pve.as_ref().expect("an emulator");
    let configs: Vec<_> = (0..N)
        .map(|i| cri.pod_config(&format!("par-{i}"), &format!("par-{i}")))
        .collect();
    let t0 = Instant::now();
    let ids = cri.run_pods_at_once(&configs, HANDLER);
    eprintln!("{N} pods (CTs) started concurrently in {:?}", t0.elapsed());
    assert_eq!(emu.ct_ids().len(), N, "CTs: {:?}", emu.ct_ids());
    // A container in each, all at once: N agents, no Proxmox task.
    let tasks = task_count(emu);
    let containers: Vec<String> = (0..N)
        .map(|i| {
            cri.create_container(&ids[i], &configs[i], "app", &["sleep", "1000"])
                .unwrap_or_else(|e| panic!("CreateContainer in par-{i}: {e}"))
        })
        .collect();
    let started = cri.concurrently(N, Duration::from_secs(300), |i, mut c| {
        let req = k8s_cri::v1::StartContainerRequest {
            container_id: containers[i].clone(),
        };
        async move { c.start_container(req).await }
    });
    for (i, r) in started.into_iter().enumerate() {
        r.unwrap_or_else(|e| panic!("StartContainer in par-{i}: {e}\n{}", cri.log_tail(30)));
    }
    assert_eq!(
        task_count(emu),
        tasks,
        "the pods' containers made Proxmox tasks"
    );
    let mut ips: Vec<String> = ids.iter().map(|id| cri.pod_ip(id)).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), N, "pod IPs not distinct: {ips:?}");
    cri.remove_pods_at_once(&ids);
    eprintln!("... and removed, {:?} in all", t0.elapsed());
    assert!(emu.ct_ids().is_empty(), "CTs left: {:?}", emu.ct_ids());
    assert!(cri.leases().is_empty(), "leases left: {:?}", cri.leases());
    let refs: Vec<&str> = ids.iter().chain(&containers).map(String::as_str).collect();
    let left = cri.runtime_leftovers(HANDLER, &refs);
    assert!(left.is_empty(), "left in the runtime root: {left:?}");
    assert!(pod_mounts(&refs).is_empty(), "{:?}", pod_mounts(&refs));
}

#[test]
fn a_pods_containers_run_on_its_sandboxs_engine() {
    std::env::set_var("LXCRI_TEST_ENGINE", "pve-lxc");
    let cri = Cri::start(&runtime());
    let emu = cri.pve.as_ref().expect("an emulator");
    // The runtime's default is pve-lxc; the pod asks for the lxc engine (a pod annotation,
    // which containerd gives the sandbox only).
    let mut config = cri.pod_config("pod-l", "pod-l");
    config
        .annotations
        .insert("io.proxmox-lxcri.backend".into(), "lxc".into());
    let pod = cri
        .run_pod(&config, HANDLER)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", cri.log_tail(30)));
    let c = cri
        .create_container(&pod, &config, "app", &["sleep", "1000"])
        .expect("CreateContainer");
    cri.start_container(&c)
        .unwrap_or_else(|e| panic!("StartContainer: {e}\n{}", cri.log_tail(30)));
    assert!(emu.ct_ids().is_empty(), "a CT was made: {:?}", emu.ct_ids());
    let state = std::fs::read_to_string(
        cri.runtime_root(HANDLER)
            .join("containers")
            .join(&c)
            .join("state.json"),
    )
    .expect("the container's state");
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["engine"], "lxc", "{state}");
    cri.stop_pod(&pod).expect("StopPodSandbox");
    cri.remove_pod(&pod).expect("RemovePodSandbox");
}

/// `proxmox-lxcri create` of `spec` as a container of pod `pod` (the annotations containerd
/// gives one), with the runtime root and config the CRI handler uses: success and stderr.
/// The container's stdio is a file (a created container holds it, as it holds a shim's).
fn create_member(cri: &Cri, pod: &str, id: &str, spec: testkit::Spec) -> (bool, String) {
    let spec = spec
        .terminal(false)
        .readonly_root(false)
        .annotation("io.kubernetes.cri.container-type", "container")
        .annotation("io.kubernetes.cri.sandbox-id", pod);
    let dir = cri.dir().join(format!("bundle-{id}"));
    let bundle = testkit::bundle(&dir, &testkit::Rootfs::busybox(), &spec);
    let err = dir.join("stderr");
    let status = std::process::Command::new(runtime())
        .env("PROXMOX_LXCRI_CONFIG", &cri.config)
        .arg("--root")
        .arg(cri.runtime_root(HANDLER))
        .args(["create", "--bundle"])
        .arg(&bundle)
        .arg(id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .status()
        .expect("run the runtime");
    (
        status.success(),
        std::fs::read_to_string(&err).unwrap_or_default(),
    )
}

#[test]
fn bad_containers_of_a_pod_are_refused_and_leave_nothing() {
    std::env::set_var("LXCRI_TEST_ENGINE", "pve-lxc");
    let cri = Cri::start(&runtime());
    let config = cri.pod_config("pod-b", "pod-b");
    let pod = cri
        .run_pod(&config, HANDLER)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", cri.log_tail(30)));
    let (spid, _) = sandbox_pid(&cri, &pod);
    let ns = |kind: &str| format!("/proc/{spid}/ns/{kind}");
    // As containerd writes a pod container's spec: the pod's namespaces, no hostname.
    let pod_ns = |spec: testkit::Spec| {
        spec.remove("/hostname").set(
            "/linux/namespaces",
            serde_json::json!([
                {"type": "pid"}, {"type": "mount"},
                {"type": "network", "path": ns("net")},
                {"type": "ipc", "path": ns("ipc")},
                {"type": "uts", "path": ns("uts")}
            ]),
        )
    };
    let left = |id: &str| {
        let mut l: Vec<String> = cri
            .runtime_leftovers(HANDLER, &[id])
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        l.extend(pod_mounts(&[id]));
        l.extend(member_cgroups(id).iter().map(|p| p.display().to_string()));
        l
    };
    // Refused before anything is made: a namespace that is not the pod's, a mount the
    // agent cannot make (after the member's files were made, then undone).
    let cases: Vec<(&str, testkit::Spec, &str)> = vec![
        (
            "b-host-net",
            testkit::Spec::runc().args(&["true"]).set(
                "/linux/namespaces",
                serde_json::json!([{"type": "pid"}, {"type": "mount"},
                    {"type": "network", "path": "/proc/1/ns/net"},
                    {"type": "ipc", "path": ns("ipc")}, {"type": "uts", "path": ns("uts")}]),
            ),
            "not the pod CT's net namespace",
        ),
        (
            "b-own-net",
            testkit::Spec::runc().args(&["true"]),
            "of its own",
        ),
        (
            "b-nfs",
            pod_ns(testkit::Spec::runc().args(&["true"])).mount(serde_json::json!(
                {"destination": "/data", "type": "nfs", "source": "server:/x"}
            )),
            "is not supported in a pod",
        ),
        (
            "b-no-source",
            pod_ns(testkit::Spec::runc().args(&["true"])).mount(serde_json::json!(
                {"destination": "/data", "type": "bind", "source": "/nonexistent/lxcri",
                 "options": ["rbind"]}
            )),
            "/nonexistent/lxcri",
        ),
        (
            "b-hook",
            pod_ns(testkit::Spec::runc().args(&["true"])).set(
                "/hooks",
                serde_json::json!({"prestart": [{"path": "/bin/true"}]}),
            ),
            "hooks.prestart",
        ),
    ];
    for (id, spec, want) in cases {
        let (ok, err) = create_member(&cri, &pod, id, spec);
        assert!(!ok, "{id} was created");
        assert!(err.contains(want), "{id}: {want:?} not in {err}");
        assert!(left(id).is_empty(), "{id} left {:?}", left(id));
    }
    // And one that is fine, through the same path: created inside the CT, no task.
    let (ok, err) = create_member(
        &cri,
        &pod,
        "b-good",
        pod_ns(testkit::Spec::runc().args(&["sh", "-c", "exit 0"])),
    );
    assert!(ok, "{err}");
    let o = std::process::Command::new(runtime())
        .env("PROXMOX_LXCRI_CONFIG", &cri.config)
        .arg("--root")
        .arg(cri.runtime_root(HANDLER))
        .args(["delete", "--force", "b-good"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(left("b-good").is_empty(), "{:?}", left("b-good"));
    cri.stop_pod(&pod).expect("StopPodSandbox");
    cri.remove_pod(&pod).expect("RemovePodSandbox");
}

fn median_ms(v: &mut [Duration]) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

/// Pod start (RunPodSandbox + CreateContainer + StartContainer), a second container in the
/// running pod, and pod removal, on pve-lxc (the pod one CT), the lxc engine and runc, in
/// one containerd, alternating. Run by `bench/cri.sh --pve`.
#[test]
#[ignore = "benchmark: bench/cri.sh --pve"]
fn bench_pods_on_each_engine() {
    std::env::set_var("LXCRI_TEST_ENGINE", "pve-lxc");
    let n: usize = std::env::var("LXCRI_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let cri = Cri::start(&runtime());
    let emu = cri.pve.as_ref().expect("an emulator");
    // (name, handler, backend annotation)
    let engines = [
        ("pve-lxc", HANDLER, "pve-lxc"),
        ("lxc", HANDLER, "lxc"),
        ("runc", "runc", ""),
    ];
    let mut start: [Vec<Duration>; 3] = Default::default();
    let mut second: [Vec<Duration>; 3] = Default::default();
    let mut removal: [Vec<Duration>; 3] = Default::default();
    let sleeper = ["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"];
    for round in 0..=n {
        for k in 0..3 {
            let e = (k + round) % 3;
            let (name, handler, backend) = engines[e];
            let pod_name = format!("b{round}-{name}");
            let mut config = cri.pod_config(&pod_name, &pod_name);
            if !backend.is_empty() {
                config
                    .annotations
                    .insert("io.proxmox-lxcri.backend".into(), backend.into());
            }
            // The containers follow their sandbox's engine (no annotation of their own).
            let container = |cname: &str| cri.container_config(cname, &sleeper);
            let t0 = Instant::now();
            let pod = cri
                .run_pod(&config, handler)
                .unwrap_or_else(|e| panic!("RunPodSandbox on {name}: {e}\n{}", cri.log_tail(30)));
            let c1 = cri
                .create_container_cfg(&pod, &config, container("a"))
                .unwrap_or_else(|e| panic!("CreateContainer on {name}: {e}"));
            cri.start_container(&c1)
                .unwrap_or_else(|e| panic!("StartContainer on {name}: {e}"));
            let t1 = Instant::now();
            let tasks = (name == "pve-lxc").then(|| task_count(emu));
            // Not timed: the task count asks the API.
            let t1b = Instant::now();
            let c2 = cri
                .create_container_cfg(&pod, &config, container("b"))
                .unwrap_or_else(|e| panic!("CreateContainer (second) on {name}: {e}"));
            cri.start_container(&c2)
                .unwrap_or_else(|e| panic!("StartContainer (second) on {name}: {e}"));
            let t2 = Instant::now();
            if let Some(before) = tasks {
                assert_eq!(
                    task_count(emu),
                    before,
                    "the second container made Proxmox tasks"
                );
            }
            cri.stop_pod(&pod)
                .unwrap_or_else(|e| panic!("StopPodSandbox on {name}: {e}"));
            cri.remove_pod(&pod)
                .unwrap_or_else(|e| panic!("RemovePodSandbox on {name}: {e}"));
            let t3 = Instant::now();
            // One untimed round first (page cache, the base template, first use).
            if round > 0 {
                start[e].push(t1 - t0);
                second[e].push(t2 - t1b);
                removal[e].push(t3 - t2);
            }
        }
    }
    println!(
        "pods through containerd's CRI, {n} per engine, alternating (runtime {})",
        runtime().display()
    );
    for (what, v) in [
        ("pod start", &mut start),
        ("2nd container", &mut second),
        ("pod removal", &mut removal),
    ] {
        let m: Vec<f64> = v.iter_mut().map(|d| median_ms(d)).collect();
        println!(
            "{what:<14} pve-lxc {:7.1} ms   lxc {:7.1} ms   runc {:7.1} ms   \
             pve-lxc/lxc {:.2}x   lxc/runc {:.2}x",
            m[0],
            m[1],
            m[2],
            m[0] / m[1],
            m[1] / m[2]
        );
    }
}
