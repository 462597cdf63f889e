//! uid/gid shifting for unprivileged containers: a file owned by `u` in the
//! image is owned by the host id that the container's user namespace maps
//! `u` to, so it looks right from inside.
use serde::{Deserialize, Serialize};

/// One range of a user-namespace mapping (OCI `linux.uidMappings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub container_id: u32,
    pub host_id: u32,
    pub size: u32,
}

/// The uid and gid mappings a copy applies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdShift {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
}

fn map(ranges: &[IdRange], id: u32) -> Option<u32> {
    ranges.iter().find_map(|r| {
        let off = id.checked_sub(r.container_id)?;
        (off < r.size).then(|| r.host_id + off)
    })
}

impl IdShift {
    /// The same range for uids and gids: container ids `0..size` are host
    /// ids `host_base..host_base+size` (Proxmox's unprivileged CTs:
    /// `uniform(100000, 65536)`).
    pub fn uniform(host_base: u32, size: u32) -> IdShift {
        let r = IdRange {
            container_id: 0,
            host_id: host_base,
            size,
        };
        IdShift {
            uids: vec![r],
            gids: vec![r],
        }
    }

    /// The host uid for a container uid, None when the mapping leaves it out.
    pub fn uid(&self, id: u32) -> Option<u32> {
        map(&self.uids, id)
    }
    pub fn gid(&self, id: u32) -> Option<u32> {
        map(&self.gids, id)
    }
    /// A shift that changes nothing (no mapping, or 0->0 over everything).
    pub fn is_identity(&self) -> bool {
        let ident = |r: &[IdRange]| r.iter().all(|m| m.container_id == m.host_id);
        ident(&self.uids) && ident(&self.gids)
    }
    /// Bytes that identify the shift, for image keys.
    pub fn key_bytes(&self) -> Vec<u8> {
        let mut v = b"shift:".to_vec();
        for (tag, rs) in [(b'u', &self.uids), (b'g', &self.gids)] {
            for r in rs {
                v.push(tag);
                for n in [r.container_id, r.host_id, r.size] {
                    v.extend_from_slice(&n.to_le_bytes());
                }
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_ranges() {
        let s = IdShift {
            uids: vec![IdRange {
                container_id: 0,
                host_id: 100000,
                size: 65536,
            }],
            gids: vec![IdRange {
                container_id: 0,
                host_id: 200000,
                size: 10,
            }],
        };
        assert_eq!(s.uid(0), Some(100000));
        assert_eq!(s.uid(65535), Some(165535));
        assert_eq!(s.uid(65536), None);
        assert_eq!(s.gid(11), None);
        assert!(!s.is_identity());
        assert!(IdShift::default().is_identity());
    }
}
