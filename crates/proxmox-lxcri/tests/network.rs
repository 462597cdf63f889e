//! Configured networks on the lxc engine: real veth pairs on a bridge this
//! test makes, addresses from the IPAM, traffic only between the
//! containers and the bridge (the gateway) on this host.
mod support;

use serde_json::{json, Value};
use support::Env;

/// Removes the test's bridge whatever happens.
struct Bridge(String);

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .status();
    }
}

#[test]
fn containers_on_a_network_reach_each_other_and_the_gateway() {
    let mut env = Env::new();
    let n = std::process::id() % 200 + 20;
    let bridge = Bridge(format!("lxcrit{n}"));
    let cfg = env.tmp.path().join("net.toml");
    std::fs::write(
        &cfg,
        format!(
            "default_backend = \"lxc\"\ndefault_network = \"t\"\n[network.t]\n\
             bridge = \"{}\"\nsubnet = \"10.240.{n}.0/24\"\ngateway = \"10.240.{n}.1\"\n\
             mtu = 1400\ndns = [\"10.240.{n}.1\"]\nsearch = [\"t.test\"]\n",
            bridge.0
        ),
    )
    .unwrap();
    env.config = Some(cfg);
    let b = env.bundle("b", &["sleep", "1000"], |s| {
        let caps = json!(["CAP_NET_RAW", "CAP_KILL"]);
        s["process"]["capabilities"] = json!({
            "bounding": caps, "effective": caps, "permitted": caps
        });
    });
    for id in ["net-a", "net-b"] {
        env.must_create(id, &b);
        env.ok(&["start", id]);
    }
    // The bridge was made with the gateway as its address.
    let addr = std::process::Command::new("ip")
        .args(["-o", "addr", "show", "dev", &bridge.0])
        .output()
        .unwrap();
    let addr = String::from_utf8_lossy(&addr.stdout);
    assert!(addr.contains(&format!("10.240.{n}.1/24")), "{addr}");
    let leases: Vec<Value> =
        serde_json::from_str(&env.ok(&["network", "leases", "-f", "json", "t"])).unwrap();
    let ip_of = |id: &str| {
        leases
            .iter()
            .find(|l| l["owner"]["id"] == id)
            .map(|l| {
                l["addrs"][0]
                    .as_str()
                    .unwrap()
                    .split('/')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .unwrap()
    };
    let mac_of = |id: &str| {
        leases.iter().find(|l| l["owner"]["id"] == id).unwrap()["mac"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(ip_of("net-a"), format!("10.240.{n}.2"));
    assert_eq!(ip_of("net-b"), format!("10.240.{n}.3"));
    // Inside: the lease's MAC and MTU, the network's DNS.
    assert_eq!(
        env.ok(&["exec", "net-a", "cat", "/sys/class/net/eth0/address"])
            .trim(),
        mac_of("net-a")
    );
    assert_eq!(
        env.ok(&["exec", "net-a", "cat", "/sys/class/net/eth0/mtu"])
            .trim(),
        "1400"
    );
    let resolv = env.ok(&["exec", "net-b", "cat", "/etc/resolv.conf"]);
    assert_eq!(resolv, format!("search t.test\nnameserver 10.240.{n}.1\n"));
    // Each reaches the other and the gateway.
    let b_ip = ip_of("net-b");
    let a_ip = ip_of("net-a");
    let gw = format!("10.240.{n}.1");
    env.ok(&["exec", "net-a", "ping", "-c", "1", "-W", "5", &b_ip]);
    env.ok(&["exec", "net-b", "ping", "-c", "1", "-W", "5", &a_ip]);
    env.ok(&["exec", "net-a", "ping", "-c", "1", "-W", "5", &gw]);
    // An address nobody has does not answer (the pings above are real).
    let o = env.cmd(&[
        "exec",
        "net-a",
        "ping",
        "-c",
        "1",
        "-W",
        "1",
        &format!("10.240.{n}.99"),
    ]);
    assert!(!o.status.success());
    for id in ["net-a", "net-b"] {
        env.ok(&["delete", "--force", id]);
    }
    let leases: Vec<Value> =
        serde_json::from_str(&env.ok(&["network", "leases", "-f", "json", "t"])).unwrap();
    assert!(leases.is_empty(), "{leases:?}");
}

/// A network namespace made by the caller (CNI) stays the caller's: the
/// default network does not apply, and naming a network is refused.
#[test]
fn a_callers_network_namespace_is_left_alone() {
    let mut env = Env::new();
    let cfg = env.tmp.path().join("net.toml");
    std::fs::write(
        &cfg,
        "default_backend = \"lxc\"\ndefault_network = \"t\"\n[network.t]\n\
         bridge = \"lxcri-unused\"\nsubnet = \"10.241.0.0/24\"\n",
    )
    .unwrap();
    env.config = Some(cfg);
    let host_ns = |s: &mut Value| {
        let ns: Vec<Value> = s["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["type"] != "network")
            .cloned()
            .collect();
        s["linux"]["namespaces"] = json!(ns);
    };
    let b = env.bundle("b", &["true"], |s| host_ns(s));
    env.must_create("cns-a", &b);
    env.ok(&["delete", "--force", "cns-a"]);
    let named = env.bundle("n", &["true"], |s| {
        host_ns(s);
        s["annotations"] = json!({"io.proxmox-lxcri.network": "t"});
    });
    let o = env.create("cns-c", &named);
    assert!(!o.status.success());
    let log = env.log_of("cns-c");
    assert!(log.contains("needs a new network namespace"), "{log}");
    env.assert_gone("cns-c");
    assert!(!std::path::Path::new("/sys/class/net/lxcri-unused").exists());
}

/// Port security (nftables' bridge family): a container that takes another
/// address or MAC cannot send; its rules go with it, and gc removes those
/// of a container whose state vanished.
#[test]
fn a_container_cannot_send_from_another_address_or_mac() {
    let mut env = Env::new();
    let n = std::process::id() % 200 + 20;
    let bridge = Bridge(format!("lxcrips{n}"));
    let cfg = env.tmp.path().join("net.toml");
    std::fs::write(
        &cfg,
        format!(
            "default_backend = \"lxc\"\n[network.ps]\nbridge = \"{}\"\n\
             subnet = \"10.243.{n}.0/24\"\ngateway = \"10.243.{n}.1\"\n",
            bridge.0
        ),
    )
    .unwrap();
    env.config = Some(cfg);
    let b = env.bundle("b", &["sleep", "1000"], |s| {
        let caps = json!(["CAP_NET_RAW", "CAP_NET_ADMIN", "CAP_KILL"]);
        s["process"]["capabilities"] = json!({
            "bounding": caps, "effective": caps, "permitted": caps
        });
        s["annotations"] = json!({"io.proxmox-lxcri.network": "ps"});
    });
    for id in ["ps-a", "ps-b"] {
        env.must_create(id, &b);
        env.ok(&["start", id]);
    }
    let (a, peer, gw) = (
        format!("10.243.{n}.2"),
        format!("10.243.{n}.3"),
        format!("10.243.{n}.1"),
    );
    let in_a = |args: &[&str]| {
        let mut v = vec!["exec", "ps-a"];
        v.extend_from_slice(args);
        env.cmd(&v).status.success()
    };
    let ping = |to: &str| in_a(&["ping", "-c", "1", "-W", "2", to]);
    assert!(ping(&peer) && ping(&gw), "the lease's address works");
    // Another address: dropped (IPv4 and ARP).
    assert!(in_a(&[
        "ip",
        "addr",
        "del",
        &format!("{a}/24"),
        "dev",
        "eth0"
    ]));
    assert!(in_a(&[
        "ip",
        "addr",
        "add",
        &format!("10.243.{n}.77/24"),
        "dev",
        "eth0"
    ]));
    assert!(
        !ping(&peer) && !ping(&gw),
        "a forged address must not get through"
    );
    assert!(in_a(&[
        "ip",
        "addr",
        "del",
        &format!("10.243.{n}.77/24"),
        "dev",
        "eth0"
    ]));
    assert!(in_a(&[
        "ip",
        "addr",
        "add",
        &format!("{a}/24"),
        "dev",
        "eth0"
    ]));
    assert!(ping(&peer), "back on its lease");
    // Another MAC: dropped.
    let mac = env.ok(&["exec", "ps-a", "cat", "/sys/class/net/eth0/address"]);
    assert!(in_a(&[
        "ip",
        "link",
        "set",
        "eth0",
        "address",
        "02:00:00:00:ee:01"
    ]));
    assert!(
        !ping(&peer) && !ping(&gw),
        "a forged MAC must not get through"
    );
    assert!(in_a(&["ip", "link", "set", "eth0", "address", mac.trim()]));
    assert!(ping(&peer), "back on its MAC");

    let comments = || -> Vec<String> {
        let o = std::process::Command::new("nft")
            .args([
                "-j",
                "list",
                "chain",
                "bridge",
                "proxmox_lxcri",
                "port_security",
            ])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        v["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o["rule"]["comment"].as_str().map(String::from))
            .collect()
    };
    let of = |id: &str| {
        comments()
            .iter()
            .filter(|c| c.ends_with(&format!(":{id}")))
            .count()
    };
    assert_eq!(of("ps-a"), 5);
    env.ok(&["delete", "--force", "ps-a"]);
    assert_eq!(of("ps-a"), 0, "delete removes its rules");
    // A container whose state vanished: gc removes its rules and lease.
    env.ok(&["kill", "ps-b", "KILL"]);
    env.wait_status("ps-b", "stopped");
    std::fs::remove_dir_all(env.root.join("containers/ps-b")).unwrap();
    let out = env.ok(&["gc", "--dry-run"]);
    assert!(out.contains("rules") && out.contains("ps-b"), "{out}");
    env.ok(&["gc"]);
    assert_eq!(of("ps-b"), 0, "gc removes the rules");
}

/// Puts the host's IPv4 forwarding back as it was.
struct Forwarding(String);

impl Drop for Forwarding {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", &self.0);
    }
}

/// `isolated = true`: the host routes between two ordinary networks, but
/// not between an isolated network and any other (nftables' inet forward
/// hook); inside the isolated network and to its gateway all works.
#[test]
fn an_isolated_network_reaches_no_other_network() {
    let mut env = Env::new();
    let n = std::process::id() % 200 + 20;
    let _bridges = [
        Bridge(format!("lxcrio1{n}")),
        Bridge(format!("lxcrio2{n}")),
        Bridge(format!("lxcrii{n}")),
    ];
    let cfg = env.tmp.path().join("net.toml");
    let mut text = String::from("default_backend = \"lxc\"\n");
    for (name, br, third, iso) in [
        ("open1", "lxcrio1", 246, false),
        ("open2", "lxcrio2", 247, false),
        ("iso", "lxcrii", 248, true),
    ] {
        text.push_str(&format!(
            "[network.{name}]\nbridge = \"{br}{n}\"\nsubnet = \"10.{third}.{n}.0/24\"\n\
             gateway = \"10.{third}.{n}.1\"\nisolated = {iso}\nport_security = false\n"
        ));
    }
    std::fs::write(&cfg, text).unwrap();
    env.config = Some(cfg);
    let fwd = Forwarding(std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap());
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").unwrap();
    for (id, net) in [("iso-1", "open1"), ("iso-2", "open2"), ("iso-3", "iso")] {
        let b = env.bundle(id, &["sleep", "1000"], |s| {
            let caps = json!(["CAP_NET_RAW", "CAP_KILL"]);
            s["process"]["capabilities"] = json!({
                "bounding": caps, "effective": caps, "permitted": caps
            });
            s["annotations"] = json!({ "io.proxmox-lxcri.network": net });
        });
        env.must_create(id, &b);
        env.ok(&["start", id]);
    }
    let ping = |from: &str, to: String| {
        env.cmd(&["exec", from, "ping", "-c", "1", "-W", "2", &to])
            .status
            .success()
    };
    // Routed between ordinary networks: the check below is not vacuous.
    assert!(ping("iso-1", format!("10.247.{n}.2")));
    assert!(ping("iso-3", format!("10.248.{n}.1")));
    assert!(
        !ping("iso-1", format!("10.248.{n}.2")),
        "into the isolated network"
    );
    assert!(
        !ping("iso-3", format!("10.246.{n}.2")),
        "out of the isolated network"
    );
    for id in ["iso-1", "iso-2", "iso-3"] {
        env.ok(&["delete", "--force", id]);
    }
    // The rules name this test's bridges: not left on the host.
    let _ = std::process::Command::new("nft")
        .args(["flush", "chain", "inet", "proxmox_lxcri", "isolation"])
        .status();
    drop(fwd);
}

/// 50 parallel creates on one network: 50 distinct addresses, each the one
/// its container's NIC carries; all released by the deletes.
#[test]
fn fifty_parallel_creates_never_share_an_address() {
    let mut env = Env::new();
    let n = std::process::id() % 200 + 20;
    let _bridge = Bridge(format!("lxcrip{n}"));
    let cfg = env.tmp.path().join("net.toml");
    std::fs::write(
        &cfg,
        format!(
            "default_backend = \"lxc\"\ndefault_network = \"par\"\n[network.par]\n\
             bridge = \"lxcrip{n}\"\nsubnet = \"10.239.{n}.0/24\"\ngateway = \"10.239.{n}.1\"\n\
             port_security = false\n"
        ),
    )
    .unwrap();
    env.config = Some(cfg);
    let b = env.bundle("b", &["sleep", "1000"], |_| {});
    let ids: Vec<String> = (0..50).map(|i| format!("par-{n}-{i}")).collect();
    std::thread::scope(|s| {
        for id in &ids {
            let (env, b) = (&env, &b);
            s.spawn(move || env.must_create(id, b));
        }
    });
    let leases: Vec<Value> =
        serde_json::from_str(&env.ok(&["network", "leases", "-f", "json", "par"])).unwrap();
    assert_eq!(leases.len(), 50);
    let mut addrs: Vec<&str> = leases
        .iter()
        .map(|l| l["addrs"][0].as_str().unwrap())
        .collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 50, "an address handed out twice");
    // The NIC inside carries the lease (checked on a few: each exec costs).
    for id in ids.iter().step_by(10) {
        env.ok(&["start", id]);
        let lease = leases.iter().find(|l| l["owner"]["id"] == *id).unwrap();
        let shown = env.ok(&["exec", id, "ip", "-o", "-4", "addr", "show", "dev", "eth0"]);
        assert!(
            shown.contains(lease["addrs"][0].as_str().unwrap()),
            "{id}: {shown} vs {lease}"
        );
    }
    std::thread::scope(|s| {
        for id in &ids {
            let env = &env;
            s.spawn(move || env.ok(&["delete", "--force", id]));
        }
    });
    let leases: Vec<Value> =
        serde_json::from_str(&env.ok(&["network", "leases", "-f", "json", "par"])).unwrap();
    assert!(leases.is_empty(), "{leases:?}");
}
