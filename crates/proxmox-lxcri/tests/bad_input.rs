//! Bad input gets a clear error and leaves nothing behind.
mod support;

use serde_json::json;
use support::Env;

fn create_fails(env: &Env, id: &str, bundle: &std::path::Path, want: &str) {
    let o = env.create(id, bundle);
    assert!(!o.status.success(), "{id}: create should fail");
    let log = env.log_of(id);
    assert!(log.contains(want), "{id}: wanted {want:?} in {log}");
    // containerd reads the last logrus-shaped error line.
    if env.root.exists() {
        assert!(
            !env.root.join("containers").join(id).exists(),
            "{id}: left a state dir"
        );
    }
    env.assert_gone(id);
}

#[test]
fn bundle_errors() {
    let env = Env::new();
    let empty = env.tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    create_fails(&env, "noconfig", &empty, "config.json not found");

    let bad = env.bundle("bad", &["true"], |_| {});
    std::fs::write(bad.join("config.json"), "{ not json").unwrap();
    create_fails(&env, "badjson", &bad, "invalid config.json");

    let norootfs = env.bundle("norootfs", &["true"], |s| {
        s["root"]["path"] = json!("nowhere")
    });
    create_fails(&env, "norootfs", &norootfs, "is not a directory");

    let noproc = env.bundle("noproc", &["true"], |s| {
        s.as_object_mut().unwrap().remove("process");
    });
    create_fails(&env, "noproc", &noproc, "process");

    create_fails(
        &env,
        "nobundle",
        &env.tmp.path().join("nonexistent"),
        "cannot open the bundle",
    );

    let missing_bin = env.bundle("missingbin", &["/nosuchbinary"], |_| {});
    create_fails(&env, "missingbin", &missing_bin, "nosuchbinary");

    let missing_path = env.bundle("missingpath", &["nosuchcmd"], |_| {});
    create_fails(
        &env,
        "missingpath",
        &missing_path,
        "executable file not found",
    );

    let bad_cwd = env.bundle("badcwd", &["true"], |s| {
        s["process"]["cwd"] = json!("/no/such/dir")
    });
    create_fails(&env, "badcwd", &bad_cwd, "cwd");
}

#[test]
fn invalid_ids_are_rejected() {
    let env = Env::new();
    let b = env.bundle("b", &["true"], |_| {});
    for id in [".", "..", "a/b", "../x", "a b", "-", ""] {
        if id == "-" {
            continue; // clap reads it as a value; runc would too
        }
        let o = env.cmd(&["create", "--bundle", b.to_str().unwrap(), id]);
        assert!(!o.status.success(), "{id:?} accepted");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains("invalid container id"), "{id:?}: {e}");
    }
    assert!(!env.root.join("containers/..").join("x").exists());
}

#[test]
fn injection_into_lxc_config_is_refused() {
    let env = Env::new();
    let cases = [
        ("hn", json!({"hostname": "ok\nlxc.init.cmd = /bin/evil"})),
        (
            "sysctl",
            json!({"linux": {"sysctl": {"net.ipv4.ip_forward": "1\nlxc.cap.drop ="}}}),
        ),
    ];
    for (id, patch) in cases {
        let b = env.bundle(id, &["true"], |s| {
            if let Some(h) = patch.get("hostname") {
                s["hostname"] = h.clone();
            }
            if let Some(l) = patch.get("linux") {
                s["linux"]["sysctl"] = l["sysctl"].clone();
            }
        });
        let o = env.create(id, &b);
        assert!(!o.status.success(), "{id}: accepted a newline");
        env.assert_gone(id);
    }
    let b = env.bundle("mnt", &["true"], |s| {
        s["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/x\nlxc.hook.pre-start = /bin/evil", "type": "tmpfs", "source": "tmpfs"
        }));
    });
    assert!(!env.create("mnt", &b).status.success());
    env.assert_gone("mnt");
}

#[test]
fn json_log_lines_are_logrus_shaped() {
    let env = Env::new();
    let b = env.bundle("b", &["/nosuchbinary"], |_| {});
    let log = env.tmp.path().join("json.log");
    let o = std::process::Command::new(support::BIN)
        .args([
            "--root",
            env.root.to_str().unwrap(),
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "create",
            "--bundle",
            b.to_str().unwrap(),
            "j1",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    assert!(
        last["msg"].as_str().unwrap().contains("nosuchbinary"),
        "{last}"
    );
    assert!(last["time"].as_str().unwrap().ends_with('Z'));
}

/// A state.json torn by a power loss (only states naming nothing that
/// outlives a reboot are written without fsync): `delete` refuses it with a
/// clear error, `delete --force` removes the container's directory.
#[test]
fn torn_state_is_removed_by_delete_force() {
    let env = Env::new();
    let b = env.bundle("b", &["true"], |_| {});
    let o = env
        .base()
        .args(["run", "--bundle", b.to_str().unwrap(), "t1"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    // A container dir as a power loss could leave it: an empty state.json.
    let dir = env.root.join("containers").join("torn");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("state.json"), "").unwrap();
    let e = env.fails(&["delete", "torn"]);
    assert!(e.contains("state.json"), "{e}");
    assert!(dir.exists());
    env.ok(&["delete", "--force", "torn"]);
    assert!(!dir.exists(), "delete --force left {}", dir.display());
    env.assert_gone("torn");
}
