//! runc's default spec as a builder.
use std::path::Path;

use serde_json::{json, Value};

/// An OCI runtime spec (config.json) as JSON, built from what `runc spec`
/// writes ([`Spec::runc`]) with setters for what tests change; anything
/// else through [`Spec::set`], [`Spec::remove`] or [`Spec::edit`].
#[derive(Clone, Debug, PartialEq)]
pub struct Spec(Value);

impl Spec {
    /// The spec `runc spec` writes (runc 1.2, OCI 1.2.0, on a cgroup v2
    /// host: with a cgroup namespace): `sh` on a terminal, a read-only
    /// `rootfs`, hostname `runc`, three capabilities, `RLIMIT_NOFILE` 1024,
    /// no new privileges, the default mounts, masked and read-only paths,
    /// and every device denied.
    pub fn runc() -> Spec {
        let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
        Spec(json!({
            "ociVersion": "1.2.0",
            "process": {
                "terminal": true,
                "user": {"uid": 0, "gid": 0},
                "args": ["sh"],
                "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
                "cwd": "/",
                "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs", "readonly": true},
            "hostname": "runc",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
                {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
            ],
            "linux": {
                "resources": {"devices": [{"allow": false, "access": "rwm"}]},
                "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
                "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
                "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
            }
        }))
    }

    /// `process.args`.
    pub fn args(self, args: &[&str]) -> Spec {
        self.set("/process/args", json!(args))
    }

    /// `process.env`, replacing runc's.
    pub fn env(self, env: &[&str]) -> Spec {
        self.set("/process/env", json!(env))
    }

    /// `process.terminal`.
    pub fn terminal(self, on: bool) -> Spec {
        self.set("/process/terminal", json!(on))
    }

    /// `process.cwd`.
    pub fn cwd(self, cwd: &str) -> Spec {
        self.set("/process/cwd", json!(cwd))
    }

    /// `process.user` (uid and gid only).
    pub fn user(self, uid: u32, gid: u32) -> Spec {
        self.set("/process/user", json!({"uid": uid, "gid": gid}))
    }

    /// `hostname`.
    pub fn hostname(self, name: &str) -> Spec {
        self.set("/hostname", json!(name))
    }

    /// `root.readonly`.
    pub fn readonly_root(self, ro: bool) -> Spec {
        self.set("/root/readonly", json!(ro))
    }

    /// One more entry in `mounts`.
    pub fn mount(mut self, mount: Value) -> Spec {
        self.0["mounts"].as_array_mut().unwrap().push(mount);
        self
    }

    /// Without the mount on `destination`.
    pub fn without_mount(mut self, destination: &str) -> Spec {
        self.0["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| m["destination"] != destination);
        self
    }

    /// One annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> Spec {
        if !self.0["annotations"].is_object() {
            self.0["annotations"] = json!({});
        }
        self.0["annotations"][key] = json!(value);
        self
    }

    /// Sets the value at a JSON pointer (`/process/user/uid`), making the
    /// objects on the way.
    pub fn set(mut self, pointer: &str, value: Value) -> Spec {
        let mut v = &mut self.0;
        for key in pointer.split('/').skip(1) {
            if !v.is_object() {
                *v = json!({});
            }
            v = v
                .as_object_mut()
                .unwrap()
                .entry(key.replace("~1", "/").replace("~0", "~"))
                .or_insert(Value::Null);
        }
        *v = value;
        self
    }

    /// Without the value at a JSON pointer (`/process/rlimits`).
    pub fn remove(mut self, pointer: &str) -> Spec {
        let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
        if let Some(Value::Object(m)) = self.0.pointer_mut(parent) {
            m.remove(&key.replace("~1", "/").replace("~0", "~"));
        }
        self
    }

    /// Any other change, on the JSON.
    pub fn edit(mut self, f: impl FnOnce(&mut Value)) -> Spec {
        f(&mut self.0);
        self
    }

    pub fn as_value(&self) -> &Value {
        &self.0
    }

    pub fn into_value(self) -> Value {
        self.0
    }

    /// Writes it as `dir/config.json`.
    pub fn write(&self, dir: &Path) {
        std::fs::write(
            dir.join("config.json"),
            serde_json::to_vec_pretty(&self.0).unwrap(),
        )
        .unwrap();
    }
}

impl From<Spec> for Value {
    fn from(s: Spec) -> Value {
        s.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setters_pointers_and_removal() {
        let s = Spec::runc()
            .args(&["sleep", "1"])
            .terminal(false)
            .user(65534, 65534)
            .set("/linux/sysctl/net~1ipv4~1ip_forward", json!("1"))
            .remove("/process/rlimits")
            .without_mount("/dev/mqueue")
            .annotation("a", "b")
            .into_value();
        assert_eq!(s["process"]["args"], json!(["sleep", "1"]));
        assert_eq!(s["process"]["terminal"], json!(false));
        assert_eq!(s["process"]["user"], json!({"uid": 65534, "gid": 65534}));
        assert_eq!(s["linux"]["sysctl"]["net/ipv4/ip_forward"], "1");
        assert!(s["process"].get("rlimits").is_none());
        assert_eq!(s["mounts"].as_array().unwrap().len(), 6);
        assert_eq!(s["annotations"]["a"], "b");
        // The rest is runc's.
        assert_eq!(s["root"], json!({"path": "rootfs", "readonly": true}));
        assert_eq!(s["hostname"], "runc");
    }
}
