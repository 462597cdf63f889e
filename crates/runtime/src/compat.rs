//! runc 1.1's acceptance rules, applied to config.json (and `exec --process`
//! JSON) before it becomes a typed spec. Clients write what runc accepts:
//! Docker puts `blockIO.weight: 0` and `cpu.shares: 0` for "not set",
//! `runc spec` lists ambient capabilities that are not inheritable, old
//! specs carry `memory.kernel`. runc reads zero as unset, drops ambient
//! capabilities it cannot raise and ignores (with a warning) capabilities
//! and kernel-memory limits it does not know. We do the same here, once, so
//! the translators and the init only ever see what will really be applied.
//!
//! Nothing here weakens isolation: a dropped value was one that runc would
//! not apply either (zero limits, unraisable ambient capabilities, unknown
//! capabilities that nothing could grant).
use serde_json::{Map, Value};

/// The five capability sets of a process, in runc's order.
const CAP_SETS: [&str; 5] = [
    "bounding",
    "effective",
    "inheritable",
    "permitted",
    "ambient",
];

/// What normalizing changed: `warn` for what a user should hear about
/// (runc warns too), `debug` for what runc drops silently.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Notes {
    pub warn: Vec<String>,
    pub debug: Vec<String>,
}

impl Notes {
    /// Sends the notes to the log (`--log`, at warning and debug level).
    pub fn log(&self) {
        for w in &self.warn {
            tracing::warn!("{w}");
        }
        for d in &self.debug {
            tracing::debug!("{d}");
        }
    }
}

/// Normalizes a whole config.json value in place.
pub fn normalize_spec(spec: &mut Value) -> Notes {
    let mut notes = Notes::default();
    if let Some(p) = spec.get_mut("process") {
        normalize_caps(p, "process.capabilities", &mut notes);
    }
    if let Some(r) = spec
        .get_mut("linux")
        .and_then(|l| l.get_mut("resources"))
        .and_then(Value::as_object_mut)
    {
        normalize_resources(r, &mut notes);
    }
    notes
}

/// Normalizes an `exec --process` value in place.
pub fn normalize_process(process: &mut Value) -> Notes {
    let mut notes = Notes::default();
    // runc reads `user` into a plain struct: absent means uid 0, gid 0.
    if let Some(obj) = process.as_object_mut() {
        obj.entry("user")
            .or_insert_with(|| serde_json::json!({"uid": 0, "gid": 0}));
    }
    normalize_caps(process, "capabilities", &mut notes);
    notes
}

/// The number of the capability `name` (`CAP_…`) when both the OCI spec
/// and the running kernel know it.
fn cap_number(name: &str) -> Option<u8> {
    use std::str::FromStr;
    // The typed spec must be able to hold it...
    serde_json::from_value::<oci_spec::runtime::Capability>(Value::String(name.into())).ok()?;
    // ...and the kernel must have it (runc: "unknown or unavailable").
    let cap = caps::Capability::from_str(name).ok()?;
    (u32::from(cap.index()) <= last_cap()).then_some(cap.index())
}

fn last_cap() -> u32 {
    static LAST: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *LAST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40)
    })
}

/// Unknown capability names out of every set, then ambient capabilities
/// that are not both permitted and inheritable (the kernel refuses to
/// raise those; runc drops them).
fn normalize_caps(process: &mut Value, field: &str, notes: &mut Notes) {
    let Some(caps) = process
        .get_mut("capabilities")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let mut unknown: Vec<String> = Vec::new();
    for set in CAP_SETS {
        let Some(list) = caps.get_mut(set).and_then(Value::as_array_mut) else {
            continue;
        };
        list.retain(|v| match v.as_str() {
            Some(n) if cap_number(n).is_some() => true,
            // A non-string is left for the typed parse to reject.
            None => true,
            Some(n) => {
                if !unknown.iter().any(|u| u == n) {
                    unknown.push(n.to_string());
                }
                false
            }
        });
    }
    if !unknown.is_empty() {
        notes.warn.push(format!(
            "{field}: ignoring unknown or unavailable capabilities {unknown:?}"
        ));
    }
    let names = |caps: &Map<String, Value>, set: &str| -> Vec<String> {
        caps.get(set)
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let inheritable = names(caps, "inheritable");
    let permitted = names(caps, "permitted");
    if let Some(list) = caps.get_mut("ambient").and_then(Value::as_array_mut) {
        let mut dropped = Vec::new();
        list.retain(|v| {
            let Some(n) = v.as_str() else { return true };
            let ok = inheritable.iter().any(|c| c == n) && permitted.iter().any(|c| c == n);
            if !ok {
                dropped.push(n.to_string());
            }
            ok
        });
        if !dropped.is_empty() {
            notes.debug.push(format!(
                "{field}.ambient: dropping {dropped:?}, not both inheritable and permitted (cannot be raised)"
            ));
        }
    }
}

/// Removes `obj[key]` when it is the number zero; says so at debug level.
fn drop_zero(obj: &mut Map<String, Value>, key: &str, field: &str, notes: &mut Notes) {
    if obj.get(key).and_then(Value::as_f64) == Some(0.0) {
        obj.remove(key);
        notes.debug.push(format!("{field}.{key}: 0 means unset"));
    }
}

/// Removes `obj[key]` when it is the empty string.
fn drop_empty(obj: &mut Map<String, Value>, key: &str, field: &str, notes: &mut Notes) {
    if obj.get(key).and_then(Value::as_str) == Some("") {
        obj.remove(key);
        notes
            .debug
            .push(format!("{field}.{key}: empty means unset"));
    }
}

fn normalize_resources(r: &mut Map<String, Value>, notes: &mut Notes) {
    const F: &str = "linux.resources";
    if let Some(m) = r.get_mut("memory").and_then(Value::as_object_mut) {
        let f = format!("{F}.memory");
        for k in ["kernel", "kernelTCP"] {
            if m.remove(k).is_some() {
                notes.warn.push(format!(
                    "{f}.{k}: kernel memory limits are deprecated in Linux and ignored"
                ));
            }
        }
        for k in ["limit", "reservation", "swap"] {
            drop_zero(m, k, &f, notes);
        }
    }
    if let Some(c) = r.get_mut("cpu").and_then(Value::as_object_mut) {
        let f = format!("{F}.cpu");
        for k in [
            "shares",
            "quota",
            "period",
            "realtimeRuntime",
            "realtimePeriod",
        ] {
            drop_zero(c, k, &f, notes);
        }
        for k in ["cpus", "mems"] {
            drop_empty(c, k, &f, notes);
        }
    }
    if let Some(p) = r.get_mut("pids").and_then(Value::as_object_mut) {
        if p.get("limit").and_then(Value::as_f64) == Some(0.0) {
            r.remove("pids");
            notes.debug.push(format!("{F}.pids.limit: 0 means unset"));
        }
    }
    if let Some(b) = r.get_mut("blockIO").and_then(Value::as_object_mut) {
        let f = format!("{F}.blockIO");
        for k in ["weight", "leafWeight"] {
            drop_zero(b, k, &f, notes);
        }
        if let Some(list) = b.get_mut("weightDevice").and_then(Value::as_array_mut) {
            for (i, wd) in list.iter_mut().enumerate() {
                if let Some(wd) = wd.as_object_mut() {
                    let f = format!("{f}.weightDevice[{i}]");
                    drop_zero(wd, "weight", &f, notes);
                    drop_zero(wd, "leafWeight", &f, notes);
                }
            }
            // A device entry with neither weight sets nothing.
            list.retain(|wd| wd.get("weight").is_some() || wd.get("leafWeight").is_some());
        }
    }
    if let Some(n) = r.get_mut("network").and_then(Value::as_object_mut) {
        drop_zero(n, "classID", &format!("{F}.network"), notes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn runc_spec_ambient_caps_are_dropped() {
        // What `runc spec` 1.1 writes: ambient, no inheritable.
        let three = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
        let mut v = json!({"process": {"capabilities": {
            "bounding": three, "effective": three, "permitted": three, "ambient": three}}});
        let n = normalize_spec(&mut v);
        assert_eq!(v["process"]["capabilities"]["ambient"], json!([]));
        assert_eq!(v["process"]["capabilities"]["permitted"], three);
        assert!(n.warn.is_empty(), "{n:?}");
        assert!(n.debug[0].contains("CAP_KILL"), "{n:?}");
    }

    #[test]
    fn raisable_ambient_caps_stay() {
        let mut v = json!({"process": {"capabilities": {
            "permitted": ["CAP_KILL", "CAP_CHOWN"], "inheritable": ["CAP_KILL"],
            "ambient": ["CAP_KILL", "CAP_CHOWN"]}}});
        normalize_spec(&mut v);
        assert_eq!(v["process"]["capabilities"]["ambient"], json!(["CAP_KILL"]));
    }

    #[test]
    fn unknown_caps_warned_and_ignored() {
        let mut v = json!({"process": {"capabilities": {
            "bounding": ["CAP_CHOWN", "CAP_NOPE"], "permitted": ["CAP_NOPE"]}}});
        let n = normalize_spec(&mut v);
        assert_eq!(
            v["process"]["capabilities"]["bounding"],
            json!(["CAP_CHOWN"])
        );
        assert_eq!(v["process"]["capabilities"]["permitted"], json!([]));
        assert_eq!(n.warn.len(), 1, "{n:?}");
        assert!(n.warn[0].contains("CAP_NOPE"), "{n:?}");
        // The result parses as a typed spec.
        let _: oci_spec::runtime::Process =
            serde_json::from_value(json!({"cwd": "/", "user": {"uid": 0, "gid": 0},
                "capabilities": v["process"]["capabilities"]}))
            .unwrap();
    }

    #[test]
    fn exec_process_caps() {
        let mut p = json!({"capabilities": {"bounding": ["CAP_BOGUS"], "ambient": ["CAP_KILL"]}});
        let n = normalize_process(&mut p);
        assert_eq!(p["capabilities"]["bounding"], json!([]));
        assert_eq!(p["capabilities"]["ambient"], json!([]));
        assert!(n.warn[0].starts_with("capabilities:"), "{n:?}");
    }

    #[test]
    fn docker_zero_resources_are_unset() {
        // linux.resources as Docker 20.10 writes them for `docker run busybox`.
        let mut v = json!({"linux": {"resources": {
            "devices": [{"allow": false, "access": "rwm"}],
            "memory": {"disableOOMKiller": false, "limit": 0, "reservation": 0, "swap": 0},
            "cpu": {"shares": 0, "quota": 0, "period": 0, "realtimeRuntime": 0,
                    "realtimePeriod": 0, "cpus": "", "mems": ""},
            "pids": {"limit": 0},
            "blockIO": {"weight": 0, "leafWeight": 0,
                        "weightDevice": [{"major": 8, "minor": 0, "weight": 0}]},
            "network": {"classID": 0}}}});
        let n = normalize_spec(&mut v);
        assert_eq!(
            v["linux"]["resources"],
            json!({"devices": [{"allow": false, "access": "rwm"}],
                   "memory": {"disableOOMKiller": false}, "cpu": {},
                   "blockIO": {"weightDevice": []}, "network": {}})
        );
        assert!(n.warn.is_empty(), "{n:?}");
    }

    #[test]
    fn nonzero_resources_untouched() {
        let r = json!({"memory": {"limit": 1048576, "swap": -1},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"},
            "pids": {"limit": 10}, "blockIO": {"weight": 100}});
        let mut v = json!({"linux": {"resources": r.clone()}});
        let n = normalize_spec(&mut v);
        assert_eq!(v["linux"]["resources"], r);
        assert_eq!(n, Notes::default());
    }

    #[test]
    fn kernel_memory_warned_and_ignored() {
        let mut v = json!({"linux": {"resources": {"memory": {"kernel": 1, "kernelTCP": 2, "limit": 4096}}}});
        let n = normalize_spec(&mut v);
        assert_eq!(v["linux"]["resources"]["memory"], json!({"limit": 4096}));
        assert_eq!(n.warn.len(), 2, "{n:?}");
        assert!(n.warn[0].contains("memory.kernel"), "{n:?}");
    }

    #[test]
    fn exec_process_without_user_is_root() {
        let mut p = serde_json::json!({"args": ["id"], "cwd": "/"});
        normalize_process(&mut p);
        let parsed: oci_spec::runtime::Process = serde_json::from_value(p).unwrap();
        assert_eq!((parsed.user().uid(), parsed.user().gid()), (0, 0));
        let mut p = serde_json::json!({"args": ["id"], "cwd": "/", "user": {"uid": 7, "gid": 8}});
        normalize_process(&mut p);
        assert_eq!(p["user"]["uid"], 7);
    }
}
