//! What people type and read: amounts parsed with clear errors for common slips (negative,
//! more than 18 decimals), addresses with hints (`0x…`, `DEV`), local date and time for
//! block timestamps, and the hint printed when no node answers.

use aergo_types::Aer;
use anyhow::{bail, Result};

/// Decimals of one AERGO.
pub const DECIMALS: usize = 18;

/// Parses a CLI amount (`10`, `1.5aergo`, `5000aer`) with errors that say what is wrong.
pub fn parse_amount(s: &str) -> Result<Aer> {
    let t = s.trim().to_ascii_lowercase();
    if t.starts_with('-') {
        bail!("amount `{s}` is negative: amounts are positive (`10`, `1.5aergo`, `5000aer`)");
    }
    if t.is_empty() {
        bail!("empty amount: give e.g. `10` (AERGO), `1.5aergo` or `5000aer`");
    }
    if let Some(n) = t.strip_suffix("aergo") {
        check_decimals(s, n.trim())?;
    } else if let Some(n) = t.strip_suffix("aer") {
        if n.contains('.') {
            bail!(
                "amount `{s}`: aer is the smallest unit and has no decimals (1 AERGO = 10^18 aer)"
            );
        }
    } else {
        check_decimals(s, &t)?;
    }
    Aer::parse_cli(s).map_err(|e| {
        anyhow::anyhow!("{e} (amounts: `10` or `1.5aergo` are AERGO, `5000aer` is aer)")
    })
}

fn check_decimals(input: &str, n: &str) -> Result<()> {
    if let Some((_, frac)) = n.split_once('.') {
        let digits = frac.chars().filter(char::is_ascii_digit).count();
        if digits > DECIMALS {
            bail!(
                "amount `{input}` has {digits} decimals: AERGO has {DECIMALS} (the smallest amount is 0.000000000000000001, or `1aer`)"
            );
        }
    }
    Ok(())
}

/// An amount in aer as `N AERGO` (up to 18 decimals, no trailing zeros).
pub fn aergo(a: Aer) -> String {
    format!("{} {}", a.to_aergo_string(), unit())
}

/// The unit amounts are shown in: `AERGO` on the root chain; inside a repository (`--repo`)
/// its own units, written `units (NAME)`.
static UNIT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets the unit for this run (the repository given with `--repo`, if any).
pub fn set_repo_unit(repo: Option<&str>) {
    if let Some(r) = repo.filter(|r| *r != "aergo") {
        let name = r.trim_end_matches("/dd");
        let _ = UNIT.set(format!("units ({name})"));
    }
}

/// The unit amounts are shown in.
pub fn unit() -> &'static str {
    UNIT.get().map(String::as_str).unwrap_or("AERGO")
}

/// Milliseconds since the epoch as local `YYYY-MM-DD HH:MM:SS` (UTC when the local zone is
/// unknown).
pub fn local_time(ms: u64) -> String {
    let secs = libc::time_t::try_from(ms / 1000).unwrap_or(libc::time_t::MAX);
    // SAFETY: `tm` is plain old data; `localtime_r` writes it and reads only `secs`.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is the thread-safe variant.
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    if !ok {
        return format!("{ms} ms");
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        i64::from(tm.tm_year) + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// A byte count for people: `512 bytes`, `1.5 KiB`, `256 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    let text = format!("{v:.1}");
    format!("{} {unit}", text.trim_end_matches(".0"))
}

/// What to do when no node answers at `url`.
pub fn unreachable_hint(url: &str) -> String {
    format!(
        "no node answers at {url}. Start a dev node with `aergo-node --dev` (in another terminal), or point the CLI at a running node with `--rpc URL` or `AERGO_RPC=URL`"
    )
}

/// Rewrites every `N aer` in a message (e.g. the node's "insufficient balance: N aer does not
/// cover M aer") as AERGO.
pub fn aer_to_aergo(msg: &str) -> String {
    let words: Vec<&str> = msg.split(' ').collect();
    let mut out = Vec::with_capacity(words.len());
    let mut i = 0;
    while let Some(w) = words.get(i) {
        let next = words.get(i + 1).copied().unwrap_or("");
        let unit = next.trim_end_matches([',', ')', '.', ';']);
        if unit == "aer" && !w.is_empty() && w.chars().all(|c| c.is_ascii_digit()) {
            if let Ok(n) = w.parse::<u128>() {
                out.push(Aer(n).to_aergo_string());
                out.push(format!("{}{}", self::unit(), &next[3..]));
                i += 2;
                continue;
            }
        }
        out.push((*w).to_string());
        i += 1;
    }
    out.join(" ")
}

/// `f(arg, …)` for a contract call's payload (hex of `{"function", "args"}`), else `None`.
pub fn call_of(kind: &str, payload_hex: &str) -> Option<String> {
    if kind != "call" {
        return None;
    }
    let bytes = hex::decode(payload_hex.trim_start_matches("0x")).ok()?;
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
    fn byte_counts() {
        assert_eq!(bytes(0), "0 bytes");
        assert_eq!(bytes(1023), "1023 bytes");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(268_435_456), "256 MiB");
        assert_eq!(bytes(u64::MAX), "16384 PiB");
    }

    #[test]
    fn amounts_and_slips() {
        assert_eq!(
            parse_amount("10").map(|a| a.0).ok(),
            Some(10 * 10u128.pow(18))
        );
        assert_eq!(
            parse_amount("1.5aergo").map(|a| a.0).ok(),
            Some(15 * 10u128.pow(17))
        );
        assert_eq!(parse_amount("5000aer").map(|a| a.0).ok(), Some(5000));
        assert_eq!(
            parse_amount("0.000000000000000001").map(|a| a.0).ok(),
            Some(1)
        );
        let e = |s: &str| {
            parse_amount(s)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(e("-5").contains("amounts are positive"), "{}", e("-5"));
        assert!(e("0.0000000000000000001").contains("19 decimals"));
        assert!(e("1.5aer").contains("no decimals"));
        assert!(e("ten").contains("`5000aer` is aer"), "{}", e("ten"));
        assert!(e("").contains("empty amount"));
    }

    #[test]
    fn times_are_dates() {
        let t = local_time(1_700_000_000_000);
        assert_eq!(t.len(), 19, "{t}");
        assert!(t.starts_with("2023-11-1"), "{t}");
        assert_eq!(aergo(Aer(15 * 10u128.pow(17))), "1.5 AERGO");
    }

    #[test]
    fn messages_in_aergo_and_calls() {
        assert_eq!(
            aer_to_aergo("insufficient balance: 1500000000000000000 aer does not cover 2000000000000000000 aer (amount + fee)"),
            "insufficient balance: 1.5 AERGO does not cover 2 AERGO (amount + fee)"
        );
        assert_eq!(
            aer_to_aergo("price 5 aer."),
            "price 0.000000000000000005 AERGO."
        );
        assert_eq!(aer_to_aergo("no numbers"), "no numbers");
        let p = hex::encode(br#"{"function":"transfer","args":["alice","bob","10"]}"#);
        assert_eq!(
            call_of("call", &p).as_deref(),
            Some("transfer('alice', 'bob', '10')")
        );
        assert_eq!(call_of("transfer", &p), None);
    }
}
