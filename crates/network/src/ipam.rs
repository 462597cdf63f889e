//! Leases: one file per network, `<dir>/<network>.json`, changed under an
//! exclusive flock on `<dir>/<network>.lock` and replaced atomically.
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::config::{ord, Network, NetworkError};

/// Who holds a lease: a container id in one runtime root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub root: PathBuf,
    pub id: String,
}

/// A container's addresses on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub network: String,
    /// One address per subnet family, with the subnet's prefix length.
    pub addrs: Vec<IpNet>,
    /// Pinned for the lease's life (port security matches it).
    pub mac: String,
    pub owner: Owner,
    /// Seconds since the epoch.
    pub since: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Book {
    leases: Vec<Lease>,
}

pub struct Ipam {
    dir: PathBuf,
}

type Result<T> = std::result::Result<T, NetworkError>;

fn store_err(path: &Path, e: impl std::fmt::Display) -> NetworkError {
    NetworkError::Store {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

impl Ipam {
    pub fn new(dir: impl Into<PathBuf>) -> Ipam {
        Ipam { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn book_path(&self, network: &str) -> PathBuf {
        self.dir.join(format!("{network}.json"))
    }

    /// Run `f` on the network's leases under the lock; written back when
    /// `f` says it changed them.
    fn with_book<T>(
        &self,
        network: &str,
        f: impl FnOnce(&mut Book) -> Result<(T, bool)>,
    ) -> Result<T> {
        fs::create_dir_all(&self.dir).map_err(|e| store_err(&self.dir, e))?;
        let lock_path = self.dir.join(format!("{network}.lock"));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| store_err(&lock_path, e))?;
        let _lock = Flock::lock(lock, FlockArg::LockExclusive)
            .map_err(|(_, e)| store_err(&lock_path, e))?;
        let path = self.book_path(network);
        let mut book: Book = match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| store_err(&path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Book::default(),
            Err(e) => return Err(store_err(&path, e)),
        };
        let (out, changed) = f(&mut book)?;
        if changed {
            let tmp = self.dir.join(format!("{network}.json.tmp"));
            let text = serde_json::to_vec_pretty(&book).expect("leases serialize");
            let mut file = File::create(&tmp).map_err(|e| store_err(&tmp, e))?;
            file.write_all(&text)
                .and_then(|_| file.sync_all())
                .map_err(|e| store_err(&tmp, e))?;
            fs::rename(&tmp, &path).map_err(|e| store_err(&path, e))?;
            if let Ok(d) = File::open(&self.dir) {
                let _ = d.sync_all();
            }
        }
        Ok(out)
    }

    /// The lease of `owner` on `network`, made if it has none (a retry after
    /// a crash gets the same one). `want`: a fixed address, which must be a
    /// host address of a subnet and free.
    pub fn lease(
        &self,
        name: &str,
        net: &Network,
        owner: &Owner,
        want: Option<IpAddr>,
    ) -> Result<Lease> {
        self.lease_with(name, net, owner, want, &mut |_| Ok(true), &mut |_| {})
    }

    /// [`Ipam::lease`] with an outside registry consulted for each address
    /// before it is taken (Proxmox SDN's IPAM, shared by a cluster):
    /// `reserve(addr)` says true (registered there), false (taken there:
    /// try the next) or fails; `unreserve` gives back what was registered
    /// when the lease cannot be completed.
    pub fn lease_with(
        &self,
        name: &str,
        net: &Network,
        owner: &Owner,
        want: Option<IpAddr>,
        reserve: &mut dyn FnMut(IpAddr) -> Result<bool>,
        unreserve: &mut dyn FnMut(IpAddr),
    ) -> Result<Lease> {
        self.with_book(name, |book| {
            if let Some(l) = book.leases.iter().find(|l| &l.owner == owner) {
                return Ok((l.clone(), false));
            }
            let taken = |a: IpAddr, book: &Book| {
                book.leases
                    .iter()
                    .any(|l| l.addrs.iter().any(|n| n.addr() == a))
            };
            let mut addrs: Vec<IpNet> = vec![];
            let undo = |addrs: &[IpNet], unreserve: &mut dyn FnMut(IpAddr)| {
                for a in addrs {
                    unreserve(a.addr());
                }
            };
            if let Some(a) = want {
                let bad = |why: &str| NetworkError::Address {
                    name: name.to_string(),
                    addr: a,
                    why: why.to_string(),
                };
                let s = net
                    .subnet_of(a)
                    .ok_or_else(|| bad("outside the network's subnets"))?;
                if reserved(&s, a, net) {
                    return Err(bad("the subnet's network, broadcast or gateway address"));
                }
                if taken(a, book) || !reserve(a)? {
                    return Err(bad("leased to another container"));
                }
                addrs.push(IpNet::new(a, s.prefix_len()).expect("prefix of its subnet"));
            }
            for v4 in [true, false] {
                if addrs.iter().any(|n| n.addr().is_ipv4() == v4) {
                    continue;
                }
                let ranges: Vec<_> = net
                    .ranges()
                    .into_iter()
                    .filter(|(s, _, _)| s.addr().is_ipv4() == v4)
                    .collect();
                if ranges.is_empty() {
                    continue;
                }
                let mut found = None;
                'ranges: for (s, first, last) in &ranges {
                    let mut a = *first;
                    loop {
                        if !reserved(s, a, net) && !taken(a, book) {
                            match reserve(a) {
                                Ok(true) => {
                                    found = Some(IpNet::new(a, s.prefix_len()).expect("prefix"));
                                    break 'ranges;
                                }
                                Ok(false) => {}
                                Err(e) => {
                                    undo(&addrs, unreserve);
                                    return Err(e);
                                }
                            }
                        }
                        if ord(a) >= ord(*last) {
                            break;
                        }
                        a = next(a);
                    }
                }
                match found {
                    Some(n) => addrs.push(n),
                    None => {
                        undo(&addrs, unreserve);
                        return Err(NetworkError::Exhausted {
                            name: name.to_string(),
                            range: ranges
                                .iter()
                                .map(|(_, f, l)| format!("{f}-{l}"))
                                .collect::<Vec<_>>()
                                .join(", "),
                            leased: book.leases.len(),
                        });
                    }
                }
            }
            let lease = Lease {
                network: name.to_string(),
                mac: mac_for(name, &addrs),
                addrs,
                owner: owner.clone(),
                since: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
            };
            book.leases.push(lease.clone());
            Ok((lease, true))
        })
    }

    /// Give back `owner`'s lease on `network`; None if it had none.
    pub fn release(&self, network: &str, owner: &Owner) -> Result<Option<Lease>> {
        if !self.book_path(network).exists() {
            return Ok(None);
        }
        self.with_book(network, |book| {
            let Some(i) = book.leases.iter().position(|l| &l.owner == owner) else {
                return Ok((None, false));
            };
            Ok((Some(book.leases.remove(i)), true))
        })
    }

    /// Release every lease for which `gone(owner)` says the owner no longer
    /// exists; returns them.
    pub fn reclaim(&self, network: &str, gone: impl Fn(&Owner) -> bool) -> Result<Vec<Lease>> {
        self.with_book(network, |book| {
            let (dead, live): (Vec<_>, Vec<_>) =
                book.leases.drain(..).partition(|l| gone(&l.owner));
            book.leases = live;
            let changed = !dead.is_empty();
            Ok((dead, changed))
        })
    }

    /// The leases of `network` (a consistent snapshot).
    pub fn leases(&self, network: &str) -> Result<Vec<Lease>> {
        if !self.book_path(network).exists() {
            return Ok(vec![]);
        }
        self.with_book(network, |book| Ok((book.leases.clone(), false)))
    }

    /// Networks that have a lease file.
    pub fn networks(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".json")
                    .map(String::from)
            })
            .collect();
        v.sort();
        v
    }
}

/// Never handed out: the network and broadcast addresses, and gateways.
/// How many addresses of one family (`v4`) the IPAM can hand out on `net`:
/// its ranges without the network, broadcast and gateway addresses (for
/// pool usage metrics; IPv6 pools may be astronomically large, hence u128).
pub fn pool_size(net: &Network, v4: bool) -> u128 {
    let mut n = 0u128;
    for (s, first, last) in net.ranges() {
        if s.addr().is_ipv4() != v4 {
            continue;
        }
        let all = (ord(last) - ord(first)).saturating_add(1);
        let inside = |a: IpAddr| ord(a) >= ord(first) && ord(a) <= ord(last);
        let mut out: Vec<IpAddr> = vec![s.network()];
        if v4 {
            out.push(s.broadcast());
        }
        out.extend(net.gateway.iter().copied().filter(|g| s.contains(g)));
        out.sort();
        out.dedup();
        let reserved = out.into_iter().filter(|a| inside(*a)).count() as u128;
        n = n.saturating_add(all.saturating_sub(reserved));
    }
    n
}

fn reserved(s: &IpNet, a: IpAddr, net: &Network) -> bool {
    a == s.network() || (a.is_ipv4() && a == s.broadcast()) || net.gateway.contains(&a)
}

fn next(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V4(v) => IpAddr::V4((u32::from(v).wrapping_add(1)).into()),
        IpAddr::V6(v) => IpAddr::V6((u128::from(v).wrapping_add(1)).into()),
    }
}

/// A locally administered unicast MAC from the network's name and the
/// address (unique while the address is): 02:<net>:<last 4 bytes>.
fn mac_for(network: &str, addrs: &[IpNet]) -> String {
    let h = network
        .bytes()
        .fold(0u8, |h, b| h.wrapping_mul(31).wrapping_add(b));
    let tail: [u8; 4] = match addrs.first().map(|n| n.addr()) {
        Some(IpAddr::V4(v)) => v.octets(),
        Some(IpAddr::V6(v)) => {
            let o = v.octets();
            [o[12], o[13], o[14], o[15]]
        }
        None => [0; 4],
    };
    format!(
        "02:{h:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        tail[0], tail[1], tail[2], tail[3]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Network {
        toml::from_str(text).unwrap()
    }

    fn owner(id: &str) -> Owner {
        Owner {
            root: "/run/test".into(),
            id: id.into(),
        }
    }

    #[test]
    fn leases_skip_reserved_addresses_and_are_idempotent() {
        let d = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(d.path());
        let n = net("bridge = \"br0\"\nsubnet = [\"10.1.0.0/29\", \"fd00:1::/125\"]\ngateway = [\"10.1.0.1\", \"fd00:1::1\"]");
        let a = ipam.lease("n", &n, &owner("a"), None).unwrap();
        assert_eq!(
            a.addrs,
            vec![
                "10.1.0.2/29".parse().unwrap(),
                "fd00:1::2/125".parse().unwrap()
            ]
        );
        assert_eq!(a.mac.len(), 17);
        assert_eq!(ipam.lease("n", &n, &owner("a"), None).unwrap(), a);
        let b = ipam.lease("n", &n, &owner("b"), None).unwrap();
        assert_eq!(b.addrs[0], "10.1.0.3/29".parse::<IpNet>().unwrap());
        assert_ne!(a.mac, b.mac);
        // .4 .5 .6 left (.7 is broadcast), then exhausted with a clear error.
        for id in ["c", "d", "e"] {
            ipam.lease("n", &n, &owner(id), None).unwrap();
        }
        let err = ipam
            .lease("n", &n, &owner("f"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no free address"), "{err}");
        assert_eq!(ipam.leases("n").unwrap().len(), 5);
        assert_eq!(ipam.release("n", &owner("b")).unwrap().unwrap(), b);
        assert_eq!(ipam.release("n", &owner("b")).unwrap(), None);
        let f = ipam.lease("n", &n, &owner("f"), None).unwrap();
        assert_eq!(f.addrs[0], "10.1.0.3/29".parse::<IpNet>().unwrap());
    }

    /// The pool size is what leasing until exhaustion really gets.
    #[test]
    fn pool_size_counts_what_can_be_leased() {
        for text in [
            "bridge = \"br0\"\nsubnet = \"10.1.0.0/29\"\ngateway = \"10.1.0.1\"",
            "bridge = \"br0\"\nsubnet = \"10.2.0.0/24\"\ngateway = \"10.2.0.1\"\nrange = \"10.2.0.100-10.2.0.110\"",
            "bridge = \"br0\"\nsubnet = \"10.3.0.0/28\"\nrange = [\"10.3.0.0/30\", \"10.3.0.8-10.3.0.15\"]",
            "bridge = \"br0\"\nsubnet = \"fd00:2::/125\"\ngateway = \"fd00:2::1\"",
        ] {
            let d = tempfile::tempdir().unwrap();
            let ipam = Ipam::new(d.path());
            let n = net(text);
            let v4 = n.subnet[0].addr().is_ipv4();
            let mut got = 0u128;
            while ipam.lease("n", &n, &owner(&format!("c{got}")), None).is_ok() {
                got += 1;
            }
            assert_eq!(pool_size(&n, v4), got, "{text}");
            assert_eq!(pool_size(&n, !v4), 0, "{text}");
        }
    }

    #[test]
    fn fixed_addresses_are_checked() {
        let d = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(d.path());
        let n = net("bridge = \"br0\"\nsubnet = \"10.2.0.0/24\"\ngateway = \"10.2.0.1\"\nrange = \"10.2.0.100-10.2.0.110\"");
        let a = ipam
            .lease("n", &n, &owner("a"), Some("10.2.0.50".parse().unwrap()))
            .unwrap();
        assert_eq!(a.addrs, vec!["10.2.0.50/24".parse().unwrap()]);
        for (addr, why) in [
            ("10.2.0.50", "leased"),
            ("10.2.0.1", "gateway"),
            ("10.2.0.255", "broadcast"),
            ("10.3.0.5", "outside"),
        ] {
            let err = ipam
                .lease("n", &n, &owner("b"), Some(addr.parse().unwrap()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{addr}: {err}");
        }
        // Nothing was leased by the failures.
        assert_eq!(ipam.leases("n").unwrap().len(), 1);
        let b = ipam.lease("n", &n, &owner("b"), None).unwrap();
        assert_eq!(b.addrs, vec!["10.2.0.100/24".parse().unwrap()]);
    }

    #[test]
    fn parallel_leases_are_unique() {
        let d = tempfile::tempdir().unwrap();
        let n = net("bridge = \"br0\"\nsubnet = \"10.3.0.0/24\"");
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let dir = d.path().to_path_buf();
                let n = n.clone();
                std::thread::spawn(move || {
                    Ipam::new(dir)
                        .lease("n", &n, &owner(&format!("c{i}")), None)
                        .unwrap()
                        .addrs[0]
                })
            })
            .collect();
        let mut got: Vec<IpNet> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 50);
        assert_eq!(Ipam::new(d.path()).leases("n").unwrap().len(), 50);
    }

    #[test]
    fn reclaim_frees_leases_of_gone_owners() {
        let d = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(d.path());
        let n = net("bridge = \"br0\"\nsubnet = \"10.4.0.0/24\"");
        ipam.lease("n", &n, &owner("live"), None).unwrap();
        ipam.lease("n", &n, &owner("dead"), None).unwrap();
        let freed = ipam.reclaim("n", |o| o.id == "dead").unwrap();
        assert_eq!(freed.len(), 1);
        assert_eq!(freed[0].owner.id, "dead");
        assert_eq!(ipam.leases("n").unwrap().len(), 1);
        assert_eq!(ipam.networks(), vec!["n".to_string()]);
    }
}
