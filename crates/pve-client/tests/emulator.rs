//! The client against a running pve-emulator over real HTTPS: both auth
//! modes, CSRF, ticket renewal, TLS pinning, retries and timeouts on
//! injected faults, task errors, and a CT's whole life.

mod common;

use std::time::{Duration, Instant};

use common::{busybox_template, Clients, Emulator};
use pve_client::props::{Features, Rootfs};
use pve_client::{Auth, Client, Error, Method, Params, Tls, Upid};
use serde_json::json;

const TASK_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn permissions_are_read_and_observed() {
    let emu = common::start();
    let mut c = emu.token_client();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    c.set_observer(std::sync::Arc::new(move |r| {
        sink.lock().unwrap().push(r.clone())
    }));
    let all = c.permissions(None).unwrap();
    let root = all.get("/").expect("privileges on /");
    for p in [
        "VM.Allocate",
        "Datastore.AllocateSpace",
        "SDN.Use",
        "Sys.Audit",
    ] {
        assert_eq!(root.get(p), Some(&true), "{p}: {all:?}");
    }
    let one = c.permissions(Some("/vms/100")).unwrap();
    assert!(one.contains_key("/vms/100"), "{one:?}");
    // A bad userid is refused by the schema check, as Proxmox does.
    let err = c
        .call(
            Method::Get,
            "/access/permissions",
            &Params::new().set("userid", "no-realm"),
        )
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err:?}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen
        .iter()
        .all(|r| r.endpoint == "/access/permissions" && r.method == "GET"));
    assert_eq!(seen[0].status, Some(200));
    assert_eq!(seen[2].status, Some(400));
}

#[test]
fn token_auth_reads_node_cluster_and_storage() {
    let emu = common::start();
    let c = emu.token_client();

    let v = c.version().unwrap();
    assert!(!v.version.is_empty(), "{v:?}");
    let nodes = c.nodes().unwrap();
    let node = nodes
        .iter()
        .find(|n| n.node == emu.node())
        .expect("node listed");
    assert_eq!(node.status, "online");
    let st = c.node_status(emu.node()).unwrap();
    assert!(st.memory.as_ref().is_some_and(|m| m.total > 0), "{st:?}");

    let res = c.cluster_resources(Some("node")).unwrap();
    assert!(res
        .iter()
        .any(|r| r.kind == "node" && r.id == format!("node/{}", emu.node())));
    let res = c.cluster_resources(Some("storage")).unwrap();
    assert!(res.iter().all(|r| r.kind == "storage"), "{res:?}");
    assert!(res.iter().any(|r| r.storage.as_deref() == Some("local")));

    let id = c.next_id(None).unwrap();
    assert!(id >= 100);

    let storages = c.storage_list(emu.node()).unwrap();
    let local = storages
        .iter()
        .find(|s| s.storage == "local")
        .expect("local storage");
    assert!(
        local.has_content("vztmpl") && local.has_content("rootdir"),
        "{local:?}"
    );

    // Every call above was one request: nothing hidden, nothing retried.
    assert_eq!(c.requests(), 7);

    // Unknown endpoints and missing CTs are HTTP errors that name the endpoint.
    let err = c
        .call(Method::Get, "/nodes/pve/no-such-thing", &Params::new())
        .unwrap_err();
    assert_eq!(err.status(), Some(501), "{err}");
    assert!(
        err.to_string()
            .starts_with("GET /nodes/pve/no-such-thing: HTTP 501"),
        "{err}"
    );
    let err = c.lxc_config(emu.node(), 999_999_990).unwrap_err();
    assert_eq!(err.status(), Some(500), "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[test]
fn password_login_and_csrf_on_writes() {
    let emu = common::start();
    // Without the client: the emulator insists on CSRFPreventionToken for
    // ticket-authenticated writes ...
    let agent = emu.raw_agent();
    let login = agent
        .post(&format!("{}/api2/json/access/ticket", emu.url()))
        .send_form(&[
            ("username", "root@pam"),
            ("password", emu.root_password().unwrap()),
        ])
        .unwrap();
    let login: serde_json::Value = serde_json::from_reader(login.into_reader()).unwrap();
    let ticket = login["data"]["ticket"].as_str().unwrap().to_string();
    let csrf = login["data"]["CSRFPreventionToken"]
        .as_str()
        .unwrap()
        .to_string();
    let write = |with_csrf: bool| {
        let mut req = agent
            .put(&format!(
                "{}/api2/json/nodes/{}/lxc/999999991/config",
                emu.url(),
                emu.node()
            ))
            .set("Cookie", &format!("PVEAuthCookie={ticket}"));
        if with_csrf {
            req = req.set("CSRFPreventionToken", &csrf);
        }
        match req.send_form(&[("description", "x")]) {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(s, _)) => s,
            Err(e) => panic!("{e}"),
        }
    };
    let without = write(false);
    assert!(
        without == 401 || without == 403,
        "a write without CSRF token must be refused, got {without}"
    );
    let with = write(true);
    assert!(
        with != without,
        "with the CSRF token the write passes auth: {with}"
    );

    // ... and the client sends it: the same write reaches the handler.
    let c = emu.password_client();
    let err = c
        .lxc_set_config(
            emu.node(),
            999_999_991,
            &Params::new().set("description", "x"),
        )
        .unwrap_err();
    assert_eq!(err.status(), Some(with), "{err}");
    assert_eq!(c.ticket_stats().logins, 1);
    // Reads work with the same ticket, without another login.
    c.version().unwrap();
    assert_eq!(c.ticket_stats().logins, 1);

    // Wrong password: an Auth error naming the user, not the password.
    let bad = Client::new(emu.config(
        Auth::password("root@pam", "not-the-password-Xy"),
        Tls::Fingerprint(emu.fingerprint().to_string()),
    ))
    .unwrap();
    let err = bad.version().unwrap_err();
    assert!(matches!(err, Error::Auth(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("root@pam") && text.contains("/access/ticket"),
        "{text}"
    );
    assert!(!text.contains("not-the-password"), "{text}");

    // Wrong token secret: 401 from the API itself.
    let bad = Client::new(emu.config(
        Auth::token(emu.token_id(), "00000000-bad"),
        Tls::Fingerprint(emu.fingerprint().to_string()),
    ))
    .unwrap();
    let err = bad.version().unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert_eq!(bad.requests(), 1, "a 401 with a token is not retried");
}

#[test]
fn ticket_is_renewed_before_expiry() {
    let emu = common::start();
    let c = emu.password_client();
    c.set_ticket_renew_after(Duration::ZERO);
    for _ in 0..3 {
        c.version().unwrap();
    }
    let stats = c.ticket_stats();
    assert_eq!(stats.logins, 1, "{stats:?}");
    assert_eq!(stats.renewals, 2, "{stats:?}");
    // login + 3 GETs + 2 renewals
    assert_eq!(c.requests(), 6);
    // The renewed ticket's CSRF token is accepted for writes.
    let err = c
        .lxc_set_config(
            emu.node(),
            999_999_992,
            &Params::new().set("description", "x"),
        )
        .unwrap_err();
    assert!(!matches!(err.status(), Some(401) | Some(403)), "{err}");
    assert_eq!(
        c.ticket_stats().logins,
        1,
        "renewal must not fall back to a login"
    );

    // Back to the default threshold: no more renewals.
    c.set_ticket_renew_after(Duration::from_secs(3600));
    let before = c.ticket_stats().renewals;
    c.version().unwrap();
    c.nodes().unwrap();
    assert_eq!(c.ticket_stats().renewals, before);
}

#[test]
fn tls_fingerprint_pinning_and_ca_file() {
    let emu = common::start();
    // The printed fingerprint is the node certificate's, as Proxmox shows it.
    let on_disk = std::fs::read_to_string(emu.data_dir().join("fingerprint")).unwrap();
    assert_eq!(on_disk.trim(), emu.fingerprint());
    let pem = std::fs::read(emu.data_dir().join("pve-ssl.pem")).unwrap();
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
    assert_eq!(pve_client::fingerprint_of(der.as_ref()), emu.fingerprint());

    let client = |tls: Tls| Client::new(emu.config(emu.token_auth(), tls)).unwrap();

    client(Tls::Fingerprint(emu.fingerprint().to_string()))
        .version()
        .unwrap();
    let loose = emu.fingerprint().replace(':', "").to_lowercase();
    client(Tls::Fingerprint(loose)).version().unwrap();
    client(Tls::Verify {
        ca_file: Some(emu.ca_file()),
    })
    .version()
    .unwrap();
    client(Tls::Insecure).version().unwrap();

    // A wrong pin is refused, and not retried.
    let mut wrong = emu.fingerprint().as_bytes().to_vec();
    wrong[0] = if wrong[0] == b'A' { b'B' } else { b'A' };
    let c = client(Tls::Fingerprint(String::from_utf8(wrong).unwrap()));
    let err = c.version().unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("does not match the pinned fingerprint"),
        "{err}"
    );
    assert!(err.to_string().contains(emu.fingerprint()), "{err}");
    assert_eq!(c.requests(), 1);

    // The node certificate is not signed by any system CA.
    let c = client(Tls::Verify { ca_file: None });
    let err = c.version().unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    assert_eq!(c.requests(), 1);

    // A CA that did not sign the node certificate is refused too.
    let other = common::start();
    let c = client(Tls::Verify {
        ca_file: Some(other.ca_file()),
    });
    assert!(matches!(c.version().unwrap_err(), Error::Tls(_)));
}

#[test]
fn gets_are_retried_on_injected_faults_and_writes_are_not() {
    let emu = common::start();

    // 503 twice, then through: three requests, one answer.
    emu.add_faults(
        json!([{"method":"GET","path":"^/version$","action":"error","status":503,"count":2}]),
    );
    let c = emu.token_client();
    c.version().unwrap();
    assert_eq!(c.requests(), 3);
    assert_eq!(emu.hits(0), 2);
    emu.clear_faults();

    // A dropped connection on a GET: retried.
    emu.add_faults(json!([{"method":"GET","path":"^/nodes$","action":"drop","count":1}]));
    let c = emu.token_client();
    assert!(!c.nodes().unwrap().is_empty());
    assert_eq!(c.requests(), 2);
    assert_eq!(emu.hits(0), 1);
    emu.clear_faults();

    // Errors that are not transient are not retried.
    emu.add_faults(json!([{"method":"GET","path":"^/cluster/resources$","action":"error","status":500,"message":"boom"}]));
    let c = emu.token_client();
    let err = c.cluster_resources(None).unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert_eq!(err.server_message(), Some("boom"));
    assert_eq!(c.requests(), 1);
    emu.clear_faults();

    // Retries end: 503 forever with 2 retries is 3 requests and the error.
    emu.add_faults(
        json!([{"method":"GET","path":"^/cluster/resources$","action":"error","status":503}]),
    );
    let mut cfg = emu.config(
        emu.token_auth(),
        Tls::Fingerprint(emu.fingerprint().to_string()),
    );
    cfg.retries = 2;
    let mut c = Client::new(cfg).unwrap();
    c.set_retry_backoff(Duration::from_millis(5));
    let err = c.cluster_resources(None).unwrap_err();
    assert_eq!(err.status(), Some(503), "{err}");
    assert_eq!(c.requests(), 3);
    assert_eq!(emu.hits(0), 3);
    emu.clear_faults();

    // A POST that met a 503 may have been acted on: not retried.
    let create = Params::new()
        .int("vmid", 100)
        .set("ostemplate", "local:vztmpl/none.tar.gz");
    emu.add_faults(json!([{"method":"POST","path":"^/nodes/[^/]+/lxc$","action":"error","status":503,"count":1}]));
    let c = emu.token_client();
    let err = c.lxc_create(emu.node(), &create).unwrap_err();
    assert_eq!(err.status(), Some(503), "{err}");
    assert_eq!(c.requests(), 1);
    assert_eq!(emu.hits(0), 1);
    emu.clear_faults();

    // Nor a POST whose connection dropped after sending.
    emu.add_faults(
        json!([{"method":"POST","path":"^/nodes/[^/]+/lxc$","action":"drop","count":1}]),
    );
    let c = emu.token_client();
    let err = c.lxc_create(emu.node(), &create).unwrap_err();
    assert!(matches!(err, Error::Disconnected(_)), "{err:?}");
    assert!(err.to_string().starts_with("POST /nodes/pve/lxc:"), "{err}");
    assert_eq!(c.requests(), 1);
    assert_eq!(emu.hits(0), 1);
    emu.clear_faults();
}

#[test]
fn timeouts_are_reported_and_only_gets_retried() {
    let emu = common::start();
    emu.add_faults(json!([
        {"method":"GET","path":"^/version$","action":"latency","ms":3000},
        {"method":"POST","path":"^/nodes/[^/]+/lxc$","action":"latency","ms":3000}
    ]));
    let mut cfg = emu.config(
        emu.token_auth(),
        Tls::Fingerprint(emu.fingerprint().to_string()),
    );
    cfg.timeout = Duration::from_millis(400);
    cfg.retries = 1;
    let mut c = Client::new(cfg).unwrap();
    c.set_retry_backoff(Duration::from_millis(5));

    let t = Instant::now();
    let err = c.version().unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(c.requests(), 2);

    let err = c
        .lxc_create(emu.node(), &Params::new().int("vmid", 100))
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    assert_eq!(c.requests(), 3);
}

/// Stops and destroys a CT when a test ends, even by panicking.
struct CtGuard<'a> {
    c: &'a Client,
    emu: &'a Emulator,
    vmid: u32,
}

impl Drop for CtGuard<'_> {
    fn drop(&mut self) {
        let node = self.emu.node();
        // Stop whatever the status says (it may lag), then destroy.
        if let Ok(u) = self.c.lxc_stop(node, self.vmid) {
            let _ = self.c.wait_task(&u, TASK_TIMEOUT);
        }
        if let Ok(u) = self.c.lxc_delete(node, self.vmid, true, true) {
            let _ = self.c.wait_task(&u, TASK_TIMEOUT);
        }
        // Last resort, so no CT outlives its test: the emulator runs CTs as
        // `lxc-start -P DIR/run/lxc -n VMID` (the contract's layout).
        let _ = std::process::Command::new("lxc-stop")
            .arg("-k")
            .arg("-P")
            .arg(self.emu.data_dir().join("run/lxc"))
            .args(["-n", &self.vmid.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn upload_busybox(emu: &Emulator, c: &Client) -> String {
    let name = format!("busybox-{}.tar.gz", testkit::unique());
    let file = busybox_template(emu.data_dir(), &name);
    let upid = c
        .upload_template(emu.node(), "local", &file, &name)
        .unwrap();
    c.wait_task(&upid, TASK_TIMEOUT).unwrap();
    let volid = format!("local:vztmpl/{name}");
    let content = c
        .storage_content(emu.node(), "local", Some("vztmpl"), None)
        .unwrap();
    assert!(content.iter().any(|v| v.volid == volid), "{content:?}");
    volid
}

#[test]
fn task_errors_are_surfaced() {
    let emu = common::start();
    let c = emu.password_client();
    let template = upload_busybox(&emu, &c);
    let vmid = testkit::vmid();
    let _guard = CtGuard {
        c: &c,
        emu: &emu,
        vmid,
    };
    let text = "injected: unable to create CT - no space left on device";
    emu.add_faults(json!([{"method":"POST","path":"^/nodes/[^/]+/lxc$","action":"fail_task","message":text,"count":1}]));
    let upid = c
        .lxc_create(
            emu.node(),
            &Params::new()
                .int("vmid", vmid)
                .set("ostemplate", &template)
                .bool("unprivileged", false),
        )
        .unwrap();
    assert_eq!(upid.kind, "vzcreate");
    assert_eq!(upid.node, emu.node());
    match c.wait_task(&upid, TASK_TIMEOUT) {
        Err(Error::Task {
            upid: u,
            exitstatus,
        }) => {
            assert_eq!(u, upid.to_string());
            assert_eq!(exitstatus, text);
        }
        other => panic!("expected a task error, got {other:?}"),
    }
    let status = c.task_status(&upid).unwrap();
    assert!(!status.is_running() && !status.is_ok());
    let log = c.task_log(&upid, 0, 50).unwrap();
    assert!(log.iter().any(|l| l.t.contains(text)), "{log:?}");

    // An unknown task is a 400 naming the parameter.
    let fake: Upid = format!(
        "UPID:{}:00000001:00000001:00000001:vzstart:1:root@pam:",
        emu.node()
    )
    .parse()
    .unwrap();
    let err = c.task_status(&fake).unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
}

#[test]
fn ct_lifecycle() {
    let emu = common::start();
    let c = emu.password_client();
    let node = emu.node().to_string();
    let template = upload_busybox(&emu, &c);
    let vmid = testkit::vmid();
    let _guard = CtGuard {
        c: &c,
        emu: &emu,
        vmid,
    };

    let upid = c
        .lxc_create(
            &node,
            &Params::new()
                .int("vmid", vmid)
                .set("ostemplate", &template)
                .set("hostname", format!("ct{vmid}"))
                .int("memory", 64)
                .int("swap", 0)
                .bool("unprivileged", false)
                .set(
                    "rootfs",
                    Rootfs::new("local:1").to_property_string().unwrap(),
                )
                .set(
                    "features",
                    Features {
                        nesting: true,
                        ..Features::default()
                    }
                    .to_property_string()
                    .unwrap(),
                ),
        )
        .unwrap();
    c.wait_task(&upid, TASK_TIMEOUT).unwrap();

    // The id is taken now.
    let err = c.next_id(Some(vmid)).unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.to_string().contains("vmid"), "{err}");
    match &err {
        Error::Http { errors, .. } => assert!(errors.contains_key("vmid"), "{errors:?}"),
        other => panic!("{other:?}"),
    }

    let list = c.lxc_list(&node).unwrap();
    let entry = list.iter().find(|e| e.vmid == vmid).expect("CT listed");
    assert_eq!(entry.status, "stopped");

    let cfg = c.lxc_config(&node, vmid).unwrap();
    assert_eq!(cfg.get("hostname"), Some(format!("ct{vmid}").as_str()));
    assert_eq!(cfg.get("memory"), Some("64"));
    assert!(
        cfg.get("features").is_some_and(|f| f.contains("nesting=1")),
        "{cfg:?}"
    );
    assert!(cfg.digest.is_some());
    let rootfs = pve_client::props::parse_property_string(cfg.get("rootfs").unwrap(), "volume")
        .unwrap()["volume"]
        .clone();
    let (storage, _) = rootfs.split_once(':').unwrap();

    // Raw lxc.* lines, added on the node as an admin would, come back as pairs.
    let conf = emu.data_dir().join(format!("nodes/{node}/lxc/{vmid}.conf"));
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("lxc.cap.drop: sys_module\n");
    std::fs::write(&conf, text).unwrap();
    let cfg = c.lxc_config(&node, vmid).unwrap();
    assert_eq!(
        cfg.lxc_values("lxc.cap.drop").collect::<Vec<_>>(),
        ["sys_module"]
    );

    c.lxc_set_config(
        &node,
        vmid,
        &Params::new()
            .set("description", "made by the client test")
            .int("memory", 96),
    )
    .unwrap();
    let cfg = c.lxc_config(&node, vmid).unwrap();
    assert_eq!(cfg.get("memory"), Some("96"));
    assert_eq!(cfg.get("description"), Some("made by the client test"));
    assert_eq!(cfg.lxc.len(), 1, "raw lines survive a config update");

    let vol = c.volume_info(&node, storage, &rootfs).unwrap();
    assert!(
        std::path::Path::new(&vol.path).join("bin/busybox").exists(),
        "{vol:?}"
    );

    // Power.
    let upid = c.lxc_start(&node, vmid).unwrap();
    c.wait_task(&upid, TASK_TIMEOUT).unwrap();
    let st = c.lxc_status(&node, vmid).unwrap();
    assert!(st.is_running(), "{st:?}");
    let pid = st.pid.expect("a running CT has a pid");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    c.lxc_interfaces(&node, vmid).unwrap();
    let err = c.lxc_start(&node, vmid).unwrap_err();
    assert!(err.to_string().contains("already running"), "{err}");

    let upid = c.lxc_suspend(&node, vmid).unwrap();
    c.wait_task(&upid, TASK_TIMEOUT).unwrap();
    let upid = c.lxc_resume(&node, vmid).unwrap();
    c.wait_task(&upid, TASK_TIMEOUT).unwrap();
    assert_eq!(c.lxc_status(&node, vmid).unwrap().pid, Some(pid));

    emu.add_faults(json!([{"method":"POST","path":"/status/stop$","action":"lock","message":"backup","count":1}]));
    let err = c.lxc_stop(&node, vmid).unwrap_err();
    assert_eq!(err.status(), Some(500), "{err}");
    assert!(err.to_string().contains("CT is locked (backup)"), "{err}");
    emu.clear_faults();

    let upid = c.lxc_stop(&node, vmid).unwrap();
    c.wait_task(&upid, TASK_TIMEOUT).unwrap();
    let st = c.lxc_status(&node, vmid).unwrap();
    assert_eq!(st.status, "stopped");
    assert_eq!(st.pid, None);

    // A full clone is a CT of its own.
    let clone_id = vmid + 1;
    let _clone_guard = CtGuard {
        c: &c,
        emu: &emu,
        vmid: clone_id,
    };
    let upid = c
        .lxc_clone(
            &node,
            vmid,
            clone_id,
            &Params::new().set("hostname", "cloned").bool("full", true),
        )
        .unwrap();
    assert_eq!(upid.kind, "vzclone");
    c.wait_task(&upid, TASK_TIMEOUT).unwrap();
    let cfg = c.lxc_config(&node, clone_id).unwrap();
    assert_eq!(cfg.get("hostname"), Some("cloned"));
    assert_eq!(cfg.get("memory"), Some("96"));
    let upid = c.lxc_delete(&node, clone_id, true, false).unwrap();
    c.wait_task(&upid, TASK_TIMEOUT).unwrap();

    // Snapshots.
    let upid = c
        .lxc_snapshot_create(&node, vmid, "before", Some("client test"))
        .unwrap();
    c.wait_task(&upid, TASK_TIMEOUT).unwrap();
    let snaps = c.lxc_snapshot_list(&node, vmid).unwrap();
    assert!(snaps.iter().any(|s| s.name == "before"), "{snaps:?}");
    c.lxc_set_config(&node, vmid, &Params::new().int("memory", 128))
        .unwrap();
    let at_snapshot = c.lxc_config_snapshot(&node, vmid, "before").unwrap();
    assert_eq!(at_snapshot.get("memory"), Some("96"));
    assert_eq!(at_snapshot.get("description"), Some("client test"));
    let upid = c.lxc_snapshot_rollback(&node, vmid, "before").unwrap();
    c.wait_task(&upid, TASK_TIMEOUT).unwrap();
    assert_eq!(c.lxc_config(&node, vmid).unwrap().get("memory"), Some("96"));
    let upid = c.lxc_snapshot_delete(&node, vmid, "before").unwrap();
    c.wait_task(&upid, TASK_TIMEOUT).unwrap();
    let snaps = c.lxc_snapshot_list(&node, vmid).unwrap();
    assert!(!snaps.iter().any(|s| s.name == "before"), "{snaps:?}");

    // Delete.
    let upid = c.lxc_delete(&node, vmid, true, false).unwrap();
    c.wait_task(&upid, TASK_TIMEOUT).unwrap();
    let err = c.lxc_config(&node, vmid).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(!c.lxc_list(&node).unwrap().iter().any(|e| e.vmid == vmid));
}

#[test]
fn qemu_vm_lifecycle() {
    let emu = common::start();
    let c = emu.token_client();
    let node = emu.node().to_string();
    let vmid = testkit::vmid();
    let upid = c
        .qemu_create(
            &node,
            &Params::new()
                .int("vmid", vmid)
                .set("name", format!("vm{vmid}"))
                .set("memory", "512")
                .int("cores", 1)
                .set("scsi0", "local:1"),
        )
        .unwrap();
    c.wait_task(&upid, TASK_TIMEOUT).unwrap();
    assert!(c.qemu_list(&node).unwrap().iter().any(|e| e.vmid == vmid));
    let cfg = c.qemu_config(&node, vmid).unwrap();
    assert_eq!(cfg.get("name"), Some(format!("vm{vmid}").as_str()));
    assert!(
        cfg.get("scsi0").is_some_and(|d| d.starts_with("local:")),
        "{cfg:?}"
    );
    c.qemu_set_config(&node, vmid, &Params::new().int("cores", 2))
        .unwrap();
    assert_eq!(c.qemu_config(&node, vmid).unwrap().get("cores"), Some("2"));

    let upid = c.qemu_start(&node, vmid).unwrap();
    c.wait_task(&upid, TASK_TIMEOUT).unwrap();
    let st = c.qemu_status(&node, vmid).unwrap();
    assert_eq!(st.status, "running", "{st:?}");
    assert_eq!(st.qmpstatus.as_deref(), Some("running"));
    assert_eq!(st.cpus, 2.0);
    let upid = c.qemu_stop(&node, vmid).unwrap();
    c.wait_task(&upid, TASK_TIMEOUT).unwrap();
    assert_eq!(c.qemu_status(&node, vmid).unwrap().status, "stopped");

    let upid = c.qemu_delete(&node, vmid, true).unwrap();
    c.wait_task(&upid, TASK_TIMEOUT).unwrap();
    assert!(c.qemu_config(&node, vmid).is_err());
}
