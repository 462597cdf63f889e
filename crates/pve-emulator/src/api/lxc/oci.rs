//! An OCI image as a CT template: its config becomes CT config keys.

use crate::store::Section;
use crate::template;

/// Maps an OCI image config onto the CT config, as Create.pm does.
pub(super) fn apply_oci(conf: &mut Section, o: &template::OciConfig, rootfs: &std::path::Path) {
    if let Some(e) = &o.entrypoint {
        conf.keys
            .entry("entrypoint".into())
            .or_insert_with(|| e.clone());
    }
    if !o.env.is_empty() && !conf.keys.contains_key("env") {
        let env: Vec<&str> = o
            .env
            .iter()
            .map(String::as_str)
            .filter(|e| !e.contains(['\n', '\0']))
            .collect();
        conf.keys.insert("env".into(), env.join("\0"));
    }
    conf.keys
        .entry("cmode".into())
        .or_insert_with(|| "console".into());
    let nets: Vec<String> = conf
        .keys
        .keys()
        .filter(|k| k.starts_with("net"))
        .cloned()
        .collect();
    for n in nets {
        let v = conf.keys[&n].clone();
        if !v.contains("host-managed=") {
            conf.keys.insert(n, format!("{v},host-managed=1"));
        }
    }
    let clean = |s: &str| !s.is_empty() && !s.contains(['\n', '\r', '\0']);
    if let Some(u) = o.user.as_deref().filter(|u| clean(u)) {
        let (user, group) = match u.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (u, None),
        };
        let (uid, mut gid) = match user.parse::<u32>() {
            Ok(n) => (
                Some(n),
                template::lookup_id(rootfs, "passwd", user)
                    .map(|x| x.1)
                    .or(Some(n)),
            ),
            Err(_) => template::lookup_id(rootfs, "passwd", user)
                .map(|(a, b)| (Some(a), Some(b)))
                .unwrap_or((None, None)),
        };
        if let Some(g) = group {
            gid = g
                .parse()
                .ok()
                .or_else(|| template::lookup_id(rootfs, "group", g).map(|x| x.0));
        }
        if let Some(uid) = uid {
            conf.lxc.push(("lxc.init.uid".into(), uid.to_string()));
        }
        if let Some(gid) = gid {
            conf.lxc.push(("lxc.init.gid".into(), gid.to_string()));
        }
    }
    if let Some(w) = o.workdir.as_deref().filter(|w| clean(w)) {
        conf.lxc.push(("lxc.init.cwd".into(), w.to_string()));
    }
    if let Some(s) = o.stop_signal.as_deref().filter(|s| clean(s)) {
        conf.lxc.push(("lxc.signal.halt".into(), s.to_string()));
    }
}
