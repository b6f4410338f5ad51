//! A small DHCPv4 client (RFC 2131/2132): DISCOVER → OFFER → REQUEST → ACK over a UDP socket
//! bound to port 68 on one interface (`SO_BINDTODEVICE`, broadcast flag set so the server
//! broadcasts its replies before we have an address).

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// DHCPDISCOVER.
pub const DISCOVER: u8 = 1;
/// DHCPOFFER.
pub const OFFER: u8 = 2;
/// DHCPREQUEST.
pub const REQUEST: u8 = 3;
/// DHCPACK.
pub const ACK: u8 = 5;
/// DHCPNAK.
pub const NAK: u8 = 6;

/// What the server gave us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Our address.
    pub addr: Ipv4Addr,
    /// Prefix length from the subnet mask.
    pub prefix: u8,
    /// Default gateway.
    pub router: Option<Ipv4Addr>,
    /// DNS servers.
    pub dns: Vec<Ipv4Addr>,
    /// Lease time in seconds.
    pub lease_secs: u32,
    /// Server identifier.
    pub server: Option<Ipv4Addr>,
}

/// A parsed server reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Message type (OFFER, ACK, NAK).
    pub kind: u8,
    /// Transaction id.
    pub xid: u32,
    /// The lease details.
    pub lease: Lease,
}

/// Builds a client message.
pub fn build(
    kind: u8,
    xid: u32,
    mac: &[u8],
    requested: Option<(Ipv4Addr, Ipv4Addr)>,
    hostname: &str,
) -> Vec<u8> {
    let mut p = vec![0u8; 240];
    let put = |p: &mut Vec<u8>, at: usize, v: &[u8]| {
        if let Some(s) = p.get_mut(at..at + v.len()) {
            s.copy_from_slice(v);
        }
    };
    put(&mut p, 0, &[1, 1, 6]); // BOOTREQUEST, Ethernet, 6-byte MAC
    put(&mut p, 4, &xid.to_be_bytes());
    put(&mut p, 10, &0x8000u16.to_be_bytes()); // broadcast replies
    put(&mut p, 28, mac.get(..mac.len().min(16)).unwrap_or(&[]));
    put(&mut p, 236, &MAGIC);
    p.extend_from_slice(&[53, 1, kind]);
    // Hardware addresses are at most MAX_ADDR_LEN (32) bytes on Linux: the length fits a u8.
    let mut cid = vec![61, u8::try_from(mac.len() + 1).unwrap_or(u8::MAX), 1];
    cid.extend_from_slice(mac);
    p.extend_from_slice(&cid);
    if let Some((addr, server)) = requested {
        p.extend_from_slice(&[50, 4]);
        p.extend_from_slice(&addr.octets());
        p.extend_from_slice(&[54, 4]);
        p.extend_from_slice(&server.octets());
    }
    if let Ok(n @ 1..64) = u8::try_from(hostname.len()) {
        p.extend_from_slice(&[12, n]);
        p.extend_from_slice(hostname.as_bytes());
    }
    p.extend_from_slice(&[55, 5, 1, 3, 6, 51, 54]);
    p.push(255);
    if p.len() < 300 {
        p.resize(300, 0);
    }
    p
}

fn ip(v: &[u8]) -> Option<Ipv4Addr> {
    let b: [u8; 4] = v.get(0..4)?.try_into().ok()?;
    Some(Ipv4Addr::from(b))
}

/// Parses a server reply; `None` for anything that is not a well-formed BOOTREPLY.
pub fn parse(p: &[u8]) -> Option<Reply> {
    if p.len() < 240 || p.first() != Some(&2) || p.get(236..240) != Some(&MAGIC[..]) {
        return None;
    }
    let xid = u32::from_be_bytes(p.get(4..8)?.try_into().ok()?);
    let addr = ip(p.get(16..20)?)?;
    let mut lease = Lease {
        addr,
        prefix: 24,
        router: None,
        dns: Vec::new(),
        lease_secs: 3600,
        server: None,
    };
    let mut kind = 0;
    let mut i = 240;
    while let Some(&code) = p.get(i) {
        match code {
            0 => {
                i += 1;
                continue;
            }
            255 => break,
            _ => {}
        }
        let len = *p.get(i + 1)? as usize;
        let v = p.get(i + 2..i + 2 + len)?;
        match code {
            53 => kind = *v.first()?,
            // A u32 has at most 32 ones: the count always fits a u8.
            1 => lease.prefix = ip(v).and_then(|m| u8::try_from(u32::from(m).count_ones()).ok())?,
            3 => lease.router = ip(v),
            6 => lease.dns = v.chunks(4).filter_map(ip).collect(),
            51 => lease.lease_secs = u32::from_be_bytes(v.get(0..4)?.try_into().ok()?),
            54 => lease.server = ip(v),
            _ => {}
        }
        i += 2 + len;
    }
    (kind != 0).then_some(Reply { kind, xid, lease })
}

fn socket(ifname: &str) -> io::Result<UdpSocket> {
    // SO_REUSEADDR must precede bind; build the socket by hand.
    // SAFETY: socket(2), fd wrapped into UdpSocket below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own from here.
    let sock = unsafe { <UdpSocket as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    for opt in [libc::SO_REUSEADDR, libc::SO_BROADCAST] {
        // SAFETY: setsockopt with an int.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&one as *const libc::c_int).cast(),
                4,
            )
        };
    }
    // SAFETY: setsockopt with the interface name bytes.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            ifname.as_ptr().cast(),
            libc::socklen_t::try_from(ifname.len()).map_err(io::Error::other)?,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let sa = libc::sockaddr_in {
        sin_family: u16::from(crate::sys::AF_INET),
        sin_port: 68u16.to_be(),
        sin_addr: libc::in_addr { s_addr: 0 },
        sin_zero: [0; 8],
    };
    // SAFETY: bind with a valid sockaddr_in.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            crate::sys::socklen::<libc::sockaddr_in>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

fn exchange(
    sock: &UdpSocket,
    msg: &[u8],
    xid: u32,
    want: u8,
    wait: Duration,
) -> io::Result<Option<Reply>> {
    let dest = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    sock.send_to(msg, dest)?;
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 1500];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if left.is_zero() {
            break;
        }
        sock.set_read_timeout(Some(left))?;
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                if let Some(r) = parse(buf.get(..n).unwrap_or(&[])) {
                    if r.xid == xid && (r.kind == want || r.kind == NAK) {
                        return Ok(Some(r));
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Runs DISCOVER/OFFER/REQUEST/ACK on `ifname` with up to `tries` attempts.
pub fn acquire(ifname: &str, mac: &[u8], hostname: &str, tries: u32) -> io::Result<Lease> {
    let sock = socket(ifname)?;
    let mut wait = Duration::from_secs(2);
    for _ in 0..tries.max(1) {
        let mut x = [0u8; 4];
        crate::sys::random_bytes(&mut x)?;
        let xid = u32::from_ne_bytes(x);
        let discover = build(DISCOVER, xid, mac, None, hostname);
        if let Some(offer) = exchange(&sock, &discover, xid, OFFER, wait)? {
            if offer.kind == OFFER {
                let server = offer.lease.server.unwrap_or(Ipv4Addr::UNSPECIFIED);
                let req = build(
                    REQUEST,
                    xid,
                    mac,
                    Some((offer.lease.addr, server)),
                    hostname,
                );
                if let Some(ack) = exchange(&sock, &req, xid, ACK, wait)? {
                    if ack.kind == ACK {
                        return Ok(ack.lease);
                    }
                }
            }
        }
        wait = (wait * 2).min(Duration::from_secs(8));
    }
    Err(io::Error::new(io::ErrorKind::TimedOut, "no DHCP answer"))
}

#[cfg(test)]
#[allow(clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn reply(kind: u8, xid: u32) -> Vec<u8> {
        let mut p = vec![0u8; 240];
        p[0] = 2;
        p[4..8].copy_from_slice(&xid.to_be_bytes());
        p[16..20].copy_from_slice(&[10, 0, 2, 15]);
        p[236..240].copy_from_slice(&MAGIC);
        p.extend_from_slice(&[53, 1, kind, 0, 1, 4, 255, 255, 255, 0, 3, 4, 10, 0, 2, 2]);
        p.extend_from_slice(&[6, 8, 10, 0, 2, 3, 1, 1, 1, 1, 51, 4, 0, 1, 81, 128]);
        p.extend_from_slice(&[54, 4, 10, 0, 2, 2, 255]);
        p
    }

    #[test]
    fn builds_discover_and_request() {
        let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        let d = build(DISCOVER, 0xdeadbeef, &mac, None, "aergo-1");
        assert_eq!(d.len(), 300);
        assert_eq!(&d[4..8], &0xdeadbeefu32.to_be_bytes());
        assert_eq!(&d[28..34], &mac);
        assert_eq!(&d[236..243], &[99, 130, 83, 99, 53, 1, DISCOVER]);
        let r = build(
            REQUEST,
            1,
            &mac,
            Some((Ipv4Addr::new(10, 0, 2, 15), Ipv4Addr::new(10, 0, 2, 2))),
            "",
        );
        let s = r.windows(6).any(|w| w == [50, 4, 10, 0, 2, 15]);
        assert!(s, "requested address option missing");
    }

    #[test]
    fn parses_ack() {
        let r = parse(&reply(ACK, 7)).unwrap();
        assert_eq!(r.kind, ACK);
        assert_eq!(r.xid, 7);
        assert_eq!(r.lease.addr, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(r.lease.prefix, 24);
        assert_eq!(r.lease.router, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(r.lease.dns.len(), 2);
        assert_eq!(r.lease.lease_secs, 86400);
        assert_eq!(r.lease.server, Some(Ipv4Addr::new(10, 0, 2, 2)));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse(&[0u8; 10]).is_none());
        let mut p = reply(ACK, 1);
        p[0] = 1;
        assert!(parse(&p).is_none());
        let mut p = reply(ACK, 1);
        p.truncate(245); // option runs past the end
        assert!(parse(&p).is_none());
    }
}
