//! The guest's NICs: up, a static IPv4 and IPv6 address, default routes.
//! Plain ioctls (the guest has no `ip` of its own, and the image may have
//! none).
use std::net::{Ipv4Addr, Ipv6Addr};

use proxmox_lxcri_agent_proto::Nic;

/// `struct rtentry` of <net/route.h> (glibc's libc crate lacks it).
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

/// `struct in6_rtmsg` of <net/route.h> (the libc crate's fields are private).
#[repr(C)]
struct In6RtMsg {
    dst: libc::in6_addr,
    src: libc::in6_addr,
    gateway: libc::in6_addr,
    typ: u32,
    dst_len: u16,
    src_len: u16,
    metric: u32,
    info: libc::c_ulong,
    flags: u32,
    ifindex: libc::c_int,
}

fn in6(a: Ipv6Addr) -> libc::in6_addr {
    libc::in6_addr {
        s6_addr: a.octets(),
    }
}

/// `fd00::2/64` -> (address, prefix length).
pub fn parse_cidr6(s: &str) -> Option<(Ipv6Addr, u32)> {
    let (a, p) = s.split_once('/')?;
    Some((a.parse().ok()?, p.parse().ok().filter(|p| *p <= 128)?))
}

fn sockaddr(a: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(a).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size on Linux.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// `10.0.0.2/24` -> (address, netmask).
pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let (a, p) = s.split_once('/')?;
    let a: Ipv4Addr = a.parse().ok()?;
    let p: u32 = p.parse().ok().filter(|p| *p <= 32)?;
    let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
    Some((a, Ipv4Addr::from(mask)))
}

struct Sock(i32);

impl Drop for Sock {
    fn drop(&mut self) {
        // SAFETY: our own socket.
        unsafe { libc::close(self.0) };
    }
}

fn ifreq(name: &str) -> Result<libc::ifreq, String> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(format!("interface name {name:?}"));
    }
    // SAFETY: ifreq is plain data; zero is a valid value.
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in name.bytes().enumerate() {
        r.ifr_name[i] = b as libc::c_char;
    }
    Ok(r)
}

fn ioctl<T>(s: &Sock, req: libc::c_ulong, arg: &mut T, what: &str) -> Result<(), String> {
    // SAFETY: arg is the struct this request takes.
    if unsafe { libc::ioctl(s.0, req as _, arg as *mut T) } != 0 {
        return Err(format!("{what}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn up(s: &Sock, name: &str) -> Result<(), String> {
    let mut r = ifreq(name)?;
    ioctl(s, libc::SIOCGIFFLAGS, &mut r, &format!("{name}: flags"))?;
    // SAFETY: the union's flags member, as SIOCGIFFLAGS filled it.
    unsafe { r.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    ioctl(s, libc::SIOCSIFFLAGS, &mut r, &format!("{name}: up"))
}

/// A static IPv6 address on `name` and, with `gateway`, the default route
/// through it. No duplicate address detection: the address is the lease's
/// (the network manager hands it to one guest), usable at once.
fn configure6(name: &str, cidr: &str, gateway: Option<&str>) -> Result<(), String> {
    let (addr, prefix) =
        parse_cidr6(cidr).ok_or_else(|| format!("{name}: address {cidr:?} is not IPv6/prefix"))?;
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/accept_dad"), "0");
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!(
            "{name}: IPv6 socket: {}",
            std::io::Error::last_os_error()
        ));
    }
    let s = Sock(fd);
    let mut r = ifreq(name)?;
    ioctl(&s, libc::SIOCGIFINDEX, &mut r, &format!("{name}: index"))?;
    // SAFETY: the union's index member, as SIOCGIFINDEX filled it.
    let ifindex = unsafe { r.ifr_ifru.ifru_ifindex };
    let mut req = libc::in6_ifreq {
        ifr6_addr: in6(addr),
        ifr6_prefixlen: prefix,
        ifr6_ifindex: ifindex,
    };
    ioctl(
        &s,
        libc::SIOCSIFADDR,
        &mut req,
        &format!("{name}: address {cidr}"),
    )?;
    if let Some(gw) = gateway {
        let gw: Ipv6Addr = gw
            .parse()
            .map_err(|_| format!("{name}: gateway {gw:?} is not an IPv6 address"))?;
        let mut rt = In6RtMsg {
            dst: in6(Ipv6Addr::UNSPECIFIED),
            src: in6(Ipv6Addr::UNSPECIFIED),
            gateway: in6(gw),
            typ: 0,
            dst_len: 0,
            src_len: 0,
            metric: 1,
            info: 0,
            flags: (libc::RTF_UP | libc::RTF_GATEWAY) as u32,
            ifindex,
        };
        ioctl(
            &s,
            libc::SIOCADDRT,
            &mut rt,
            &format!("{name}: default route via {gw}"),
        )?;
    }
    Ok(())
}

/// Loopback up, then each NIC with its addresses and routes.
pub fn configure(nics: &[Nic]) -> Result<(), String> {
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()));
    }
    let s = Sock(fd);
    up(&s, "lo")?;
    for n in nics {
        let name = &n.name;
        if let Some(cidr) = &n.address {
            let (addr, mask) = parse_cidr(cidr)
                .ok_or_else(|| format!("{name}: address {cidr:?} is not IPv4/prefix"))?;
            let mut r = ifreq(name)?;
            r.ifr_ifru.ifru_addr = sockaddr(addr);
            ioctl(
                &s,
                libc::SIOCSIFADDR,
                &mut r,
                &format!("{name}: address {cidr}"),
            )?;
            let mut r = ifreq(name)?;
            r.ifr_ifru.ifru_netmask = sockaddr(mask);
            ioctl(
                &s,
                libc::SIOCSIFNETMASK,
                &mut r,
                &format!("{name}: netmask of {cidr}"),
            )?;
        }
        up(&s, name)?;
        if let Some(cidr) = &n.address6 {
            configure6(name, cidr, n.gateway6.as_deref())?;
        }
        if let Some(gw) = &n.gateway {
            let gw: Ipv4Addr = gw
                .parse()
                .map_err(|_| format!("{name}: gateway {gw:?} is not an IPv4 address"))?;
            let mut dev = std::ffi::CString::new(name.as_str())
                .map_err(|_| format!("interface name {name:?}"))?
                .into_bytes_with_nul();
            let mut rt = RtEntry {
                rt_pad1: 0,
                rt_dst: sockaddr(Ipv4Addr::UNSPECIFIED),
                rt_gateway: sockaddr(gw),
                rt_genmask: sockaddr(Ipv4Addr::UNSPECIFIED),
                rt_flags: (libc::RTF_UP | libc::RTF_GATEWAY) as libc::c_ushort,
                rt_pad2: 0,
                rt_pad3: 0,
                rt_pad4: std::ptr::null_mut(),
                rt_metric: 0,
                rt_dev: dev.as_mut_ptr().cast(),
                rt_mtu: 0,
                rt_window: 0,
                rt_irtt: 0,
            };
            ioctl(
                &s,
                libc::SIOCADDRT,
                &mut rt,
                &format!("{name}: default route via {gw}"),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        assert_eq!(
            parse_cidr("10.1.2.3/24"),
            Some((Ipv4Addr::new(10, 1, 2, 3), Ipv4Addr::new(255, 255, 255, 0)))
        );
        assert_eq!(parse_cidr("10.1.2.3/0").unwrap().1, Ipv4Addr::UNSPECIFIED);
        assert_eq!(parse_cidr("10.1.2.3"), None);
        assert_eq!(parse_cidr("10.1.2.3/33"), None);
        assert_eq!(parse_cidr("fe80::1/64"), None);
    }

    #[test]
    fn cidrs6() {
        assert_eq!(
            parse_cidr6("fd00:1::2/64"),
            Some(("fd00:1::2".parse().unwrap(), 64))
        );
        assert_eq!(parse_cidr6("fd00::2/129"), None);
        assert_eq!(parse_cidr6("10.0.0.2/24"), None);
    }

    #[test]
    fn in6_rtmsg_is_the_kernels_size() {
        // x86_64 <net/route.h>: 80 bytes.
        assert_eq!(std::mem::size_of::<In6RtMsg>(), 80);
    }

    #[test]
    fn rtentry_is_the_kernels_size() {
        // x86_64 <net/route.h>: 120 bytes.
        assert_eq!(std::mem::size_of::<RtEntry>(), 120);
    }
}
