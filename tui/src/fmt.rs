//! Text formatting shared by the screens: amounts, hashes, sizes, rates, durations, clock
//! times. Pure functions of their inputs (the caller passes "now"), so snapshots are stable.

/// Formats an amount in aer (decimal string, arbitrarily large) as AERGO with up to
/// `max_decimals` fractional digits, trailing zeros removed and thousands separated.
/// Anything that is not a decimal number is returned unchanged.
pub fn aergo(aer: &str, max_decimals: usize) -> String {
    let s = aer.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return s.to_string();
    }
    let s = s.trim_start_matches('0');
    let padded = format!("{s:0>19}");
    let split = padded.len() - 18;
    let (int, frac) = padded.split_at(split);
    let frac: String = frac.chars().take(max_decimals).collect();
    let frac = frac.trim_end_matches('0');
    let int = group_digits(int.trim_start_matches('0'));
    let int = if int.is_empty() { "0".to_string() } else { int };
    if frac.is_empty() {
        int
    } else {
        format!("{int}.{frac}")
    }
}

/// Inserts `,` between groups of three digits of a decimal string.
pub fn group_digits(digits: &str) -> String {
    let n = digits.len();
    let mut out = String::with_capacity(n + n / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (n - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A number with thousands separators.
pub fn thousands(n: u64) -> String {
    group_digits(&n.to_string())
}

/// Shortens a hash or address to `width` characters, keeping both ends (`abcd…wxyz`).
pub fn short(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return s.to_string();
    }
    if width < 5 {
        return s.chars().take(width).collect();
    }
    let keep = width - 1;
    let head = keep.div_ceil(2);
    let tail = keep - head;
    let h: String = s.chars().take(head).collect();
    let t: String = s.chars().skip(n - tail).collect();
    format!("{h}…{t}")
}

/// Cuts a string to at most `width` characters, ending with `…` when cut.
pub fn clip(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// Bytes in binary units (`512 B`, `1.5 KiB`, `3.2 GiB`).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if v >= 100.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A float figure (a rate, a percentage) as a whole number for display. The float cast
/// saturates: negative and NaN give 0, beyond `u64::MAX` gives `u64::MAX`.
// Saturation, not wrapping, is the documented behaviour of a float-to-integer `as`.
#[allow(clippy::cast_possible_truncation)]
pub fn whole(v: f64) -> u64 {
    v as u64
}

/// A byte rate (`0 B/s`, `1.5 MiB/s`).
pub fn rate(bps: f64) -> String {
    let n = if bps.is_finite() && bps > 0.0 {
        whole(bps.round())
    } else {
        0
    };
    format!("{}/s", bytes(n))
}

/// A duration in seconds as its two largest units (`45s`, `3m 05s`, `2h 10m`, `12d 4h`).
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Time between `then_ms` and `now_ms` as "N ago" (`just now` within a second).
pub fn ago(then_ms: u64, now_ms: u64) -> String {
    let d = now_ms.saturating_sub(then_ms);
    if d < 1000 {
        "just now".to_string()
    } else {
        format!("{} ago", duration(d / 1000))
    }
}

/// Milliseconds since the epoch as UTC `HH:MM:SS`.
pub fn clock(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}:{:02}", s / 3600 % 24, s / 60 % 60, s % 60)
}

/// Milliseconds since the epoch as UTC `YYYY-MM-DD HH:MM:SS`.
pub fn datetime(ms: u64) -> String {
    let days = (ms / 86_400_000) as i64;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02} {}", clock(ms))
}

/// A percentage with one decimal.
pub fn pct(p: f64) -> String {
    format!("{p:.1}%")
}

/// A contract call's function and arguments, `transfer('alice', 'bob', '10')`, from a `call`
/// transaction's payload (hex of `{"function": NAME, "args": [..]}`), as the CLI's `aergo tx`
/// prints it; `None` for other kinds or a payload of another shape.
pub fn call_of(kind: &str, payload_hex: &str) -> Option<String> {
    if kind != "call" {
        return None;
    }
    let hex = payload_hex.trim_start_matches("0x").as_bytes();
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16);
    let bytes = hex
        .chunks(2)
        .map(|p| Some(nibble(p[0])? * 16 + nibble(p[1])?))
        .map(|b| b.and_then(|b| u8::try_from(b).ok()))
        .collect::<Option<Vec<u8>>>()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let f = v["function"].as_str()?;
    let args: Vec<String> = v["args"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| match a {
            serde_json::Value::String(s) => format!("'{}'", s.replace('\'', "''")),
            other => other.to_string(),
        })
        .collect();
    Some(format!("{f}({})", args.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aergo_amounts() {
        assert_eq!(aergo("0", 4), "0");
        assert_eq!(aergo("1000000000000000000", 4), "1");
        assert_eq!(aergo("1500000000000000000", 4), "1.5");
        assert_eq!(aergo("1", 18), "0.000000000000000001");
        assert_eq!(aergo("1", 4), "0");
        assert_eq!(aergo("500000000000000000000000000", 2), "500,000,000");
        assert_eq!(
            aergo("123456789012345678901234567890123456789", 3),
            "123,456,789,012,345,678,901.234"
        );
        assert_eq!(aergo("abc", 2), "abc");
    }

    #[test]
    fn hashes_and_clipping() {
        assert_eq!(short("0123456789abcdef", 9), "0123…cdef");
        assert_eq!(short("abc", 9), "abc");
        assert_eq!(clip("hello world", 6), "hello…");
        assert_eq!(clip("hi", 6), "hi");
    }

    #[test]
    fn sizes_durations_times() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(u64::MAX), "16384 PiB");
        assert_eq!(rate(-1.0), "0 B/s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(185), "3m 05s");
        assert_eq!(duration(90_061), "1d 1h");
        assert_eq!(ago(1_000, 1_500), "just now");
        assert_eq!(ago(0, 61_000), "1m 01s ago");
        assert_eq!(clock(1_700_000_000_000), "22:13:20");
        assert_eq!(datetime(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(datetime(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn contract_calls() {
        // {"args":["alice","bob","10"],"function":"transfer"}
        let p = "7b2261726773223a5b22616c696365222c22626f62222c223130225d2c2266756e6374696f6e223a227472616e73666572227d";
        assert_eq!(
            call_of("call", p).as_deref(),
            Some("transfer('alice', 'bob', '10')")
        );
        assert_eq!(call_of("transfer", p), None);
        assert_eq!(call_of("call", "7b"), None);
        assert_eq!(call_of("call", "zz"), None);
        assert_eq!(call_of("call", "abc"), None);
    }
}
