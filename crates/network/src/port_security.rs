//! Port security on a Linux bridge with nftables' bridge family: frames
//! entering the bridge from a container's port must carry the lease's MAC
//! and addresses (Ethernet, ARP, IPv4, IPv6 with link-local for neighbour
//! discovery); anything else is dropped before it is bridged or routed.
//!
//! One table `bridge proxmox_lxcri`, one base chain hooked at prerouting;
//! each container's rules carry the comment `lxcri <owner tag>` so that
//! they are removed as one, and found again by `gc`.
use std::io::Write;
use std::process::{Command, Stdio};

use crate::config::{valid_ifname, NetworkError};
use crate::ipam::Lease;

pub const TABLE: &str = "proxmox_lxcri";
pub const CHAIN: &str = "port_security";

fn host_err(what: &str, reason: impl ToString) -> NetworkError {
    NetworkError::Host {
        what: what.to_string(),
        reason: reason.to_string(),
    }
}

/// The comment that marks an owner's rules: only characters that need no
/// quoting (the owner tag is made of id characters and hex).
pub fn comment(tag: &str) -> String {
    format!("lxcri {tag}")
}

fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 100
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// The nft script that adds the rules of `port` (host interface) for `lease`.
pub fn script(tag: &str, ports: &[(String, Lease)]) -> Result<String, NetworkError> {
    if !valid_tag(tag) {
        return Err(host_err("port security", format!("tag {tag:?}")));
    }
    let c = comment(tag);
    let mut s = format!(
        "table bridge {TABLE} {{\n  chain {CHAIN} {{\n    type filter hook prerouting priority -200; policy accept;\n  }}\n}}\n"
    );
    for (port, lease) in ports {
        if !valid_ifname(port) {
            return Err(host_err("port security", format!("interface {port:?}")));
        }
        let mac = &lease.mac;
        if !mac.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') || mac.len() != 17 {
            return Err(host_err("port security", format!("MAC {mac:?}")));
        }
        let v4: Vec<String> = lease
            .addrs
            .iter()
            .filter(|a| a.addr().is_ipv4())
            .map(|a| a.addr().to_string())
            .collect();
        let mut v6: Vec<String> = lease
            .addrs
            .iter()
            .filter(|a| a.addr().is_ipv6())
            .map(|a| a.addr().to_string())
            .collect();
        v6.push("fe80::/10".into());
        let set = |v: &[String]| {
            if v.is_empty() {
                "{ 255.255.255.255 }".to_string()
            } else {
                format!("{{ {} }}", v.join(", "))
            }
        };
        let rule = |body: &str| {
            format!(
                "add rule bridge {TABLE} {CHAIN} iifname \"{port}\" {body} drop comment \"{c}\"\n"
            )
        };
        s.push_str(&rule(&format!("ether saddr != {mac}")));
        s.push_str(&rule(&format!("arp saddr ether != {mac}")));
        s.push_str(&rule(&format!("arp saddr ip != {}", set(&v4))));
        s.push_str(&rule(&format!("ip saddr != {}", set(&v4))));
        s.push_str(&rule(&format!("ip6 saddr != {{ {} }}", v6.join(", "))));
    }
    Ok(s)
}

/// Run `nft ARGS` with `stdin` (no shell); its stdout.
pub fn nft(args: &[&str], stdin: Option<&str>) -> Result<String, NetworkError> {
    let mut c = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| host_err("nft", format!("running nft (nftables): {e}")))?;
    if let Some(text) = stdin {
        c.stdin
            .take()
            .expect("piped")
            .write_all(text.as_bytes())
            .map_err(|e| host_err("nft", e))?;
    }
    drop(c.stdin.take());
    let o = c.wait_with_output().map_err(|e| host_err("nft", e))?;
    if !o.status.success() {
        return Err(host_err(
            &format!("nft {}", args.join(" ")),
            String::from_utf8_lossy(&o.stderr).trim(),
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Run an nft script (one transaction: all or nothing).
pub fn nft_script(text: &str) -> Result<(), NetworkError> {
    nft(&["-f", "-"], Some(text)).map(|_| ())
}

/// Add the rules (one nft transaction: all or nothing).
pub fn apply(tag: &str, ports: &[(String, Lease)]) -> Result<(), NetworkError> {
    if ports.is_empty() {
        return Ok(());
    }
    nft(&["-f", "-"], Some(&script(tag, ports)?)).map(|_| ())
}

/// The comments of the rules in our chain, with their handles.
pub fn rules() -> Result<Vec<(u64, String)>, NetworkError> {
    if !std::path::Path::new("/usr/sbin/nft").exists()
        && !std::path::Path::new("/sbin/nft").exists()
    {
        // Without nftables there can be no rules of ours.
        return Ok(vec![]);
    }
    let out = match nft(&["-j", "list", "chain", "bridge", TABLE, CHAIN], None) {
        Ok(o) => o,
        // No table yet: no rules.
        Err(NetworkError::Host { reason, .. }) if reason.contains("No such file") => {
            return Ok(vec![])
        }
        Err(e) => return Err(e),
    };
    let v: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| host_err("nft -j list chain", e))?;
    Ok(v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| {
            let r = o.get("rule")?;
            Some((r["handle"].as_u64()?, r["comment"].as_str()?.to_string()))
        })
        .collect())
}

/// Remove every rule of `tag` (none: fine).
pub fn remove(tag: &str) -> Result<(), NetworkError> {
    let c = comment(tag);
    let script: String = rules()?
        .into_iter()
        .filter(|(_, cm)| *cm == c)
        .map(|(h, _)| format!("delete rule bridge {TABLE} {CHAIN} handle {h}\n"))
        .collect();
    if script.is_empty() {
        return Ok(());
    }
    nft(&["-f", "-"], Some(&script)).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_names_only_the_lease() {
        let lease = Lease {
            network: "n".into(),
            addrs: vec![
                "10.1.0.5/24".parse().unwrap(),
                "fd00::5/64".parse().unwrap(),
            ],
            mac: "02:aa:0a:01:00:05".into(),
            owner: crate::Owner {
                root: "/r".into(),
                id: "c".into(),
            },
            since: 0,
        };
        let s = script("ab12:c", &[("lxcri0a0b0c0d".into(), lease.clone())]).unwrap();
        assert!(s.contains("iifname \"lxcri0a0b0c0d\" ether saddr != 02:aa:0a:01:00:05 drop comment \"lxcri ab12:c\""), "{s}");
        assert!(s.contains("ip saddr != { 10.1.0.5 } drop"), "{s}");
        assert!(
            s.contains("ip6 saddr != { fd00::5, fe80::/10 } drop"),
            "{s}"
        );
        assert!(s.contains("arp saddr ip != { 10.1.0.5 } drop"), "{s}");
        assert!(script("a\"b", &[("x".into(), lease.clone())]).is_err());
        assert!(script("t", &[("x\"; drop".into(), lease)]).is_err());
    }
}
