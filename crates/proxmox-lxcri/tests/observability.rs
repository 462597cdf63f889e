//! `metrics serve` and `doctor` against real operations: real containers,
//! a real pve-emulator over HTTPS, a real Prometheus scraping the exporter,
//! and `promtool check metrics` on what it serves.
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{Env, BIN};

/// Containers removed on drop, so a failing test leaves none running.
struct Cleanup<'a>(&'a Env, Vec<String>);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for id in &self.1 {
            let _ = self.0.cmd(&["delete", "--force", id]);
        }
    }
}

/// A child process killed (and reaped) on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` on 127.0.0.1:`port`: (status, body).
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// The value of the series written exactly as `series` (name{labels}).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn must(text: &str, series: &str) -> f64 {
    value(text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

/// Start `metrics serve` for `env` and wait until it answers.
fn serve(env: &Env) -> (Guard, u16) {
    let port = free_port();
    let child = env
        .base()
        .args(["metrics", "serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(env.tmp.path().join("exporter.log")).unwrap())
        .spawn()
        .unwrap();
    let g = Guard(child);
    let t = Instant::now();
    while http_get(port, "/metrics").is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "exporter did not come up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (g, port)
}

/// Give `env` a config with a small events log, so it rotates during a test.
fn small_events_log(env: &mut Env) {
    let cfg = env.tmp.path().join("config.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap_or_default();
    text.push_str("\n[events]\nmax_bytes = 1500\nkeep = 2\n");
    std::fs::write(&cfg, text).unwrap();
    env.config = Some(cfg);
}

fn promtool_accepts(text: &str) {
    let mut c = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/install-deps.sh installs it)");
    c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A Prometheus of the test's own (own port, own storage dir) scraping
/// the exporter every second.
fn prometheus(dir: &Path, target: u16) -> (Guard, u16) {
    let port = free_port();
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: lxcri\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
        ),
    )
    .unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("prom-data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .expect("prometheus (Debian package prometheus)");
    (Guard(child), port)
}

/// Ask Prometheus for `query` until it answers `want` (one series).
fn wait_prometheus(port: u16, query: &str, want: &str, log: &Path) {
    let t = Instant::now();
    let mut last = Value::Null;
    while t.elapsed() < Duration::from_secs(60) {
        let o = Command::new("curl")
            .args(["-s", "-G", "--data-urlencode"])
            .arg(format!("query={query}"))
            .arg(format!("http://127.0.0.1:{port}/api/v1/query"))
            .output()
            .unwrap();
        last = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        if last["data"]["result"][0]["value"][1].as_str() == Some(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!(
        "Prometheus never answered {want} to {query}: last {last}\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

#[test]
fn operations_are_counted_across_rotation_and_prometheus_scrapes_them() {
    let mut env = Env::new();
    small_events_log(&mut env);
    let engine = support::emulator::engine();
    let (_server, port) = serve(&env);
    let n = 4;
    // Ids unique on the host: cgroups are named after them.
    let u = std::process::id();
    let id = |i: usize| format!("obs{u}-{i}");
    let _cleanup = Cleanup(&env, (0..n).map(id).collect());
    let bundle = env.bundle("b", &["sleep", "100"], |_| {});
    for i in 0..n {
        env.must_create(&id(i), &bundle);
    }
    env.ok(&["start", &id(0)]);
    // A create that fails before an engine is chosen, and one on a taken id.
    env.fails(&[
        "create",
        "--bundle",
        "/nonexistent-bundle",
        &format!("obs{u}-bad"),
    ]);
    env.fails(&["create", "--bundle", bundle.to_str().unwrap(), &id(1)]);

    let (_, text) = http_get(port, "/metrics").unwrap();
    let ok = |op: &str| {
        format!(
            r#"proxmox_lxcri_operations_total{{operation="{op}",engine="{engine}",result="ok"}}"#
        )
    };
    assert_eq!(must(&text, &ok("create")), n as f64);
    assert_eq!(must(&text, &ok("start")), 1.0);
    assert_eq!(
        must(
            &text,
            r#"proxmox_lxcri_operation_errors_total{operation="create",engine="none",kind="bundle"}"#
        ),
        1.0
    );
    assert_eq!(
        must(
            &text,
            &format!(
                r#"proxmox_lxcri_operation_errors_total{{operation="create",engine="{engine}",kind="exists"}}"#
            )
        ),
        1.0
    );
    assert_eq!(
        must(
            &text,
            &format!(
                r#"proxmox_lxcri_operation_duration_seconds_count{{operation="create",engine="{engine}",result="ok"}}"#
            )
        ),
        n as f64
    );
    // The running container's usage, labelled with its id while it exists.
    let l = format!(r#"{{id="{}",engine="{engine}"}}"#, id(0));
    assert!(
        must(&text, &format!("proxmox_lxcri_container_pids{l}")) >= 1.0,
        "{text}"
    );
    assert!(
        must(&text, &format!("proxmox_lxcri_container_memory_bytes{l}")) > 0.0,
        "{text}"
    );
    // Its own network namespace (runc's default spec): counters of its own.
    assert!(
        must(
            &text,
            &format!("proxmox_lxcri_container_network_receive_bytes_total{l}")
        ) >= 0.0
    );
    assert_eq!(
        must(
            &text,
            &format!(r#"proxmox_lxcri_containers{{engine="{engine}",status="running"}}"#)
        ),
        1.0
    );
    promtool_accepts(&text);

    for i in 0..n {
        env.ok(&["delete", "--force", &id(i)]);
    }
    let (_, text) = http_get(port, "/metrics").unwrap();
    assert_eq!(must(&text, &ok("delete")), n as f64);
    assert!(
        !text.contains(&format!(r#"id="{}""#, id(0))),
        "a deleted container keeps its series:\n{text}"
    );
    // The log rotated under the exporter, and nothing was lost (the counts above are exact).
    let log = env.root.join("runtime/events.log");
    assert!(
        Path::new(&format!("{}.1", log.display())).exists(),
        "the events log never rotated; the test needs it to"
    );
    assert!(
        must(&text, "proxmox_lxcri_events_rotations_followed_total") >= 1.0,
        "{text}"
    );
    promtool_accepts(&text);

    // A real Prometheus sees the same numbers.
    let (_prom, pport) = prometheus(env.tmp.path(), port);
    wait_prometheus(
        pport,
        &format!(
            r#"proxmox_lxcri_operations_total{{operation="create",result="ok",engine="{engine}"}}"#
        ),
        &n.to_string(),
        &env.tmp.path().join("prometheus.log"),
    );
    wait_prometheus(
        pport,
        r#"up{job="lxcri"}"#,
        "1",
        &env.tmp.path().join("prometheus.log"),
    );
    // Every query of the Grafana dashboard is valid PromQL for this Prometheus.
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../dashboards/proxmox-lxcri.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut queries = 0;
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let q = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$instance", ".*");
            let o = Command::new("curl")
                .args(["-s", "-G", "--data-urlencode"])
                .arg(format!("query={q}"))
                .arg(format!("http://127.0.0.1:{pport}/api/v1/query"))
                .output()
                .unwrap();
            let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
            assert_eq!(v["status"], "success", "dashboard query {q}: {v}");
            queries += 1;
        }
    }
    assert!(queries >= 15, "{queries}");
    let (status, health) = http_get(port, "/healthz").unwrap();
    assert_eq!(status, 200, "{health}");
    let h: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(h["healthy"], json!(true), "{h}");
}

fn doctor(env: &Env) -> (i32, Value) {
    let o = env.cmd(&["doctor", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("doctor --json: {e}: {}", String::from_utf8_lossy(&o.stdout)));
    (o.status.code().unwrap_or(-1), v)
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report}"))
}

#[test]
fn api_requests_and_an_injected_fault_show_in_the_metrics_and_doctor_says_what_is_wrong() {
    let mut env = Env::with_pve();
    small_events_log(&mut env);
    let (code, rep) = doctor(&env);
    assert_eq!(code, 0, "{rep:#}");
    for name in [
        "proxmox api",
        "proxmox tls",
        "proxmox auth",
        "proxmox privileges",
        "bridges",
    ] {
        assert_eq!(check(&rep, name)["status"], "ok", "{name}: {rep:#}");
    }

    let (_server, port) = serve(&env);
    let bundle = env.bundle("b", &["sleep", "100"], |_| {});
    let u = std::process::id();
    let (p1, p2) = (format!("obsp{u}-1"), format!("obsp{u}-2"));
    let cleanup = Cleanup(&env, vec![p1.clone(), p2.clone()]);
    env.must_create(&p1, &bundle);
    env.ok(&["start", &p1]);
    // One injected 500 on the CT create: the create fails, and says so.
    env.emu().request(
        "POST",
        "/_emulator/faults",
        &[],
        Some(&json!({"rules": [{"method": "POST", "path": "^/nodes/[^/]+/lxc$", "action": "error", "status": 500, "message": "boom", "count": 1}]})),
    );
    env.fails(&["create", "--bundle", bundle.to_str().unwrap(), &p2]);
    let (_, text) = http_get(port, "/metrics").unwrap();
    assert_eq!(
        must(
            &text,
            r#"proxmox_lxcri_operations_total{operation="create",engine="pve-lxc",result="ok"}"#
        ),
        1.0
    );
    assert_eq!(
        must(
            &text,
            r#"proxmox_lxcri_operation_errors_total{operation="create",engine="pve-lxc",kind="pve"}"#
        ),
        1.0
    );
    assert_eq!(
        must(
            &text,
            r#"proxmox_lxcri_api_requests_total{method="POST",endpoint="/nodes/{node}/lxc",status="500",source="runtime"}"#
        ),
        1.0
    );
    assert_eq!(
        must(
            &text,
            r#"proxmox_lxcri_api_requests_total{method="POST",endpoint="/nodes/{node}/lxc",status="200",source="runtime"}"#
        ),
        1.0
    );
    assert!(
        must(
            &text,
            r#"proxmox_lxcri_api_request_duration_seconds_count{method="POST",endpoint="/nodes/{node}/lxc"}"#
        ) >= 2.0
    );
    // The CT's own numbers come from its status, through the exporter's client.
    let l = format!(r#"{{id="{p1}",engine="pve-lxc"}}"#);
    assert!(
        must(&text, &format!("proxmox_lxcri_container_memory_bytes{l}")) > 0.0,
        "{text}"
    );
    assert!(
        must(
            &text,
            &format!("proxmox_lxcri_container_rootfs_used_bytes{l}")
        ) > 0.0,
        "{text}"
    );
    assert!(
        must(&text, &format!("proxmox_lxcri_container_pids{l}")) >= 1.0,
        "{text}"
    );
    assert!(
        value(&text, r#"proxmox_lxcri_api_requests_total{method="GET",endpoint="/nodes/{node}/lxc/{vmid}/status/current",status="200",source="exporter"}"#).is_some(),
        "{text}"
    );
    assert!(
        value(
            &text,
            r#"proxmox_lxcri_storage_used_bytes{storage="pve:local"}"#
        )
        .is_some(),
        "{text}"
    );
    promtool_accepts(&text);
    env.ok(&["delete", "--force", &p1]);
    drop(cleanup);

    // A wrong fingerprint: doctor names the certificate.
    let cfg = env.config.clone().unwrap();
    let good = std::fs::read_to_string(&cfg).unwrap();
    let fp = env.emu().fingerprint().to_string();
    let wrong: String = fp.chars().rev().collect();
    std::fs::write(&cfg, good.replace(&fp, &wrong)).unwrap();
    let (code, rep) = doctor(&env);
    assert_eq!(code, 1, "{rep:#}");
    assert_eq!(check(&rep, "proxmox tls")["status"], "fail", "{rep:#}");
    std::fs::write(&cfg, &good).unwrap();

    // A runtime root that is a file.
    let file_root = env.tmp.path().join("root-is-a-file");
    std::fs::write(&file_root, "").unwrap();
    let o = Command::new(BIN)
        .arg("--root")
        .arg(&file_root)
        .args(["--config", cfg.to_str().unwrap(), "doctor"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let table = String::from_utf8_lossy(&o.stdout);
    let row = table
        .lines()
        .find(|l| l.starts_with("runtime root"))
        .unwrap_or_default();
    assert!(
        row.contains(" FAIL ") && row.contains("is not a directory"),
        "{table}"
    );

    // The emulator stopped: doctor and /healthz say the API is unreachable.
    env.pve.as_mut().unwrap().stop();
    let (code, rep) = doctor(&env);
    assert_eq!(code, 1, "{rep:#}");
    let api = check(&rep, "proxmox api");
    assert_eq!(api["status"], "fail", "{rep:#}");
    assert!(
        api["detail"].as_str().unwrap().contains("cannot connect"),
        "{api}"
    );
    // /healthz caches its report for 5 s.
    std::thread::sleep(Duration::from_secs(6));
    let (status, body) = http_get(port, "/healthz").unwrap();
    assert_eq!(status, 503, "{body}");
}

#[test]
fn zfs_volumes_pool_and_image_cache_show_in_the_metrics() {
    use storage::testpool::TestPool;
    let mut env = Env::new();
    let pool = TestPool::new(1 << 30).expect("test pool (zfs-fuse)");
    let parent = format!("{}/lxcri", pool.name);
    let cfg = env.tmp.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[storage]\nkind = \"zfs\"\nzfs_parent = \"{parent}\"\nlock_dir = \"{}\"\ndefault_quota = \"256M\"\nproperties = {{ compression = \"on\" }}\n",
            env.tmp.path().join("locks").display()
        ),
    )
    .unwrap();
    env.config = Some(cfg);
    let (code, rep) = doctor(&env);
    assert_eq!(code, 0, "{rep:#}");
    assert_eq!(check(&rep, "zfs pool")["status"], "ok", "{rep:#}");

    let (_server, port) = serve(&env);
    let u = std::process::id();
    let ids: Vec<String> = (0..3).map(|i| format!("obsz{u}-{i}")).collect();
    let _cleanup = Cleanup(&env, ids.clone());
    let bundle = env.bundle("b", &["sleep", "100"], |_| {});
    // The first create copies the rootfs into the cache, the others clone it.
    for id in &ids {
        env.must_create(id, &bundle);
    }
    let (_, text) = http_get(port, "/metrics").unwrap();
    assert_eq!(
        must(
            &text,
            r#"proxmox_lxcri_image_cache_lookups_total{result="miss"}"#
        ),
        1.0
    );
    assert_eq!(
        must(
            &text,
            r#"proxmox_lxcri_image_cache_lookups_total{result="hit"}"#
        ),
        2.0
    );
    assert_eq!(must(&text, "proxmox_lxcri_images_cached"), 1.0);
    let l = format!(r#"{{id="{}",engine="lxc"}}"#, ids[0]);
    assert_eq!(
        must(
            &text,
            &format!("proxmox_lxcri_container_rootfs_limit_bytes{l}")
        ),
        (256u64 << 20) as f64
    );
    assert!(
        must(
            &text,
            &format!("proxmox_lxcri_container_rootfs_used_bytes{l}")
        ) > 0.0
    );
    let s = format!(r#"{{storage="zfs:{parent}"}}"#);
    assert!(
        must(&text, &format!("proxmox_lxcri_storage_used_bytes{s}")) > 0.0,
        "{text}"
    );
    assert!(
        must(&text, &format!("proxmox_lxcri_storage_available_bytes{s}")) > 0.0,
        "{text}"
    );
    promtool_accepts(&text);
    for id in &ids {
        env.ok(&["delete", "--force", id]);
    }
}

/// A bridge made by the runtime for this test, removed on drop.
struct MadeBridge(String);

impl Drop for MadeBridge {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).output();
    }
}

#[test]
fn ipam_pool_usage_and_network_bridges_show_in_metrics_and_doctor() {
    let mut env = Env::new();
    let n = std::process::id() % 200 + 20;
    let bridge = MadeBridge(testkit::unique_ifname("obr"));
    let cfg = env.tmp.path().join("config.toml");
    // No gateway: the bridge gets no address, so no route on the host.
    std::fs::write(
        &cfg,
        format!(
            "default_backend = \"lxc\"\n[network.obs]\nbridge = \"{}\"\nsubnet = \"10.239.{n}.0/29\"\nport_security = false\n",
            bridge.0
        ),
    )
    .unwrap();
    env.config = Some(cfg);
    let (code, rep) = doctor(&env);
    assert_eq!(code, 0, "{rep:#}");
    let b = check(&rep, "bridges");
    assert_eq!(b["status"], "ok", "{rep:#}");
    assert!(
        b["detail"].as_str().unwrap().contains("does not exist yet"),
        "{b}"
    );

    let (_server, port) = serve(&env);
    let u = std::process::id();
    let ids: Vec<String> = (0..2).map(|i| format!("obsn{u}-{i}")).collect();
    let _cleanup = Cleanup(&env, ids.clone());
    let bundle = env.bundle("b", &["sleep", "100"], |s| {
        s["annotations"] = json!({"io.proxmox-lxcri.network": "obs"});
    });
    for id in &ids {
        env.must_create(id, &bundle);
    }
    let l = r#"{network="obs",family="ipv4"}"#;
    let (_, text) = http_get(port, "/metrics").unwrap();
    // A /29 without a gateway: 8 addresses less network and broadcast.
    assert_eq!(
        must(&text, &format!("proxmox_lxcri_ipam_pool_addresses{l}")),
        6.0
    );
    assert_eq!(
        must(&text, &format!("proxmox_lxcri_ipam_leased_addresses{l}")),
        2.0
    );
    assert!(value(
        &text,
        r#"proxmox_lxcri_ipam_pool_addresses{network="obs",family="ipv6"}"#
    )
    .is_none());
    promtool_accepts(&text);
    let (_, rep) = doctor(&env);
    let b = check(&rep, "bridges");
    assert!(b["detail"].as_str().unwrap().contains("is a bridge"), "{b}");
    for id in &ids {
        env.ok(&["delete", "--force", id]);
    }
    let (_, text) = http_get(port, "/metrics").unwrap();
    assert_eq!(
        must(&text, &format!("proxmox_lxcri_ipam_leased_addresses{l}")),
        0.0
    );
}
