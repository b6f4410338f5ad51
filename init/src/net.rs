//! Networking through rtnetlink (raw `NETLINK_ROUTE` sockets, no external tools): list
//! links, bring them up, add IPv4 addresses and the default route, list addresses.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_ROOT: u16 = 0x100;
const NLM_F_MATCH: u16 = 0x200;
const NLM_F_DUMP: u16 = NLM_F_ROOT | NLM_F_MATCH;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_CARRIER: u16 = 33;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: i32,
    /// Name (`eth0`).
    pub name: String,
    /// Hardware address.
    pub mac: Vec<u8>,
    /// IFF_* flags.
    pub flags: u32,
    /// Carrier (cable/link) present.
    pub carrier: bool,
}

impl Link {
    /// Whether this is the loopback device.
    pub fn is_loopback(&self) -> bool {
        self.flags & (libc::IFF_LOOPBACK as u32) != 0
    }
    /// MAC as `aa:bb:…`.
    pub fn mac_string(&self) -> String {
        self.mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Builds netlink messages.
pub struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    /// A message of `kind` with `flags` and a fixed-size family header.
    pub fn new(kind: u16, flags: u16, header: &[u8]) -> Self {
        let mut buf = vec![0u8; 16];
        buf.extend_from_slice(header);
        buf.resize(align4(buf.len()), 0);
        let mut m = Self { buf };
        m.set_u16(4, kind);
        m.set_u16(6, flags);
        m
    }
    fn set_u16(&mut self, at: usize, v: u16) {
        if let Some(s) = self.buf.get_mut(at..at + 2) {
            s.copy_from_slice(&v.to_ne_bytes());
        }
    }
    fn set_u32(&mut self, at: usize, v: u32) {
        if let Some(s) = self.buf.get_mut(at..at + 4) {
            s.copy_from_slice(&v.to_ne_bytes());
        }
    }
    /// Appends an attribute.
    // Attribute payloads are addresses, indexes and interface names (a few bytes), so the
    // u16 length never truncates.
    #[allow(clippy::cast_possible_truncation)]
    pub fn attr(mut self, kind: u16, data: &[u8]) -> Self {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }
    /// Final bytes with length and sequence number set.
    // A request is a header and a few small attributes (well under 4 GiB).
    #[allow(clippy::cast_possible_truncation)]
    pub fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.set_u32(0, len);
        self.set_u32(8, seq);
        self.buf
    }
}

/// Parsed attributes of one message: (type, payload).
pub fn attrs(mut data: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let len = u16::from_ne_bytes([
            data.first().copied().unwrap_or(0),
            data.get(1).copied().unwrap_or(0),
        ]) as usize;
        let kind = u16::from_ne_bytes([
            data.get(2).copied().unwrap_or(0),
            data.get(3).copied().unwrap_or(0),
        ]) & 0x3fff;
        if len < 4 || len > data.len() {
            break;
        }
        out.push((kind, data.get(4..len).unwrap_or(&[])));
        data = data.get(align4(len).min(data.len())..).unwrap_or(&[]);
    }
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_ne_bytes)
        .unwrap_or(0)
}
fn u16_at(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_ne_bytes)
        .unwrap_or(0)
}

/// A NETLINK_ROUTE socket.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    /// Opens the socket.
    pub fn open() -> io::Result<Self> {
        // SAFETY: socket(2); the fd is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh valid descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: zeroed sockaddr_nl is valid (pid 0 = kernel assigns).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = crate::sys::AF_NETLINK;
        // SAFETY: bind with a valid address of the right size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                crate::sys::socklen::<libc::sockaddr_nl>(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let tv = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: setsockopt with a timeval.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                crate::sys::socklen::<libc::timeval>(),
            );
        }
        Ok(Self { fd, seq: 1 })
    }

    fn send(&mut self, msg: Msg) -> io::Result<u32> {
        self.seq += 1;
        let bytes = msg.finish(self.seq);
        // SAFETY: send a valid buffer on our socket.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(self.seq)
    }

    fn recv(&mut self) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; 65536];
        // SAFETY: recv into a valid buffer.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.truncate(n as usize);
        Ok(buf)
    }

    /// Sends a request and collects the payloads (type, body after nlmsghdr) of the reply
    /// messages until DONE (dump) or the ACK. Kernel errors become `io::Error`s.
    fn request(&mut self, msg: Msg, _dump: bool) -> io::Result<Vec<(u16, Vec<u8>)>> {
        let seq = self.send(msg)?;
        let mut out = Vec::new();
        loop {
            let buf = self.recv()?;
            let mut off = 0;
            while off + 16 <= buf.len() {
                let len = u32_at(&buf, off) as usize;
                let kind = u16_at(&buf, off + 4);
                let mseq = u32_at(&buf, off + 8);
                if len < 16 || off + len > buf.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "bad netlink length",
                    ));
                }
                let body = buf.get(off + 16..off + len).unwrap_or(&[]);
                off += align4(len);
                if mseq != seq {
                    continue;
                }
                match kind {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let code = u32_at(body, 0) as i32;
                        if code == 0 {
                            return Ok(out);
                        }
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                    _ => out.push((kind, body.to_vec())),
                }
            }
        }
    }

    /// All links.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let hdr = [0u8; 16]; // ifinfomsg, AF_UNSPEC
        let msgs = self.request(
            Msg::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, &hdr),
            true,
        )?;
        let mut links = Vec::new();
        for (kind, body) in msgs {
            if kind != RTM_NEWLINK || body.len() < 16 {
                continue;
            }
            let index = u32_at(&body, 4) as i32;
            let flags = u32_at(&body, 8);
            let mut link = Link {
                index,
                name: String::new(),
                mac: Vec::new(),
                flags,
                carrier: flags & 0x10000 != 0, // IFF_LOWER_UP
            };
            for (t, v) in attrs(body.get(16..).unwrap_or(&[])) {
                match t {
                    IFLA_IFNAME => {
                        link.name = String::from_utf8_lossy(v)
                            .trim_end_matches('\0')
                            .to_string()
                    }
                    IFLA_ADDRESS => link.mac = v.to_vec(),
                    IFLA_CARRIER => link.carrier = v.first().copied().unwrap_or(0) != 0,
                    _ => {}
                }
            }
            links.push(link);
        }
        Ok(links)
    }

    /// Sets a link up.
    pub fn set_up(&mut self, index: i32) -> io::Result<()> {
        let mut hdr = [0u8; 16];
        hdr[4..8].copy_from_slice(&index.to_ne_bytes());
        hdr[8..12].copy_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
        hdr[12..16].copy_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
        self.request(
            Msg::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, &hdr),
            false,
        )
        .map(|_| ())
    }

    /// Adds (or replaces) an IPv4 address.
    pub fn add_addr(&mut self, index: i32, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut hdr = [0u8; 8];
        hdr[0] = crate::sys::AF_INET;
        hdr[1] = prefix;
        hdr[4..8].copy_from_slice(&(index as u32).to_ne_bytes());
        let bcast = if prefix < 31 {
            u32::from(addr) | (u32::MAX >> prefix)
        } else {
            u32::from(addr)
        };
        let msg = Msg::new(
            RTM_NEWADDR,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            &hdr,
        )
        .attr(IFA_LOCAL, &addr.octets())
        .attr(IFA_ADDRESS, &addr.octets())
        .attr(IFA_BROADCAST, &Ipv4Addr::from(bcast).octets());
        self.request(msg, false).map(|_| ())
    }

    /// Sets the default IPv4 route.
    pub fn default_route(&mut self, index: i32, gateway: Ipv4Addr) -> io::Result<()> {
        // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags(u32)
        let hdr = [
            crate::sys::AF_INET,
            0,
            0,
            0,
            libc::RT_TABLE_MAIN,
            libc::RTPROT_BOOT,
            libc::RT_SCOPE_UNIVERSE,
            libc::RTN_UNICAST,
            0,
            0,
            0,
            0,
        ];
        let msg = Msg::new(
            RTM_NEWROUTE,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            &hdr,
        )
        .attr(RTA_GATEWAY, &gateway.octets())
        .attr(RTA_OIF, &(index as u32).to_ne_bytes());
        self.request(msg, false).map(|_| ())
    }

    /// IPv4 addresses as `a.b.c.d/len`, loopback excluded.
    pub fn addresses(&mut self) -> io::Result<Vec<String>> {
        let mut hdr = [0u8; 8];
        hdr[0] = crate::sys::AF_INET;
        let msgs = self.request(
            Msg::new(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, &hdr),
            true,
        )?;
        let mut out = Vec::new();
        for (kind, body) in msgs {
            if kind != RTM_NEWADDR || body.len() < 8 {
                continue;
            }
            let prefix = body.get(1).copied().unwrap_or(0);
            for (t, v) in attrs(body.get(8..).unwrap_or(&[])) {
                if t == IFA_LOCAL && v.len() == 4 {
                    let a = Ipv4Addr::new(
                        v.first().copied().unwrap_or(0),
                        v.get(1).copied().unwrap_or(0),
                        v.get(2).copied().unwrap_or(0),
                        v.get(3).copied().unwrap_or(0),
                    );
                    if !a.is_loopback() {
                        out.push(format!("{a}/{prefix}"));
                    }
                }
            }
        }
        Ok(out)
    }
}

/// What init does with one configured NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Static address; `gateway` becomes the default route.
    Static {
        /// Address.
        addr: Ipv4Addr,
        /// Prefix length.
        prefix: u8,
        /// Default gateway (at most one interface has one).
        gateway: Option<Ipv4Addr>,
    },
    /// DHCPv4; the lease's router becomes the default route only when `default_route`.
    Dhcp {
        /// Whether this interface's router is the default route.
        default_route: bool,
    },
}

/// One NIC of a [`Plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The interface.
    pub link: Link,
    /// What to do with it.
    pub step: Step,
}

/// The network configuration init applies, from `[[system.interfaces]]` and the NICs found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Interfaces to bring up, in config order.
    pub ifaces: Vec<Planned>,
    /// Config entries that could not be applied (no such NIC, bad value, duplicate).
    pub problems: Vec<String>,
}

impl Plan {
    /// Names of configured entries that matched no NIC (they may still be appearing).
    pub fn missing(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.ends_with(NOT_FOUND))
            .count()
    }
}

const NOT_FOUND: &str = "no such network interface";

/// Matches `[[system.interfaces]]` entries to NICs (by name, or by MAC in any case) and
/// decides the default route: the static gateway if one is configured, else the router of
/// the first DHCP interface in config order; no other interface touches the default route.
/// NICs not listed are left alone (down). An empty list is [`auto_pick`]'s job.
pub fn plan(interfaces: &[aergo_os::config::InterfaceConfig], links: &[Link]) -> Plan {
    use aergo_os::config::InterfaceMode;
    let mut out = Plan::default();
    let static_gateway = interfaces.iter().any(|ic| {
        matches!(
            ic.mode(),
            Ok(InterfaceMode::Static {
                gateway: Some(_),
                ..
            })
        )
    });
    let mut dhcp_route_taken = static_gateway;
    for ic in interfaces {
        let want = ic.name.trim();
        let Some(link) = links.iter().find(|l| {
            !l.is_loopback() && (l.name == want || l.mac_string().eq_ignore_ascii_case(want))
        }) else {
            out.problems.push(format!("{want}: {NOT_FOUND}"));
            continue;
        };
        if out.ifaces.iter().any(|p| p.link.index == link.index) {
            out.problems
                .push(format!("{want}: {} is already configured", link.name));
            continue;
        }
        let step = match ic.mode() {
            Ok(InterfaceMode::Static {
                addr,
                prefix,
                gateway,
            }) => Step::Static {
                addr,
                prefix,
                gateway,
            },
            Ok(InterfaceMode::Dhcp) => {
                let default_route = !dhcp_route_taken;
                dhcp_route_taken = true;
                Step::Dhcp { default_route }
            }
            Err(e) => {
                out.problems.push(format!("{want}: {e}"));
                continue;
            }
        };
        out.ifaces.push(Planned {
            link: link.clone(),
            step,
        });
    }
    out
}

/// With no `[[system.interfaces]]`: DHCP (and the default route) on the first NIC with
/// carrier, else on the first NIC at all (`None` without NICs). The bool says whether the
/// pick has carrier.
pub fn auto_pick(links: &[Link]) -> Option<(Link, bool)> {
    let nics = || links.iter().filter(|l| !l.is_loopback());
    nics()
        .find(|l| l.carrier)
        .map(|l| (l.clone(), true))
        .or_else(|| nics().next().map(|l| (l.clone(), false)))
}

#[cfg(test)]
#[allow(clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_aligned_with_attrs() {
        let m = Msg::new(RTM_NEWADDR, NLM_F_REQUEST, &[1, 2, 3, 4, 5, 6, 7, 8])
            .attr(IFA_LOCAL, &[10, 0, 2, 15])
            .attr(3, b"eth0\0")
            .finish(7);
        assert_eq!(m.len() % 4, 0);
        assert_eq!(u32_at(&m, 0) as usize, m.len());
        assert_eq!(u16_at(&m, 4), RTM_NEWADDR);
        assert_eq!(u32_at(&m, 8), 7);
        let a = attrs(&m[24..]);
        assert_eq!(a[0], (IFA_LOCAL, &[10u8, 0, 2, 15][..]));
        assert_eq!(a[1].1, b"eth0\0");
    }

    fn link(index: i32, name: &str, mac: [u8; 6], carrier: bool) -> Link {
        Link {
            index,
            name: name.into(),
            mac: mac.to_vec(),
            flags: 0,
            carrier,
        }
    }

    fn iface(
        name: &str,
        address: &str,
        gateway: Option<&str>,
    ) -> aergo_os::config::InterfaceConfig {
        aergo_os::config::InterfaceConfig {
            name: name.into(),
            address: address.into(),
            gateway: gateway.map(str::to_string),
        }
    }

    fn host_links() -> Vec<Link> {
        let mut lo = link(1, "lo", [0; 6], true);
        lo.flags = libc::IFF_LOOPBACK as u32;
        vec![
            lo,
            link(2, "eth0", [0x52, 0x54, 0, 0x77, 0, 2], true),
            link(3, "eth1", [0x52, 0x54, 0, 0x12, 0x34, 0x56], true),
            link(4, "eth2", [0x52, 0x54, 0, 0x12, 0x34, 0x57], false),
        ]
    }

    #[test]
    fn static_private_nic_and_dhcp_uplink() {
        // The testnet layout: NIC 1 static on the private network (named by MAC), NIC 2
        // DHCP on QEMU's user network; the default route comes from DHCP only.
        let p = plan(
            &[
                iface("52:54:00:77:00:02", "10.77.0.2/24", None),
                iface("eth1", "dhcp", None),
            ],
            &host_links(),
        );
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        assert_eq!(p.ifaces.len(), 2);
        assert_eq!(p.ifaces[0].link.name, "eth0");
        assert_eq!(
            p.ifaces[0].step,
            Step::Static {
                addr: Ipv4Addr::new(10, 77, 0, 2),
                prefix: 24,
                gateway: None
            }
        );
        assert_eq!(p.ifaces[1].link.name, "eth1");
        assert_eq!(
            p.ifaces[1].step,
            Step::Dhcp {
                default_route: true
            }
        );
    }

    #[test]
    fn a_static_gateway_wins_over_dhcp_routers() {
        let p = plan(
            &[
                iface("eth1", "", None),
                iface("eth9", "10.0.0.2/24", None),
                iface("eth2", "dhcp", None),
                iface("eth0", "10.1.0.2/16", Some("10.1.0.1")),
            ],
            &host_links(),
        );
        assert_eq!(p.ifaces.len(), 3, "{p:?}");
        assert_eq!(
            p.ifaces[0].step,
            Step::Dhcp {
                default_route: false
            }
        );
        assert_eq!(
            p.ifaces[1].step,
            Step::Dhcp {
                default_route: false
            }
        );
        assert_eq!(
            p.ifaces[2].step,
            Step::Static {
                addr: Ipv4Addr::new(10, 1, 0, 2),
                prefix: 16,
                gateway: Some(Ipv4Addr::new(10, 1, 0, 1))
            }
        );
        assert_eq!(p.missing(), 1);
        assert!(p.problems[0].starts_with("eth9"), "{:?}", p.problems);
    }

    #[test]
    fn only_the_first_dhcp_nic_takes_the_default_route() {
        let p = plan(
            &[iface("eth2", "dhcp", None), iface("eth1", "dhcp", None)],
            &host_links(),
        );
        let routes: Vec<bool> = p
            .ifaces
            .iter()
            .map(|i| {
                matches!(
                    i.step,
                    Step::Dhcp {
                        default_route: true
                    }
                )
            })
            .collect();
        assert_eq!(routes, vec![true, false]);
    }

    #[test]
    fn duplicates_bad_values_and_loopback_are_problems() {
        let p = plan(
            &[
                iface("eth0", "10.0.0.2/24", None),
                iface("52:54:00:77:00:02", "dhcp", None),
                iface("eth1", "10.0.0.3", None),
                iface("lo", "dhcp", None),
            ],
            &host_links(),
        );
        assert_eq!(p.ifaces.len(), 1);
        assert_eq!(p.problems.len(), 3, "{:?}", p.problems);
        assert!(p.problems[0].contains("already configured"));
        assert!(p.problems[1].contains("prefix"));
        assert!(p.problems[2].contains("no such network interface"));
    }

    #[test]
    fn auto_prefers_a_nic_with_carrier() {
        let mut links = host_links();
        assert_eq!(
            auto_pick(&links).map(|(l, c)| (l.name, c)),
            Some(("eth0".into(), true))
        );
        for l in &mut links {
            l.carrier = false;
        }
        assert_eq!(
            auto_pick(&links).map(|(l, c)| (l.name, c)),
            Some(("eth0".into(), false))
        );
        assert_eq!(auto_pick(&links[..1]), None);
    }

    #[test]
    fn lists_host_links_and_addresses() {
        // Reading is unprivileged: the host has at least loopback.
        let mut nl = Netlink::open().unwrap();
        let links = nl.links().unwrap();
        assert!(links.iter().any(|l| l.is_loopback() && l.name == "lo"));
        nl.addresses().unwrap();
    }
}
