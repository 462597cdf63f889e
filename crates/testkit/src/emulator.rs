//! A pve-emulator for one test.
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The API token of an emulator unless [`EmulatorBuilder::token`] says otherwise.
pub const DEFAULT_TOKEN_ID: &str = "root@pam!lxcri";
/// Its secret.
pub const DEFAULT_TOKEN_SECRET: &str = "5f0c3a52-9a42-4c36-9d2b-1e6a2b7d8c11";

/// How long an emulator may take to print `listening ADDR`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The pve-emulator binary: `$PVE_EMULATOR_BIN`, else the one in the target
/// dir this test binary runs from (`cargo build --workspace --bins` puts it
/// there; cargo does for the pve-emulator package's own tests), else built
/// with `cargo build -p pve-emulator`. Panics when there is none.
pub fn emulator_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("PVE_EMULATOR_BIN") {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "PVE_EMULATOR_BIN={} does not exist",
                p.display()
            );
            return p;
        }
        // Test binaries are target/<triple>/<profile>/deps/NAME-HASH.
        let exe = std::env::current_exe().expect("the test binary's path");
        if let Some(p) = exe
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join("pve-emulator"))
            .filter(|p| p.is_file())
        {
            return p;
        }
        build_emulator()
    })
    .clone()
}

/// `cargo build -p pve-emulator` in this workspace; the executable it made.
fn build_emulator() -> PathBuf {
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    assert!(
        ws.join("crates/pve-emulator/Cargo.toml").is_file(),
        "pve-emulator not found: set PVE_EMULATOR_BIN=/path/to/pve-emulator \
         or run `cargo build --workspace --bins` first"
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "-p",
            "pve-emulator",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(&ws)
        .stderr(Stdio::inherit())
        .output()
        .expect("running cargo build -p pve-emulator");
    assert!(out.status.success(), "cargo build -p pve-emulator failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "pve-emulator")
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .expect("cargo build -p pve-emulator reported no executable")
}

/// How to start an [`Emulator`]: [`Emulator::builder`], the options, then
/// [`EmulatorBuilder::start`].
#[derive(Clone, Debug)]
pub struct EmulatorBuilder {
    bin: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    node: Option<String>,
    token_id: String,
    token_secret: String,
    root_password: Option<String>,
    auth_fail_delay_ms: Option<u64>,
    bridge: Option<String>,
    own_bridge: bool,
    next_id_lower: Option<u32>,
    args: Vec<OsString>,
}

impl EmulatorBuilder {
    /// The binary (default [`emulator_bin`]).
    pub fn bin(mut self, bin: impl Into<PathBuf>) -> Self {
        self.bin = Some(bin.into());
        self
    }

    /// Its `--data-dir` (made if missing, kept on drop). By default a fresh
    /// temporary directory the [`Emulator`] owns and removes on drop.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// `--node NAME`, the node [`Emulator::node`] names (default `pve`, the
    /// emulator's own default). More nodes go into [`EmulatorBuilder::args`].
    pub fn node(mut self, name: &str) -> Self {
        self.node = Some(name.into());
        self
    }

    /// The API token (`--token ID=SECRET`); default [`DEFAULT_TOKEN_ID`].
    pub fn token(mut self, id: &str, secret: &str) -> Self {
        self.token_id = id.into();
        self.token_secret = secret.into();
        self
    }

    /// `--root-password`: root@pam may log in (tickets). Default: it may not.
    pub fn root_password(mut self, password: &str) -> Self {
        self.root_password = Some(password.into());
        self
    }

    /// `--auth-fail-delay-ms` (default: the emulator's).
    pub fn auth_fail_delay_ms(mut self, ms: u64) -> Self {
        self.auth_fail_delay_ms = Some(ms);
        self
    }

    /// `--bridge NAME`, a bridge the caller names (the emulator makes it
    /// if missing); kept on drop.
    pub fn bridge(mut self, name: &str) -> Self {
        self.bridge = Some(name.into());
        self.own_bridge = false;
        self
    }

    /// `--bridge` with a name unique to this test, deleted on drop.
    pub fn own_bridge(mut self) -> Self {
        self.bridge = Some(crate::unique_ifname("lxt"));
        self.own_bridge = true;
        self
    }

    /// `--next-id-lower`: where `/cluster/nextid` starts.
    pub fn next_id_lower(mut self, id: u32) -> Self {
        self.next_id_lower = Some(id);
        self
    }

    /// More arguments, as they are (`--storage`, `--fault`, …).
    pub fn args<S: AsRef<std::ffi::OsStr>>(mut self, args: &[S]) -> Self {
        self.args
            .extend(args.iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// Starts it and waits until it listens (a free port on 127.0.0.1).
    /// Panics with its log when it does not come up.
    pub fn start(self) -> Emulator {
        let (tmp, data_dir) = match &self.data_dir {
            Some(d) => {
                std::fs::create_dir_all(d).unwrap();
                (None, d.clone())
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("pve-emulator-test-")
                    .tempdir()
                    .unwrap();
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        // The emulator refuses a data dir its unprivileged CTs' root
        // (host uid 100000) cannot traverse; a temporary dir is 0700.
        crate::make_traversable(&data_dir);
        let mut argv: Vec<OsString> = vec![
            self.bin.clone().unwrap_or_else(emulator_bin).into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            data_dir.clone().into(),
        ];
        if let Some(n) = &self.node {
            argv.extend(["--node".into(), n.into()]);
        }
        argv.extend([
            "--token".into(),
            format!("{}={}", self.token_id, self.token_secret).into(),
        ]);
        if let Some(pw) = &self.root_password {
            argv.extend(["--root-password".into(), pw.into()]);
        }
        if let Some(ms) = self.auth_fail_delay_ms {
            argv.extend(["--auth-fail-delay-ms".into(), ms.to_string().into()]);
        }
        if let Some(b) = &self.bridge {
            argv.extend(["--bridge".into(), b.into()]);
        }
        if let Some(n) = self.next_id_lower {
            argv.extend(["--next-id-lower".into(), n.to_string().into()]);
        }
        argv.extend(self.args);
        let mut emu = Emulator {
            child: None,
            argv,
            log: data_dir.join("emulator.log"),
            data_dir,
            addr: String::new(),
            fingerprint: String::new(),
            node: self.node.unwrap_or_else(|| "pve".into()),
            token_id: self.token_id,
            token_secret: self.token_secret,
            root_password: self.root_password,
            bridge: self.bridge,
            own_bridge: self.own_bridge,
            _tmp: tmp,
        };
        emu.spawn();
        emu
    }
}

/// A running pve-emulator: real HTTPS with its own CA and node certificate,
/// an API token, LXC guests under its data dir.
///
/// On drop it stops the CTs it still runs (`lxc-stop -k`), then itself
/// (SIGTERM), deletes the bridge it owns and, when the test is panicking,
/// prints its log (stderr goes to `DATA_DIR/emulator.log`).
pub struct Emulator {
    child: Option<Child>,
    /// The binary and its arguments, for [`Emulator::restart`].
    argv: Vec<OsString>,
    data_dir: PathBuf,
    log: PathBuf,
    addr: String,
    fingerprint: String,
    node: String,
    token_id: String,
    token_secret: String,
    root_password: Option<String>,
    bridge: Option<String>,
    own_bridge: bool,
    /// Last: removed after the emulator and its CTs are stopped.
    _tmp: Option<tempfile::TempDir>,
}

impl Emulator {
    /// The defaults: [`emulator_bin`], a temporary data dir, node `pve`,
    /// the default token, no root password, no bridge.
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder {
            bin: None,
            data_dir: None,
            node: None,
            token_id: DEFAULT_TOKEN_ID.into(),
            token_secret: DEFAULT_TOKEN_SECRET.into(),
            root_password: None,
            auth_fail_delay_ms: None,
            bridge: None,
            own_bridge: false,
            next_id_lower: None,
            args: vec![],
        }
    }

    /// Runs the process; reads the fingerprint and the address it prints.
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut child = Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {:?}: {e}", self.argv[0]));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining so the emulator never blocks on a full pipe.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut fingerprint = None;
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(f) = line.strip_prefix("fingerprint ") {
                        fingerprint = Some(f.trim().to_string());
                    } else if let Some(a) = line.strip_prefix("listening ") {
                        break a.trim().to_string();
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "pve-emulator did not print `listening ADDR` ({}); {:?}; its log:\n{}",
                        match e {
                            mpsc::RecvTimeoutError::Timeout => "timed out",
                            mpsc::RecvTimeoutError::Disconnected => "it exited",
                        },
                        self.argv,
                        self.log()
                    );
                }
            }
        };
        self.fingerprint = fingerprint.expect("pve-emulator printed no `fingerprint` line first");
        self.addr = addr;
        self.child = Some(child);
    }

    /// Stops the process (SIGTERM: it exits at once, its CTs run on).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
    }

    /// Stops it and starts it again as before, on the same data dir (so
    /// with the same certificate). It listens on a new port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// The process id (while it runs).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("a running emulator").id()
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port")
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The URL of an API path: `https://127.0.0.1:PORT/api2/json` + `path`;
    /// a path starting with `/_` (the emulator's own control endpoints,
    /// `/_emulator/faults`) goes without the `/api2/json`.
    pub fn api_url(&self, path: &str) -> String {
        if path.starts_with("/_") {
            format!("{}{path}", self.url())
        } else {
            format!("{}/api2/json{path}", self.url())
        }
    }

    /// The SHA-256 fingerprint of its certificate, `AA:BB:…`, to pin.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Its CA certificate (PEM), which signed the node certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.data_dir.join("pve-root-ca.pem")
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The node (the first, when there are several).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// `USER@REALM!NAME`.
    pub fn token_id(&self) -> &str {
        &self.token_id
    }

    pub fn token_secret(&self) -> &str {
        &self.token_secret
    }

    /// `ID=SECRET`, as in `Authorization: PVEAPIToken=ID=SECRET`.
    pub fn token(&self) -> String {
        format!("{}={}", self.token_id, self.token_secret)
    }

    /// root@pam's password, when it was started with one.
    pub fn root_password(&self) -> Option<&str> {
        self.root_password.as_deref()
    }

    /// The bridge it was started with.
    pub fn bridge(&self) -> Option<&str> {
        self.bridge.as_deref()
    }

    /// What it wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// VMIDs of the node's CTs (from their config files), sorted.
    pub fn ct_ids(&self) -> Vec<u32> {
        ct_ids_in(&self.data_dir.join("nodes").join(&self.node).join("lxc"))
    }

    /// `curl` with the emulator's CA trusted: `method` on `url` (absolute),
    /// `args` (headers, data) as they are. Returns the HTTP status (0 when
    /// there was no answer) and the body as JSON (`Null` when it is not).
    pub fn curl(&self, method: &str, url: &str, args: &[&str]) -> (u16, Value) {
        let o = self.run_curl(method, url, args);
        let (code, body) = split_status(&o.stdout);
        (code, serde_json::from_slice(body).unwrap_or(Value::Null))
    }

    /// [`Emulator::curl`] on an API path ([`Emulator::api_url`]) with the
    /// API token.
    pub fn call(&self, method: &str, path: &str, args: &[&str]) -> (u16, Value) {
        let auth = format!("Authorization: PVEAPIToken={}", self.token());
        let mut all = vec!["-H", &auth];
        all.extend_from_slice(args);
        self.curl(method, &self.api_url(path), &all)
    }

    /// A request with the API token as a user would type it: form fields
    /// (URL-encoded) or a JSON body. Panics unless curl got an answer in
    /// JSON; returns that, whatever the status.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        form: &[(&str, &str)],
        json: Option<&Value>,
    ) -> Value {
        let auth = format!("Authorization: PVEAPIToken={}", self.token());
        let mut args = vec!["-H".to_string(), auth];
        for (k, v) in form {
            args.push("--data-urlencode".into());
            args.push(format!("{k}={v}"));
        }
        if let Some(j) = json {
            args.extend([
                "-H".into(),
                "Content-Type: application/json".into(),
                "--data".into(),
                j.to_string(),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = self.run_curl(method, &self.api_url(path), &args);
        assert!(
            o.status.success(),
            "{method} {path}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let (_, body) = split_status(&o.stdout);
        serde_json::from_slice(body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}: {}", String::from_utf8_lossy(body)))
    }

    /// [`Emulator::request`] GET.
    pub fn get(&self, path: &str) -> Value {
        self.request("GET", path, &[], None)
    }

    /// [`Emulator::request`] POST with form fields.
    pub fn post(&self, path: &str, form: &[(&str, &str)]) -> Value {
        self.request("POST", path, form, None)
    }

    fn run_curl(&self, method: &str, url: &str, args: &[&str]) -> Output {
        Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(self.ca_file())
            .args(["-w", "\n%{http_code}", "-X", method])
            .args(args)
            .arg(url)
            .output()
            .expect("running curl (Debian package `curl`)")
    }

    /// The path of a task's `status` or `log`.
    fn task_path(upid: &str, what: &str) -> String {
        let node = upid.split(':').nth(1).expect("a UPID");
        let enc: String = upid
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        format!("/nodes/{node}/tasks/{enc}/{what}")
    }

    /// Waits (up to 60 s) for a task to stop; returns its status object.
    pub fn wait_task(&self, upid: &str) -> Value {
        for _ in 0..600 {
            let (code, v) = self.call("GET", &Self::task_path(upid, "status"), &[]);
            assert_eq!(code, 200, "task status: {v}");
            if v["data"]["status"] == "stopped" {
                return v["data"].clone();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("task {upid} did not finish");
    }

    /// A task's log, as the API returns it.
    pub fn task_log(&self, upid: &str) -> Value {
        self.call("GET", &Self::task_path(upid, "log"), &[]).1
    }

    /// Runs a call that starts a task ([`Emulator::call`]) and asserts the
    /// task ends OK.
    pub fn task_ok(&self, method: &str, path: &str, args: &[&str]) {
        let (code, v) = self.call(method, path, args);
        assert_eq!(code, 200, "{method} {path}: {v}");
        let upid = v["data"].as_str().unwrap().to_string();
        let st = self.wait_task(&upid);
        assert_eq!(
            st["exitstatus"],
            "OK",
            "{method} {path}: {st} log {}",
            self.task_log(&upid)
        );
    }

    /// Appends fault rules (a JSON array; see the emulator's README).
    pub fn add_faults(&self, rules: Value) {
        let (code, v) = self.call(
            "POST",
            "/_emulator/faults",
            &[
                "-H",
                "Content-Type: application/json",
                "--data",
                &json!({ "rules": rules }).to_string(),
            ],
        );
        assert_eq!(code, 200, "adding fault rules: {v}");
    }

    /// The fault rules, each with its `hits`.
    pub fn faults(&self) -> Vec<Value> {
        let (code, v) = self.call("GET", "/_emulator/faults", &[]);
        assert_eq!(code, 200, "listing fault rules: {v}");
        v["data"].as_array().cloned().unwrap_or_default()
    }

    /// Hits of the rule at `index`.
    pub fn hits(&self, index: usize) -> u64 {
        self.faults()[index]["hits"]
            .as_u64()
            .expect("rule has hits")
    }

    pub fn clear_faults(&self) {
        let (code, v) = self.call("DELETE", "/_emulator/faults", &[]);
        assert_eq!(code, 200, "clearing fault rules: {v}");
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // CTs a failed test left running, on any node: stop them first.
        let lxcpath = self.data_dir.join("run").join("lxc");
        let nodes = std::fs::read_dir(self.data_dir.join("nodes"))
            .into_iter()
            .flatten();
        for node in nodes.flatten() {
            for id in ct_ids_in(&node.path().join("lxc")) {
                let _ = Command::new("lxc-stop")
                    .args(["-k", "-P"])
                    .arg(&lxcpath)
                    .args(["-n", &id.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        // VMs too: their QEMU runs daemonized, with a pid file each.
        let qemu_run = self.data_dir.join("run").join("qemu-server");
        for e in std::fs::read_dir(qemu_run).into_iter().flatten().flatten() {
            if e.path().extension().is_some_and(|x| x == "pid") {
                if let Some(pid) = std::fs::read_to_string(e.path())
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                {
                    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    if cmd.starts_with(b"qemu-system") {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
        }
        self.stop();
        if let (true, Some(b)) = (self.own_bridge, &self.bridge) {
            let _ = Command::new("ip")
                .args(["link", "del", b])
                .stderr(Stdio::null())
                .status();
        }
        if std::thread::panicking() {
            eprintln!("--- pve-emulator log ---\n{}", self.log());
        }
    }
}

/// VMIDs of the `VMID.conf` files in `dir`, sorted.
fn ct_ids_in(dir: &Path) -> Vec<u32> {
    let mut v: Vec<u32> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".conf")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Splits curl's output into the `-w '\n%{http_code}'` status and the body.
fn split_status(out: &[u8]) -> (u16, &[u8]) {
    match out.iter().rposition(|&b| b == b'\n') {
        Some(i) => (
            std::str::from_utf8(&out[i + 1..])
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0),
            &out[..i],
        ),
        None => (0, out),
    }
}

#[cfg(test)]
mod tests {
    use super::split_status;

    #[test]
    fn curl_status_is_split_off_the_body() {
        assert_eq!(
            split_status(b"{\"data\":1}\n200"),
            (200, &b"{\"data\":1}"[..])
        );
        assert_eq!(split_status(b"\n000"), (0, &b""[..]));
        assert_eq!(split_status(b""), (0, &b""[..]));
    }
}
