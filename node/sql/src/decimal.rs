//! Exact fixed-point decimal on an `i128` mantissa with a decimal scale.
//!
//! Up to 38 significant digits. Every operation is checked: overflow is an
//! error, never a wrap. Rounding is half away from zero (as PostgreSQL).
//! Division picks its result scale with PostgreSQL's `select_div_scale` rule
//! so results print the same digits as PostgreSQL.

use crate::error::{Result, SqlError};
use std::cmp::Ordering;

/// Largest supported scale (digits after the point).
pub const MAX_SCALE: u32 = 38;

/// An exact decimal number `m * 10^-s`.
#[derive(Debug, Clone, Copy)]
pub struct Decimal {
    m: i128,
    s: u32,
}

fn overflow() -> SqlError {
    SqlError::Overflow("numeric value out of range".into())
}

/// `10^0 ..= 10^38`, every power of ten an `i128` holds.
const POW10: [i128; 39] = {
    let mut t = [1i128; 39];
    let mut i = 1;
    while i < 39 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// `10^n` if it fits an `i128`.
pub fn pow10(n: u32) -> Option<i128> {
    POW10.get(usize::try_from(n).ok()?).copied()
}

/// Number of decimal digits of `a` (0 for 0).
fn digits(a: u128) -> u32 {
    a.checked_ilog10().map_or(0, |l| l + 1)
}

fn div_round(n: i128, d: i128) -> Result<i128> {
    if d == 0 {
        return Err(SqlError::DivisionByZero);
    }
    let q = n.checked_div(d).ok_or_else(overflow)?;
    let r = n.checked_rem(d).ok_or_else(overflow)?;
    // |2r| >= |d|  <=> round away from zero
    let r2 = r.unsigned_abs().checked_mul(2).ok_or_else(overflow)?;
    if r2 >= d.unsigned_abs() {
        let sign = if (n < 0) != (d < 0) { -1 } else { 1 };
        q.checked_add(sign).ok_or_else(overflow)
    } else {
        Ok(q)
    }
}

impl Decimal {
    /// Builds `m * 10^-s`.
    pub fn new(m: i128, s: u32) -> Result<Decimal> {
        if s > MAX_SCALE {
            return Err(overflow());
        }
        Ok(Decimal { m, s })
    }
    /// An integer as a decimal of scale 0.
    pub fn from_i64(v: i64) -> Decimal {
        Decimal { m: v as i128, s: 0 }
    }
    /// An unsigned amount (e.g. aer) as a decimal of scale 0.
    pub fn from_u128(v: u128) -> Result<Decimal> {
        Ok(Decimal {
            m: i128::try_from(v).map_err(|_| overflow())?,
            s: 0,
        })
    }
    /// Mantissa.
    pub fn mantissa(&self) -> i128 {
        self.m
    }
    /// Scale.
    pub fn scale(&self) -> u32 {
        self.s
    }
    /// True when zero.
    pub fn is_zero(&self) -> bool {
        self.m == 0
    }
    /// Sign: -1, 0 or 1.
    pub fn signum(&self) -> i32 {
        self.m.signum() as i32
    }

    /// Parses `[-+]digits[.digits][e[-+]digits]`.
    pub fn parse(text: &str) -> Result<Decimal> {
        let t = text.trim();
        if let Some(i) = t.find(['e', 'E']) {
            let (m, e) = (&t[..i], &t[i + 1..]);
            let bad =
                || SqlError::Type(format!("invalid input syntax for type numeric: \"{text}\""));
            let exp: i64 = e.parse().map_err(|_| bad())?;
            if m.contains(['e', 'E']) || exp.unsigned_abs() > 1000 {
                return Err(if m.contains(['e', 'E']) {
                    bad()
                } else {
                    overflow()
                });
            }
            let d = Decimal::parse(m).map_err(|_| bad())?;
            return d.shift10(exp);
        }
        let (neg, body) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        let (ip, fp) = match body.split_once('.') {
            Some((a, b)) => (a, b),
            None => (body, ""),
        };
        if (ip.is_empty() && fp.is_empty())
            || !ip.bytes().all(|b| b.is_ascii_digit())
            || !fp.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(SqlError::Type(format!(
                "invalid input syntax for type numeric: \"{text}\""
            )));
        }
        let s = u32::try_from(fp.len()).map_err(|_| overflow())?;
        if s > MAX_SCALE {
            return Err(overflow());
        }
        let mut m: i128 = 0;
        for b in ip.bytes().chain(fp.bytes()) {
            m = m
                .checked_mul(10)
                .and_then(|x| x.checked_add(i128::from(b - b'0')))
                .ok_or_else(overflow)?;
        }
        Ok(Decimal {
            m: if neg { -m } else { m },
            s,
        })
    }

    /// `self × 10^exp`, exact (an overflow of the 38 digits is an error).
    pub fn shift10(&self, exp: i64) -> Result<Decimal> {
        let s = i64::from(self.s) - exp;
        if s >= 0 {
            let s = u32::try_from(s).map_err(|_| overflow())?;
            if s <= MAX_SCALE {
                return Decimal::new(self.m, s);
            }
            // more digits after the point than we keep: exact only if they are zeros
            let n = self.normalized();
            let s2 = i64::from(n.s) - exp;
            return Decimal::new(n.m, u32::try_from(s2).map_err(|_| overflow())?);
        }
        let k = u32::try_from(-s).map_err(|_| overflow())?;
        let f = pow10(k).ok_or_else(overflow)?;
        Decimal::new(self.m.checked_mul(f).ok_or_else(overflow)?, 0)
    }

    /// Changes the scale, rounding half away from zero when it shrinks.
    pub fn rescale(&self, s: u32) -> Result<Decimal> {
        if s > MAX_SCALE {
            return Err(overflow());
        }
        match s.cmp(&self.s) {
            Ordering::Equal => Ok(*self),
            Ordering::Greater => {
                let f = pow10(s - self.s).ok_or_else(overflow)?;
                Ok(Decimal {
                    m: self.m.checked_mul(f).ok_or_else(overflow)?,
                    s,
                })
            }
            Ordering::Less => {
                let f = pow10(self.s - s).ok_or_else(overflow)?;
                Ok(Decimal {
                    m: div_round(self.m, f)?,
                    s,
                })
            }
        }
    }

    /// Rounds to `digits` places; negative `digits` rounds left of the point.
    pub fn round(&self, digits: i64) -> Result<Decimal> {
        if digits >= 0 {
            let d = u32::try_from(digits)
                .map_err(|_| overflow())?
                .min(MAX_SCALE);
            return self.rescale(d);
        }
        let k = u32::try_from(-digits).map_err(|_| overflow())?;
        let f = pow10(self.s.checked_add(k).ok_or_else(overflow)?);
        match f {
            None => Ok(Decimal { m: 0, s: 0 }),
            Some(f) => {
                let q = div_round(self.m, f)?;
                let back = pow10(k).ok_or_else(overflow)?;
                Ok(Decimal {
                    m: q.checked_mul(back).ok_or_else(overflow)?,
                    s: 0,
                })
            }
        }
    }

    /// Truncates towards zero to an integer.
    pub fn trunc_i128(&self) -> Result<i128> {
        let f = pow10(self.s).ok_or_else(overflow)?;
        Ok(self.m / f)
    }

    /// Rounds half away from zero to an `i64`.
    pub fn to_i64_round(&self) -> Result<i64> {
        let r = self.rescale(0)?;
        i64::try_from(r.m).map_err(|_| SqlError::Overflow("bigint out of range".into()))
    }

    /// Number of digits before the point (0 for |x| < 1).
    fn int_digits(&self) -> u32 {
        digits(self.m.unsigned_abs()).saturating_sub(self.s)
    }

    /// Checks `NUMERIC(p, s)`: rounds to `s` and fails if more than `p - s`
    /// integer digits remain.
    pub fn fit(&self, p: u32, s: u32) -> Result<Decimal> {
        // already at scale `s` and within the precision: nothing to round or check
        if self.s == s {
            if let Some(bound) = pow10(p.max(s)) {
                if self.m > -bound && self.m < bound {
                    return Ok(*self);
                }
            }
        }
        let r = self.rescale(s)?;
        if r.int_digits() > p.saturating_sub(s) {
            return Err(SqlError::Overflow(format!(
                "numeric field overflow: precision {p}, scale {s}"
            )));
        }
        Ok(r)
    }

    fn align(a: &Decimal, b: &Decimal) -> Result<(i128, i128, u32)> {
        let s = a.s.max(b.s);
        Ok((a.rescale(s)?.m, b.rescale(s)?.m, s))
    }

    /// `a + b`.
    pub fn add(&self, o: &Decimal) -> Result<Decimal> {
        if self.s == o.s {
            return Ok(Decimal {
                m: self.m.checked_add(o.m).ok_or_else(overflow)?,
                s: self.s,
            });
        }
        let (x, y, s) = Self::align(self, o)?;
        Ok(Decimal {
            m: x.checked_add(y).ok_or_else(overflow)?,
            s,
        })
    }
    /// `a - b`.
    pub fn sub(&self, o: &Decimal) -> Result<Decimal> {
        if self.s == o.s {
            return Ok(Decimal {
                m: self.m.checked_sub(o.m).ok_or_else(overflow)?,
                s: self.s,
            });
        }
        let (x, y, s) = Self::align(self, o)?;
        Ok(Decimal {
            m: x.checked_sub(y).ok_or_else(overflow)?,
            s,
        })
    }
    /// `a * b` (scale adds up; capped at [`MAX_SCALE`] with rounding).
    pub fn mul(&self, o: &Decimal) -> Result<Decimal> {
        let m = self.m.checked_mul(o.m).ok_or_else(overflow)?;
        let s = self.s + o.s;
        if s > MAX_SCALE {
            let f = pow10(s - MAX_SCALE).ok_or_else(overflow)?;
            return Ok(Decimal {
                m: div_round(m, f)?,
                s: MAX_SCALE,
            });
        }
        Ok(Decimal { m, s })
    }
    /// Negation.
    pub fn neg(&self) -> Result<Decimal> {
        Ok(Decimal {
            m: self.m.checked_neg().ok_or_else(overflow)?,
            s: self.s,
        })
    }
    /// Absolute value.
    pub fn abs(&self) -> Result<Decimal> {
        Ok(Decimal {
            m: self.m.checked_abs().ok_or_else(overflow)?,
            s: self.s,
        })
    }

    /// Base-10000 weight and leading base-10000 digit (PostgreSQL's layout).
    fn pg_weight(&self) -> (i64, i128) {
        if self.m == 0 {
            return (0, 0);
        }
        let a = self.m.unsigned_abs();
        let digits = i64::from(digits(a));
        // exponent of the most significant decimal digit
        let e = digits - 1 - i64::from(self.s);
        let w = e.div_euclid(4);
        // leading group value = floor(|x| / 10000^w) = floor(a / 10^(s + 4w))
        let shift = i64::from(self.s) + 4 * w;
        let lead = if shift >= 0 {
            let f = u32::try_from(shift)
                .ok()
                .and_then(pow10)
                .unwrap_or(i128::MAX);
            (a / f.unsigned_abs()) as i128
        } else {
            let f = u32::try_from(-shift).ok().and_then(pow10).unwrap_or(1);
            (a as i128).saturating_mul(f)
        };
        (w, lead)
    }

    /// `a / b` with PostgreSQL's result scale.
    pub fn div(&self, o: &Decimal) -> Result<Decimal> {
        if o.m == 0 {
            return Err(SqlError::DivisionByZero);
        }
        let (w1, f1) = self.pg_weight();
        let (w2, f2) = o.pg_weight();
        let mut qweight = w1 - w2;
        if f1 <= f2 {
            qweight -= 1;
        }
        let mut rscale = 16 - qweight * 4;
        rscale = rscale.max(i64::from(self.s)).max(i64::from(o.s)).max(0);
        // In 0..=MAX_SCALE after the clamps above.
        let rscale = u32::try_from(rscale.min(i64::from(MAX_SCALE))).unwrap_or(MAX_SCALE);
        self.div_scale(o, rscale)
    }

    /// `a / b` rounded to `rscale` places.
    pub fn div_scale(&self, o: &Decimal, rscale: u32) -> Result<Decimal> {
        if o.m == 0 {
            return Err(SqlError::DivisionByZero);
        }
        // q = m1 * 10^(rscale - s1 + s2) / m2
        let k = i64::from(rscale) - i64::from(self.s) + i64::from(o.s);
        let (num, den) = if k >= 0 {
            let f = u32::try_from(k).ok().and_then(pow10).ok_or_else(overflow)?;
            (self.m.checked_mul(f).ok_or_else(overflow)?, o.m)
        } else {
            let f = u32::try_from(-k)
                .ok()
                .and_then(pow10)
                .ok_or_else(overflow)?;
            (self.m, o.m.checked_mul(f).ok_or_else(overflow)?)
        };
        Ok(Decimal {
            m: div_round(num, den)?,
            s: rscale,
        })
    }

    /// `a % b` (sign of the dividend, as PostgreSQL).
    pub fn rem(&self, o: &Decimal) -> Result<Decimal> {
        if o.m == 0 {
            return Err(SqlError::DivisionByZero);
        }
        let (x, y, s) = Self::align(self, o)?;
        Ok(Decimal {
            m: x.checked_rem(y).ok_or_else(overflow)?,
            s,
        })
    }

    /// Numeric comparison (scale-independent, never overflows).
    pub fn cmp_num(&self, o: &Decimal) -> Ordering {
        if self.s == o.s {
            return self.m.cmp(&o.m);
        }
        match Self::align(self, o) {
            Ok((x, y, _)) => x.cmp(&y),
            Err(_) => {
                // Alignment overflowed: integer parts differ hugely or fractions are tiny.
                let ia = self.m / pow10(self.s).unwrap_or(1);
                let ib = o.m / pow10(o.s).unwrap_or(1);
                match ia.cmp(&ib) {
                    Ordering::Equal => {
                        let fa = self.m - ia * pow10(self.s).unwrap_or(1);
                        let fb = o.m - ib * pow10(o.s).unwrap_or(1);
                        let s = self.s.max(o.s);
                        let fa = fa.saturating_mul(pow10(s - self.s).unwrap_or(1));
                        let fb = fb.saturating_mul(pow10(s - o.s).unwrap_or(1));
                        fa.cmp(&fb)
                    }
                    c => c,
                }
            }
        }
    }

    /// Strips trailing fractional zeros.
    pub fn normalized(&self) -> Decimal {
        let mut d = *self;
        while d.s > 0 && d.m % 10 == 0 {
            d.m /= 10;
            d.s -= 1;
        }
        d
    }
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let neg = self.m < 0;
        let digits = self.m.unsigned_abs().to_string();
        let s = self.s as usize;
        let (ip, fp) = if digits.len() > s {
            let (a, b) = digits.split_at(digits.len() - s);
            (a.to_string(), b.to_string())
        } else {
            (
                "0".to_string(),
                format!("{}{}", "0".repeat(s - digits.len()), digits),
            )
        };
        if neg {
            f.write_str("-")?;
        }
        f.write_str(&ip)?;
        if s > 0 {
            f.write_str(".")?;
            f.write_str(&fp)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    #[test]
    fn arithmetic_and_display() {
        assert_eq!(d("1.50").add(&d("2.125")).unwrap().to_string(), "3.625");
        assert_eq!(d("1.5").mul(&d("-2.25")).unwrap().to_string(), "-3.375");
        assert_eq!(d("-0.05").to_string(), "-0.05");
        assert_eq!(
            d("10").div(&d("3")).unwrap().to_string(),
            "3.3333333333333333"
        );
        assert_eq!(
            d("1").div(&d("8")).unwrap().to_string(),
            "0.12500000000000000000"
        );
        assert_eq!(d("2.5").round(0).unwrap().to_string(), "3");
        assert_eq!(d("-2.5").round(0).unwrap().to_string(), "-3");
        assert_eq!(d("1234.5").round(-2).unwrap().to_string(), "1200");
        assert!(d("123.456").fit(5, 2).is_ok());
        assert!(d("1234.5").fit(5, 2).is_err());
        assert_eq!(d("7").rem(&d("-3")).unwrap().to_string(), "1");
        assert!(matches!(d("1").div(&d("0")), Err(SqlError::DivisionByZero)));
        assert_eq!(d("1.10").cmp_num(&d("1.1")), Ordering::Equal);
        let big = Decimal::new(i128::MAX / 2, 0).unwrap();
        assert!(big.add(&big).is_ok());
        assert!(big.mul(&d("3")).is_err());
        // exponents as PostgreSQL's numeric input: the scale is the digits after the point
        assert_eq!(Decimal::parse("1e5").unwrap().to_string(), "100000");
        assert_eq!(Decimal::parse("1.50e1").unwrap().to_string(), "15.0");
        assert_eq!(Decimal::parse("-2.5E-3").unwrap().to_string(), "-0.0025");
        assert!(Decimal::parse("1e100").is_err());
        assert!(Decimal::parse("1e").is_err());
        assert!(Decimal::parse("1e5e5").is_err());
        assert!(Decimal::parse("").is_err());
        assert_eq!(digits(0), 0);
        assert_eq!(digits(9), 1);
        assert_eq!(digits(10), 2);
        assert_eq!(digits(u128::MAX), 39);
        assert_eq!(digits(99), 2);
        assert_eq!(digits(100), 3);
        for n in 0..39u32 {
            assert_eq!(pow10(n), 10i128.checked_pow(n));
            assert_eq!(digits(10u128.pow(n)), n + 1);
            assert_eq!(digits(10u128.pow(n) - 1), n);
        }
        assert_eq!(pow10(39), None);
        // fit's and add's same-scale shortcuts agree with the general path (a value one scale
        // up, which rescales exactly)
        for p in 0..7u32 {
            for sc in 0..7u32 {
                let b = 10i128.pow(p.max(sc));
                for m in [0, 1, -1, b - 1, b, b + 1, -b + 1, -b, -b - 1, b / 2, -b / 3] {
                    let same = Decimal::new(m, sc).unwrap();
                    let up = Decimal::new(m * 10, sc + 1).unwrap();
                    let (x, y) = (same.fit(p, sc), up.fit(p, sc));
                    assert_eq!(
                        x.as_ref().map(|d| (d.m, d.s)).ok(),
                        y.as_ref().map(|d| (d.m, d.s)).ok(),
                        "fit({m}e-{sc}, {p}, {sc})"
                    );
                    assert_eq!(x.is_err(), y.is_err());
                    let o = Decimal::new(7, sc).unwrap();
                    let (s1, s2) = (same.add(&o).unwrap(), up.add(&o).unwrap());
                    assert_eq!(s1.cmp_num(&s2), Ordering::Equal);
                    let (d1, d2) = (same.sub(&o).unwrap(), up.sub(&o).unwrap());
                    assert_eq!(d1.cmp_num(&d2), Ordering::Equal);
                }
            }
        }
        let max = Decimal::new(i128::MAX, 2).unwrap();
        assert!(max.add(&Decimal::new(1, 2).unwrap()).is_err());
        assert!(Decimal::new(i128::MIN, 2)
            .unwrap()
            .sub(&Decimal::new(1, 2).unwrap())
            .is_err());
        assert!(Decimal::new(i128::MAX, 0).unwrap().fit(38, 0).is_err());
        assert!(Decimal::new(10i128.pow(37), 0).unwrap().fit(38, 0).is_ok());
    }
}
