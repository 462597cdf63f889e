//! Checks every parameter the emulator accepts, on every endpoint it serves,
//! against the official schema (read at run time, never copied into the repo).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

mod common;

fn schema_file() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("PVE_API_SCHEMA") {
        return Some(PathBuf::from(p));
    }
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .map(|a| a.join("shared/reference/pve-api-schema-9.1.3.json"))
        .find(|p| p.exists())
}

/// The official schema, parsed; None (with a SKIPPED line) when absent.
fn official() -> Option<Value> {
    let Some(file) = schema_file() else {
        println!("SKIPPED: official schema pve-api-schema-9.1.3.json not found (set PVE_API_SCHEMA or keep ../shared/reference)");
        return None;
    };
    Some(serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap())
}

fn find<'a>(nodes: &'a [Value], path: &str) -> Option<&'a Value> {
    for n in nodes {
        if n["path"] == path {
            return Some(n);
        }
        if let Some(c) = n["children"].as_array() {
            if let Some(r) = find(c, path) {
                return Some(r);
            }
        }
    }
    None
}

#[test]
fn parameters_match_the_official_schema() {
    let Some(file) = schema_file() else {
        println!("SKIPPED: official schema pve-api-schema-9.1.3.json not found (set PVE_API_SCHEMA or keep ../shared/reference)");
        return;
    };
    let official: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let tree = official.as_array().expect("schema is a list");
    let ours = pve_emulator::schema::dump();
    let mut problems = Vec::new();
    let mut checked = 0;
    for ep in ours.as_array().unwrap() {
        let (method, path) = (ep["method"].as_str().unwrap(), ep["path"].as_str().unwrap());
        let Some(node) = find(tree, path) else {
            problems.push(format!(
                "{method} {path}: no such path in the official schema"
            ));
            continue;
        };
        let Some(info) = node["info"].get(method) else {
            problems.push(format!(
                "{method} {path}: no such method in the official schema"
            ));
            continue;
        };
        let props = &info["parameters"]["properties"];
        for (name, p) in ep["parameters"]["properties"].as_object().unwrap() {
            checked += 1;
            let Some(o) = props.get(name) else {
                problems.push(format!(
                    "{method} {path}: '{name}' is not an official parameter"
                ));
                continue;
            };
            let at = format!("{method} {path} {name}");
            if p["type"] != o["type"] {
                problems.push(format!(
                    "{at}: type {} != official {}",
                    p["type"], o["type"]
                ));
            }
            for k in ["minimum", "maximum"] {
                // The official file has some bounds as strings ("0").
                let num = |v: Option<&Value>| {
                    v.and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()))
                };
                let a = num(p.get(k));
                let b = num(o.get(k));
                if a != b {
                    problems.push(format!("{at}: {k} {a:?} != official {b:?}"));
                }
            }
            if p.get("enum") != o.get("enum") {
                problems.push(format!(
                    "{at}: enum {:?} != official {:?}",
                    p.get("enum"),
                    o.get("enum")
                ));
            }
            if p.get("maxLength").is_some() && p.get("maxLength") != o.get("maxLength") {
                problems.push(format!("{at}: maxLength differs"));
            }
            let our_opt = p.get("optional").is_some();
            let off_opt = o.get("optional").and_then(Value::as_i64) == Some(1);
            if our_opt != off_opt {
                problems.push(format!("{at}: optional {our_opt} != official {off_opt}"));
            }
        }
        // Official required parameters must all be known to us.
        for (name, o) in props.as_object().into_iter().flatten() {
            if o.get("optional").and_then(Value::as_i64) != Some(1)
                && ep["parameters"]["properties"].get(name).is_none()
            {
                problems.push(format!(
                    "{method} {path}: official required '{name}' is missing"
                ));
            }
        }
    }
    println!(
        "checked {checked} parameters on {} endpoints",
        ours.as_array().unwrap().len()
    );
    assert!(checked > 300, "the table is suspiciously small");
    assert!(
        problems.is_empty(),
        "schema mismatches:\n{}",
        problems.join("\n")
    );
}

#[test]
fn validator_behaves_like_proxmox() {
    use std::collections::BTreeMap;
    let ep = pve_emulator::schema::find("POST", "/nodes/{node}/lxc").unwrap();
    let p = |kv: &[(&str, &str)]| {
        kv.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    let ok = p(&[
        ("node", "pve"),
        ("vmid", "100"),
        ("ostemplate", "local:vztmpl/a.tar"),
        ("net0", "name=eth0"),
        ("unprivileged", "1"),
    ]);
    assert!(pve_emulator::schema::validate(ep, &ok).is_ok());
    let e = pve_emulator::schema::validate(
        ep,
        &p(&[
            ("node", "pve"),
            ("vmid", "99"),
            ("unprivileged", "true"),
            ("net32", "name=eth0"),
            ("bogus", "1"),
        ]),
    )
    .unwrap_err();
    assert_eq!(e["vmid"], "value must have a minimum value of 100");
    assert_eq!(
        e["unprivileged"],
        "type check ('boolean') failed - got 'true'"
    );
    assert_eq!(
        e["ostemplate"],
        "property is missing and it is not optional"
    );
    assert!(e["net32"].contains("not defined in schema"));
    assert!(e["bogus"].contains("not defined in schema"));
    let e = pve_emulator::schema::validate(
        ep,
        &p(&[
            ("node", "pve"),
            ("vmid", "100"),
            ("ostemplate", "x"),
            ("hostname", "a\nb"),
            ("cmode", "x"),
        ]),
    )
    .unwrap_err();
    assert!(e.contains_key("hostname"));
    assert!(e["cmode"].contains("enumeration"));
}

#[test]
fn no_line_breaks_reach_a_config() {
    use std::collections::BTreeMap;
    let ep = pve_emulator::schema::find("PUT", "/nodes/{node}/lxc/{vmid}/config").unwrap();
    for (k, v) in [
        ("env", "A=1\nlxc.x: y"),
        ("entrypoint", "/bin/sh\nlxc.x: y"),
        ("tags", "a\nb"),
        ("description", "a\rb"),
    ] {
        let p: BTreeMap<String, String> = [("node", "pve"), ("vmid", "100"), (k, v)]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let e = pve_emulator::schema::validate(ep, &p).unwrap_err();
        assert!(e.contains_key(k), "{k}: {e:?}");
    }
    let p: BTreeMap<String, String> = [
        ("node", "pve"),
        ("vmid", "100"),
        ("env", "A=1\0B=2"),
        ("description", "two\nlines"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert!(pve_emulator::schema::validate(ep, &p).is_ok());
    let ep = pve_emulator::schema::find("PUT", "/nodes/{node}/qemu/{vmid}/config").unwrap();
    let p: BTreeMap<String, String> = [("node", "pve"), ("vmid", "100"), ("args", "-x\nlxc.y: z")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert!(pve_emulator::schema::validate(ep, &p).is_err());
}

// ---- responses against the official return schemas ----

fn is_one(v: &Value) -> bool {
    v.as_i64() == Some(1) || v.as_str() == Some("1")
}

/// Adds to `out` every way `v` differs from the official return schema
/// `s`: a missing required property, a wrong type, a value outside the
/// enum or below the minimum. Properties the schema does not declare are
/// allowed (real nodes send some too, e.g. `pid` in status/current).
/// Booleans are Proxmox's 0/1.
fn check_value(s: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
    let ty = s["type"].as_str().unwrap_or("any");
    let ok = match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean() || v.as_i64().is_some_and(|b| b == 0 || b == 1),
        "string" => v.is_string(),
        "null" => v.is_null(),
        _ => true,
    };
    if !ok {
        out.push(format!("{at}: type {ty} expected, got {v}"));
        return;
    }
    if let Some(e) = s["enum"].as_array() {
        if !e.contains(v) {
            out.push(format!("{at}: {v} is not one of {e:?}"));
        }
    }
    let bound = |k: &str| {
        s.get(k)
            .and_then(|b| b.as_f64().or_else(|| b.as_str()?.parse().ok()))
    };
    if let (Some(min), Some(x)) = (bound("minimum"), v.as_f64()) {
        if x < min {
            out.push(format!("{at}: {x} is below the minimum {min}"));
        }
    }
    if let (Some(max), Some(x)) = (bound("maximum"), v.as_f64()) {
        if x > max {
            out.push(format!("{at}: {x} is above the maximum {max}"));
        }
    }
    if let (Some(props), Some(o)) = (s["properties"].as_object(), v.as_object()) {
        for (k, ps) in props {
            match o.get(k) {
                None | Some(Value::Null) if !is_one(&ps["optional"]) => {
                    out.push(format!("{at}.{k}: required, missing"))
                }
                None | Some(Value::Null) => {}
                Some(x) => check_value(ps, x, &format!("{at}.{k}"), out),
            }
        }
    }
    if let (Some(items), Some(a)) = (s.get("items"), v.as_array()) {
        for (i, x) in a.iter().enumerate() {
            check_value(items, x, &format!("{at}[{i}]"), out);
        }
    }
}

#[test]
fn checker_finds_mismatches() {
    let schema = serde_json::json!({"type": "array", "items": {"type": "object", "properties": {
        "id": {"type": "string"},
        "status": {"type": "string", "enum": ["running", "stopped"]},
        "cpu": {"type": "number", "minimum": 0, "optional": 1},
        "template": {"type": "boolean", "optional": 1},
        "vmid": {"type": "integer", "optional": "1"},
    }}});
    let mut out = Vec::new();
    let good = serde_json::json!([{"id": "lxc/100", "status": "running", "cpu": 0.5, "template": 0, "extra": 1}]);
    check_value(&schema, &good, "data", &mut out);
    assert!(out.is_empty(), "{out:?}");
    let bad = serde_json::json!([
        {"status": "paused", "cpu": -1, "template": 2, "vmid": "100"},
        {"id": null, "status": "stopped"},
        "not an object",
    ]);
    check_value(&schema, &bad, "data", &mut out);
    // The order of the findings follows the schema's object order (which
    // serde_json's preserve_order keeps); what is found is the point.
    out.sort();
    assert_eq!(
        out,
        [
            "data[0].cpu: -1 is below the minimum 0",
            "data[0].id: required, missing",
            "data[0].status: \"paused\" is not one of [String(\"running\"), String(\"stopped\")]",
            "data[0].template: type boolean expected, got 2",
            "data[0].vmid: type integer expected, got \"100\"",
            "data[1].id: required, missing",
            "data[2]: type object expected, got \"not an object\"",
        ]
    );
}

/// Answers that differ from the schema on real nodes too, so the emulator
/// differs on purpose (docs/pve-emulator.md and ../shared/reference).
const KNOWN_QUIRKS: &[(&str, &str)] = &[
    // The server sends the id as a string although the schema says integer.
    ("GET /cluster/nextid", "type integer expected"),
];

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// What fills the path parameters of the requests.
struct Fixture {
    ct: u32,
    vm: u32,
    upid: String,
    template: String,
}

impl Fixture {
    fn path(&self, pattern: &str) -> String {
        let vmid = if pattern.contains("/qemu/") {
            self.vm
        } else {
            self.ct
        };
        pattern
            .replace("{node}", "pve")
            .replace("{vmid}", &vmid.to_string())
            .replace("{storage}", "local")
            .replace("{upid}", &enc(&self.upid))
            .replace("{volume}", &enc(&self.template))
            .replace("{name}", "ipfilter-net0")
            .replace("{vnet}", "vnet1")
            .replace("{ipam}", "pve")
    }
}

/// The requests for one GET endpoint: its required query parameters, then
/// one request per value of each enum parameter (so `/cluster/resources`
/// is asked with every `type`, rrddata with every time frame and `cf`).
fn cases(ep: &pve_emulator::schema::Endpoint) -> Vec<Vec<(String, String)>> {
    use pve_emulator::schema::Ty;
    let in_path = |n: &str| ep.path.contains(&format!("{{{n}}}"));
    let mut base = Vec::new();
    let mut variants = Vec::new();
    for p in ep.params.iter().filter(|p| !in_path(p.name)) {
        let values: Vec<String> = match &p.ty {
            Ty::Str { enum_: Some(e), .. } => e.iter().map(|v| v.to_string()).collect(),
            _ if p.required => panic!(
                "{} {}: no value for required '{}'",
                ep.method, ep.path, p.name
            ),
            _ => continue,
        };
        if p.required {
            base.push((p.name.to_string(), values[0].clone()));
            variants.extend(values[1..].iter().map(|v| (p.name.to_string(), v.clone())));
        } else {
            variants.extend(values.into_iter().map(|v| (p.name.to_string(), v)));
        }
    }
    let mut out = vec![base.clone()];
    for (k, v) in variants {
        let mut c: Vec<_> = base.iter().filter(|(b, _)| *b != k).cloned().collect();
        c.push((k, v));
        out.push(c);
    }
    out
}

/// The official `returns` of METHOD PATH.
fn returns<'a>(tree: &'a [Value], method: &str, path: &str) -> &'a Value {
    &find(tree, path).unwrap_or_else(|| panic!("{path} is not in the official schema"))["info"]
        [method]["returns"]
}

fn get(emu: &common::Emulator, path: &str, query: &[(&str, &str)]) -> Value {
    let mut args = vec!["-G".to_string()];
    for (k, v) in query {
        args.push("--data-urlencode".into());
        args.push(format!("{k}={v}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, v) = emu.call("GET", path, &args);
    assert_eq!(code, 200, "GET {path} {query:?}: {v}");
    v
}

/// Starts the emulator with one running CT, a stopped one whose start
/// failed, a QEMU guest and a few tasks, so every GET has something to show.
fn populated(d: &Path) -> (common::Emulator, Fixture) {
    testkit::require_root_and_lxc("the response conformance test (real CTs)");
    let emu = common::builder(d)
        .own_bridge()
        .args(&["--stats-interval-ms", "300"])
        .start();
    let tpl = common::busybox_template(d, "bb.tar.gz");
    let template = common::install_template(d, &tpl);
    let ct = common::vmid();
    let net = format!("name=eth0,bridge={}", emu.bridge().unwrap());
    emu.task_ok(
        "POST",
        "/nodes/pve/lxc",
        &[
            "-d",
            &format!("vmid={ct}"),
            "-d",
            &format!("ostemplate={template}"),
            "--data-urlencode",
            "entrypoint=/bin/sleep 1000",
            "--data-urlencode",
            &format!("net0={net}"),
            "-d",
            "memory=128",
            "-d",
            "tags=conf",
        ],
    );
    emu.task_ok("POST", &format!("/nodes/pve/lxc/{ct}/status/start"), &[]);
    // Its firewall: options and an IP set with an address, for the
    // firewall GETs.
    for (m, path, args) in [
        (
            "PUT",
            format!("/nodes/pve/lxc/{ct}/firewall/options"),
            vec!["-d", "enable=1", "-d", "ipfilter=1"],
        ),
        (
            "POST",
            format!("/nodes/pve/lxc/{ct}/firewall/ipset"),
            vec!["-d", "name=ipfilter-net0", "-d", "comment=lease"],
        ),
        (
            "POST",
            format!("/nodes/pve/lxc/{ct}/firewall/ipset/ipfilter-net0"),
            vec!["-d", "cidr=10.9.9.9"],
        ),
    ] {
        let (code, v) = emu.call(m, &path, &args);
        assert_eq!(code, 200, "{m} {path}: {v}");
    }
    // SDN: a zone, a vnet with a subnet, one registered address.
    for (path, args) in [
        (
            "/cluster/sdn/zones",
            vec!["-d", "zone=zone1", "-d", "type=simple"],
        ),
        (
            "/cluster/sdn/vnets",
            vec!["-d", "vnet=vnet1", "-d", "zone=zone1", "-d", "tag=5"],
        ),
        (
            "/cluster/sdn/vnets/vnet1/subnets",
            vec![
                "-d",
                "subnet=10.8.8.0/24",
                "-d",
                "type=subnet",
                "-d",
                "gateway=10.8.8.1",
            ],
        ),
        (
            "/cluster/sdn/vnets/vnet1/ips",
            vec![
                "-d",
                "ip=10.8.8.5",
                "-d",
                "zone=zone1",
                "-d",
                "mac=02:00:00:00:00:05",
            ],
        ),
    ] {
        let (code, v) = emu.call("POST", path, &args);
        assert_eq!(code, 200, "POST {path}: {v}");
    }
    let vm = common::vmid();
    emu.task_ok(
        "POST",
        "/nodes/pve/qemu",
        &[
            "-d",
            &format!("vmid={vm}"),
            "-d",
            "memory=256",
            "-d",
            "cores=2",
        ],
    );
    // The VM's firewall, as the CT's above.
    for (m, path, args) in [
        ("PUT", "firewall/options", vec!["-d", "enable=1"]),
        ("POST", "firewall/ipset", vec!["-d", "name=ipfilter-net0"]),
        (
            "POST",
            "firewall/ipset/ipfilter-net0",
            vec!["-d", "cidr=10.9.9.8"],
        ),
    ] {
        let path = format!("/nodes/pve/qemu/{vm}/{path}");
        let (code, v) = emu.call(m, &path, &args);
        assert_eq!(code, 200, "{m} {path}: {v}");
    }
    // A task that fails: the fault makes the next QEMU create's task end
    // with an error.
    emu.add_faults(serde_json::json!([{
        "method": "POST", "path": "^/nodes/[^/]+/qemu$", "action": "fail_task",
        "message": "disk on fire", "count": 1,
    }]));
    let other = common::vmid().to_string();
    let (_, v) = emu.call("POST", "/nodes/pve/qemu", &["-d", &format!("vmid={other}")]);
    let upid = v["data"].as_str().expect("a create task").to_string();
    emu.wait_task(&upid);
    (
        emu,
        Fixture {
            ct,
            vm,
            upid,
            template,
        },
    )
}

/// Every GET the emulator serves, with every enum value of its parameters,
/// answers 200 with data of the official return type.
#[test]
fn responses_match_the_official_schema() {
    let Some(official) = official() else { return };
    let tree = official.as_array().unwrap();
    let d = tempfile::tempdir().unwrap();
    let (emu, fx) = populated(d.path());
    // Two samples at least, so rates (cpu, netin) exist.
    std::thread::sleep(std::time::Duration::from_millis(900));
    let mut problems = Vec::new();
    let mut asked = 0;
    for ep in pve_emulator::schema::endpoints()
        .iter()
        .filter(|e| e.method == "GET")
    {
        let ret = returns(tree, "GET", ep.path);
        let path = fx.path(ep.path);
        for q in cases(ep) {
            let q: Vec<(&str, &str)> = q.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            let v = get(&emu, &path, &q);
            asked += 1;
            let mut found = Vec::new();
            check_value(ret, &v["data"], "data", &mut found);
            let name = format!("GET {}", ep.path);
            found.retain(|f| {
                !KNOWN_QUIRKS
                    .iter()
                    .any(|(e, m)| *e == name && f.contains(m))
            });
            problems.extend(found.into_iter().map(|f| format!("{name} {q:?}: {f}")));
        }
    }
    println!("checked {asked} answers");
    assert!(asked > 40, "only {asked} requests");
    assert!(
        problems.is_empty(),
        "answers off the schema:\n{}",
        problems.join("\n")
    );
}

/// The new endpoints' values come from the real state: the CT's cgroup,
/// the storage's file system, the task files.
#[test]
fn endpoint_values_are_real() {
    let d = tempfile::tempdir().unwrap();
    let (emu, fx) = populated(d.path());
    let ct = fx.ct.to_string();

    // /cluster/resources: each type filter gives that type only.
    let kinds = |q: &[(&str, &str)]| -> Vec<String> {
        let v = get(&emu, "/cluster/resources", q);
        let mut k: Vec<String> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["type"].as_str().unwrap().to_string())
            .collect();
        k.sort();
        k.dedup();
        k
    };
    assert_eq!(kinds(&[("type", "vm")]), ["lxc", "qemu"]);
    assert_eq!(kinds(&[("type", "node")]), ["node"]);
    assert_eq!(kinds(&[("type", "storage")]), ["storage"]);
    assert!(kinds(&[("type", "sdn")]).is_empty());
    assert_eq!(kinds(&[]), ["lxc", "node", "qemu", "storage"]);
    let vms = get(&emu, "/cluster/resources", &[("type", "vm")]);
    let mine = vms["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["vmid"] == fx.ct)
        .unwrap()
        .clone();
    assert_eq!(
        (mine["status"].as_str(), mine["tags"].as_str()),
        (Some("running"), Some("conf"))
    );
    assert_eq!(mine["maxmem"], 128u64 << 20);
    assert!(mine["mem"].as_u64().unwrap() > 0, "{mine}");

    // cluster/status: one standalone node, answering itself.
    let st = get(&emu, "/cluster/status", &[]);
    assert_eq!(st["data"].as_array().unwrap().len(), 1, "{st}");
    assert_eq!(st["data"][0]["name"], "pve");
    assert_eq!(st["data"][0]["local"], 1);

    // Storage status is the file system's.
    let s = get(&emu, "/nodes/pve/storage/local/status", &[]);
    let fs = nix::sys::statvfs::statvfs(&d.path().join("storage/local")).unwrap();
    let total = fs.blocks() * fs.fragment_size();
    assert_eq!(s["data"]["total"].as_u64().unwrap(), total);
    let avail = (fs.blocks_available() * fs.fragment_size()) as i64;
    let diff = (s["data"]["avail"].as_i64().unwrap() - avail).abs();
    assert!(
        diff < 256 << 20,
        "avail {} vs statvfs {avail}",
        s["data"]["avail"]
    );
    assert_eq!(s["data"]["type"], "dir");

    // Storage content filters.
    let vols = |q: &[(&str, &str)]| -> Vec<String> {
        get(&emu, "/nodes/pve/storage/local/content", q)["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["volid"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        vols(&[("content", "vztmpl")]),
        std::slice::from_ref(&fx.template)
    );
    assert_eq!(
        vols(&[("content", "rootdir"), ("vmid", &ct)]),
        [format!("local:subvol-{ct}-disk-0")]
    );
    assert!(vols(&[("content", "iso")]).is_empty());

    // pending: the config as it is, nothing pending.
    let p = get(&emu, &format!("/nodes/pve/lxc/{ct}/pending"), &[]);
    let rows = p["data"].as_array().unwrap();
    let mem = rows.iter().find(|r| r["key"] == "memory").unwrap();
    assert_eq!(mem["value"], "128");
    assert!(rows
        .iter()
        .all(|r| r.get("pending").is_none() && r.get("delete").is_none()));
    let conf = get(&emu, &format!("/nodes/pve/lxc/{ct}/config"), &[]);
    let digest = rows.iter().find(|r| r["key"] == "digest").unwrap();
    assert_eq!(digest["value"], conf["data"]["digest"]);

    // rrddata: the CT's samples carry its cgroup's memory and its limit.
    let mut last = Value::Null;
    for _ in 0..50 {
        let r = get(
            &emu,
            &format!("/nodes/pve/lxc/{ct}/rrddata"),
            &[("timeframe", "hour")],
        );
        let rows = r["data"].as_array().unwrap();
        assert_eq!(rows.len(), 70);
        last = rows[69].clone();
        if last.get("cpu").is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        last["cpu"]
            .as_f64()
            .is_some_and(|c| (0.0..=1.0).contains(&c)),
        "{last}"
    );
    assert!(last["mem"].as_f64().unwrap() > 0.0, "{last}");
    assert_eq!(last["maxmem"].as_f64().unwrap(), (128u64 << 20) as f64);
    let node = get(
        &emu,
        "/nodes/pve/rrddata",
        &[("timeframe", "hour"), ("cf", "MAX")],
    );
    // The newest row with a sample (a minute may have just begun).
    let newest = |rows: &Value, key: &str| -> Value {
        rows.as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|r| r.get(key).is_some())
            .cloned()
            .unwrap_or_else(|| panic!("no row has {key}: {rows}"))
    };
    let n = &newest(&node["data"], "memtotal");
    assert!(
        n["memtotal"].as_f64().unwrap() > 0.0 && n["roottotal"].as_f64().unwrap() > 0.0,
        "{n}"
    );
    let sr = get(
        &emu,
        "/nodes/pve/storage/local/rrddata",
        &[("timeframe", "day")],
    );
    assert_eq!(
        newest(&sr["data"], "total")["total"].as_f64().unwrap(),
        total as f64
    );

    // Task list filters.
    let tasks = |q: &[(&str, &str)]| -> (Vec<Value>, u64) {
        let v = get(&emu, "/nodes/pve/tasks", q);
        (
            v["data"].as_array().unwrap().clone(),
            v["total"].as_u64().unwrap(),
        )
    };
    let (all, total) = tasks(&[]);
    assert_eq!(total as usize, all.len());
    assert!(total >= 4, "{all:?}");
    let (starts, _) = tasks(&[("typefilter", "vzstart")]);
    assert_eq!(starts.len(), 1, "{starts:?}");
    assert_eq!(starts[0]["id"], ct.as_str());
    let (of_ct, _) = tasks(&[("vmid", &ct)]);
    assert!(
        of_ct.iter().all(|t| t["id"] == ct.as_str()) && of_ct.len() == 2,
        "{of_ct:?}"
    );
    let (errs, _) = tasks(&[("errors", "1")]);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0]["upid"], fx.upid.as_str());
    let (errs2, _) = tasks(&[("statusfilter", "error")]);
    assert_eq!(errs2, errs);
    let (page, t2) = tasks(&[("start", "1"), ("limit", "1")]);
    assert_eq!((page.len() as u64, t2), (1, total));
    assert_eq!(page[0], all[1]);
    assert_eq!(tasks(&[("userfilter", "nobody")]).1, 0);
    assert_eq!(tasks(&[("userfilter", "ROOT@PAM")]).1, total);
    assert_eq!(tasks(&[("since", "4000000000")]).1, 0);
    assert_eq!(tasks(&[("until", "1")]).1, 0);
    assert_eq!(tasks(&[("source", "active")]).1, 0);
    assert_eq!(tasks(&[("source", "all")]).1, total);
}

/// A start that LXC refuses fails its task with LXC's own error lines in
/// the log, as on a node: here the CTs' root cannot reach the rootfs.
#[test]
fn failed_start_logs_lxc_errors() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let (emu, fx) = populated(d.path());
    let ct = fx.ct;
    emu.task_ok("POST", &format!("/nodes/pve/lxc/{ct}/status/stop"), &[]);
    let images = d.path().join(format!("storage/local/images/{ct}"));
    let mode = std::fs::metadata(&images).unwrap().permissions().mode();
    std::fs::set_permissions(&images, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (code, v) = emu.call("POST", &format!("/nodes/pve/lxc/{ct}/status/start"), &[]);
    assert_eq!(code, 200, "{v}");
    let upid = v["data"].as_str().unwrap();
    let st = emu.wait_task(upid);
    std::fs::set_permissions(&images, std::fs::Permissions::from_mode(mode)).unwrap();
    assert_eq!(
        st["exitstatus"],
        format!("startup for container '{ct}' failed")
    );
    let log = emu.task_log(upid);
    let lines: Vec<&str> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["t"].as_str().unwrap())
        .collect();
    assert!(lines.len() >= 2, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Failed to") && l.contains(": ")),
        "LXC's error lines: {lines:?}"
    );
    assert_eq!(
        *lines.last().unwrap(),
        format!("TASK ERROR: startup for container '{ct}' failed")
    );
}

// ---- the implemented / not implemented list in docs/pve-emulator.md ----

const BEGIN: &str = "<!-- endpoints: generated by tests/conformance.rs (UPDATE_DOCS=1) -->";
const END: &str = "<!-- end of generated endpoints -->";

/// Every (method, path) of the official schema.
fn official_endpoints(tree: &[Value], out: &mut Vec<(String, String)>) {
    for n in tree {
        for m in n["info"].as_object().into_iter().flatten().map(|(m, _)| m) {
            out.push((m.clone(), n["path"].as_str().unwrap().to_string()));
        }
        if let Some(c) = n["children"].as_array() {
            official_endpoints(c, out);
        }
    }
}

fn endpoint_section(tree: &[Value]) -> String {
    let mut all = Vec::new();
    official_endpoints(tree, &mut all);
    let ours: Vec<(String, String)> = pve_emulator::schema::endpoints()
        .iter()
        .map(|e| (e.method.to_string(), e.path.to_string()))
        .collect();
    let mut s = format!("{BEGIN}\n");
    s.push_str(&format!(
        "Of the {} endpoints (method and path) of the official API schema 9.1.3, the emulator \
         serves {}; every other one answers 501 (`Method 'GET /path' not implemented`).\n\n",
        all.len(),
        ours.len()
    ));
    s.push_str("Implemented:\n\n");
    let mut by_path: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (m, p) in &ours {
        by_path.entry(p).or_default().push(m);
    }
    for (p, ms) in &by_path {
        s.push_str(&format!("- `{p}`: {}\n", ms.join(", ")));
    }
    // Not implemented, grouped by the first three path segments.
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (m, p) in &all {
        if ours.iter().any(|(om, op)| om == m && op == p) {
            continue;
        }
        let segs: Vec<&str> = p.split('/').collect();
        let head = segs[..segs.len().min(4)].join("/");
        let rest = p[head.len()..].to_string();
        groups
            .entry(head)
            .or_default()
            .push(format!("{m} {}", if rest.is_empty() { "." } else { &rest }));
    }
    s.push_str("\nNot implemented (grouped; `.` is the group's own path):\n\n");
    for (head, items) in &groups {
        s.push_str(&format!("- `{head}`: {}\n", items.join(", ")));
    }
    s.push_str(END);
    s.push('\n');
    s
}

/// docs/pve-emulator.md lists what is implemented, from the route table and
/// the official schema; `UPDATE_DOCS=1` rewrites the list.
#[test]
fn endpoint_list_in_docs_is_current() {
    let Some(official) = official() else { return };
    let want = endpoint_section(official.as_array().unwrap());
    let doc = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/pve-emulator.md");
    let text = std::fs::read_to_string(&doc).unwrap();
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        panic!(
            "{} has no generated endpoint list between {BEGIN} and {END}",
            doc.display()
        );
    };
    let have = &text[b..e + END.len() + 1];
    if have == want {
        return;
    }
    if std::env::var("UPDATE_DOCS").as_deref() == Ok("1") {
        let new = format!("{}{want}{}", &text[..b], &text[e + END.len() + 1..]);
        std::fs::write(&doc, new).unwrap();
        println!("updated {}", doc.display());
        return;
    }
    panic!(
        "the endpoint list in {} is stale: run `UPDATE_DOCS=1 cargo test -p pve-emulator --test conformance endpoint_list`",
        doc.display()
    );
}
