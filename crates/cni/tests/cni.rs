//! The plugin called as a CNI runtime calls it (env + stdin JSON), on real
//! network namespaces and a bridge this test makes; traffic only between
//! this host's bridge and the namespaces.
use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_proxmox-lxcri-cni");

/// Test resources removed whatever happens.
struct Host {
    netns: Vec<String>,
    bridge: String,
}

impl Drop for Host {
    fn drop(&mut self) {
        for n in &self.netns {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

fn call(cmd: &str, id: &str, netns: &str, conf: &Value) -> (i32, Value) {
    let mut c = Command::new(BIN)
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let o = c.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let v = serde_json::from_str(&out).unwrap_or(Value::Null);
    (o.status.code().unwrap_or(-1), v)
}

fn sh(args: &[&str]) -> (bool, String) {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[test]
fn add_check_del_as_a_cni_runtime_calls_them() {
    assert_eq!(
        nix_uid(),
        0,
        "the CNI tests make namespaces and bridges: run as root"
    );
    let n = std::process::id() % 200 + 20;
    // Container ids unique to this run (the host ends are named after them).
    let (ca, cb) = (format!("ctr-a-{n}"), format!("ctr-b-{n}"));
    let tmp = tempfile::tempdir().unwrap();
    let host = Host {
        netns: vec![format!("lxcri-cni-{n}-a"), format!("lxcri-cni-{n}-b")],
        bridge: format!("lxcricni{n}"),
    };
    for ns in &host.netns {
        assert!(sh(&["ip", "netns", "add", ns]).0);
    }
    let cfg = tmp.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "ipam_dir = \"{}\"\n[network.blue]\nbridge = \"{}\"\nsubnet = \"10.242.{n}.0/24\"\n\
             gateway = \"10.242.{n}.1\"\ndns = [\"10.242.{n}.1\"]\nsearch = [\"cni.test\"]\nmtu = 1400\n",
            tmp.path().join("ipam").display(),
            host.bridge
        ),
    )
    .unwrap();
    let conf = json!({"cniVersion": "1.0.0", "name": "blue", "type": "proxmox-lxcri-cni",
                      "configFile": cfg.to_str().unwrap()});
    let ns_a = format!("/run/netns/{}", host.netns[0]);
    let ns_b = format!("/run/netns/{}", host.netns[1]);

    let (code, v) = call("VERSION", "", "", &json!({"cniVersion": "1.0.0"}));
    assert_eq!(code, 0, "{v}");
    assert!(
        v["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("1.0.0")),
        "{v}"
    );

    let (code, a) = call("ADD", &ca, &ns_a, &conf);
    assert_eq!(code, 0, "{a}");
    assert_eq!(a["cniVersion"], "1.0.0");
    assert_eq!(a["ips"][0]["address"], format!("10.242.{n}.2/24"), "{a}");
    assert_eq!(a["ips"][0]["gateway"], format!("10.242.{n}.1"));
    assert_eq!(a["interfaces"][1]["name"], "eth0");
    assert_eq!(a["interfaces"][1]["sandbox"], ns_a.as_str());
    assert_eq!(a["dns"]["nameservers"][0], format!("10.242.{n}.1"));
    assert_eq!(a["routes"][0]["dst"], "0.0.0.0/0");
    let (code, b) = call("ADD", &cb, &ns_b, &conf);
    assert_eq!(code, 0, "{b}");
    assert_eq!(b["ips"][0]["address"], format!("10.242.{n}.3/24"), "{b}");
    // A retried ADD gets the same lease.
    let (code, again) = call("ADD", &ca, &ns_a, &conf);
    assert_eq!(code, 0, "{again}");
    assert_eq!(again["ips"], a["ips"]);

    // Inside: address, MTU, MAC; traffic to the gateway and between the two.
    let (_, shown) = sh(&[
        "ip",
        "netns",
        "exec",
        &host.netns[0],
        "ip",
        "-o",
        "addr",
        "show",
        "dev",
        "eth0",
    ]);
    assert!(shown.contains(&format!("10.242.{n}.2/24")), "{shown}");
    let (_, mtu) = sh(&[
        "ip",
        "netns",
        "exec",
        &host.netns[0],
        "cat",
        "/sys/class/net/eth0/mtu",
    ]);
    assert_eq!(mtu.trim(), "1400");
    let ping = |ns: &str, to: &str| {
        sh(&[
            "ip", "netns", "exec", ns, "busybox", "ping", "-c", "1", "-W", "5", to,
        ])
        .0
    };
    assert!(ping(&host.netns[0], &format!("10.242.{n}.1")));
    assert!(ping(&host.netns[0], &format!("10.242.{n}.3")));
    assert!(ping(&host.netns[1], &format!("10.242.{n}.2")));
    assert!(
        !sh(&[
            "ip",
            "netns",
            "exec",
            &host.netns[0],
            "busybox",
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            &format!("10.242.{n}.99")
        ])
        .0
    );

    let (code, v) = call("CHECK", &ca, &ns_a, &conf);
    assert_eq!(code, 0, "{v}");
    let (code, v) = call("CHECK", "ctr-zz", &ns_a, &conf);
    assert_ne!(code, 0);
    assert_eq!(v["code"], 102, "{v}");

    // Errors as CNI error objects, and nothing leased by them.
    let (code, v) = call(
        "ADD",
        "ctr-c",
        &ns_b,
        &json!({"cniVersion": "1.0.0", "name": "red",
        "type": "proxmox-lxcri-cni", "configFile": cfg.to_str().unwrap()}),
    );
    assert_eq!(code, 4, "{v}");
    assert_eq!(v["code"], 4);
    assert!(
        v["details"]
            .as_str()
            .unwrap()
            .contains("\"red\" is not configured"),
        "{v}"
    );
    let (code, v) = call("ADD", "ctr-d", "/run/netns/does-not-exist", &conf);
    assert_eq!(code, 7, "{v}");
    let leases: Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("ipam/blue.json")).unwrap()).unwrap();
    assert_eq!(leases["leases"].as_array().unwrap().len(), 2, "{leases}");

    // DEL: the pair and the lease go; a second DEL is fine too.
    for id in [&ca, &ca, &cb] {
        let ns = if *id == cb { &ns_b } else { &ns_a };
        let (code, v) = call("DEL", id, ns, &conf);
        assert_eq!(code, 0, "{v}");
    }
    let (_, links) = sh(&["ip", "-o", "link", "show", "master", &host.bridge]);
    assert_eq!(links.trim(), "", "host ends left: {links}");
    let leases: Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("ipam/blue.json")).unwrap()).unwrap();
    assert!(leases["leases"].as_array().unwrap().is_empty(), "{leases}");
}

fn nix_uid() -> u32 {
    let (_, id) = sh(&["id", "-u"]);
    id.trim().parse().unwrap()
}
