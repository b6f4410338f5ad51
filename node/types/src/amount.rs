//! Amounts of the native AERGO token in aer (18 decimals).
//!
//! On the wire (RPC, genesis) an amount is a decimal string of aer, because amounts exceed
//! 2^53. The CLI accepts `10` (AERGO), `1.5aergo` and `5000aer`, and prints AERGO with up to
//! 18 decimals.

use crate::AER_PER_AERGO;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// An amount in aer.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct Aer(pub u128);

/// An amount that could not be parsed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid amount `{input}`: {reason} (examples: 10, 1.5aergo, 5000aer)")]
pub struct AmountError {
    /// The input.
    pub input: String,
    /// Why it was rejected.
    pub reason: &'static str,
}

impl Aer {
    /// Zero.
    pub const ZERO: Aer = Aer(0);

    /// Whole AERGO.
    pub fn from_aergo(n: u128) -> Option<Aer> {
        n.checked_mul(AER_PER_AERGO).map(Aer)
    }

    /// Parses a plain decimal string of aer (the wire format): digits only, no sign, no
    /// leading `+`, at most u128.
    pub fn parse_aer(s: &str) -> Result<Aer, AmountError> {
        let err = |reason| AmountError {
            input: s.chars().take(80).collect(),
            reason,
        };
        if s.is_empty() {
            return Err(err("empty"));
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("aer amounts are whole decimal numbers"));
        }
        s.parse::<u128>().map(Aer).map_err(|_| err("too large"))
    }

    /// Parses a user-facing amount: `10` and `1.5aergo` are AERGO (up to 18 decimals),
    /// `5000aer` is aer (whole numbers). Spaces around the number and unit are allowed.
    pub fn parse_cli(s: &str) -> Result<Aer, AmountError> {
        let t = s.trim().to_ascii_lowercase();
        let err = |reason| AmountError {
            input: s.chars().take(80).collect(),
            reason,
        };
        if let Some(n) = t.strip_suffix("aergo") {
            return parse_decimal_aergo(n.trim()).ok_or_else(|| err("not a valid AERGO number"));
        }
        if let Some(n) = t.strip_suffix("aer") {
            return Aer::parse_aer(n.trim()).map_err(|e| AmountError {
                input: s.chars().take(80).collect(),
                reason: e.reason,
            });
        }
        parse_decimal_aergo(&t).ok_or_else(|| err("not a valid AERGO number"))
    }

    /// Formats as AERGO with up to 18 decimals and no trailing zeros, e.g. `1.5`.
    pub fn to_aergo_string(&self) -> String {
        let whole = self.0 / AER_PER_AERGO;
        let frac = self.0 % AER_PER_AERGO;
        if frac == 0 {
            return whole.to_string();
        }
        let f = format!("{frac:018}");
        format!("{whole}.{}", f.trim_end_matches('0'))
    }

    /// Checked addition.
    pub fn checked_add(self, o: Aer) -> Option<Aer> {
        self.0.checked_add(o.0).map(Aer)
    }
    /// Checked subtraction.
    pub fn checked_sub(self, o: Aer) -> Option<Aer> {
        self.0.checked_sub(o.0).map(Aer)
    }
}

fn parse_decimal_aergo(s: &str) -> Option<Aer> {
    if s.is_empty() {
        return None;
    }
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, f),
        None => (s, ""),
    };
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 18 {
        return None;
    }
    let w: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let f: u128 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<18}").parse().ok()?
    };
    w.checked_mul(AER_PER_AERGO)?.checked_add(f).map(Aer)
}

impl fmt::Display for Aer {
    /// The wire format: aer as a decimal string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Aer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Aer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Aer::parse_aer(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cli_forms() {
        assert_eq!(Aer::parse_cli("10").unwrap(), Aer(10 * AER_PER_AERGO));
        assert_eq!(
            Aer::parse_cli("1.5aergo").unwrap(),
            Aer(15 * AER_PER_AERGO / 10)
        );
        assert_eq!(Aer::parse_cli("5000aer").unwrap(), Aer(5000));
        assert_eq!(Aer::parse_cli(" 2 AERGO ").unwrap(), Aer(2 * AER_PER_AERGO));
        assert_eq!(Aer::parse_cli("0.000000000000000001").unwrap(), Aer(1));
        assert_eq!(Aer::parse_cli(".5").unwrap(), Aer(AER_PER_AERGO / 2));
        for bad in [
            "",
            "-1",
            "1.2.3",
            "1e5",
            "abc",
            "1.5aer",
            "0.0000000000000000001",
            "aergo",
            ".",
        ] {
            assert!(Aer::parse_cli(bad).is_err(), "{bad} should be rejected");
        }
        assert!(Aer::parse_cli("999999999999999999999999999999999999999").is_err());
    }

    #[test]
    fn formatting() {
        assert_eq!(Aer(AER_PER_AERGO * 3 / 2).to_aergo_string(), "1.5");
        assert_eq!(Aer(1).to_aergo_string(), "0.000000000000000001");
        assert_eq!(Aer(0).to_aergo_string(), "0");
        assert_eq!(Aer(u128::MAX).to_string(), u128::MAX.to_string());
    }

    #[test]
    fn serde_uses_decimal_strings() {
        let a = Aer(123_456_789_012_345_678_901_234);
        let j = serde_json::to_string(&a).unwrap();
        assert_eq!(j, "\"123456789012345678901234\"");
        assert_eq!(serde_json::from_str::<Aer>(&j).unwrap(), a);
        assert!(serde_json::from_str::<Aer>("\"-5\"").is_err());
        assert!(serde_json::from_str::<Aer>("5").is_err());
    }

    proptest! {
        #[test]
        fn aergo_string_round_trips(v in any::<u128>()) {
            let a = Aer(v);
            prop_assert_eq!(Aer::parse_cli(&a.to_aergo_string()).unwrap(), a);
        }
    }
}
