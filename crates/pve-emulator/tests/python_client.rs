//! The emulator driven by a real, widely used Proxmox API client: Python's
//! `proxmoxer` (scripts/install-deps.sh installs it) runs
//! `tests/proxmoxer_client.py` against it over HTTPS.

mod common;
use common::*;

use serde_json::Value;

#[test]
fn proxmoxer_lists_and_drives_the_emulator() {
    testkit::require_root_and_lxc("the proxmoxer test (a real CT)");
    let have = std::process::Command::new("python3")
        .args(["-c", "import proxmoxer"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        have,
        "python3 with proxmoxer is needed: `python3 -m pip install proxmoxer==2.3.0` (scripts/install-deps.sh does)"
    );
    let d = tempfile::tempdir().unwrap();
    let emu = builder(d.path())
        .own_bridge()
        .args(&["--stats-interval-ms", "200"])
        .start();
    let tpl = busybox_template(d.path(), "bb.tar.gz");
    let template = install_template(d.path(), &tpl);
    let id = vmid();
    emu.task_ok(
        "POST",
        "/nodes/pve/lxc",
        &[
            "-d",
            &format!("vmid={id}"),
            "-d",
            &format!("ostemplate={template}"),
            "--data-urlencode",
            "entrypoint=/bin/sleep 1000",
            "--data-urlencode",
            &format!("net0=name=eth0,bridge={}", emu.bridge().unwrap()),
            "-d",
            "memory=96",
        ],
    );
    emu.task_ok("POST", &format!("/nodes/pve/lxc/{id}/status/start"), &[]);
    // Two samples, so the CT's rrddata has rates.
    std::thread::sleep(std::time::Duration::from_millis(700));

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/proxmoxer_client.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .env("EMU_HOST", emu.addr())
        .env("EMU_CA", emu.ca_file())
        .env("EMU_TOKEN", TOKEN)
        .env("EMU_PASSWORD", ROOT_PASSWORD)
        .env("EMU_VMID", id.to_string())
        .env("EMU_VM", vmid().to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "proxmoxer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();

    assert_eq!(v["version"]["release"], "9.1");
    assert_eq!(v["nodes"][0]["node"], "pve");
    assert_eq!(v["nodes"][0]["status"], "online");
    assert_eq!(v["cluster_status"][0]["type"], "node");
    assert_eq!(v["cluster_status"][0]["name"], "pve");
    let mine = |list: &Value| -> Value {
        list.as_array()
            .unwrap()
            .iter()
            .find(|c| c["vmid"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("CT {id} not in {list}"))
    };
    assert_eq!(mine(&v["resources_vm"])["type"], "lxc");
    assert!(v["resources_storage"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["type"] == "storage"));
    assert!(v["node_status"]["memory"]["total"].as_u64().unwrap() > 0);
    assert_eq!(mine(&v["cts"])["status"], "running");
    assert_eq!(v["current"]["maxmem"], 96u64 << 20);
    let pending = v["pending"].as_array().unwrap();
    assert!(pending
        .iter()
        .any(|p| p["key"] == "memory" && p["value"] == "96"));
    let rows = v["rrddata"].as_array().unwrap();
    assert_eq!(rows.len(), 70);
    // The newest row with a sample (a minute may have just begun).
    let newest = rows.iter().rev().find(|r| r.get("mem").is_some()).unwrap();
    assert!(newest["mem"].as_f64().unwrap() > 0.0, "{newest}");
    assert_eq!(v["storage_status"]["type"], "dir");
    assert!(v["storage_status"]["avail"].as_u64().unwrap() > 0);
    assert_eq!(v["storage_content"][0]["volid"], template.as_str());
    assert_eq!(v["tasks"].as_array().unwrap().len(), 1, "{}", v["tasks"]);
    assert_eq!(v["tasks"][0]["type"], "vzstart");
    assert_eq!(v["description"], "set by proxmoxer");
    assert_eq!(v["stop"]["exitstatus"], "OK");
    assert_eq!(v["after_stop"], "stopped");
    // A VM's firewall through proxmoxer: what port security sets.
    assert_eq!(v["vm_create"]["exitstatus"], "OK", "{}", v["vm_create"]);
    let o = &v["vm_fw_options"];
    assert_eq!(
        (&o["enable"], &o["ipfilter"], &o["macfilter"]),
        (&1.into(), &1.into(), &1.into()),
        "{o}"
    );
    assert_eq!(v["vm_ipset"][0]["cidr"], "10.9.9.7", "{}", v["vm_ipset"]);
    assert_eq!(v["vm_destroy"]["exitstatus"], "OK", "{}", v["vm_destroy"]);
    assert_eq!(v["missing"]["status"], 500);
    assert!(
        v["missing"]["content"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{}",
        v["missing"]
    );
    assert_eq!(v["bad_param"]["status"], 400);
    assert!(
        v["bad_param"]["errors"].to_string().contains("timeframe"),
        "{}",
        v["bad_param"]
    );
}
