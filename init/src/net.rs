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
    pub fn attr(mut self, kind: u16, data: &[u8]) -> Self {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }
    /// Final bytes with length and sequence number set.
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
        sa.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: bind with a valid address of the right size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
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
                std::mem::size_of::<libc::timeval>() as u32,
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
        hdr[0] = libc::AF_INET as u8;
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
            libc::AF_INET as u8,
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
        hdr[0] = libc::AF_INET as u8;
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

/// Parses `10.0.0.2/24`.
pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, p) = s.split_once('/')?;
    let prefix: u8 = p.parse().ok()?;
    (prefix <= 32).then_some(())?;
    Some((a.parse().ok()?, prefix))
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

    #[test]
    fn cidr() {
        assert_eq!(
            parse_cidr("10.0.0.2/24"),
            Some((Ipv4Addr::new(10, 0, 0, 2), 24))
        );
        assert_eq!(parse_cidr("10.0.0.2"), None);
        assert_eq!(parse_cidr("10.0.0.2/33"), None);
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
