//! The pve-vm engine against pve-emulator: each container a real QEMU VM
//! made through the API, booting Debian's cloud kernel with our initramfs,
//! our binary as the guest's init. TCG only: nested KVM hangs on the
//! machines these tests run on (the emulator uses KVM only with
//! PVE_EMULATOR_QEMU_KVM=1), so each boot takes a few seconds.
mod support;

use std::path::Path;
use std::time::Instant;

use serde_json::{json, Value};
use support::emulator::RuntimeConfig;
use support::Env;

/// An env whose runtime makes VMs: the emulator with a root password (a
/// VM's `args` are root@pam's only, as on a node) and pve-vm as default.
fn vm_env() -> Env {
    testkit::require_root("the pve-vm tests (QEMU guests, bridges)");
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
    let tmp = tempfile::Builder::new()
        .prefix("lxcri-vm-test")
        .tempdir()
        .unwrap();
    let emu = support::emulator::builder(tmp.path())
        .root_password("vm-secret")
        .start();
    let cfg = tmp.path().join("config.toml");
    emu.write_config_root_pam(&cfg);
    let text = std::fs::read_to_string(&cfg)
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
    std::fs::write(&cfg, text).unwrap();
    let root = tmp.path().join("root");
    Env {
        pve: Some(emu),
        config: Some(cfg),
        tmp,
        root,
    }
}

fn vm_ids(env: &Env) -> Vec<u64> {
    let v = env.emu().get("/nodes/pve/qemu")["data"].clone();
    let mut ids: Vec<u64> = v
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["vmid"].as_u64())
        .collect();
    ids.sort();
    ids
}

/// No VM, no disk, no QEMU left on the node.
fn assert_node_empty(env: &Env) {
    assert_eq!(vm_ids(env), Vec::<u64>::new(), "VMs left on the node");
    assert_eq!(
        env.emu().volumes(),
        Vec::<std::path::PathBuf>::new(),
        "disks left"
    );
    let run = env.emu().data_dir().join("run").join("qemu-server");
    for e in std::fs::read_dir(run).into_iter().flatten().flatten() {
        if let Ok(pid) = std::fs::read_to_string(e.path()).map(|s| s.trim().to_string()) {
            if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
                assert!(!cmd.starts_with(b"qemu-system"), "QEMU {pid} left running");
            }
        }
    }
}

fn run(env: &Env, id: &str, bundle: &Path) -> std::process::Output {
    env.base()
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn run_prints_the_output_from_the_guest_and_returns_its_exit_code() {
    let env = vm_env();
    let b = env.bundle(
        "b",
        &["sh", "-c", "echo hi-$(hostname); echo err >&2; exit 7"],
        |_| {},
    );
    let t = Instant::now();
    let o = run(&env, "vm1", &b);
    eprintln!("run under TCG took {:?}", t.elapsed());
    assert_eq!(
        o.status.code(),
        Some(7),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hi-lxcri-test\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    assert_node_empty(&env);
    env.assert_gone_state("vm1");
}
