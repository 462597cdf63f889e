//! The emulator's own parameter definitions (hand-written, one table per
//! endpoint) and the validator that enforces them the way pve-common's
//! JSONSchema does. The same table is dumped by `--dump-schema` so the
//! conformance test can compare it with the official schema.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{json, Map, Value};

use crate::propstr;

#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    Int {
        min: Option<i64>,
        max: Option<i64>,
    },
    Num {
        min: Option<f64>,
        max: Option<f64>,
    },
    Bool,
    Str {
        enum_: Option<&'static [&'static str]>,
        max_len: Option<usize>,
    },
}

#[derive(Debug, Clone)]
pub struct Param {
    /// `net[n]` for indexed parameters.
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
    /// A format name the validator knows (see [`check_format`]).
    pub format: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    pub params: Vec<Param>,
}

fn int(name: &'static str, min: Option<i64>, max: Option<i64>) -> Param {
    Param {
        name,
        ty: Ty::Int { min, max },
        required: false,
        format: None,
    }
}
fn num(name: &'static str, min: Option<f64>, max: Option<f64>) -> Param {
    Param {
        name,
        ty: Ty::Num { min, max },
        required: false,
        format: None,
    }
}
fn boolean(name: &'static str) -> Param {
    Param {
        name,
        ty: Ty::Bool,
        required: false,
        format: None,
    }
}
fn string(name: &'static str) -> Param {
    Param {
        name,
        ty: Ty::Str {
            enum_: None,
            max_len: None,
        },
        required: false,
        format: None,
    }
}
fn enm(name: &'static str, values: &'static [&'static str]) -> Param {
    Param {
        name,
        ty: Ty::Str {
            enum_: Some(values),
            max_len: None,
        },
        required: false,
        format: None,
    }
}

impl Param {
    fn req(mut self) -> Self {
        self.required = true;
        self
    }
    fn opt(self) -> Self {
        self
    }
    fn max_len(mut self, n: usize) -> Self {
        if let Ty::Str { max_len, .. } = &mut self.ty {
            *max_len = Some(n);
        }
        self
    }
    fn fmt(mut self, f: &'static str) -> Self {
        self.format = Some(f);
        self
    }
}

fn ep(method: &'static str, path: &'static str, params: Vec<Param>) -> Endpoint {
    Endpoint {
        method,
        path,
        params,
    }
}

/// How many instances an indexed parameter has (net0..net31 ...).
pub fn index_count(path: &str, base: &str) -> u32 {
    let qemu = path.contains("/qemu");
    match (qemu, base) {
        (false, "net") => 32,
        (false, "mp" | "dev" | "unused") => 256,
        (true, "net" | "ipconfig") => 32,
        (true, "scsi") => 31,
        (true, "virtio" | "hostpci") => 16,
        (true, "ide" | "serial") => 4,
        (true, "sata") => 6,
        _ => 0,
    }
}

/// Every endpoint the emulator serves under /api2/json, with its parameters.
pub fn endpoints() -> &'static [Endpoint] {
    static EPS: OnceLock<Vec<Endpoint>> = OnceLock::new();
    EPS.get_or_init(build)
}

pub fn find(method: &str, path: &str) -> Option<&'static Endpoint> {
    endpoints()
        .iter()
        .find(|e| e.method == method && e.path == path)
}

#[rustfmt::skip]
fn build() -> Vec<Endpoint> {
    vec![
    ep("POST", "/access/ticket", vec![
        boolean("new-format").opt(),
        string("otp").opt(),
        string("password").req(),
        string("path").max_len(64).opt(),
        string("privs").max_len(64).fmt("pve-priv-list").opt(),
        string("realm").max_len(32).fmt("pve-realm").opt(),
        string("tfa-challenge").opt(),
        string("username").max_len(64).req(),
    ]),
    ep("GET", "/access/permissions", vec![
        string("path").opt(),
        string("userid").fmt("userid-pattern").opt(),
    ]),
    ep("GET", "/version", vec![
    ]),
    ep("GET", "/nodes", vec![
    ]),
    ep("GET", "/nodes/{node}/status", vec![
        string("node").fmt("pve-node").req(),
    ]),
    ep("GET", "/cluster/resources", vec![
        enm("type", &["vm", "storage", "node", "sdn"]).opt(),
    ]),
    ep("GET", "/cluster/status", vec![
    ]),
    ep("GET", "/nodes/{node}/version", vec![
        string("node").fmt("pve-node").req(),
    ]),
    ep("GET", "/nodes/{node}/rrddata", vec![
        enm("cf", &["AVERAGE", "MAX"]).opt(),
        string("node").fmt("pve-node").req(),
        enm("timeframe", &["hour", "day", "week", "month", "year", "decade"]).req(),
    ]),
    ep("GET", "/nodes/{node}/lxc/{vmid}/firewall/options", vec![
        string("node").fmt("pve-node").req(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("PUT", "/nodes/{node}/lxc/{vmid}/firewall/options", vec![
        string("delete").fmt("pve-configid-list").opt(),
        boolean("dhcp").opt(),
        string("digest").max_len(64).opt(),
        boolean("enable").opt(),
        boolean("ipfilter").opt(),
        enm("log_level_in", &["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug", "nolog"]).opt(),
        enm("log_level_out", &["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug", "nolog"]).opt(),
        boolean("macfilter").opt(),
        boolean("ndp").opt(),
        string("node").fmt("pve-node").req(),
        enm("policy_in", &["ACCEPT", "REJECT", "DROP"]).opt(),
        enm("policy_out", &["ACCEPT", "REJECT", "DROP"]).opt(),
        boolean("radv").opt(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("GET", "/nodes/{node}/lxc/{vmid}/firewall/ipset", vec![
        string("node").fmt("pve-node").req(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("POST", "/nodes/{node}/lxc/{vmid}/firewall/ipset", vec![
        string("comment").opt(),
        string("digest").max_len(64).opt(),
        string("name").max_len(64).fmt("ipset-name-pattern").req(),
        string("node").fmt("pve-node").req(),
        string("rename").max_len(64).fmt("ipset-name-pattern").opt(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("GET", "/nodes/{node}/lxc/{vmid}/firewall/ipset/{name}", vec![
        string("name").max_len(64).fmt("ipset-name-pattern").req(),
        string("node").fmt("pve-node").req(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("POST", "/nodes/{node}/lxc/{vmid}/firewall/ipset/{name}", vec![
        string("cidr").req(),
        string("comment").opt(),
        string("name").max_len(64).fmt("ipset-name-pattern").req(),
        boolean("nomatch").opt(),
        string("node").fmt("pve-node").req(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("DELETE", "/nodes/{node}/lxc/{vmid}/firewall/ipset/{name}", vec![
        boolean("force").opt(),
        string("name").max_len(64).fmt("ipset-name-pattern").req(),
        string("node").fmt("pve-node").req(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("GET", "/nodes/{node}/qemu/{vmid}/firewall/options", vec![
        string("node").fmt("pve-node").req(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("PUT", "/nodes/{node}/qemu/{vmid}/firewall/options", vec![
        string("delete").fmt("pve-configid-list").opt(),
        boolean("dhcp").opt(),
        string("digest").max_len(64).opt(),
        boolean("enable").opt(),
        boolean("ipfilter").opt(),
        enm("log_level_in", &["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug", "nolog"]).opt(),
        enm("log_level_out", &["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug", "nolog"]).opt(),
        boolean("macfilter").opt(),
        boolean("ndp").opt(),
        string("node").fmt("pve-node").req(),
        enm("policy_in", &["ACCEPT", "REJECT", "DROP"]).opt(),
        enm("policy_out", &["ACCEPT", "REJECT", "DROP"]).opt(),
        boolean("radv").opt(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("GET", "/nodes/{node}/qemu/{vmid}/firewall/ipset", vec![
        string("node").fmt("pve-node").req(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("POST", "/nodes/{node}/qemu/{vmid}/firewall/ipset", vec![
        string("comment").opt(),
        string("digest").max_len(64).opt(),
        string("name").max_len(64).fmt("ipset-name-pattern").req(),
        string("node").fmt("pve-node").req(),
        string("rename").max_len(64).fmt("ipset-name-pattern").opt(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("GET", "/nodes/{node}/qemu/{vmid}/firewall/ipset/{name}", vec![
        string("name").max_len(64).fmt("ipset-name-pattern").req(),
        string("node").fmt("pve-node").req(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("POST", "/nodes/{node}/qemu/{vmid}/firewall/ipset/{name}", vec![
        string("cidr").req(),
        string("comment").opt(),
        string("name").max_len(64).fmt("ipset-name-pattern").req(),
        boolean("nomatch").opt(),
        string("node").fmt("pve-node").req(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("DELETE", "/nodes/{node}/qemu/{vmid}/firewall/ipset/{name}", vec![
        boolean("force").opt(),
        string("name").max_len(64).fmt("ipset-name-pattern").req(),
        string("node").fmt("pve-node").req(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("GET", "/cluster/firewall/options", vec![]),
    ep("GET", "/cluster/sdn/zones", vec![
        boolean("pending").opt(),
        boolean("running").opt(),
        enm("type", &["evpn", "faucet", "qinq", "simple", "vlan", "vxlan"]).opt(),
    ]),
    ep("POST", "/cluster/sdn/zones", vec![
        string("bridge").opt(),
        string("dns").opt(),
        string("dnszone").fmt("dns-name").opt(),
        string("ipam").opt(),
        int("mtu", None, None).opt(),
        string("nodes").opt(),
        enm("type", &["evpn", "faucet", "qinq", "simple", "vlan", "vxlan"]).req(),
        string("zone").req(),
    ]),
    ep("GET", "/cluster/sdn/vnets", vec![
        boolean("pending").opt(),
        boolean("running").opt(),
    ]),
    ep("POST", "/cluster/sdn/vnets", vec![
        string("alias").max_len(256).opt(),
        boolean("isolate-ports").opt(),
        int("tag", Some(1), Some(16777215)).opt(),
        enm("type", &["vnet"]).opt(),
        boolean("vlanaware").opt(),
        string("vnet").req(),
        string("zone").req(),
    ]),
    ep("GET", "/cluster/sdn/vnets/{vnet}", vec![
        boolean("pending").opt(),
        boolean("running").opt(),
        string("vnet").req(),
    ]),
    ep("GET", "/cluster/sdn/vnets/{vnet}/subnets", vec![
        boolean("pending").opt(),
        boolean("running").opt(),
        string("vnet").req(),
    ]),
    ep("POST", "/cluster/sdn/vnets/{vnet}/subnets", vec![
        string("gateway").opt(),
        boolean("snat").opt(),
        string("subnet").req(),
        enm("type", &["subnet"]).req(),
        string("vnet").req(),
    ]),
    ep("POST", "/cluster/sdn/vnets/{vnet}/ips", vec![
        string("ip").req(),
        string("mac").opt(),
        string("vnet").req(),
        string("zone").req(),
    ]),
    ep("DELETE", "/cluster/sdn/vnets/{vnet}/ips", vec![
        string("ip").req(),
        string("mac").opt(),
        string("vnet").req(),
        string("zone").req(),
    ]),
    ep("GET", "/cluster/sdn/ipams/{ipam}/status", vec![
        string("ipam").req(),
    ]),
    ep("PUT", "/cluster/firewall/options", vec![
        string("delete").fmt("pve-configid-list").opt(),
        string("digest").max_len(64).opt(),
        boolean("ebtables").opt(),
        int("enable", Some(0), None).opt(),
        string("log_ratelimit").opt(),
        enm("policy_forward", &["ACCEPT", "DROP"]).opt(),
        enm("policy_in", &["ACCEPT", "REJECT", "DROP"]).opt(),
        enm("policy_out", &["ACCEPT", "REJECT", "DROP"]).opt(),
    ]),
    ep("GET", "/nodes/{node}/lxc/{vmid}/pending", vec![
        string("node").fmt("pve-node").req(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("GET", "/nodes/{node}/lxc/{vmid}/rrddata", vec![
        enm("cf", &["AVERAGE", "MAX"]).opt(),
        string("node").fmt("pve-node").req(),
        enm("timeframe", &["hour", "day", "week", "month", "year"]).req(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("GET", "/nodes/{node}/qemu/{vmid}/pending", vec![
        string("node").fmt("pve-node").req(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("GET", "/nodes/{node}/qemu/{vmid}/rrddata", vec![
        enm("cf", &["AVERAGE", "MAX"]).opt(),
        string("node").fmt("pve-node").req(),
        enm("timeframe", &["hour", "day", "week", "month", "year"]).req(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("GET", "/nodes/{node}/storage/{storage}/status", vec![
        string("node").fmt("pve-node").req(),
        string("storage").fmt("pve-storage-id").req(),
    ]),
    ep("GET", "/nodes/{node}/storage/{storage}/rrddata", vec![
        enm("cf", &["AVERAGE", "MAX"]).opt(),
        string("node").fmt("pve-node").req(),
        string("storage").fmt("pve-storage-id").req(),
        enm("timeframe", &["hour", "day", "week", "month", "year"]).req(),
    ]),
    ep("GET", "/cluster/nextid", vec![
        int("vmid", Some(100), Some(999999999)).opt(),
    ]),
    ep("GET", "/nodes/{node}/lxc", vec![
        string("node").fmt("pve-node").req(),
    ]),
    ep("POST", "/nodes/{node}/lxc", vec![
        enm("arch", &["amd64", "i386", "arm64", "armhf", "riscv32", "riscv64"]).opt(),
        num("bwlimit", Some(0.0), None).opt(),
        enm("cmode", &["shell", "console", "tty"]).opt(),
        boolean("console").opt(),
        int("cores", Some(1), Some(8192)).opt(),
        num("cpulimit", Some(0.0), Some(8192.0)).opt(),
        int("cpuunits", Some(0), Some(500000)).opt(),
        boolean("debug").opt(),
        string("description").max_len(8192).opt(),
        string("dev[n]").fmt("lxc-dev").opt(),
        string("entrypoint").fmt("entrypoint-pattern").opt(),
        string("env").fmt("env-pattern").opt(),
        string("features").fmt("lxc-features").opt(),
        boolean("force").opt(),
        boolean("ha-managed").opt(),
        string("hookscript").fmt("pve-volume-id").opt(),
        string("hostname").max_len(255).fmt("dns-name").opt(),
        boolean("ignore-unpack-errors").opt(),
        enm("lock", &["backup", "create", "destroyed", "disk", "fstrim", "migrate", "mounted", "rollback", "snapshot", "snapshot-delete"]).opt(),
        int("memory", Some(16), None).opt(),
        string("mp[n]").fmt("lxc-mp").opt(),
        string("nameserver").fmt("lxc-ip-with-ll-iface-list").opt(),
        string("net[n]").fmt("lxc-net").opt(),
        string("node").fmt("pve-node").req(),
        boolean("onboot").opt(),
        string("ostemplate").max_len(255).req(),
        enm("ostype", &["debian", "devuan", "ubuntu", "centos", "fedora", "opensuse", "archlinux", "alpine", "gentoo", "nixos", "unmanaged"]).opt(),
        string("password").opt(),
        string("pool").fmt("pve-poolid").opt(),
        boolean("protection").opt(),
        boolean("restore").opt(),
        string("rootfs").fmt("lxc-rootfs").opt(),
        string("searchdomain").fmt("dns-name-list").opt(),
        string("ssh-public-keys").opt(),
        boolean("start").opt(),
        string("startup").fmt("pve-startup-order").opt(),
        string("storage").fmt("pve-storage-id").opt(),
        int("swap", Some(0), None).opt(),
        string("tags").fmt("pve-tag-list").opt(),
        boolean("template").opt(),
        string("timezone").fmt("pve-ct-timezone").opt(),
        int("tty", Some(0), Some(6)).opt(),
        boolean("unique").opt(),
        boolean("unprivileged").opt(),
        string("unused[n]").fmt("lxc-unused").opt(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("DELETE", "/nodes/{node}/lxc/{vmid}", vec![
        boolean("destroy-unreferenced-disks").opt(),
        boolean("force").opt(),
        string("node").fmt("pve-node").req(),
        boolean("purge").opt(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("GET", "/nodes/{node}/lxc/{vmid}/config", vec![
        boolean("current").opt(),
        string("node").fmt("pve-node").req(),
        string("snapshot").max_len(40).fmt("pve-configid").opt(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("PUT", "/nodes/{node}/lxc/{vmid}/config", vec![
        enm("arch", &["amd64", "i386", "arm64", "armhf", "riscv32", "riscv64"]).opt(),
        enm("cmode", &["shell", "console", "tty"]).opt(),
        boolean("console").opt(),
        int("cores", Some(1), Some(8192)).opt(),
        num("cpulimit", Some(0.0), Some(8192.0)).opt(),
        int("cpuunits", Some(0), Some(500000)).opt(),
        boolean("debug").opt(),
        string("delete").fmt("pve-configid-list").opt(),
        string("description").max_len(8192).opt(),
        string("dev[n]").fmt("lxc-dev").opt(),
        string("digest").max_len(40).opt(),
        string("entrypoint").fmt("entrypoint-pattern").opt(),
        string("env").fmt("env-pattern").opt(),
        string("features").fmt("lxc-features").opt(),
        string("hookscript").fmt("pve-volume-id").opt(),
        string("hostname").max_len(255).fmt("dns-name").opt(),
        enm("lock", &["backup", "create", "destroyed", "disk", "fstrim", "migrate", "mounted", "rollback", "snapshot", "snapshot-delete"]).opt(),
        int("memory", Some(16), None).opt(),
        string("mp[n]").fmt("lxc-mp").opt(),
        string("nameserver").fmt("lxc-ip-with-ll-iface-list").opt(),
        string("net[n]").fmt("lxc-net").opt(),
        string("node").fmt("pve-node").req(),
        boolean("onboot").opt(),
        enm("ostype", &["debian", "devuan", "ubuntu", "centos", "fedora", "opensuse", "archlinux", "alpine", "gentoo", "nixos", "unmanaged"]).opt(),
        boolean("protection").opt(),
        string("revert").fmt("pve-configid-list").opt(),
        string("rootfs").fmt("lxc-rootfs").opt(),
        string("searchdomain").fmt("dns-name-list").opt(),
        string("startup").fmt("pve-startup-order").opt(),
        int("swap", Some(0), None).opt(),
        string("tags").fmt("pve-tag-list").opt(),
        boolean("template").opt(),
        string("timezone").fmt("pve-ct-timezone").opt(),
        int("tty", Some(0), Some(6)).opt(),
        boolean("unprivileged").opt(),
        string("unused[n]").fmt("lxc-unused").opt(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("GET", "/nodes/{node}/lxc/{vmid}/status/current", vec![
        string("node").fmt("pve-node").req(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("POST", "/nodes/{node}/lxc/{vmid}/status/start", vec![
        boolean("debug").opt(),
        string("node").fmt("pve-node").req(),
        boolean("skiplock").opt(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("POST", "/nodes/{node}/lxc/{vmid}/status/stop", vec![
        string("node").fmt("pve-node").req(),
        boolean("overrule-shutdown").opt(),
        boolean("skiplock").opt(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("POST", "/nodes/{node}/lxc/{vmid}/status/shutdown", vec![
        boolean("forceStop").opt(),
        string("node").fmt("pve-node").req(),
        int("timeout", Some(0), None).opt(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("POST", "/nodes/{node}/lxc/{vmid}/status/suspend", vec![
        string("node").fmt("pve-node").req(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("POST", "/nodes/{node}/lxc/{vmid}/status/resume", vec![
        string("node").fmt("pve-node").req(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("POST", "/nodes/{node}/lxc/{vmid}/status/reboot", vec![
        string("node").fmt("pve-node").req(),
        int("timeout", Some(0), None).opt(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("GET", "/nodes/{node}/lxc/{vmid}/snapshot", vec![
        string("node").fmt("pve-node").req(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("POST", "/nodes/{node}/lxc/{vmid}/snapshot", vec![
        string("description").opt(),
        string("node").fmt("pve-node").req(),
        string("snapname").max_len(40).fmt("pve-configid").req(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("DELETE", "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}", vec![
        boolean("force").opt(),
        string("node").fmt("pve-node").req(),
        string("snapname").max_len(40).fmt("pve-configid").req(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("POST", "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}/rollback", vec![
        string("node").fmt("pve-node").req(),
        string("snapname").max_len(40).fmt("pve-configid").req(),
        boolean("start").opt(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("POST", "/nodes/{node}/lxc/{vmid}/clone", vec![
        num("bwlimit", Some(0.0), None).opt(),
        string("description").opt(),
        boolean("full").opt(),
        string("hostname").fmt("dns-name").opt(),
        int("newid", Some(100), Some(999999999)).req(),
        string("node").fmt("pve-node").req(),
        string("pool").fmt("pve-poolid").opt(),
        string("snapname").max_len(40).fmt("pve-configid").opt(),
        string("storage").fmt("pve-storage-id").opt(),
        string("target").fmt("pve-node").opt(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("GET", "/nodes/{node}/lxc/{vmid}/interfaces", vec![
        string("node").fmt("pve-node").req(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("GET", "/nodes/{node}/qemu", vec![
        string("node").fmt("pve-node").req(),
    ]),
    ep("POST", "/nodes/{node}/qemu", vec![
        boolean("acpi").opt(),
        string("agent").fmt("qm-agent").opt(),
        string("args").opt(),
        int("balloon", Some(0), None).opt(),
        enm("bios", &["seabios", "ovmf"]).opt(),
        string("boot").fmt("pve-qm-boot").opt(),
        string("cipassword").opt(),
        string("ciuser").opt(),
        int("cores", Some(1), None).opt(),
        string("cpu").fmt("pve-vm-cpu-conf").opt(),
        num("cpulimit", Some(0.0), Some(128.0)).opt(),
        int("cpuunits", Some(1), Some(262144)).opt(),
        string("description").max_len(8192).opt(),
        string("efidisk0").fmt("qm-efidisk0").opt(),
        boolean("force").opt(),
        string("hookscript").fmt("pve-volume-id").opt(),
        string("hostpci[n]").fmt("pve-qm-hostpci").opt(),
        string("hotplug").fmt("pve-hotplug-features").opt(),
        string("ide[n]").fmt("qm-ide").opt(),
        string("ipconfig[n]").fmt("pve-qm-ipconfig").opt(),
        boolean("kvm").opt(),
        boolean("localtime").opt(),
        enm("lock", &["backup", "clone", "create", "migrate", "rollback", "snapshot", "snapshot-delete", "suspending", "suspended"]).opt(),
        string("machine").fmt("qm-machine").opt(),
        string("memory").fmt("qm-memory").opt(),
        string("name").fmt("dns-name").opt(),
        string("nameserver").fmt("address-list").opt(),
        string("net[n]").fmt("qm-net").opt(),
        string("node").fmt("pve-node").req(),
        boolean("numa").opt(),
        boolean("onboot").opt(),
        enm("ostype", &["other", "wxp", "w2k", "w2k3", "w2k8", "wvista", "win7", "win8", "win10", "win11", "l24", "l26", "solaris"]).opt(),
        string("pool").fmt("pve-poolid").opt(),
        boolean("protection").opt(),
        string("sata[n]").fmt("qm-sata").opt(),
        string("scsi[n]").fmt("qm-scsi").opt(),
        enm("scsihw", &["lsi", "lsi53c810", "virtio-scsi-pci", "virtio-scsi-single", "megasas", "pvscsi"]).opt(),
        string("searchdomain").opt(),
        string("serial[n]").fmt("serial-pattern").opt(),
        int("sockets", Some(1), None).opt(),
        string("sshkeys").fmt("urlencoded").opt(),
        boolean("start").opt(),
        string("startup").fmt("pve-startup-order").opt(),
        string("storage").fmt("pve-storage-id").opt(),
        string("tags").fmt("pve-tag-list").opt(),
        boolean("template").opt(),
        boolean("unique").opt(),
        int("vcpus", Some(1), None).opt(),
        string("vga").fmt("qm-vga").opt(),
        string("virtio[n]").fmt("qm-virtio").opt(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("DELETE", "/nodes/{node}/qemu/{vmid}", vec![
        boolean("destroy-unreferenced-disks").opt(),
        string("node").fmt("pve-node").req(),
        boolean("purge").opt(),
        boolean("skiplock").opt(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("GET", "/nodes/{node}/qemu/{vmid}/config", vec![
        boolean("current").opt(),
        string("node").fmt("pve-node").req(),
        string("snapshot").max_len(40).fmt("pve-configid").opt(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("PUT", "/nodes/{node}/qemu/{vmid}/config", vec![
        boolean("acpi").opt(),
        string("agent").fmt("qm-agent").opt(),
        string("args").opt(),
        int("balloon", Some(0), None).opt(),
        enm("bios", &["seabios", "ovmf"]).opt(),
        string("boot").fmt("pve-qm-boot").opt(),
        string("cipassword").opt(),
        string("ciuser").opt(),
        int("cores", Some(1), None).opt(),
        string("cpu").fmt("pve-vm-cpu-conf").opt(),
        num("cpulimit", Some(0.0), Some(128.0)).opt(),
        int("cpuunits", Some(1), Some(262144)).opt(),
        string("delete").fmt("pve-configid-list").opt(),
        string("description").max_len(8192).opt(),
        string("digest").max_len(40).opt(),
        string("efidisk0").fmt("qm-efidisk0").opt(),
        boolean("force").opt(),
        string("hookscript").fmt("pve-volume-id").opt(),
        string("hostpci[n]").fmt("pve-qm-hostpci").opt(),
        string("hotplug").fmt("pve-hotplug-features").opt(),
        string("ide[n]").fmt("qm-ide").opt(),
        string("ipconfig[n]").fmt("pve-qm-ipconfig").opt(),
        boolean("kvm").opt(),
        boolean("localtime").opt(),
        enm("lock", &["backup", "clone", "create", "migrate", "rollback", "snapshot", "snapshot-delete", "suspending", "suspended"]).opt(),
        string("machine").fmt("qm-machine").opt(),
        string("memory").fmt("qm-memory").opt(),
        string("name").fmt("dns-name").opt(),
        string("nameserver").fmt("address-list").opt(),
        string("net[n]").fmt("qm-net").opt(),
        string("node").fmt("pve-node").req(),
        boolean("numa").opt(),
        boolean("onboot").opt(),
        enm("ostype", &["other", "wxp", "w2k", "w2k3", "w2k8", "wvista", "win7", "win8", "win10", "win11", "l24", "l26", "solaris"]).opt(),
        boolean("protection").opt(),
        string("revert").fmt("pve-configid-list").opt(),
        string("sata[n]").fmt("qm-sata").opt(),
        string("scsi[n]").fmt("qm-scsi").opt(),
        enm("scsihw", &["lsi", "lsi53c810", "virtio-scsi-pci", "virtio-scsi-single", "megasas", "pvscsi"]).opt(),
        string("searchdomain").opt(),
        string("serial[n]").fmt("serial-pattern").opt(),
        boolean("skiplock").opt(),
        int("sockets", Some(1), None).opt(),
        string("sshkeys").fmt("urlencoded").opt(),
        string("startup").fmt("pve-startup-order").opt(),
        string("tags").fmt("pve-tag-list").opt(),
        boolean("template").opt(),
        int("vcpus", Some(1), None).opt(),
        string("vga").fmt("qm-vga").opt(),
        string("virtio[n]").fmt("qm-virtio").opt(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("GET", "/nodes/{node}/qemu/{vmid}/status/current", vec![
        string("node").fmt("pve-node").req(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("POST", "/nodes/{node}/qemu/{vmid}/status/start", vec![
        string("machine").fmt("qm-machine").opt(),
        string("node").fmt("pve-node").req(),
        boolean("skiplock").opt(),
        int("timeout", Some(0), None).opt(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("POST", "/nodes/{node}/qemu/{vmid}/status/stop", vec![
        boolean("keepActive").opt(),
        string("node").fmt("pve-node").req(),
        boolean("overrule-shutdown").opt(),
        boolean("skiplock").opt(),
        int("timeout", Some(0), None).opt(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("POST", "/nodes/{node}/qemu/{vmid}/status/shutdown", vec![
        boolean("forceStop").opt(),
        boolean("keepActive").opt(),
        string("node").fmt("pve-node").req(),
        boolean("skiplock").opt(),
        int("timeout", Some(0), None).opt(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("POST", "/nodes/{node}/qemu/{vmid}/status/reset", vec![
        string("node").fmt("pve-node").req(),
        boolean("skiplock").opt(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("POST", "/nodes/{node}/qemu/{vmid}/status/suspend", vec![
        string("node").fmt("pve-node").req(),
        boolean("skiplock").opt(),
        boolean("todisk").opt(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("POST", "/nodes/{node}/qemu/{vmid}/status/resume", vec![
        boolean("nocheck").opt(),
        string("node").fmt("pve-node").req(),
        boolean("skiplock").opt(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("POST", "/nodes/{node}/qemu/{vmid}/status/reboot", vec![
        string("node").fmt("pve-node").req(),
        int("timeout", Some(0), None).opt(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("GET", "/nodes/{node}/tasks", vec![
        boolean("errors").opt(),
        int("limit", Some(0), None).opt(),
        string("node").fmt("pve-node").req(),
        int("since", None, None).opt(),
        enm("source", &["archive", "active", "all"]).opt(),
        int("start", Some(0), None).opt(),
        string("statusfilter").fmt("pve-task-status-type-list").opt(),
        string("typefilter").opt(),
        int("until", None, None).opt(),
        string("userfilter").opt(),
        int("vmid", Some(100), Some(999999999)).opt(),
    ]),
    ep("GET", "/nodes/{node}/tasks/{upid}/status", vec![
        string("node").fmt("pve-node").req(),
        string("upid").req(),
    ]),
    ep("GET", "/nodes/{node}/tasks/{upid}/log", vec![
        boolean("download").opt(),
        int("limit", Some(0), None).opt(),
        string("node").fmt("pve-node").req(),
        int("start", Some(0), None).opt(),
        string("upid").req(),
    ]),
    ep("DELETE", "/nodes/{node}/tasks/{upid}", vec![
        string("node").fmt("pve-node").req(),
        string("upid").req(),
    ]),
    ep("GET", "/nodes/{node}/storage", vec![
        string("content").fmt("pve-storage-content-list").opt(),
        boolean("enabled").opt(),
        boolean("format").opt(),
        string("node").fmt("pve-node").req(),
        string("storage").fmt("pve-storage-id").opt(),
        string("target").fmt("pve-node").opt(),
    ]),
    ep("GET", "/nodes/{node}/storage/{storage}/content", vec![
        string("content").fmt("pve-storage-content").opt(),
        string("node").fmt("pve-node").req(),
        string("storage").fmt("pve-storage-id").req(),
        int("vmid", Some(100), Some(999999999)).opt(),
    ]),
    ep("POST", "/nodes/{node}/storage/{storage}/content", vec![
        string("filename").req(),
        enm("format", &["raw", "qcow2", "subvol", "vmdk"]).opt(),
        string("node").fmt("pve-node").req(),
        string("size").req(),
        string("storage").fmt("pve-storage-id").req(),
        int("vmid", Some(100), Some(999999999)).req(),
    ]),
    ep("GET", "/nodes/{node}/storage/{storage}/content/{volume}", vec![
        string("node").fmt("pve-node").req(),
        string("storage").fmt("pve-storage-id").opt(),
        string("volume").req(),
    ]),
    ep("DELETE", "/nodes/{node}/storage/{storage}/content/{volume}", vec![
        int("delay", Some(1), Some(30)).opt(),
        string("node").fmt("pve-node").req(),
        string("storage").fmt("pve-storage-id").opt(),
        string("volume").req(),
    ]),
    ep("POST", "/nodes/{node}/storage/{storage}/upload", vec![
        string("checksum").opt(),
        enm("checksum-algorithm", &["md5", "sha1", "sha224", "sha256", "sha384", "sha512"]).opt(),
        enm("content", &["iso", "vztmpl", "import"]).req(),
        string("filename").max_len(255).req(),
        string("node").fmt("pve-node").req(),
        string("storage").fmt("pve-storage-id").req(),
        string("tmpfilename").fmt("tmpfilename-pattern").opt(),
    ]),
    ]
}

/// The table as JSON (what `pve-emulator --dump-schema` prints).
pub fn dump() -> Value {
    let eps: Vec<Value> = endpoints()
        .iter()
        .map(|e| {
            let mut props = Map::new();
            for p in &e.params {
                let mut o = Map::new();
                match &p.ty {
                    Ty::Int { min, max } => {
                        o.insert("type".into(), json!("integer"));
                        if let Some(m) = min {
                            o.insert("minimum".into(), json!(m));
                        }
                        if let Some(m) = max {
                            o.insert("maximum".into(), json!(m));
                        }
                    }
                    Ty::Num { min, max } => {
                        o.insert("type".into(), json!("number"));
                        if let Some(m) = min {
                            o.insert("minimum".into(), json!(m));
                        }
                        if let Some(m) = max {
                            o.insert("maximum".into(), json!(m));
                        }
                    }
                    Ty::Bool => {
                        o.insert("type".into(), json!("boolean"));
                    }
                    Ty::Str { enum_, max_len } => {
                        o.insert("type".into(), json!("string"));
                        if let Some(e) = enum_ {
                            o.insert("enum".into(), json!(e));
                        }
                        if let Some(m) = max_len {
                            o.insert("maxLength".into(), json!(m));
                        }
                    }
                }
                if let Some(f) = p.format {
                    o.insert("format".into(), json!(f));
                }
                if !p.required {
                    o.insert("optional".into(), json!(1));
                }
                props.insert(p.name.to_string(), Value::Object(o));
            }
            json!({"method": e.method, "path": e.path, "parameters": {"properties": props}})
        })
        .collect();
    Value::Array(eps)
}

/// Parameter name -> error text, as in Proxmox's 400 answers.
pub type Errors = BTreeMap<String, String>;

/// Finds the definition of `name` (`net3` matches `net[n]`).
fn lookup<'a>(ep: &'a Endpoint, name: &str) -> Option<&'a Param> {
    if let Some(p) = ep.params.iter().find(|p| p.name == name) {
        return Some(p);
    }
    let digits = name.trim_start_matches(|c: char| !c.is_ascii_digit());
    let base = &name[..name.len() - digits.len()];
    if digits.is_empty() || base.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
        return None;
    }
    let idx: u32 = digits.parse().ok()?;
    if idx >= index_count(ep.path, base) {
        return None;
    }
    ep.params
        .iter()
        .find(|p| p.name.strip_suffix("[n]") == Some(base))
}

/// Checks `params` against the endpoint's table: unknown names, missing
/// required ones, types, ranges, enums, lengths and formats. Booleans are
/// normalized to "1"/"0" (JSON true/false arrive as such already).
pub fn validate(ep: &Endpoint, params: &BTreeMap<String, String>) -> Result<(), Errors> {
    let mut errors = Errors::new();
    for (k, v) in params {
        match lookup(ep, k) {
            None => {
                errors.insert(
                    k.clone(),
                    "property is not defined in schema and the schema does not allow additional properties".into(),
                );
            }
            Some(p) => {
                if let Err(e) = check_value(ep, p, k, v) {
                    errors.insert(k.clone(), e);
                }
            }
        }
    }
    for p in &ep.params {
        if p.required && !p.name.ends_with("[n]") && !params.contains_key(p.name) {
            errors.insert(
                p.name.to_string(),
                "property is missing and it is not optional".into(),
            );
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn is_int(v: &str) -> bool {
    let d = v.strip_prefix(['-', '+']).unwrap_or(v);
    !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
}

fn is_number(v: &str) -> bool {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"^[+-]?(\d+|\d*\.\d+)([eE][+-]?\d+)?$").unwrap())
        .is_match(v)
}

fn check_value(ep: &Endpoint, p: &Param, name: &str, v: &str) -> Result<(), String> {
    match &p.ty {
        Ty::Bool => {
            if v != "0" && v != "1" {
                return Err(format!("type check ('boolean') failed - got '{v}'"));
            }
        }
        Ty::Int { min, max } => {
            if !is_int(v) {
                return Err(format!("type check ('integer') failed - got '{v}'"));
            }
            let n: i64 = v
                .parse()
                .map_err(|_| format!("type check ('integer') failed - got '{v}'"))?;
            if let Some(m) = min {
                if n < *m {
                    return Err(format!("value must have a minimum value of {m}"));
                }
            }
            if let Some(m) = max {
                if n > *m {
                    return Err(format!("value must have a maximum value of {m}"));
                }
            }
        }
        Ty::Num { min, max } => {
            if !is_number(v) {
                return Err(format!("type check ('number') failed - got '{v}'"));
            }
            let n: f64 = v
                .parse()
                .map_err(|_| format!("type check ('number') failed - got '{v}'"))?;
            if let Some(m) = min {
                if n < *m {
                    return Err(format!("value must have a minimum value of {m}"));
                }
            }
            if let Some(m) = max {
                if n > *m {
                    return Err(format!("value must have a maximum value of {m}"));
                }
            }
        }
        Ty::Str { enum_, max_len } => {
            if let Some(m) = max_len {
                if v.chars().count() > *m {
                    return Err(format!("value may only be {m} characters long"));
                }
            }
            if let Some(values) = enum_ {
                if !values.contains(&v) {
                    return Err(format!(
                        "value '{v}' does not have a value in the enumeration '{}'",
                        values.join(", ")
                    ));
                }
            }
            check_controls(name, v)?;
            if let Some(f) = p.format {
                check_format(ep, f, v)?;
            }
        }
    }
    Ok(())
}

fn re(pattern: &'static str) -> &'static regex::Regex {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static CACHE: OnceLock<Mutex<HashMap<&'static str, &'static regex::Regex>>> = OnceLock::new();
    let mut c = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    c.entry(pattern)
        .or_insert_with(|| Box::leak(Box::new(regex::Regex::new(pattern).expect("static regex"))))
}

const NODE_RE: &str = r"^[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?$";
const STORAGE_RE: &str = r"^[a-zA-Z][a-zA-Z0-9\-_.]*[a-zA-Z0-9]$";
const DNS_RE: &str =
    r"^([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?\.)*[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?$";
const CONFIGID_RE: &str = r"^[a-zA-Z][a-zA-Z0-9_\-]+$";
const VOLID_RE: &str = r"^[a-zA-Z][a-zA-Z0-9\-_.]*[a-zA-Z0-9]:.+$";

pub fn is_node_name(v: &str) -> bool {
    re(NODE_RE).is_match(v)
}
pub fn is_storage_id(v: &str) -> bool {
    re(STORAGE_RE).is_match(v)
}

/// Nothing from a request may smuggle a line break (or another control
/// character) into a config file or an LXC config line. Stricter than the
/// official patterns for `entrypoint`/`env`, which let `\n` through.
fn check_controls(name: &str, v: &str) -> Result<(), String> {
    let bad = match name {
        // Kept as `#` comment lines, one per line.
        "description" => v.contains('\r'),
        // NUL-separated by definition.
        "env" => v.chars().any(|c| c.is_control() && c != '\0'),
        // Not stored.
        "ssh-public-keys" => false,
        _ => v.chars().any(char::is_control),
    };
    if bad {
        Err("invalid format - value contains control characters".into())
    } else {
        Ok(())
    }
}

/// Format checks, named as in the table. Formats the emulator does not
/// interpret are only checked for control characters.
fn check_format(ep: &Endpoint, f: &str, v: &str) -> Result<(), String> {
    let bad = |what: &str| Err(format!("invalid format - {what}"));
    match f {
        "pve-node" if !is_node_name(v) => bad("value does not look like a valid node name"),
        "pve-storage-id" if !is_storage_id(v) => {
            bad(&format!("storage ID '{v}' contains illegal characters"))
        }
        "dns-name" if !re(DNS_RE).is_match(v) => bad("value does not look like a valid DNS name"),
        "pve-configid" if !re(CONFIGID_RE).is_match(v) => {
            bad(&format!("invalid configuration ID '{v}'"))
        }
        "pve-configid-list" => {
            for id in v.split([',', ';', ' ']).filter(|s| !s.is_empty()) {
                if !re(CONFIGID_RE).is_match(id) {
                    return bad(&format!("invalid configuration ID '{id}'"));
                }
            }
            Ok(())
        }
        "pve-volume-id" if !re(VOLID_RE).is_match(v) => {
            bad(&format!("unable to parse volume ID '{v}'"))
        }
        "pve-tag-list" => {
            for t in v.split([',', ';', ' ']).filter(|s| !s.is_empty()) {
                if !re(r"^[a-zA-Z0-9_][a-zA-Z0-9_\-+.]*$").is_match(t) {
                    return bad(&format!("invalid tag '{t}'"));
                }
            }
            Ok(())
        }
        "userid-pattern"
            if !re(r"^[^\s:/]+@[A-Za-z][A-Za-z0-9.\-_]+(?:![A-Za-z][A-Za-z0-9.\-_]+)?$")
                .is_match(v) =>
        {
            Err("value does not match the regex pattern".into())
        }
        "ipset-name-pattern" if !re(r"^[A-Za-z][A-Za-z0-9\-_]+$").is_match(v) => {
            Err("value does not match the regex pattern".into())
        }
        "entrypoint-pattern" if !re(r"^[^\x00-\x08\x10-\x1F\x7F]+$").is_match(v) => {
            Err("value does not match the regex pattern".into())
        }
        "env-pattern"
            if !re(
                r"^(?:\w+=[^\x00-\x08\x10-\x1F\x7F]*)(?:\x00\w+=[^\x00-\x08\x10-\x1F\x7F]*)*$",
            )
            .is_match(v) =>
        {
            Err("value does not match the regex pattern".into())
        }
        "pve-task-status-type-list" => {
            for t in v.split([',', ';', ' ']).filter(|s| !s.is_empty()) {
                if !["ok", "error", "warning", "unknown"].contains(&t) {
                    return bad(&format!("value '{t}' does not have a value in the enumeration 'ok, error, warning, unknown'"));
                }
            }
            Ok(())
        }
        f if f.starts_with("lxc-") || f.starts_with("qm-") => {
            propstr::check(ep.path, f, v).map_err(|e| format!("invalid format - {e}"))
        }
        _ => Ok(()),
    }
}
