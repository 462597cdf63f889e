//! exec, ps, pause/resume, update and events on a live container, by CLI.
mod support;

use support::Env;

fn cgroup_file(pid: i64, ctrl: &str, file: &str) -> String {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = cg
        .lines()
        .find_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, c, path) = (p.next()?, p.next()?, p.next()?);
            c.split(',').any(|x| x == ctrl).then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("no {ctrl} cgroup"));
    let mnt = if ctrl == "cpu" { "cpu" } else { ctrl };
    std::fs::read_to_string(format!("/sys/fs/cgroup/{mnt}{path}/{file}"))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn exec_ps_pause_resume_update_events() {
    let env = Env::new();
    let b = env.bundle("b", &["sleep", "1000"], |_| {});
    env.must_create("live", &b);
    env.ok(&["start", "live"]);
    let pid = env.state("live")["pid"].as_i64().unwrap();

    // exec: output and exit status, in the container's namespaces.
    let o = env.cmd(&["exec", "live", "sh", "-c", "hostname; exit 4"]);
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "lxcri-test\n");
    let o = env.cmd(&["exec", "--user", "65534:65534", "live", "id", "-u"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "65534\n");
    let e = env.fails(&["exec", "live", "/nosuchbinary"]);
    assert!(e.contains("nosuchbinary"), "{e}");
    // exec --pid-file in the foreground, as runc: the exec'd process's host
    // pid, written while it runs (it reports its own pid in the container's
    // namespace, which differs; its parent there is not the container's).
    let pf = env.tmp.path().join("exec.pid");
    let o = env.cmd(&[
        "exec",
        "--pid-file",
        pf.to_str().unwrap(),
        "live",
        "sh",
        "-c",
        "echo $$",
    ]);
    assert!(o.status.success(), "{o:?}");
    let host_pid: i64 = std::fs::read_to_string(&pf)
        .expect("exec --pid-file wrote the pid file")
        .parse()
        .expect("the pid file holds a number");
    assert!(host_pid > 1 && host_pid != pid, "{host_pid}");
    // --debug exec says what it does.
    let log = env.tmp.path().join("exec-debug.log");
    let o = env
        .base()
        .args([
            "--debug",
            "--log",
            log.to_str().unwrap(),
            "exec",
            "live",
            "true",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("level=debug") && text.contains("exec in live"),
        "{text}"
    );
    assert!(text.contains("exited with 0"), "{text}");

    // ps: the monitor first, then the container's processes.
    let pids: Vec<i64> =
        serde_json::from_str(&env.ok(&["ps", "--format", "json", "live"])).unwrap();
    assert!(pids.contains(&pid), "{pids:?} lacks {pid}");
    assert!(env.ok(&["ps", "live"]).contains("sleep 1000"));

    // pause / resume through the freezer.
    env.ok(&["pause", "live"]);
    assert_eq!(env.status("live"), "paused");
    // exec into a paused container: refused with runc's exit code 255 (exec's
    // own failures are told apart from the process's status).
    let o = env.cmd(&["exec", "live", "true"]);
    assert_eq!(o.status.code(), Some(255), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("paused"),
        "{o:?}"
    );
    assert!(env.fails(&["pause", "live"]).contains("paused"));
    env.ok(&["resume", "live"]);
    assert_eq!(env.status("live"), "running");

    // update: flags and a resources file.
    env.ok(&[
        "update",
        "--memory",
        "134217728",
        "--pids-limit",
        "33",
        "live",
    ]);
    assert_eq!(
        cgroup_file(pid, "memory", "memory.limit_in_bytes"),
        "134217728"
    );
    assert_eq!(cgroup_file(pid, "pids", "pids.max"), "33");
    let res = env.tmp.path().join("res.json");
    std::fs::write(&res, r#"{"cpu": {"shares": 256}}"#).unwrap();
    env.ok(&["update", "--resources", res.to_str().unwrap(), "live"]);
    assert_eq!(cgroup_file(pid, "cpu", "cpu.shares"), "256");
    // runc's size suffixes and -1 for "no limit".
    env.ok(&["update", "--memory", "96M", "--cpu-quota", "-1", "live"]);
    assert_eq!(
        cgroup_file(pid, "memory", "memory.limit_in_bytes"),
        (96 << 20).to_string()
    );
    assert_eq!(cgroup_file(pid, "cpu", "cpu.cfs_quota_us"), "-1");
    env.ok(&["update", "--memory", "128m", "live"]);

    // events --stats: runc's shape.
    let ev: serde_json::Value =
        serde_json::from_str(&env.ok(&["events", "--stats", "live"])).unwrap();
    assert_eq!(ev["type"], "stats");
    assert_eq!(ev["id"], "live");
    assert_eq!(ev["data"]["memory"]["usage"]["limit"], 134217728);
    assert_eq!(ev["data"]["pids"]["limit"], 33);
    assert!(ev["data"]["pids"]["current"].as_u64().unwrap() >= 1);

    env.ok(&["delete", "--force", "live"]);
    env.assert_gone("live");
    assert!(env
        .fails(&["exec", "live", "true"])
        .contains("does not exist"));
}

/// `events` reports an OOM kill in the container's memory cgroup as runc
/// does (`{"type":"oom"}`), and ends once the container is gone.
#[test]
fn events_report_oom_kills_and_end_with_the_container() {
    let env = Env::new();
    let b = env.bundle(
        "oom",
        &[
            "sh",
            "-c",
            "sleep 1; dd if=/dev/zero of=/dev/null bs=96M count=1; sleep 1000",
        ],
        |s| {
            s["linux"]["resources"] = serde_json::json!({
                "memory": {"limit": 33554432, "swap": 33554432}
            });
        },
    );
    env.must_create("oom-c", &b);
    env.ok(&["start", "oom-c"]);
    let mut events = env
        .base()
        .args(["events", "--interval", "200ms", "oom-c"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = events.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    // The dd is killed (the container's shell goes on); then delete ends
    // the events stream.
    std::thread::sleep(std::time::Duration::from_secs(4));
    env.ok(&["delete", "--force", "oom-c"]);
    let t = std::time::Instant::now();
    let status = loop {
        if let Some(s) = events.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "events did not end with the container"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let lines = reader.join().unwrap();
    let types: Vec<String> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(types.iter().filter(|t| *t == "oom").count(), 1, "{lines:?}");
    assert!(types.iter().any(|t| t == "stats"), "{lines:?}");
}
