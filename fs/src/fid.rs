//! File ids: `VOLUME,KEYCOOKIE` — the volume id in decimal, then the needle key in hex
//! (no leading zeros) immediately followed by the 32-bit cookie as exactly 8 hex digits,
//! as SeaweedFS writes them (`3,1637037d6` is volume 3, key 0x1, cookie 0x637037d6).

use std::fmt;
use std::str::FromStr;

/// A parsed file id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fid {
    /// Volume id (≥ 1).
    pub volume: u32,
    /// Needle key within the volume (≥ 1).
    pub key: u64,
    /// Secret cookie stored in the needle; a mismatch reads as "not found".
    pub cookie: u32,
}

/// Why a string is not a file id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FidError {
    /// No comma between volume and key.
    #[error("malformed file id: expected VOLUME,KEYCOOKIE (e.g. 3,1637037d6)")]
    NoComma,
    /// The volume part is not a decimal number in 1..=2^32-1.
    #[error("malformed file id: bad volume id")]
    BadVolume,
    /// The key+cookie part is not 9 to 24 hex digits, or the key is zero.
    #[error("malformed file id: key+cookie must be 9 to 24 hex digits with a non-zero key")]
    BadKey,
}

impl fmt::Display for Fid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{:x}{:08x}", self.volume, self.key, self.cookie)
    }
}

impl FromStr for Fid {
    type Err = FidError;

    fn from_str(s: &str) -> Result<Fid, FidError> {
        let (v, kc) = s.split_once(',').ok_or(FidError::NoComma)?;
        if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FidError::BadVolume);
        }
        let volume: u32 = v.parse().map_err(|_| FidError::BadVolume)?;
        if volume == 0 {
            return Err(FidError::BadVolume);
        }
        if kc.len() < 9 || kc.len() > 24 || !kc.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(FidError::BadKey);
        }
        let (k, c) = kc.split_at(kc.len() - 8);
        let key = u64::from_str_radix(k, 16).map_err(|_| FidError::BadKey)?;
        let cookie = u32::from_str_radix(c, 16).map_err(|_| FidError::BadKey)?;
        if key == 0 {
            return Err(FidError::BadKey);
        }
        Ok(Fid {
            volume,
            key,
            cookie,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_examples() {
        let f: Fid = "3,1637037d6".parse().unwrap();
        assert_eq!(
            f,
            Fid {
                volume: 3,
                key: 1,
                cookie: 0x637037d6
            }
        );
        assert_eq!(f.to_string(), "3,1637037d6");
        assert!(
            "12,0000000000000000ff00000001".parse::<Fid>().is_err(),
            "26 hex digits"
        );
        for bad in [
            "",
            ",",
            "3",
            "3,",
            ",1637037d6",
            "0,1637037d6",
            "3,00000000637037d6",
            "3,637037d6",
            "x,1637037d6",
            "3,1637037g6",
            "-3,1637037d6",
            "4294967296,1637037d6",
            "3,1637037d6,",
            " 3,1637037d6",
            "3,1ffffffffffffffff00000000",
        ] {
            assert!(bad.parse::<Fid>().is_err(), "{bad:?} accepted");
        }
        let max: Fid = "4294967295,ffffffffffffffffffffffff".parse().unwrap();
        assert_eq!(
            (max.volume, max.key, max.cookie),
            (u32::MAX, u64::MAX, u32::MAX)
        );
    }

    proptest! {
        #[test]
        fn round_trip(volume in 1u32.., key in 1u64.., cookie in any::<u32>()) {
            let f = Fid { volume, key, cookie };
            prop_assert_eq!(f.to_string().parse::<Fid>(), Ok(f));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            if let Ok(f) = s.parse::<Fid>() {
                // Whatever parses re-parses identically from its canonical form.
                prop_assert_eq!(f.to_string().parse::<Fid>(), Ok(f));
            }
        }

        #[test]
        fn parse_fid_shaped_noise(s in "[0-9]{0,11},[0-9a-fA-F]{0,26}") {
            if let Ok(f) = s.parse::<Fid>() {
                prop_assert!(f.volume >= 1 && f.key >= 1);
            }
        }
    }
}
