//! Decoded answers. Only the fields the runtime uses are typed; unknown
//! fields are ignored and every scalar is decoded leniently (see `de`).

use std::collections::BTreeMap;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::de;

/// `GET /version`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Version {
    #[serde(default, deserialize_with = "de::string")]
    pub version: String,
    #[serde(default, deserialize_with = "de::string")]
    pub release: String,
    #[serde(default, deserialize_with = "de::string")]
    pub repoid: String,
}

/// One entry of `GET /nodes`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NodeInfo {
    #[serde(deserialize_with = "de::string")]
    pub node: String,
    /// `online`, `offline` or `unknown`.
    #[serde(default, deserialize_with = "de::string")]
    pub status: String,
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub cpu: Option<f64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub maxcpu: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub mem: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub maxmem: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub uptime: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub ssl_fingerprint: Option<String>,
}

/// Memory numbers of `GET /nodes/{node}/status`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MemoryInfo {
    #[serde(default, deserialize_with = "de::u64")]
    pub total: u64,
    #[serde(default, deserialize_with = "de::u64")]
    pub used: u64,
    #[serde(default, deserialize_with = "de::u64")]
    pub free: u64,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub available: Option<u64>,
}

/// CPU description of `GET /nodes/{node}/status`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CpuInfo {
    #[serde(default, deserialize_with = "de::u64")]
    pub cpus: u64,
    #[serde(default, deserialize_with = "de::u64")]
    pub cores: u64,
    #[serde(default, deserialize_with = "de::u64")]
    pub sockets: u64,
    #[serde(default, deserialize_with = "de::string")]
    pub model: String,
}

/// `GET /nodes/{node}/status`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NodeStatus {
    #[serde(default, deserialize_with = "de::f64")]
    pub cpu: f64,
    #[serde(default)]
    pub cpuinfo: Option<CpuInfo>,
    #[serde(default)]
    pub memory: Option<MemoryInfo>,
    #[serde(default)]
    pub swap: Option<MemoryInfo>,
    #[serde(default)]
    pub rootfs: Option<MemoryInfo>,
    #[serde(default, deserialize_with = "de::vec")]
    pub loadavg: Vec<Value>,
    #[serde(default, deserialize_with = "de::u64")]
    pub uptime: u64,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub pveversion: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub kversion: Option<String>,
}

/// One entry of `GET /cluster/resources`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Resource {
    #[serde(deserialize_with = "de::string")]
    pub id: String,
    /// `node`, `storage`, `qemu`, `lxc`, `pool`, `sdn`, ...
    #[serde(rename = "type", default, deserialize_with = "de::string")]
    pub kind: String,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub node: Option<String>,
    #[serde(default, deserialize_with = "de::opt_u32")]
    pub vmid: Option<u32>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub cpu: Option<f64>,
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub maxcpu: Option<f64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub mem: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub maxmem: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub disk: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub maxdisk: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub uptime: Option<u64>,
    #[serde(default, deserialize_with = "de::bool")]
    pub template: bool,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub tags: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub lock: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub storage: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub content: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub plugintype: Option<String>,
    #[serde(default, deserialize_with = "de::bool")]
    pub shared: bool,
}

/// One entry of `GET /nodes/{node}/lxc` (and `/qemu`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CtListEntry {
    #[serde(deserialize_with = "de::u32")]
    pub vmid: u32,
    #[serde(default, deserialize_with = "de::string")]
    pub status: String,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub lock: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub tags: Option<String>,
    #[serde(default, deserialize_with = "de::bool")]
    pub template: bool,
    #[serde(default, deserialize_with = "de::u64")]
    pub mem: u64,
    #[serde(default, deserialize_with = "de::u64")]
    pub maxmem: u64,
    #[serde(default, deserialize_with = "de::f64")]
    pub cpu: f64,
    #[serde(default, deserialize_with = "de::u64")]
    pub uptime: u64,
}

/// Alias: the QEMU list has the same shape.
pub type VmListEntry = CtListEntry;

/// `GET .../config` of a CT or VM: the `key: value` lines of the config as
/// strings (numbers and 0/1 flags as Proxmox writes them), plus the raw
/// `lxc.*` pairs (read-only through the API) and the digest for optimistic
/// locking on updates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CtConfig {
    pub values: BTreeMap<String, String>,
    pub lxc: Vec<(String, String)>,
    pub digest: Option<String>,
}

/// Alias: a QEMU config decodes the same way (it has no `lxc` pairs).
pub type VmConfig = CtConfig;

impl CtConfig {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The values of every `lxc` pair with this key, in order.
    pub fn lxc_values<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.lxc
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl<'de> Deserialize<'de> for CtConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<CtConfig, D::Error> {
        let map = BTreeMap::<String, Value>::deserialize(d)?;
        let mut cfg = CtConfig::default();
        for (key, value) in map {
            match key.as_str() {
                "digest" => cfg.digest = de::value_to_string(&value),
                "lxc" => {
                    let pairs = Option::<Vec<Vec<Value>>>::deserialize(value)
                        .map_err(|e| D::Error::custom(format!("lxc: {e}")))?
                        .unwrap_or_default();
                    for pair in pairs {
                        match pair.as_slice() {
                            [k, v] => cfg.lxc.push((
                                de::value_to_string(k).unwrap_or_default(),
                                de::value_to_string(v).unwrap_or_default(),
                            )),
                            _ => return Err(D::Error::custom("lxc: expected [key, value] pairs")),
                        }
                    }
                }
                _ => {
                    // Nested values (none in CT configs today) are kept as JSON text.
                    let text = de::value_to_string(&value)
                        .or_else(|| (!value.is_null()).then(|| value.to_string()));
                    if let Some(text) = text {
                        cfg.values.insert(key, text);
                    }
                }
            }
        }
        Ok(cfg)
    }
}

/// `GET .../status/current` of a CT.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CtStatus {
    #[serde(default, deserialize_with = "de::u32")]
    pub vmid: u32,
    /// `running` or `stopped`.
    #[serde(default, deserialize_with = "de::string")]
    pub status: String,
    /// The CT init's host pid, when running (sent by real servers though not
    /// in the schema).
    #[serde(default, deserialize_with = "de::opt_u32")]
    pub pid: Option<u32>,
    #[serde(default, deserialize_with = "de::u64")]
    pub mem: u64,
    #[serde(default, deserialize_with = "de::u64")]
    pub maxmem: u64,
    #[serde(default, deserialize_with = "de::u64")]
    pub maxswap: u64,
    #[serde(default, deserialize_with = "de::f64")]
    pub cpu: f64,
    #[serde(default, deserialize_with = "de::f64")]
    pub cpus: f64,
    #[serde(default, deserialize_with = "de::u64")]
    pub uptime: u64,
    #[serde(default, deserialize_with = "de::u64")]
    pub disk: u64,
    #[serde(default, deserialize_with = "de::u64")]
    pub maxdisk: u64,
    #[serde(default, deserialize_with = "de::u64")]
    pub netin: u64,
    #[serde(default, deserialize_with = "de::u64")]
    pub netout: u64,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub lock: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub tags: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "de::bool")]
    pub template: bool,
}

impl CtStatus {
    pub fn is_running(&self) -> bool {
        self.status == "running"
    }
}

/// `GET .../status/current` of a VM.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct VmStatus {
    #[serde(default, deserialize_with = "de::u32")]
    pub vmid: u32,
    #[serde(default, deserialize_with = "de::string")]
    pub status: String,
    /// QEMU's own view: `running`, `paused`, `prelaunch`, ...
    #[serde(default, deserialize_with = "de::opt_string")]
    pub qmpstatus: Option<String>,
    #[serde(default, deserialize_with = "de::opt_u32")]
    pub pid: Option<u32>,
    #[serde(default, deserialize_with = "de::u64")]
    pub mem: u64,
    #[serde(default, deserialize_with = "de::u64")]
    pub maxmem: u64,
    #[serde(default, deserialize_with = "de::f64")]
    pub cpu: f64,
    #[serde(default, deserialize_with = "de::f64")]
    pub cpus: f64,
    #[serde(default, deserialize_with = "de::u64")]
    pub uptime: u64,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub lock: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub tags: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub name: Option<String>,
}

/// `GET /nodes/{node}/tasks/{upid}/status`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TaskStatus {
    #[serde(default, deserialize_with = "de::string")]
    pub upid: String,
    #[serde(default, deserialize_with = "de::string")]
    pub node: String,
    /// `running` or `stopped`.
    #[serde(default, deserialize_with = "de::string")]
    pub status: String,
    /// Only when stopped: `OK`, `WARNINGS: N`, or the error text.
    #[serde(default, deserialize_with = "de::opt_string")]
    pub exitstatus: Option<String>,
    #[serde(rename = "type", default, deserialize_with = "de::string")]
    pub kind: String,
    #[serde(default, deserialize_with = "de::string")]
    pub id: String,
    #[serde(default, deserialize_with = "de::string")]
    pub user: String,
    #[serde(default, deserialize_with = "de::u64")]
    pub starttime: u64,
}

impl TaskStatus {
    pub fn is_running(&self) -> bool {
        self.status == "running"
    }

    /// Stopped with `OK` or with warnings only.
    pub fn is_ok(&self) -> bool {
        !self.is_running()
            && self
                .exitstatus
                .as_deref()
                .is_some_and(|s| s == "OK" || s.starts_with("WARNINGS"))
    }
}

/// One line of `GET /nodes/{node}/tasks/{upid}/log`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct LogLine {
    #[serde(default, deserialize_with = "de::u64")]
    pub n: u64,
    #[serde(default, deserialize_with = "de::string")]
    pub t: String,
}

/// One entry of `GET /nodes/{node}/storage`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StorageInfo {
    #[serde(deserialize_with = "de::string")]
    pub storage: String,
    /// `dir`, `zfspool`, `lvmthin`, ...
    #[serde(rename = "type", default, deserialize_with = "de::string")]
    pub kind: String,
    /// Comma-separated content types, e.g. `rootdir,images,vztmpl`.
    #[serde(default, deserialize_with = "de::string")]
    pub content: String,
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub active: Option<bool>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "de::bool")]
    pub shared: bool,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub total: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub used: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub avail: Option<u64>,
}

impl StorageInfo {
    pub fn has_content(&self, kind: &str) -> bool {
        self.content.split(',').any(|c| c.trim() == kind)
    }
}

/// One entry of `GET /nodes/{node}/storage/{storage}/content`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct VolumeEntry {
    #[serde(deserialize_with = "de::string")]
    pub volid: String,
    #[serde(default, deserialize_with = "de::string")]
    pub format: String,
    #[serde(default, deserialize_with = "de::u64")]
    pub size: u64,
    #[serde(default, deserialize_with = "de::opt_u32")]
    pub vmid: Option<u32>,
    /// `vztmpl`, `rootdir`, `images`, `iso`, ...
    #[serde(default, deserialize_with = "de::opt_string")]
    pub content: Option<String>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub ctime: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub used: Option<u64>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub parent: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub notes: Option<String>,
    #[serde(default, deserialize_with = "de::bool")]
    pub protected: bool,
}

/// `GET /nodes/{node}/storage/{storage}/content/{volume}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct VolumeInfo {
    /// Where the volume is on the node (a directory for subvols, a device or
    /// file for raw images).
    #[serde(default, deserialize_with = "de::string")]
    pub path: String,
    #[serde(default, deserialize_with = "de::u64")]
    pub size: u64,
    #[serde(default, deserialize_with = "de::u64")]
    pub used: u64,
    #[serde(default, deserialize_with = "de::string")]
    pub format: String,
}

/// One entry of `GET .../snapshot`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Snapshot {
    #[serde(deserialize_with = "de::string")]
    pub name: String,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub parent: Option<String>,
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub snaptime: Option<u64>,
}

/// An address of a CT interface.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct IpAddress {
    #[serde(rename = "ip-address", default, deserialize_with = "de::string")]
    pub ip_address: String,
    /// `inet` or `inet6`.
    #[serde(rename = "ip-address-type", default, deserialize_with = "de::string")]
    pub ip_address_type: String,
    #[serde(default, deserialize_with = "de::u32")]
    pub prefix: u32,
}

/// One entry of `GET /nodes/{node}/lxc/{vmid}/interfaces`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Interface {
    #[serde(default, deserialize_with = "de::string")]
    pub name: String,
    #[serde(default, deserialize_with = "de::string")]
    pub hwaddr: String,
    /// `ADDR/PREFIX` of the first IPv4 address.
    #[serde(default, deserialize_with = "de::opt_string")]
    pub inet: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub inet6: Option<String>,
    #[serde(rename = "ip-addresses", default, deserialize_with = "de::vec")]
    pub ip_addresses: Vec<IpAddress>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ct_config_with_lxc_pairs() {
        let cfg: CtConfig = serde_json::from_str(
            r#"{"hostname":"web","memory":512,"unprivileged":1,"net0":"name=eth0,bridge=vmbr0",
                "digest":"abc","lxc":[["lxc.init.cmd","/sbin/x"],["lxc.cap.drop","sys_admin"]],
                "onboot":true,"description":null}"#,
        )
        .unwrap();
        assert_eq!(cfg.get("hostname"), Some("web"));
        assert_eq!(cfg.get("memory"), Some("512"));
        assert_eq!(cfg.get("unprivileged"), Some("1"));
        assert_eq!(cfg.get("onboot"), Some("1"));
        assert_eq!(cfg.get("description"), None);
        assert_eq!(cfg.digest.as_deref(), Some("abc"));
        assert_eq!(
            cfg.lxc_values("lxc.cap.drop").collect::<Vec<_>>(),
            ["sys_admin"]
        );
        assert_eq!(cfg.lxc.len(), 2);
        assert!(serde_json::from_str::<CtConfig>(r#"{"lxc":[["a"]]}"#).is_err());
    }

    #[test]
    fn status_quirks() {
        let s: CtStatus = serde_json::from_str(
            r#"{"vmid":"100","status":"running","pid":"4242","mem":1048576,"maxmem":536870912,
                "cpu":0.01,"uptime":5,"type":"lxc","ha":{"managed":0},"pressurecpusome":"0.1"}"#,
        )
        .unwrap();
        assert!(s.is_running());
        assert_eq!(s.pid, Some(4242));
        assert_eq!(s.vmid, 100);
        assert_eq!(s.mem, 1048576);

        let t: TaskStatus = serde_json::from_str(
            r#"{"status":"stopped","exitstatus":"WARNINGS: 2","type":"vzstart","starttime":"1"}"#,
        )
        .unwrap();
        assert!(t.is_ok());
        let t: TaskStatus =
            serde_json::from_str(r#"{"status":"stopped","exitstatus":"CT is locked (backup)"}"#)
                .unwrap();
        assert!(!t.is_ok());
        let t: TaskStatus = serde_json::from_str(r#"{"status":"running"}"#).unwrap();
        assert!(!t.is_ok() && t.is_running());
    }

    #[test]
    fn storage_and_interfaces() {
        let s: StorageInfo = serde_json::from_str(
            r#"{"storage":"local","type":"dir","content":"vztmpl,rootdir","active":1,"enabled":"1","shared":0,"total":"100"}"#,
        )
        .unwrap();
        assert!(s.has_content("rootdir") && !s.has_content("images"));
        assert_eq!(s.active, Some(true));
        assert_eq!(s.total, Some(100));
        let i: Interface = serde_json::from_str(
            r#"{"name":"eth0","hwaddr":"bc:24:11:00:00:01","inet":"10.0.0.5/24",
                "ip-addresses":[{"ip-address":"10.0.0.5","ip-address-type":"inet","prefix":"24"}]}"#,
        )
        .unwrap();
        assert_eq!(i.ip_addresses[0].prefix, 24);
    }
}
