//! OCI hooks: each kind runs at its moment, in its place, in order, with the
//! state on stdin, and a hook that fails or runs past its timeout aborts.
mod support;

use serde_json::{json, Value};
use support::Env;

fn sh_hook(script: &str) -> Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", script], "env": ["HOOK_ENV=yes"]})
}

#[test]
fn every_hook_kind_runs_at_its_moment_with_state_on_stdin() {
    let env = Env::new();
    let out = env.tmp.path().join("hookout");
    let rootfs_tmp_s = env.tmp.path().join("b/rootfs/tmp").display().to_string();
    std::fs::create_dir_all(&out).unwrap();
    let o = out.display().to_string();
    let host = |kind: &str| {
        sh_hook(&format!(
            "cat > {o}/{kind}.json; echo {kind} $HOOK_ENV >> {o}/order"
        ))
    };
    let b = env.bundle("b", &["sh", "-c", "cat /tmp/startContainer.json > /dev/null && echo main"], |s| {
        s["hooks"] = json!({
            "prestart": [host("prestart"), sh_hook(&format!("echo prestart2 >> {o}/order"))],
            "createRuntime": [host("createRuntime")],
            // Runs in the container's namespaces before pivot_root, so host
            // paths (this /bin/sh, the bundle) resolve as in the runtime.
            "createContainer": [sh_hook(&format!("cat > {r}/createContainer.json; hostname > {r}/cc-hostname; grep -c ' /proc ' /proc/self/mountinfo > {r}/cc-procmounts", r = rootfs_tmp_s))],
            // Runs inside the container, path resolved there.
            "startContainer": [sh_hook("cat > /tmp/startContainer.json; echo $HOOK_ENV > /tmp/sc-env")],
            "poststart": [host("poststart")],
            "poststop": [host("poststop")],
        });
    });
    let rootfs_tmp = b.join("rootfs/tmp");
    env.must_create("h1", &b);
    let order = std::fs::read_to_string(out.join("order")).unwrap();
    assert_eq!(order, "prestart yes\nprestart2\ncreateRuntime yes\n");
    let pre: Value =
        serde_json::from_slice(&std::fs::read(out.join("prestart.json")).unwrap()).unwrap();
    assert_eq!(pre["id"], "h1");
    assert_eq!(pre["status"], "creating");
    assert!(pre["pid"].as_i64().unwrap() > 0);
    let cc: Value =
        serde_json::from_slice(&std::fs::read(rootfs_tmp.join("createContainer.json")).unwrap())
            .unwrap();
    assert_eq!(cc["id"], "h1");
    assert_eq!(
        std::fs::read_to_string(rootfs_tmp.join("cc-hostname")).unwrap(),
        "lxcri-test\n"
    );
    assert!(
        !rootfs_tmp.join("startContainer.json").exists(),
        "startContainer ran before start"
    );
    assert!(!out.join("poststart.json").exists());

    env.ok(&["start", "h1"]);
    let sc: Value =
        serde_json::from_slice(&std::fs::read(rootfs_tmp.join("startContainer.json")).unwrap())
            .unwrap();
    assert_eq!(sc["status"], "created");
    assert_eq!(
        std::fs::read_to_string(rootfs_tmp.join("sc-env")).unwrap(),
        "yes\n"
    );
    let ps: Value =
        serde_json::from_slice(&std::fs::read(out.join("poststart.json")).unwrap()).unwrap();
    assert_eq!(ps["status"], "running");
    env.wait_status("h1", "stopped");
    assert_eq!(env.stdout_of("h1"), "main\n");
    assert!(!out.join("poststop.json").exists());
    env.ok(&["delete", "h1"]);
    let pst: Value =
        serde_json::from_slice(&std::fs::read(out.join("poststop.json")).unwrap()).unwrap();
    assert_eq!(pst["status"], "stopped");
    let order = std::fs::read_to_string(out.join("order")).unwrap();
    assert!(order.ends_with("poststart yes\npoststop yes\n"), "{order}");
}

#[test]
fn failing_or_slow_create_hooks_abort_and_leave_nothing() {
    let env = Env::new();
    for (id, hooks) in [
        (
            "slow",
            json!({"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]}),
        ),
        (
            "fail",
            json!({"prestart": [sh_hook("echo nope >&2; exit 2")]}),
        ),
        ("failcc", json!({"createContainer": [sh_hook("exit 5")]})),
        ("missing", json!({"prestart": [{"path": "/no/such/hook"}]})),
    ] {
        let b = env.bundle(id, &["true"], |s| s["hooks"] = hooks);
        let t = std::time::Instant::now();
        let o = env.create(id, &b);
        assert!(!o.status.success(), "{id}: create should fail");
        assert!(t.elapsed().as_secs() < 15, "{id}: took too long");
        let log = env.log_of(id);
        match id {
            "slow" => assert!(
                log.contains("hook ran past specified timeout of 1 seconds"),
                "{log}"
            ),
            "fail" => assert!(
                log.contains("exited with status 2") && log.contains("nope"),
                "{log}"
            ),
            "failcc" => assert!(
                log.contains("createContainer") && log.contains("status 5"),
                "{log}"
            ),
            _ => assert!(log.contains("/no/such/hook"), "{log}"),
        }
        env.assert_gone(id);
    }
}

#[test]
fn failing_start_container_hook_fails_start() {
    let env = Env::new();
    let b = env.bundle("b", &["echo", "never"], |s| {
        s["hooks"] = json!({"startContainer": [sh_hook("exit 9")]});
    });
    env.must_create("sc", &b);
    let e = env.fails(&["start", "sc"]);
    assert!(e.contains("startContainer"), "{e}");
    env.wait_status("sc", "stopped");
    assert_eq!(env.stdout_of("sc"), "");
    env.ok(&["delete", "sc"]);
    env.assert_gone("sc");
}
