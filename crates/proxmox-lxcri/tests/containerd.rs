//! End-to-end tests: containerd 1.6 + its `io.containerd.runc.v2` shim driving the runtime
//! binary under test through `ctr run --runc-binary`.
//!
//! The runtime is `$LXCRI_TEST_RUNTIME` (a path), by default this crate's `proxmox-lxcri`.
//! Proven with runc:
//!
//! ```sh
//! LXCRI_TEST_RUNTIME=/usr/sbin/runc cargo test -p proxmox-lxcri --test containerd -- --test-threads=1
//! ```
//!
//! Needs root and containerd (the tests fail, never skip, without them); each test starts
//! its own containerd (see `common/containerd.rs`), so they may also run in parallel.

mod common;

use common::containerd::{stderr, stdout, Containerd};
use common::emulator::RuntimeConfig;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

/// The runtime binary under test, as an absolute path.
fn runtime() -> String {
    let rt = std::env::var("LXCRI_TEST_RUNTIME")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_proxmox-lxcri").to_string());
    let p = Path::new(&rt)
        .canonicalize()
        .unwrap_or_else(|e| panic!("runtime binary {rt} (LXCRI_TEST_RUNTIME): {e}"));
    p.to_string_lossy().into_owned()
}

/// Whether the runtime under test is runc (some checks only make sense for proxmox-lxcri).
fn is_runc(rt: &str) -> bool {
    let name = Path::new(rt).file_name().unwrap().to_string_lossy();
    name.contains("runc") && !name.contains("lxcri")
}

/// A container id unique to this containerd instance (also unique across instances, so
/// leftover checks that look outside containerd's namespace can match on it).
fn cid(ctd: &Containerd, name: &str) -> String {
    format!("{}-{}", ctd.namespace, name)
}

/// `sh` that ends with status 143 on SIGTERM under any runtime (a bare `sleep` as pid 1
/// ignores SIGTERM under runc: pid 1 has no default signal dispositions).
const TERMINABLE: &[&str] = &["sh", "-c", "trap 'exit 143' TERM; sleep 1000 & wait"];

const STATUS_TIMEOUT: Duration = Duration::from_secs(20);

fn run_detached(ctd: &Containerd, rt: &str, id: &str, args: &[&str]) {
    let o = ctd.run(rt, id, args, &["-d"]);
    assert!(o.status.success(), "ctr run -d {id}:\n{}", ctd.explain(&o));
    ctd.wait_status(id, "RUNNING", STATUS_TIMEOUT);
}

/// `ctr task rm` + `ctr c rm` of a stopped task; returns the stderr of `task rm` (ctr warns
/// there about a non-zero exit code).
fn remove(ctd: &Containerd, id: &str) -> String {
    let o = ctd.ctr(&["task", "rm", id]);
    assert!(o.status.success(), "ctr task rm {id}:\n{}", ctd.explain(&o));
    let warn = stderr(&o);
    let o = ctd.ctr(&["containers", "rm", id]);
    assert!(o.status.success(), "ctr c rm {id}:\n{}", ctd.explain(&o));
    warn
}

/// Files or directories at most `depth` levels below `dir` whose name contains one of `ids`.
/// SIGKILL to every process of the task, then `remove`, then nothing of
/// it left anywhere.
fn kill_remove_and_check(ctd: &Containerd, rt: &str, id: &str) {
    let o = ctd.ctr(&["task", "kill", "-a", "-s", "SIGKILL", id]);
    assert!(o.status.success(), "ctr task kill -a:\n{}", ctd.explain(&o));
    ctd.wait_status(id, "STOPPED", STATUS_TIMEOUT);
    remove(ctd, id);
    assert_no_leftovers(ctd, rt, &[id.to_string()]);
}

fn paths_naming(dir: &Path, ids: &[String], depth: usize) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if ids.iter().any(|id| name.contains(id.as_str())) {
            found.push(e.path());
        } else if depth > 1 && e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            found.extend(paths_naming(&e.path(), ids, depth - 1));
        }
    }
    found
}

/// Nothing of the containers `ids` may be left: no containerd container, no state in the
/// runtime root, no mounts under containerd's directory, no process (shim, monitor ...)
/// mentioning them, and for proxmox-lxcri no LXC state.
fn assert_no_leftovers(ctd: &Containerd, rt: &str, ids: &[String]) {
    let left = ctd.containers();
    assert!(left.is_empty(), "containers left after --rm: {left:?}");
    let root = ctd.runtime_root();
    let in_root = paths_naming(&root, ids, 3);
    assert!(
        in_root.is_empty(),
        "the runtime left state in its --root {}: {in_root:?}",
        root.display()
    );
    if is_runc(rt) {
        let entries: Vec<_> = std::fs::read_dir(&root)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(
            entries.is_empty(),
            "runc left container dirs in {}: {entries:?}",
            root.display()
        );
    } else {
        // LXC leftovers: lxcpath dirs, proxmox-lxcri state, extra paths from the env.
        let mut dirs: Vec<PathBuf> = [
            "/var/lib/lxc",
            "/run/lxc",
            "/run/proxmox-lxcri",
            "/var/lib/proxmox-lxcri",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        if let Some(extra) = std::env::var_os("LXCRI_TEST_LXC_PATHS") {
            dirs.extend(std::env::split_paths(&extra));
        }
        let lxc: Vec<PathBuf> = dirs.iter().flat_map(|d| paths_naming(d, ids, 3)).collect();
        assert!(lxc.is_empty(), "LXC / proxmox-lxcri leftovers: {lxc:?}");
    }
    if let Some(emu) = &ctd.pve {
        // pve-lxc: no CT on the node, no volume on its storage.
        assert_eq!(
            emu.ct_ids(),
            Vec::<u32>::new(),
            "CTs left on the Proxmox node"
        );
        assert!(
            emu.volumes().is_empty(),
            "volumes left: {:?}",
            emu.volumes()
        );
    }
    let mounts = ctd.mounts();
    assert!(
        mounts.is_empty(),
        "mounts left under {}: {mounts:?}",
        ctd.dir().display()
    );
    // Shims and monitors exit asynchronously after `ctr run --rm` returns: allow a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let procs: Vec<(u32, String)> = Containerd::processes_mentioning(&ctd.namespace)
            .into_iter()
            .chain(
                ids.iter()
                    .flat_map(|id| Containerd::processes_mentioning(id)),
            )
            .collect();
        if procs.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            panic!("processes left behind: {procs:#?}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn run_rm_captures_output() {
    let rt = runtime();
    let ctd = Containerd::start();
    let id = cid(&ctd, "echo");
    let o = ctd.run(&rt, &id, &["echo", "hello"], &[]);
    assert!(o.status.success(), "ctr run echo:\n{}", ctd.explain(&o));
    assert_eq!(stdout(&o), "hello\n", "{}", ctd.explain(&o));
    // stderr of the container reaches ctr's stderr, separately.
    let o = ctd.run(&rt, &id, &["sh", "-c", "echo out; echo err >&2"], &[]);
    assert!(o.status.success(), "ctr run sh:\n{}", ctd.explain(&o));
    assert_eq!(stdout(&o), "out\n", "{}", ctd.explain(&o));
    assert!(stderr(&o).contains("err\n"), "{}", ctd.explain(&o));
    assert_no_leftovers(&ctd, &rt, &[id]);
}

#[test]
fn exit_status_propagated() {
    let rt = runtime();
    let ctd = Containerd::start();
    let id = cid(&ctd, "exit");
    let o = ctd.run(&rt, &id, &["sh", "-c", "exit 7"], &[]);
    assert_eq!(o.status.code(), Some(7), "{}", ctd.explain(&o));
    let o = ctd.run(&rt, &id, &["false"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", ctd.explain(&o));
    let o = ctd.run(&rt, &id, &["true"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", ctd.explain(&o));
    assert_no_leftovers(&ctd, &rt, &[id]);
}

#[test]
fn kill_sigterm_then_remove() {
    let rt = runtime();
    let ctd = Containerd::start();
    let id = cid(&ctd, "term");
    run_detached(&ctd, &rt, &id, TERMINABLE);
    if let Some(emu) = &ctd.pve {
        // On pve-lxc the task is a Proxmox CT, tagged with its id.
        let cts = emu.ct_ids();
        assert_eq!(cts.len(), 1, "one CT while the task runs: {cts:?}");
        let conf = emu.get(&format!("/nodes/pve/lxc/{}/config", cts[0]));
        let tags = conf["data"]["tags"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(tags.contains("proxmox-lxcri"), "{conf}");
    }
    let o = ctd.ctr(&["task", "kill", "-s", "SIGTERM", &id]);
    assert!(o.status.success(), "ctr task kill:\n{}", ctd.explain(&o));
    ctd.wait_status(&id, "STOPPED", STATUS_TIMEOUT);
    let warn = remove(&ctd, &id);
    assert!(
        warn.contains("exit code 143"),
        "expected exit status 143 after SIGTERM, ctr task rm said: {warn}"
    );
    assert_no_leftovers(&ctd, &rt, &[id]);
}

#[test]
fn kill_sigkill_then_remove() {
    let rt = runtime();
    let ctd = Containerd::start();
    let id = cid(&ctd, "kill");
    run_detached(&ctd, &rt, &id, &["sleep", "1000"]);
    let o = ctd.ctr(&["task", "kill", "-s", "SIGKILL", &id]);
    assert!(o.status.success(), "ctr task kill:\n{}", ctd.explain(&o));
    ctd.wait_status(&id, "STOPPED", STATUS_TIMEOUT);
    let warn = remove(&ctd, &id);
    assert!(
        warn.contains("exit code 137"),
        "expected exit status 137 after SIGKILL, ctr task rm said: {warn}"
    );
    assert_no_leftovers(&ctd, &rt, &[id]);
}

#[test]
fn exec_with_and_without_tty() {
    let rt = runtime();
    let ctd = Containerd::start();
    let id = cid(&ctd, "exec");
    run_detached(&ctd, &rt, &id, &["sleep", "1000"]);

    let o = ctd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "x",
        &id,
        "sh",
        "-c",
        "echo fromexec; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", ctd.explain(&o));
    assert_eq!(stdout(&o), "fromexec\n", "{}", ctd.explain(&o));

    // The exec id is free again once the process is gone; run as another user.
    let o = ctd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "x",
        "--user",
        "65534",
        &id,
        "id",
        "-u",
    ]);
    assert!(o.status.success(), "exec --user:\n{}", ctd.explain(&o));
    assert_eq!(stdout(&o), "65534\n", "{}", ctd.explain(&o));

    let (status, out) = ctd.ctr_pty(&[
        "task",
        "exec",
        "-t",
        "--exec-id",
        "y",
        &id,
        "sh",
        "-c",
        "tty; echo ttyexec; exit 4",
    ]);
    assert_eq!(status.code(), Some(4), "exec -t output:\n{out}");
    assert!(out.contains("ttyexec"), "exec -t output:\n{out}");
    assert!(out.contains("/dev/pts/"), "exec -t: no tty inside:\n{out}");

    // The init process is untouched by the execs.
    assert_eq!(ctd.task(&id).map(|t| t.1), Some("RUNNING".into()));
    let o = ctd.ctr(&["task", "kill", "-s", "SIGKILL", &id]);
    assert!(o.status.success(), "ctr task kill:\n{}", ctd.explain(&o));
    ctd.wait_status(&id, "STOPPED", STATUS_TIMEOUT);
    remove(&ctd, &id);
    assert_no_leftovers(&ctd, &rt, &[id]);
}

#[test]
fn task_ps_lists_pids() {
    let rt = runtime();
    let ctd = Containerd::start();
    let id = cid(&ctd, "ps");
    run_detached(&ctd, &rt, &id, &["sleep", "1000"]);
    let (pid, _) = ctd.task(&id).expect("task listed");
    assert!(pid > 0, "task ls shows pid {pid}");

    let pids = |ctd: &Containerd| -> Vec<u32> {
        let o = ctd.ctr(&["task", "ps", &id]);
        assert!(o.status.success(), "ctr task ps:\n{}", ctd.explain(&o));
        stdout(&o)
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect()
    };
    let p = pids(&ctd);
    assert!(
        p.contains(&pid),
        "ctr task ps {id} = {p:?} lacks init pid {pid}"
    );

    // A detached exec shows up as well.
    let o = ctd.ctr(&[
        "task",
        "exec",
        "-d",
        "--exec-id",
        "bg",
        &id,
        "sleep",
        "1000",
    ]);
    assert!(o.status.success(), "ctr task exec -d:\n{}", ctd.explain(&o));
    let deadline = Instant::now() + STATUS_TIMEOUT;
    loop {
        let p = pids(&ctd);
        if p.len() >= 2 && p.contains(&pid) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ctr task ps {id} = {p:?}: the exec'd sleep is missing"
        );
        thread::sleep(Duration::from_millis(100));
    }

    kill_remove_and_check(&ctd, &rt, &id);
}

#[test]
fn pause_and_resume() {
    let rt = runtime();
    let ctd = Containerd::start();
    let id = cid(&ctd, "pause");
    // Ends on SIGTERM under any runtime (see TERMINABLE); keeps forking while it runs.
    run_detached(
        &ctd,
        &rt,
        &id,
        &[
            "sh",
            "-c",
            "trap 'exit 143' TERM; while :; do sleep 1 & wait; done",
        ],
    );
    let o = ctd.ctr(&["task", "pause", &id]);
    assert!(o.status.success(), "ctr task pause:\n{}", ctd.explain(&o));
    ctd.wait_status(&id, "PAUSED", STATUS_TIMEOUT);
    let o = ctd.ctr(&["task", "resume", &id]);
    assert!(o.status.success(), "ctr task resume:\n{}", ctd.explain(&o));
    ctd.wait_status(&id, "RUNNING", STATUS_TIMEOUT);
    // Still alive and working after resume.
    let o = ctd.ctr(&["task", "exec", "--exec-id", "after", &id, "echo", "alive"]);
    assert_eq!(
        stdout(&o),
        "alive\n",
        "exec after resume:\n{}",
        ctd.explain(&o)
    );
    let o = ctd.ctr(&["task", "kill", "-s", "SIGTERM", &id]);
    assert!(o.status.success(), "ctr task kill:\n{}", ctd.explain(&o));
    ctd.wait_status(&id, "STOPPED", STATUS_TIMEOUT);
    remove(&ctd, &id);
    assert_no_leftovers(&ctd, &rt, &[id]);
}

#[test]
fn run_with_tty() {
    let rt = runtime();
    let ctd = Containerd::start();
    let id = cid(&ctd, "tty");
    let (status, out) = ctd.run_pty(&rt, &id, &["sh", "-c", "tty; echo ttyok"], &["-t"]);
    assert!(status.success(), "ctr run -t: {status}, output:\n{out}");
    assert!(out.contains("ttyok"), "ctr run -t output:\n{out}");
    assert!(
        out.contains("/dev/pts/"),
        "ctr run -t: no tty inside:\n{out}"
    );
    let (status, out) = ctd.run_pty(&rt, &id, &["sh", "-c", "exit 5"], &["-t"]);
    assert_eq!(status.code(), Some(5), "ctr run -t exit 5, output:\n{out}");
    assert_no_leftovers(&ctd, &rt, &[id]);
}

#[test]
fn failing_create_reports_error() {
    let rt = runtime();
    let ctd = Containerd::start();
    let id = cid(&ctd, "fail");
    let o = ctd.run(&rt, &id, &["/nosuchbinary"], &[]);
    assert!(
        !o.status.success(),
        "ctr run /nosuchbinary succeeded:\n{}",
        ctd.explain(&o)
    );
    assert!(
        stderr(&o).contains("/nosuchbinary"),
        "the error does not name the missing binary:\n{}",
        ctd.explain(&o)
    );
    assert_no_leftovers(&ctd, &rt, &[id]);
}

#[test]
fn parallel_runs_leave_nothing_behind() {
    const N: usize = 20;
    let rt = runtime();
    let ctd = Containerd::start();
    let ids: Vec<String> = (0..N).map(|i| cid(&ctd, &format!("p{i}"))).collect();
    let start = Instant::now();
    let outputs: Vec<_> = thread::scope(|s| {
        let handles: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let (ctd, rt) = (&ctd, &rt);
                s.spawn(move || {
                    let n = i.to_string();
                    let args = Containerd::run_args(rt, id, &["echo", &n], &[]);
                    ctd.ctr_timeout(&args, Duration::from_secs(180))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    eprintln!("{N} parallel ctr run --rm: {:?}", start.elapsed());
    for (i, o) in outputs.iter().enumerate() {
        assert!(o.status.success(), "run {i}:\n{}", ctd.explain(o));
        assert_eq!(stdout(o), format!("{i}\n"), "run {i}:\n{}", ctd.explain(o));
    }
    assert_no_leftovers(&ctd, &rt, &ids);
}

/// The caller's side crashes: the shim is SIGKILLed while the container
/// runs, then containerd itself is killed and restarted. containerd cleans
/// up the dead shim's task through the runtime (`delete --force`), and
/// nothing of the container stays: no process, no state, no CT.
#[test]
fn a_killed_shim_and_a_restarted_containerd_leave_nothing() {
    let rt = runtime();
    let mut ctd = Containerd::start();
    let id = cid(&ctd, "shimkill");
    run_detached(&ctd, &rt, &id, &["sleep", "1000"]);
    let (pid, _) = ctd.task(&id).expect("a task");
    let shims: Vec<u32> = Containerd::processes_mentioning(&format!("-id {id} "))
        .into_iter()
        .filter(|(_, cmd)| cmd.contains("containerd-shim"))
        .map(|(p, _)| p)
        .collect();
    assert_eq!(shims.len(), 1, "one shim for {id}: {shims:?}");
    // SAFETY: kill(2).
    unsafe { libc::kill(shims[0] as i32, libc::SIGKILL) };
    ctd.restart();
    // containerd reaps the dead shim's task: STOPPED or gone.
    let deadline = Instant::now() + Duration::from_secs(60);
    while ctd.task(&id).is_some_and(|(_, s)| s != "STOPPED") {
        assert!(
            Instant::now() < deadline,
            "task {id} still {:?}",
            ctd.task(&id)
        );
        thread::sleep(Duration::from_millis(100));
    }
    let _ = ctd.ctr(&["task", "rm", "-f", &id]);
    let o = ctd.ctr(&["containers", "rm", &id]);
    assert!(o.status.success(), "ctr c rm {id}:\n{}", ctd.explain(&o));
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()
                != b"sleep\x001000\x00",
        "the container's process {pid} survived"
    );
    assert_no_leftovers(&ctd, &rt, &[id]);
}

/// `ctr task metrics` reads the cgroup of the task's pid (the shim loads it
/// from /proc/<pid>/cgroup): it must be the container's. The container
/// holds 48 MiB in a tmpfs, which its memory cgroup is charged for; the
/// shim's or the test's cgroup would show other numbers (and many pids).
#[test]
fn task_metrics_are_the_containers() {
    let rt = runtime();
    let ctd = Containerd::start();
    let id = cid(&ctd, "metrics");
    run_detached(
        &ctd,
        &rt,
        &id,
        &[
            "sh",
            "-c",
            "head -c 50331648 /dev/zero > /dev/shm/fill; echo filled; sleep 1000",
        ],
    );
    let metric = |name: &str| -> Option<u64> {
        let o = ctd.ctr(&["task", "metrics", &id]);
        assert!(o.status.success(), "ctr task metrics:\n{}", ctd.explain(&o));
        stdout(&o).lines().find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next()? == name).then(|| f.next()?.parse().ok())?
        })
    };
    let deadline = Instant::now() + STATUS_TIMEOUT;
    let usage = loop {
        let u = metric("memory.usage_in_bytes")
            .or_else(|| metric("memory.usage"))
            .expect("a memory usage metric");
        if u >= 48 << 20 || Instant::now() > deadline {
            break u;
        }
        thread::sleep(Duration::from_millis(200));
    };
    assert!(
        usage >= 48 << 20,
        "memory usage {usage}: not the container's cgroup"
    );
    let pids = metric("pids.current").expect("pids.current");
    assert!(
        (1..=8).contains(&pids),
        "pids.current {pids}: not the container's cgroup"
    );
    kill_remove_and_check(&ctd, &rt, &id);
}
