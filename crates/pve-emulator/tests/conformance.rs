//! Checks every parameter the emulator accepts, on every endpoint it serves,
//! against the official schema (read at run time, never copied into the repo).

use std::path::PathBuf;

use serde_json::Value;

fn schema_file() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("PVE_API_SCHEMA") {
        return Some(PathBuf::from(p));
    }
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .map(|a| a.join("shared/reference/pve-api-schema-9.1.3.json"))
        .find(|p| p.exists())
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
