//! Proxmox task ids: `UPID:node:PID:PSTART:STARTTIME:type:id:user:`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// A parsed UPID. Proxmox writes the numbers as upper-case hex, at least 8
/// digits (`pstart` may have 9); `Display` writes that same form, so a UPID
/// from a server prints back exactly as received.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upid {
    pub node: String,
    pub pid: u32,
    pub pstart: u64,
    pub starttime: u64,
    /// The task type, e.g. `vzcreate`, `vzstart`, `qmstart`.
    pub kind: String,
    /// The task's object id (often the vmid), may be empty.
    pub id: String,
    /// Who started the task, e.g. `root@pam` or `root@pam!token`.
    pub user: String,
}

fn is_node_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn hex(field: &str, what: &str, min: usize, max: usize, full: &str) -> Result<u64, Error> {
    if field.len() < min || field.len() > max || !field.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::Decode(format!(
            "invalid UPID {full:?}: {what} must be {min}..{max} hex digits"
        )));
    }
    u64::from_str_radix(field, 16)
        .map_err(|e| Error::Decode(format!("invalid UPID {full:?}: {what}: {e}")))
}

impl FromStr for Upid {
    type Err = Error;

    fn from_str(s: &str) -> Result<Upid, Error> {
        let bad = |why: &str| Error::Decode(format!("invalid UPID {s:?}: {why}"));
        let body = s
            .strip_prefix("UPID:")
            .ok_or_else(|| bad("must start with 'UPID:'"))?;
        let body = body
            .strip_suffix(':')
            .ok_or_else(|| bad("must end with ':'"))?;
        let parts: Vec<&str> = body.split(':').collect();
        if parts.len() != 7 {
            return Err(bad("must have 7 ':'-separated fields"));
        }
        if parts.iter().any(|p| p.chars().any(char::is_whitespace)) {
            return Err(bad("fields must not contain white space"));
        }
        if !is_node_name(parts[0]) {
            return Err(bad("bad node name"));
        }
        let pid = hex(parts[1], "pid", 8, 8, s)? as u32;
        let pstart = hex(parts[2], "pstart", 8, 9, s)?;
        let starttime = hex(parts[3], "starttime", 8, 8, s)?;
        if parts[4].is_empty() {
            return Err(bad("empty task type"));
        }
        if parts[6].is_empty() {
            return Err(bad("empty user"));
        }
        Ok(Upid {
            node: parts[0].to_string(),
            pid,
            pstart,
            starttime,
            kind: parts[4].to_string(),
            id: parts[5].to_string(),
            user: parts[6].to_string(),
        })
    }
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "UPID:{}:{:08X}:{:08X}:{:08X}:{}:{}:{}:",
            self.node, self.pid, self.pstart, self.starttime, self.kind, self.id, self.user
        )
    }
}

impl Serialize for Upid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Upid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Upid, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_exactly() {
        for s in [
            "UPID:pve:000A1B2C:0012D687:65F1E2A3:vzcreate:100:root@pam:",
            "UPID:node-1:00001234:1A2B3C4D5:65F1E2A3:vzstart:101:root@pam!ci:",
            "UPID:pve:00001234:00ABCDEF:65F1E2A3:aptupdate::root@pam:",
        ] {
            let u: Upid = s.parse().unwrap();
            assert_eq!(u.to_string(), s);
            let json = serde_json::to_string(&u).unwrap();
            let back: Upid = serde_json::from_str(&json).unwrap();
            assert_eq!(back, u);
        }
        let u: Upid = "UPID:node-1:00001234:1A2B3C4D5:65F1E2A3:vzstart:101:root@pam!ci:"
            .parse()
            .unwrap();
        assert_eq!(u.node, "node-1");
        assert_eq!(u.pid, 0x1234);
        assert_eq!(u.pstart, 0x1A2B3C4D5);
        assert_eq!(u.starttime, 0x65F1E2A3);
        assert_eq!(u.kind, "vzstart");
        assert_eq!(u.id, "101");
        assert_eq!(u.user, "root@pam!ci");
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "UPID:pve:000A1B2C:0012D687:65F1E2A3:vzcreate:100:root@pam",
            "UPID:pve:000A1B2C:0012D687:65F1E2A3:vzcreate:100:",
            "UPID:-pve:000A1B2C:0012D687:65F1E2A3:vzcreate:100:root@pam:",
            "UPID:pve:A1B2C:0012D687:65F1E2A3:vzcreate:100:root@pam:",
            "UPID:pve:000A1B2C:0012D687:65F1E2A3::100:root@pam:",
            "UPID:pve:000A1B2C:0012D687:65F1E2A3:vz create:100:root@pam:",
            "UPID:pve:000A1B2C:0012D687:65F1E2A3:vzcreate:100:root@pam:extra:",
            "UPID:p/e:000A1B2C:0012D687:65F1E2A3:vzcreate:100:root@pam:",
            "UPID:pve:000A1B2G:0012D687:65F1E2A3:vzcreate:100:root@pam:",
        ] {
            assert!(s.parse::<Upid>().is_err(), "{s:?} accepted");
        }
    }
}
