//! A minimal SNTP client (RFC 4330): one request per server, clock offset from the four
//! timestamps, and setting the clock when it is off by more than a threshold. DPoS slots
//! depend on the clock, so the offset is reported in `status`.

use std::io;
use std::net::{ToSocketAddrs, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// An NTP timestamp (seconds since 1900 with a 32-bit fraction) from Unix time.
pub fn to_ntp(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() + NTP_UNIX_OFFSET;
    let frac = ((d.subsec_nanos() as u64) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// Unix time in seconds (fractional) from an NTP timestamp.
pub fn ntp_to_unix_f64(ts: u64) -> f64 {
    let secs = (ts >> 32) as f64 - NTP_UNIX_OFFSET as f64;
    let frac = (ts & 0xffff_ffff) as f64 / 4_294_967_296.0;
    secs + frac
}

/// The request packet (client mode, version 4) carrying our transmit time.
pub fn request(t1: SystemTime) -> [u8; 48] {
    let mut p = [0u8; 48];
    p[0] = 0x23; // LI 0, VN 4, mode 3
    p[40..48].copy_from_slice(&to_ntp(t1).to_be_bytes());
    p
}

/// Offset (server − local) in seconds from a reply received at `t4`; `None` if malformed,
/// not a server reply, unsynchronised (stratum 0) or not answering our request.
pub fn offset(reply: &[u8], t1: SystemTime, t4: SystemTime) -> Option<f64> {
    if reply.len() < 48 {
        return None;
    }
    let mode = reply.first()? & 0x7;
    let stratum = *reply.get(1)?;
    if mode != 4 || stratum == 0 || stratum > 15 {
        return None;
    }
    let ts = |at: usize| -> Option<u64> {
        Some(u64::from_be_bytes(reply.get(at..at + 8)?.try_into().ok()?))
    };
    if ts(24)? != to_ntp(t1) {
        return None; // originate timestamp must echo our transmit timestamp
    }
    let t2 = ntp_to_unix_f64(ts(32)?);
    let t3 = ntp_to_unix_f64(ts(40)?);
    let f = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    };
    Some(((t2 - f(t1)) + (t3 - f(t4))) / 2.0)
}

/// Queries one server (`host` or `host:port`) and returns the offset in seconds.
pub fn query(server: &str, timeout: Duration) -> io::Result<f64> {
    let target = if server.contains(':') {
        server.to_string()
    } else {
        format!("{server}:123")
    };
    let addr = target
        .to_socket_addrs()?
        .find(|a| a.is_ipv4())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no IPv4 address"))?;
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    sock.set_read_timeout(Some(timeout))?;
    let t1 = SystemTime::now();
    sock.send_to(&request(t1), addr)?;
    let mut buf = [0u8; 128];
    let (n, _) = sock.recv_from(&mut buf)?;
    let t4 = SystemTime::now();
    offset(buf.get(..n).unwrap_or(&[]), t1, t4)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad SNTP reply"))
}

/// Offsets above this are stepped at once, smaller ones slewed (ntpd's step threshold).
/// DPoS slots are 1 s here, so a clock off by a fraction of that already costs blocks.
pub const STEP_THRESHOLD_S: f64 = 0.128;

/// How a measured offset is corrected.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Correction {
    /// Set the clock at once (large offsets, and the first sync at boot).
    Step,
    /// Let the kernel slew it gradually (`adjtime`, at most 0.5 ms per second).
    Slew,
}

/// The correction for `offset` seconds: a step above [`STEP_THRESHOLD_S`] (or a NaN,
/// refused later by the kernel), else a slew.
pub fn correction(offset: f64) -> Correction {
    if offset.abs() <= STEP_THRESHOLD_S {
        Correction::Slew
    } else {
        Correction::Step
    }
}

/// Asks the kernel to slew the clock by `offset` seconds (`adjtime`); replaces any slew
/// still under way.
// The float-to-integer casts saturate; |offset| ≤ STEP_THRESHOLD_S here.
#[allow(clippy::cast_possible_truncation)]
pub fn slew_clock(offset: f64) -> io::Result<()> {
    let micros = (offset * 1e6) as i64;
    let tv = libc::timeval {
        tv_sec: (micros / 1_000_000) as libc::time_t,
        tv_usec: (micros % 1_000_000) as libc::suseconds_t,
    };
    // SAFETY: adjtime with a valid timeval and no old-value pointer (needs CAP_SYS_TIME,
    // which PID 1 has).
    if unsafe { libc::adjtime(&tv, std::ptr::null_mut()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Steps the clock by `offset` seconds.
// The float-to-integer casts saturate (NaN gives 0); a nonsensical target is refused by
// clock_settime rather than wrapped.
#[allow(clippy::cast_possible_truncation)]
pub fn step_clock(offset: f64) -> io::Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let target = now + offset;
    let ts = libc::timespec {
        tv_sec: target.trunc() as libc::time_t,
        tv_nsec: (target.fract() * 1e9) as libc::c_long,
    };
    // SAFETY: clock_settime with a valid timespec (needs CAP_SYS_TIME, which PID 1 has).
    if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn small_offsets_slew_and_large_ones_step() {
        assert_eq!(correction(0.0), Correction::Slew);
        assert_eq!(correction(-0.1), Correction::Slew);
        assert_eq!(correction(0.128), Correction::Slew);
        assert_eq!(correction(0.129), Correction::Step);
        assert_eq!(correction(-5.0), Correction::Step);
        assert_eq!(correction(f64::NAN), Correction::Step);
    }

    #[test]
    fn ntp_timestamps_round_trip() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        let back = ntp_to_unix_f64(to_ntp(t));
        assert!((back - 1_700_000_000.25).abs() < 1e-6);
    }

    #[test]
    fn offset_against_a_local_fake_server() {
        // A fake server 5 s ahead, on loopback.
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let mut buf = [0u8; 48];
            let (_, from) = server.recv_from(&mut buf).unwrap();
            let now = SystemTime::now() + Duration::from_secs(5);
            let mut r = [0u8; 48];
            r[0] = 0x24; // server mode
            r[1] = 2;
            r[24..32].copy_from_slice(&buf[40..48]);
            r[32..40].copy_from_slice(&to_ntp(now).to_be_bytes());
            r[40..48].copy_from_slice(&to_ntp(now).to_be_bytes());
            server.send_to(&r, from).unwrap();
        });
        let off = query(&addr.to_string(), Duration::from_secs(2)).unwrap();
        h.join().unwrap();
        assert!((off - 5.0).abs() < 0.5, "offset {off}");
    }

    #[test]
    fn rejects_bad_replies() {
        let t1 = SystemTime::now();
        let mut r = [0u8; 48];
        r[0] = 0x24;
        r[1] = 0; // kiss-of-death / unsynchronised
        r[24..32].copy_from_slice(&to_ntp(t1).to_be_bytes());
        assert!(offset(&r, t1, t1).is_none());
        r[1] = 2;
        assert!(offset(&r, t1, t1).is_some());
        r[24] ^= 1; // not our request
        assert!(offset(&r, t1, t1).is_none());
        assert!(offset(&r[..20], t1, t1).is_none());
    }
}
