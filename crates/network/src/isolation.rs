//! `isolated = true`: no traffic routed between that network's bridge and
//! any other configured network's bridge (nftables, `table inet
//! proxmox_lxcri`, chain `isolation` at the forward hook). Traffic inside
//! the network, and to the host and beyond, is untouched.
use std::collections::BTreeMap;

use crate::config::{Network, NetworkError};

pub const TABLE: &str = "proxmox_lxcri";
pub const CHAIN: &str = "isolation";

/// The whole chain for these networks, replaced in one transaction.
pub fn script(nets: &BTreeMap<String, Network>) -> String {
    let mut s = format!(
        "table inet {TABLE} {{\n  chain {CHAIN} {{\n    type filter hook forward priority 0; policy accept;\n  }}\n}}\nflush chain inet {TABLE} {CHAIN}\n"
    );
    for (name, n) in nets.iter().filter(|(_, n)| n.isolated) {
        let mut others: Vec<&str> = nets
            .values()
            .map(|o| o.bridge.as_str())
            .filter(|b| *b != n.bridge)
            .collect();
        others.sort();
        others.dedup();
        if others.is_empty() {
            continue;
        }
        let set = others
            .iter()
            .map(|b| format!("\"{b}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let b = &n.bridge;
        let c = format!("lxcri-net {name}");
        s.push_str(&format!(
            "add rule inet {TABLE} {CHAIN} iifname \"{b}\" oifname {{ {set} }} drop comment \"{c}\"\n"
        ));
        s.push_str(&format!(
            "add rule inet {TABLE} {CHAIN} iifname {{ {set} }} oifname \"{b}\" drop comment \"{c}\"\n"
        ));
    }
    s
}

/// Install the rules when any network is isolated (names were checked at
/// load: bridge and network names need no quoting beyond what is done).
pub fn apply(nets: &BTreeMap<String, Network>) -> Result<(), NetworkError> {
    if !nets.values().any(|n| n.isolated) {
        return Ok(());
    }
    crate::port_security::nft_script(&script(nets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_isolated_network_is_cut_from_the_others_only() {
        let nets: BTreeMap<String, Network> = toml::from_str(
            "[a]\nbridge = \"bra\"\nsubnet = \"10.1.0.0/24\"\nisolated = true\n\
             [b]\nbridge = \"brb\"\nsubnet = \"10.2.0.0/24\"\n\
             [c]\nbridge = \"brc\"\nsubnet = \"10.3.0.0/24\"\n",
        )
        .unwrap();
        let s = script(&nets);
        assert!(
            s.contains("iifname \"bra\" oifname { \"brb\", \"brc\" } drop comment \"lxcri-net a\""),
            "{s}"
        );
        assert!(
            s.contains("iifname { \"brb\", \"brc\" } oifname \"bra\" drop"),
            "{s}"
        );
        assert_eq!(s.matches("add rule").count(), 2, "{s}");
    }
}
