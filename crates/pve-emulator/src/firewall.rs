//! Proxmox's firewall, the part a guest's port security needs: the files
//! (`DIR/firewall/cluster.fw`, `DIR/firewall/<vmid>.fw`, sections
//! `[OPTIONS]` and `[IPSET name]` as pve-firewall writes them) and their
//! enforcement on this host's bridge with nftables' bridge family.
//!
//! As on a node, nothing is filtered unless the datacenter firewall is on
//! (`cluster.fw` `enable: 1`), the guest's firewall is on (`enable: 1`) and
//! the NIC has `firewall=1`. Then frames entering the bridge from the
//! guest's port (a CT's `veth<vmid>i<n>`, a VM's `tap<vmid>i<n>`) must
//! carry its MAC (a CT's `hwaddr`, a VM's `virtio=`; `macfilter`, default
//! on) and, with `ipfilter` or an `ipfilter-net<n>` IP set, an address of
//! the set or of the NIC's `ip`/`ip6` (IPv6 link-local always allowed).
//! A simplification: real nodes put the port behind a `fwbr` bridge and
//! use ebtables/iptables; the effect on the CT's traffic is the same.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::propstr;
use crate::store::{Kind, Section};

const TABLE: &str = "pve_emulator";
const CHAIN: &str = "guest_fw";

/// One `.fw` file: options and IP sets (cidr, nomatch, comment).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FwFile {
    pub options: BTreeMap<String, String>,
    pub ipsets: BTreeMap<String, (String, Vec<IpSetEntry>)>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct IpSetEntry {
    pub cidr: String,
    pub nomatch: bool,
    pub comment: String,
}

impl FwFile {
    pub fn parse(text: &str) -> FwFile {
        let mut f = FwFile::default();
        let mut section: Option<String> = None;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            // `[OPTIONS]`, `[IPSET name]` or `[IPSET name] # comment`.
            if let Some((s, after)) = line.strip_prefix('[').and_then(|l| l.split_once(']')) {
                let comment = after
                    .trim()
                    .strip_prefix('#')
                    .unwrap_or("")
                    .trim()
                    .to_string();
                if let Some(name) = s.strip_prefix("IPSET ") {
                    let name = name.trim().to_string();
                    f.ipsets.insert(name.clone(), (comment, vec![]));
                    section = Some(format!("IPSET {name}"));
                } else {
                    section = Some(s.to_string());
                }
                continue;
            }
            match section.as_deref() {
                Some("OPTIONS") => {
                    if let Some((k, v)) = line.split_once(':') {
                        f.options.insert(k.trim().to_string(), v.trim().to_string());
                    }
                }
                Some(s) if s.starts_with("IPSET ") => {
                    let name = &s["IPSET ".len()..];
                    let (body, comment) = match line.split_once(" # ") {
                        Some((b, c)) => (b.trim(), c.to_string()),
                        None => (line, String::new()),
                    };
                    let (nomatch, cidr) = match body.strip_prefix('!') {
                        Some(c) => (true, c.to_string()),
                        None => (false, body.to_string()),
                    };
                    if let Some((_, entries)) = f.ipsets.get_mut(name) {
                        entries.push(IpSetEntry {
                            cidr,
                            nomatch,
                            comment,
                        });
                    }
                }
                _ => {}
            }
        }
        f
    }

    pub fn render(&self) -> String {
        let mut s = String::from("[OPTIONS]\n\n");
        for (k, v) in &self.options {
            s.push_str(&format!("{k}: {v}\n"));
        }
        for (name, (comment, entries)) in &self.ipsets {
            if comment.is_empty() {
                s.push_str(&format!("\n[IPSET {name}]\n\n"));
            } else {
                s.push_str(&format!("\n[IPSET {name}] # {comment}\n\n"));
            }
            for e in entries {
                let bang = if e.nomatch { "!" } else { "" };
                if e.comment.is_empty() {
                    s.push_str(&format!("{bang}{}\n", e.cidr));
                } else {
                    s.push_str(&format!("{bang}{} # {}\n", e.cidr, e.comment));
                }
            }
        }
        s
    }
}

pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("firewall")
}

pub fn path(data_dir: &Path, name: &str) -> PathBuf {
    dir(data_dir).join(format!("{name}.fw"))
}

pub fn load(data_dir: &Path, name: &str) -> FwFile {
    std::fs::read_to_string(path(data_dir, name))
        .map(|t| FwFile::parse(&t))
        .unwrap_or_default()
}

pub fn save(data_dir: &Path, name: &str, f: &FwFile) -> std::io::Result<()> {
    std::fs::create_dir_all(dir(data_dir))?;
    let p = path(data_dir, name);
    let tmp = p.with_extension("fw.tmp");
    std::fs::write(&tmp, f.render())?;
    std::fs::rename(tmp, p)
}

/// The comment that marks a guest's rules (the data dir tells emulators on
/// one host apart).
fn tag(data_dir: &Path, vmid: u32) -> String {
    let h = data_dir
        .to_string_lossy()
        .bytes()
        .fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        });
    format!("pve-fw {:08x} {vmid}", h as u32)
}

fn on(v: Option<&String>, default: bool) -> bool {
    v.map(|s| s == "1").unwrap_or(default)
}

/// Addresses and networks a set may hold, as nft prints them.
fn addr_ok(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() || matches!(b, b'.' | b':' | b'/'))
}

/// The nft rules of guest `vmid` with `conf` (empty: no filtering).
pub fn rules(data_dir: &Path, vmid: u32, kind: Kind, conf: &Section) -> Vec<String> {
    let cluster = load(data_dir, "cluster");
    let guest = load(data_dir, &vmid.to_string());
    if !on(cluster.options.get("enable"), false) || !on(guest.options.get("enable"), false) {
        return vec![];
    }
    let c = tag(data_dir, vmid);
    let mut out = vec![];
    for (k, v) in &conf.keys {
        let Some(n) = k.strip_prefix("net").and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // A CT's NIC (`name=eth0,hwaddr=...`, veth) or a VM's
        // (`virtio=MAC,...`, tap); only a CT's carries addresses.
        let (m, port, mac) = match kind {
            Kind::Lxc => {
                let Ok(m) = propstr::parse_lxc("lxc-net", v) else {
                    continue;
                };
                let mac = m.get("hwaddr").cloned();
                (m, crate::runner::veth_name(vmid, n), mac)
            }
            Kind::Qemu => {
                let Ok(m) = propstr::parse(v, Some("model")) else {
                    continue;
                };
                let mac = crate::qemu::nic_model_mac(&m).map(|(_, mac)| mac);
                (m, crate::qemu::tap_name(vmid, n), mac)
            }
        };
        if m.get("firewall").map(String::as_str) != Some("1") {
            continue;
        }
        let rule = |body: String| {
            format!(
                "add rule bridge {TABLE} {CHAIN} iifname \"{port}\" {body} drop comment \"{c}\""
            )
        };
        if on(guest.options.get("macfilter"), true) {
            if let Some(mac) = mac.filter(|h| !h.is_empty() && addr_ok(h)) {
                out.push(rule(format!("ether saddr != {mac}")));
                out.push(rule(format!("arp saddr ether != {mac}")));
            }
        }
        let set_name = format!("ipfilter-net{n}");
        let set = guest.ipsets.get(&set_name);
        if on(guest.options.get("ipfilter"), false) || set.is_some() {
            let mut allowed: Vec<String> = set
                .map(|(_, e)| {
                    e.iter()
                        .filter(|e| !e.nomatch && addr_ok(&e.cidr))
                        .map(|e| e.cidr.clone())
                        .collect()
                })
                .unwrap_or_default();
            // A CT's configured addresses are implicitly in the set.
            for key in ["ip", "ip6"].into_iter().filter(|_| kind == Kind::Lxc) {
                if let Some(a) = m.get(key).filter(|a| addr_ok(a) && a.contains('/')) {
                    allowed.push(a.split('/').next().unwrap_or_default().to_string());
                }
            }
            let v4: Vec<&String> = allowed.iter().filter(|a| !a.contains(':')).collect();
            let mut v6: Vec<String> = allowed
                .iter()
                .filter(|a| a.contains(':'))
                .cloned()
                .collect();
            v6.push("fe80::/10".into());
            let join = |v: Vec<String>| v.join(", ");
            if v4.is_empty() {
                out.push(rule("ether type { ip, arp }".into()));
            } else {
                let v4 = join(v4.into_iter().cloned().collect());
                out.push(rule(format!("ip saddr != {{ {v4} }}")));
                out.push(rule(format!("arp saddr ip != {{ {v4} }}")));
            }
            out.push(rule(format!("ip6 saddr != {{ {} }}", join(v6))));
        }
    }
    out
}

/// nftables through the runtime's runner (no shell, stderr in the error).
fn nft(args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    proxmox_lxcri_network::port_security::nft(args, stdin).map_err(anyhow::Error::from)
}

/// Replace guest `vmid`'s rules with what its config says now (None: the
/// guest is gone, remove them). One nft transaction.
pub fn sync(data_dir: &Path, vmid: u32, conf: Option<(Kind, &Section)>) -> anyhow::Result<()> {
    let want = conf
        .map(|(kind, c)| rules(data_dir, vmid, kind, c))
        .unwrap_or_default();
    // A CT whose firewall was never configured has no rules: no nft run on
    // every config change (a destroyed CT, `None`, is always cleaned).
    if want.is_empty() && conf.is_some() && !path(data_dir, &vmid.to_string()).exists() {
        return Ok(());
    }
    let c = tag(data_dir, vmid);
    let have: Vec<u64> = match nft(&["-j", "list", "chain", "bridge", TABLE, CHAIN], None) {
        Ok(out) => {
            let v: serde_json::Value = serde_json::from_str(&out)?;
            v["nftables"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|o| {
                    let r = o.get("rule")?;
                    (r["comment"].as_str()? == c).then(|| r["handle"].as_u64())?
                })
                .collect()
        }
        Err(_) if want.is_empty() => return Ok(()),
        Err(_) => vec![],
    };
    if want.is_empty() && have.is_empty() {
        return Ok(());
    }
    let mut script = format!(
        "table bridge {TABLE} {{\n  chain {CHAIN} {{\n    type filter hook prerouting priority -200; policy accept;\n  }}\n}}\n"
    );
    for h in have {
        script.push_str(&format!("delete rule bridge {TABLE} {CHAIN} handle {h}\n"));
    }
    for r in want {
        script.push_str(&r);
        script.push('\n');
    }
    nft(&["-f", "-"], Some(&script)).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fw_files_round_trip() {
        let text = "[OPTIONS]\n\nenable: 1\nipfilter: 1\n\n[IPSET ipfilter-net0] # lease\n\n10.0.0.5\n!10.0.0.6 # no\n";
        let f = FwFile::parse(text);
        assert_eq!(f.options["enable"], "1");
        let (c, e) = &f.ipsets["ipfilter-net0"];
        assert_eq!(c, "lease");
        assert_eq!(e.len(), 2);
        assert!(e[1].nomatch);
        assert_eq!(FwFile::parse(&f.render()), f);
    }
}
