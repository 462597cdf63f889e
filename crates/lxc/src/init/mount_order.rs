//! The spec's mounts in the spec's order in `/proc/self/mountinfo`.
//!
//! The runtime spec makes the order a MUST, but LXC does not mount in it:
//! its autodev `/dev` comes first, cgroups (`lxc.mount.auto`) after every
//! mount entry, its devpts and console after those. The init, which runs
//! once LXC is done and before anything else touches the mounts, puts them
//! in order: it clones each mount from the first one out of place
//! (open_tree, not recursive: same superblock, same flags, same peer group),
//! detaches the originals, and attaches the clones in the wanted order
//! (parents before children). A mount's list position in the namespace is
//! where it was attached, so the clones come out in the order attached.
//!
//! Mounts that are not the spec's (LXC's device binds and console, our
//! exchange dir and init binary, cgroup v1 hierarchies below the cgroup
//! tmpfs) follow their parent right away. When the tree is not one this
//! can rebuild safely (stacked mounts on one path, a mount that cannot be
//! cloned) the order is left as LXC made it: nothing is detached before
//! every clone exists.
use std::collections::HashSet;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// One line of mountinfo: the fields the reordering needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountLine {
    pub id: u64,
    pub parent: u64,
    /// Mount point, relative to the process's root, unescaped.
    pub point: String,
}

/// What to do: detach `detach` (whole subtrees), then attach clones of
/// `reattach` in that order. Both name mounts by id and mount point.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub reattach: Vec<MountLine>,
    pub detach: Vec<MountLine>,
}

/// Parse `/proc/self/mountinfo` (fields 1, 2 and 5).
pub fn parse_mountinfo(text: &str) -> Vec<MountLine> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Some(MountLine {
                id: f.first()?.parse().ok()?,
                parent: f.get(1)?.parse().ok()?,
                point: unescape(f.get(4)?),
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = std::str::from_utf8(&b[i + 1..i + 4]).ok();
            if let Some(v) = oct.and_then(|o| u8::from_str_radix(o, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The reordering that lists `spec` (mount points, in the spec's order)
/// in that order, or None when the order is already right or the tree is
/// not one to rebuild (see the module doc).
pub fn plan(mounts: &[MountLine], spec: &[String]) -> Option<Plan> {
    // The first line is the process's root: never moved.
    let rest = mounts.get(1..)?;
    // Stacked mounts (two on one path, or on `/`): a path names only the
    // top one, so neither could be cloned and put back by path.
    let mut seen = HashSet::new();
    if rest
        .iter()
        .any(|m| m.point == "/" || !seen.insert(m.point.as_str()))
    {
        return None;
    }
    let spec_ids: Vec<usize> = spec
        .iter()
        .filter_map(|p| rest.iter().position(|m| &m.point == p))
        .collect();
    // Each mount's parent (None: on the root) and its non-spec children,
    // which follow it right away.
    let parent: Vec<Option<usize>> = rest
        .iter()
        .map(|m| rest.iter().position(|p| p.id == m.parent))
        .collect();
    let mut kids = vec![vec![]; rest.len()];
    for (c, p) in parent.iter().enumerate() {
        if let Some(p) = p.filter(|_| !spec_ids.contains(&c)) {
            kids[p].push(c);
        }
    }
    let mut placer = Placer {
        parent,
        kids,
        placed: vec![false; rest.len()],
        order: Vec::with_capacity(rest.len()),
    };
    for &s in &spec_ids {
        placer.place(s);
    }
    for i in 0..rest.len() {
        placer.place(i);
    }
    let order = placer.order;
    let first = order.iter().enumerate().position(|(n, &i)| n != i)?;
    let moved: HashSet<u64> = order[first..].iter().map(|&i| rest[i].id).collect();
    Some(Plan {
        reattach: order[first..].iter().map(|&i| rest[i].clone()).collect(),
        detach: order[first..]
            .iter()
            .filter(|&&i| !moved.contains(&rest[i].parent))
            .map(|&i| rest[i].clone())
            .collect(),
    })
}

/// Places mounts (indexes) in the new order: each after its parent, its
/// non-spec children right after it.
struct Placer {
    parent: Vec<Option<usize>>,
    kids: Vec<Vec<usize>>,
    placed: Vec<bool>,
    order: Vec<usize>,
}

impl Placer {
    fn place(&mut self, i: usize) {
        if std::mem::replace(&mut self.placed[i], true) {
            return;
        }
        if let Some(p) = self.parent[i] {
            self.place(p);
        }
        self.order.push(i);
        for c in self.kids[i].clone() {
            self.place(c);
        }
    }
}

/// Put the mounts at `spec` (container paths, spec order) in that order.
/// Ok(false): left as they were (nothing to do, or not safely possible).
pub fn reorder(spec: &[String]) -> Result<bool, String> {
    if spec.is_empty() {
        return Ok(false);
    }
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("reading /proc/self/mountinfo: {e}"))?;
    let Some(plan) = plan(&parse_mountinfo(&text), spec) else {
        return Ok(false);
    };
    // Every clone first: if one cannot be made, nothing has changed.
    let mut clones = Vec::with_capacity(plan.reattach.len());
    for m in &plan.reattach {
        match clone_mount(m) {
            Some(fd) => clones.push(fd),
            None => return Ok(false),
        }
    }
    for m in &plan.detach {
        let p = cstr(&m.point)?;
        // SAFETY: umount2 with a valid C string.
        if unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) } != 0 {
            return Err(format!(
                "putting the mounts in the spec's order: detaching {}: {}",
                m.point,
                std::io::Error::last_os_error()
            ));
        }
    }
    for (m, fd) in plan.reattach.iter().zip(&clones) {
        let p = cstr(&m.point)?;
        let empty = c"";
        // SAFETY: move_mount(2) of a detached tree (our fd) onto a path.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                fd.as_raw_fd(),
                empty.as_ptr(),
                libc::AT_FDCWD,
                p.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        if rc != 0 {
            return Err(format!(
                "putting the mounts in the spec's order: attaching {}: {}",
                m.point,
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(true)
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

fn cstr(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("a NUL byte in mount point {s:?}"))
}

/// A detached clone of the mount `m`, if its path still names exactly it.
fn clone_mount(m: &MountLine) -> Option<OwnedFd> {
    let p = CString::new(m.point.as_str()).ok()?;
    // SAFETY: statx into a zeroed struct of the right type.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            p.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_MNT_ID,
            &mut st,
        )
    };
    if rc != 0 || st.stx_mask & libc::STATX_MNT_ID == 0 || st.stx_mnt_id != m.id {
        return None;
    }
    // SAFETY: open_tree(2) with a C string; returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            p.as_ptr(),
            OPEN_TREE_CLONE
                | libc::O_CLOEXEC as libc::c_uint
                | libc::AT_SYMLINK_NOFOLLOW as libc::c_uint,
        )
    };
    // SAFETY: a new fd from open_tree, owned by nothing else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: u64, parent: u64, point: &str) -> MountLine {
        MountLine {
            id,
            parent,
            point: point.into(),
        }
    }
    fn points(v: &[MountLine]) -> Vec<&str> {
        v.iter().map(|m| m.point.as_str()).collect()
    }
    fn spec(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_and_unescapes() {
        let t = "36 35 98:0 /mnt1 /mnt\\040a rw,noatime master:1 - ext3 /dev/root rw\n\
                 37 36 0:5 / /dev rw - tmpfs tmpfs rw\n";
        let v = parse_mountinfo(t);
        assert_eq!(v, vec![m(36, 35, "/mnt a"), m(37, 36, "/dev")]);
    }

    #[test]
    fn lxc_order_is_put_in_spec_order() {
        // As LXC mounts runc's default spec: autodev /dev first, the mount
        // entries, cgroups (a tmpfs with a hierarchy below), then devpts;
        // our exchange dir and init binary under /dev.
        let lxc = vec![
            m(1, 0, "/"),
            m(2, 1, "/dev"),
            m(3, 1, "/proc"),
            m(4, 2, "/dev/shm"),
            m(5, 2, "/dev/mqueue"),
            m(6, 1, "/sys"),
            m(7, 2, "/dev/.lxcri"),
            m(8, 2, "/dev/.lxcri-init"),
            m(9, 6, "/sys/fs/cgroup"),
            m(10, 9, "/sys/fs/cgroup/memory"),
            m(11, 2, "/dev/pts"),
            m(12, 2, "/dev/console"),
        ];
        let s = spec(&[
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup",
        ]);
        let p = plan(&lxc, &s).expect("out of order");
        assert_eq!(
            points(&p.reattach),
            vec![
                "/proc",
                "/dev",
                "/dev/.lxcri",
                "/dev/.lxcri-init",
                "/dev/console",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup",
                "/sys/fs/cgroup/memory",
            ]
        );
        // Only the top of each moved subtree is detached.
        assert_eq!(points(&p.detach), vec!["/proc", "/dev", "/sys"]);
    }

    #[test]
    fn an_ordered_tree_is_left_alone_and_only_the_tail_moves() {
        let t = vec![
            m(1, 0, "/"),
            m(2, 1, "/proc"),
            m(3, 1, "/dev"),
            m(4, 3, "/dev/pts"),
        ];
        assert_eq!(plan(&t, &spec(&["/proc", "/dev", "/dev/pts"])), None);
        // Docker's binds after the cgroups, which LXC mounts last.
        let t = vec![
            m(1, 0, "/"),
            m(2, 1, "/proc"),
            m(3, 1, "/sys"),
            m(4, 1, "/etc/hosts"),
            m(5, 3, "/sys/fs/cgroup"),
        ];
        let p = plan(
            &t,
            &spec(&["/proc", "/sys", "/sys/fs/cgroup", "/etc/hosts"]),
        )
        .unwrap();
        assert_eq!(points(&p.reattach), vec!["/sys/fs/cgroup", "/etc/hosts"]);
        assert_eq!(points(&p.detach), vec!["/sys/fs/cgroup", "/etc/hosts"]);
    }

    #[test]
    fn stacked_mounts_are_not_rebuilt() {
        let t = vec![
            m(1, 0, "/"),
            m(2, 1, "/dev"),
            m(3, 1, "/tmp"),
            m(4, 3, "/tmp"),
            m(5, 1, "/proc"),
        ];
        assert_eq!(plan(&t, &spec(&["/proc", "/tmp", "/dev"])), None);
    }
}
