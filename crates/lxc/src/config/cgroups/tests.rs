//! The cgroups translator, through [`crate::config::translate`] on v1,
//! v2 and hybrid layouts.
use proxmox_lxcri_cgroups::CgroupLayout;
use serde_json::{json, Value};

use crate::config::tests::{assert_field, base, err, err_with, ok, ok_with, HYBRID_V1, V2_ALL};

#[test]
fn cgroups_path_forms() {
    let cases = [
        ("/kubepods/pod1/ctr", "kubepods/pod1/ctr"),
        ("rel/path", "rel/path"),
        ("//a//./b/", "a/b"),
        ("system.slice:cri-containerd:abc", "system.slice/cri-containerd-abc.scope"),
        ("kubepods-besteffort-pod12.slice:cri-containerd:abc", "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/cri-containerd-abc.scope"),
        (":docker:abc", "docker-abc.scope"),
    ];
    for (input, want) in cases {
        let mut v = base();
        v["linux"]["cgroupsPath"] = json!(input);
        let t = ok(v);
        assert_eq!(t.lxc.get("lxc.cgroup.dir.container"), vec![want], "{input}");
        assert_eq!(
            t.lxc.get("lxc.cgroup.dir.monitor"),
            vec![format!("{want}.monitor").as_str()]
        );
    }
    for bad in [
        "/a/../b",
        "..",
        "/a/..",
        "a b",
        "a\nlxc.init.cmd = /x",
        "/",
        "x.slice:p:n/m",
        "bad:p:n",
    ] {
        let mut v = base();
        v["linux"]["cgroupsPath"] = json!(bad);
        assert_field(&err(v), "linux.cgroupsPath");
    }
}

fn with_resources(r: Value) -> Value {
    let mut v = base();
    v["linux"]["resources"] = r;
    v
}

#[test]
fn memory_v1_and_v2() {
    let r = json!({"memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728, "swappiness": 10, "disableOOMKiller": true}});
    let t = ok_with(with_resources(r.clone()), CgroupLayout::v1(&HYBRID_V1));
    let l = &t.lxc;
    assert_eq!(l.get("lxc.cgroup.memory.limit_in_bytes"), vec!["67108864"]);
    assert_eq!(
        l.get("lxc.cgroup.memory.memsw.limit_in_bytes"),
        vec!["134217728"]
    );
    assert_eq!(
        l.get("lxc.cgroup.memory.soft_limit_in_bytes"),
        vec!["33554432"]
    );
    assert_eq!(l.get("lxc.cgroup.memory.swappiness"), vec!["10"]);
    assert_eq!(l.get("lxc.cgroup.memory.oom_control"), vec!["1"]);
    assert!(l.render().find("memory.limit_in_bytes").unwrap() < l.render().find("memsw").unwrap());

    // v2: swap is memory+swap minus memory; swappiness/OOM killer are errors.
    let e = err_with(with_resources(r), CgroupLayout::v2(&V2_ALL));
    assert_field(&e, "linux.resources.memory.swappiness");
    let t = ok_with(
        with_resources(json!({"memory": {"limit": 100, "swap": 300, "reservation": 50}})),
        CgroupLayout::v2(&V2_ALL),
    );
    assert_eq!(t.lxc.get("lxc.cgroup2.memory.max"), vec!["100"]);
    assert_eq!(t.lxc.get("lxc.cgroup2.memory.swap.max"), vec!["200"]);
    assert_eq!(t.lxc.get("lxc.cgroup2.memory.low"), vec!["50"]);
    let t = ok_with(
        with_resources(json!({"memory": {"limit": -1}})),
        CgroupLayout::v2(&V2_ALL),
    );
    assert_eq!(t.lxc.get("lxc.cgroup2.memory.max"), vec!["max"]);
    assert_eq!(t.lxc.get("lxc.cgroup2.memory.swap.max"), vec!["max"]);
    assert_field(
        &err_with(
            with_resources(json!({"memory": {"swap": 300}})),
            CgroupLayout::v2(&V2_ALL),
        ),
        "linux.resources.memory.swap",
    );
    assert_field(
        &err(with_resources(
            json!({"memory": {"limit": 300, "swap": 100}}),
        )),
        "linux.resources.memory.swap",
    );
    assert_field(
        &err(with_resources(json!({"memory": {"kernel": 100}}))),
        "linux.resources.memory.kernel",
    );
    assert_field(
        &err(with_resources(json!({"memory": {"kernelTCP": 100}}))),
        "linux.resources.memory.kernelTCP",
    );
}

#[test]
fn cpu_v1_and_v2() {
    let r = json!({"cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0", "realtimeRuntime": 1000, "realtimePeriod": 10000}});
    let t = ok(with_resources(r));
    let l = &t.lxc;
    assert_eq!(l.get("lxc.cgroup.cpu.shares"), vec!["1024"]);
    assert_eq!(l.get("lxc.cgroup.cpu.cfs_period_us"), vec!["100000"]);
    assert_eq!(l.get("lxc.cgroup.cpu.cfs_quota_us"), vec!["50000"]);
    assert_eq!(l.get("lxc.cgroup.cpu.rt_period_us"), vec!["10000"]);
    assert_eq!(l.get("lxc.cgroup.cpu.rt_runtime_us"), vec!["1000"]);
    assert_eq!(l.get("lxc.cgroup.cpuset.cpus"), vec!["0-1"]);
    assert_eq!(l.get("lxc.cgroup.cpuset.mems"), vec!["0"]);

    let t = ok_with(
        with_resources(
            json!({"cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0"}}),
        ),
        CgroupLayout::v2(&V2_ALL),
    );
    // 1 + ((1024 - 2) * 9999) / 262142 = 39
    assert_eq!(t.lxc.get("lxc.cgroup2.cpu.weight"), vec!["39"]);
    assert_eq!(t.lxc.get("lxc.cgroup2.cpu.max"), vec!["50000 100000"]);
    assert_eq!(t.lxc.get("lxc.cgroup2.cpuset.cpus"), vec!["0"]);
    let t = ok_with(
        with_resources(json!({"cpu": {"quota": -1}})),
        CgroupLayout::v2(&V2_ALL),
    );
    assert_eq!(t.lxc.get("lxc.cgroup2.cpu.max"), vec!["max 100000"]);
    assert_field(
        &err_with(
            with_resources(json!({"cpu": {"realtimeRuntime": 5}})),
            CgroupLayout::v2(&V2_ALL),
        ),
        "linux.resources.cpu.realtimeRuntime",
    );
    assert_field(
        &err(with_resources(json!({"cpu": {"cpus": "0\nlxc.x = 1"}}))),
        "linux.resources.cpu.cpus",
    );
    assert_field(
        &err(with_resources(json!({"cpu": {"period": 5}}))),
        "linux.resources.cpu.period",
    );
}

#[test]
fn pids_blkio_hugetlb() {
    let t = ok(with_resources(json!({
        "pids": {"limit": 100},
        "blockIO": {"weight": 300, "weightDevice": [{"major": 8, "minor": 0, "weight": 500}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}]}
    })));
    let l = &t.lxc;
    assert_eq!(l.get("lxc.cgroup.pids.max"), vec!["100"]);
    assert_eq!(l.get("lxc.cgroup.blkio.bfq.weight"), vec!["300"]);
    assert_eq!(l.get("lxc.cgroup.blkio.bfq.weight_device"), vec!["8:0 500"]);
    assert_eq!(
        l.get("lxc.cgroup.blkio.throttle.read_bps_device"),
        vec!["8:0 1048576"]
    );
    assert_eq!(
        l.get("lxc.cgroup.blkio.throttle.write_iops_device"),
        vec!["8:0 100"]
    );

    let t = ok_with(
        with_resources(json!({
            "pids": {"limit": -1},
            "blockIO": {"weight": 300, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 10}]},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]
        })),
        CgroupLayout::v2(&V2_ALL),
    );
    assert_eq!(t.lxc.get("lxc.cgroup2.pids.max"), vec!["max"]);
    assert_eq!(t.lxc.get("lxc.cgroup2.io.bfq.weight"), vec!["300"]);
    assert_eq!(t.lxc.get("lxc.cgroup2.io.max"), vec!["8:0 rbps=10"]);
    assert_eq!(t.lxc.get("lxc.cgroup2.hugetlb.2MB.max"), vec!["4194304"]);

    let t = ok_with(
        with_resources(json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]})),
        CgroupLayout::v1(&["hugetlb", "devices"]),
    );
    assert_eq!(
        t.lxc.get("lxc.cgroup.hugetlb.2MB.limit_in_bytes"),
        vec!["4194304"]
    );

    // Hybrid: hugetlb is only on v2, where LXC ignores limits -> error.
    let e = err(with_resources(
        json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}),
    ));
    assert_field(&e, "linux.resources.hugepageLimits[0]");
    assert!(e.to_string().contains("hybrid"), "{e}");
    assert_field(
        &err(with_resources(
            json!({"hugepageLimits": [{"pageSize": "2MB\nx", "limit": 1}]}),
        )),
        "linux.resources.hugepageLimits[0].pageSize",
    );
    assert_field(
        &err(with_resources(json!({"blockIO": {"leafWeight": 10}}))),
        "linux.resources.blockIO.leafWeight",
    );
    assert_field(
        &err(with_resources(json!({"blockIO": {"weight": 5}}))),
        "linux.resources.blockIO.weight",
    );
}

#[test]
fn missing_controller_is_an_error() {
    let layout = CgroupLayout::v1(&["memory"]);
    let e = err_with(
        with_resources(json!({"pids": {"limit": 10}})),
        layout.clone(),
    );
    assert_field(&e, "linux.resources.pids.limit");
    let e = err_with(
        with_resources(json!({"network": {"classID": 5}})),
        layout.clone(),
    );
    assert_field(&e, "linux.resources.network.classID");
    let t = ok_with(
        with_resources(
            json!({"network": {"classID": 5, "priorities": [{"name": "eth0", "priority": 3}]}}),
        ),
        CgroupLayout::v1(&["net_cls", "net_prio", "devices"]),
    );
    assert_eq!(t.lxc.get("lxc.cgroup.net_cls.classid"), vec!["5"]);
    assert_eq!(t.lxc.get("lxc.cgroup.net_prio.ifpriomap"), vec!["eth0 3"]);
    // Devices rules but no devices controller.
    let e = err_with(base(), layout);
    assert_field(&e, "linux.resources.devices");
}

#[test]
fn devices_v1_and_v2() {
    let r = json!({"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rw"},
        {"allow": true, "type": "b", "major": 8, "access": "r"},
        {"allow": false, "type": "c", "major": 1, "minor": 3}
    ]});
    let t = ok(with_resources(r.clone()));
    let entries: Vec<(String, String)> = t
        .lxc
        .entries()
        .iter()
        .filter(|(k, _)| k.starts_with("lxc.cgroup.devices"))
        .cloned()
        .collect();
    let want_head = [
        ("lxc.cgroup.devices.deny", "a"),
        ("lxc.cgroup.devices.deny", "a *:* rwm"),
        ("lxc.cgroup.devices.allow", "c 10:229 rw"),
        ("lxc.cgroup.devices.allow", "b 8:* r"),
        ("lxc.cgroup.devices.deny", "c 1:3 rwm"),
        ("lxc.cgroup.devices.allow", "c *:* m"),
    ];
    for (i, (k, v)) in want_head.iter().enumerate() {
        assert_eq!(
            (entries[i].0.as_str(), entries[i].1.as_str()),
            (*k, *v),
            "entry {i}"
        );
    }
    assert!(entries.iter().any(|(_, v)| v == "c 136:* rwm"));

    let t = ok_with(with_resources(r), CgroupLayout::v2(&V2_ALL));
    assert_eq!(t.lxc.get("lxc.cgroup2.devices.deny")[0], "a");
    assert!(t
        .lxc
        .get("lxc.cgroup2.devices.allow")
        .contains(&"c 10:229 rw"));
    assert!(t.lxc.get("lxc.cgroup.devices.deny").is_empty());

    // runc's meaning: any order, other letters ignored ("rwa" is "rw").
    let t = ok_with(
        with_resources(json!({"devices": [
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwa"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "mwr"},
            {"allow": false, "type": "c", "major": 1, "minor": 7, "access": "wx"}]})),
        CgroupLayout::v2(&V2_ALL),
    );
    let allow = t.lxc.get("lxc.cgroup2.devices.allow");
    assert!(allow.contains(&"c 1:3 rw"), "{allow:?}");
    assert!(allow.contains(&"c 1:5 rwm"), "{allow:?}");
    assert!(t.lxc.get("lxc.cgroup2.devices.deny").contains(&"c 1:7 w"));
    for bad in ["a", "", "xyz"] {
        assert_field(
            &err(with_resources(
                json!({"devices": [{"allow": true, "type": "c", "major": 1, "minor": 3, "access": bad}]}),
            )),
            "linux.resources.devices[0].access",
        );
    }
    assert_field(
        &err(with_resources(
            json!({"devices": [{"allow": true, "type": "c", "access": "r\nlxc.x = y"}]}),
        )),
        "linux.resources.devices[0].access",
    );
}

#[test]
fn unified_only_on_pure_v2() {
    let r = json!({"unified": {"memory.high": "1000000", "io.latency": "8:0 target=10"}});
    let t = ok_with(with_resources(r.clone()), CgroupLayout::v2(&V2_ALL));
    assert_eq!(t.lxc.get("lxc.cgroup2.memory.high"), vec!["1000000"]);
    assert_eq!(t.lxc.get("lxc.cgroup2.io.latency"), vec!["8:0 target=10"]);
    assert!(err(with_resources(r))
        .field()
        .starts_with("linux.resources.unified."));
    for key in [
        "../x",
        "memory/high",
        "memory.high\n",
        "cgroup.procs",
        "nodot",
        "Memory.high",
    ] {
        let e = err_with(
            with_resources(json!({"unified": {key: "1"}})),
            CgroupLayout::v2(&V2_ALL),
        );
        assert!(
            e.field().starts_with("linux.resources.unified."),
            "{key}: {e}"
        );
    }
    let e = err_with(
        with_resources(json!({"unified": {"memory.high": "1\nlxc.init.cmd = /evil"}})),
        CgroupLayout::v2(&V2_ALL),
    );
    assert!(e.to_string().contains("inject"), "{e}");
}
