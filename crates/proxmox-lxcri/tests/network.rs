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
