//! Deterministic IEEE-754 floating point with PostgreSQL's semantics: REAL (binary32) and
//! DOUBLE PRECISION (binary64).
//!
//! Every node must compute the same bits, so:
//! - the basic operations (`+ - * /`, `sqrt`, conversions) are IEEE-754 correctly rounded, in
//!   Rust (no fused multiply-add, no fast-math; the JIT emits the same plain instructions);
//! - transcendental functions come from the pure-Rust `libm` crate built without its
//!   architecture-specific paths, never from the platform's C library;
//! - every NaN result is the one canonical quiet NaN ([`canon64`], [`canon32`]), so no
//!   hardware-dependent NaN payload reaches storage or output.
//!
//! PostgreSQL's rules: overflow (a finite operand giving an infinite result) and underflow (a
//! non-zero product or quotient giving zero) are errors, `x / 0` is "division by zero"; NaN
//! equals NaN and sorts above every other value, `-0 = 0` ([`cmp64`]); text output is the
//! shortest string that reads back to the same value, fixed notation for decimal exponents
//! -4 ≤ e < 15 (REAL: < 6) and `1e+20` style otherwise, `NaN`, `Infinity`, `-Infinity`
//! ([`format64`], [`format32`]); casts to integers round half to even and check the range;
//! casts to NUMERIC keep 15 (REAL: 6) significant digits as PostgreSQL does.

use crate::decimal::Decimal;
use crate::error::{Result, SqlError};
use crate::ir::ArithOp;
use std::cmp::Ordering;

/// Bits of the canonical binary64 NaN (positive quiet NaN, zero payload).
pub const NAN64_BITS: u64 = 0x7ff8_0000_0000_0000;
/// Bits of the canonical binary32 NaN.
pub const NAN32_BITS: u32 = 0x7fc0_0000;

/// `x`, with any NaN replaced by the canonical NaN.
#[inline]
pub fn canon64(x: f64) -> f64 {
    if x.is_nan() {
        f64::from_bits(NAN64_BITS)
    } else {
        x
    }
}

/// `x`, with any NaN replaced by the canonical NaN.
#[inline]
pub fn canon32(x: f32) -> f32 {
    if x.is_nan() {
        f32::from_bits(NAN32_BITS)
    } else {
        x
    }
}

/// PostgreSQL's float order: NaN equals NaN and is greater than everything else; `-0 = 0`.
#[inline]
pub fn cmp64(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// "value out of range: overflow".
pub fn overflow() -> SqlError {
    SqlError::Overflow("value out of range: overflow".into())
}

/// "value out of range: underflow".
pub fn underflow() -> SqlError {
    SqlError::Overflow("value out of range: underflow".into())
}

/// Defines `a op b` for one float width with PostgreSQL's checks: division by zero, overflow
/// (an infinite result from finite operands), underflow (a zero product or quotient of
/// non-zero operands), no `%`; the result's NaN canonical. The widths differ only in type,
/// canonicalisation and the type name in the `%` error, so one body serves both.
macro_rules! float_arith {
    ($(#[$doc:meta])* $name:ident, $t:ty, $canon:ident, $tname:literal) => {
        $(#[$doc])*
        pub fn $name(op: ArithOp, a: $t, b: $t) -> Result<$t> {
            let r = match op {
                ArithOp::Add => a + b,
                ArithOp::Sub => a - b,
                ArithOp::Mul => a * b,
                ArithOp::Div => {
                    if b == 0.0 && !a.is_nan() {
                        return Err(SqlError::DivisionByZero);
                    }
                    a / b
                }
                ArithOp::Mod => {
                    return Err(SqlError::Type(
                        concat!("operator does not exist: ", $tname, " % ", $tname).into(),
                    ))
                }
            };
            match op {
                ArithOp::Add | ArithOp::Sub | ArithOp::Mul
                    if r.is_infinite() && !a.is_infinite() && !b.is_infinite() =>
                {
                    return Err(overflow())
                }
                ArithOp::Div if r.is_infinite() && !a.is_infinite() => return Err(overflow()),
                ArithOp::Mul if r == 0.0 && a != 0.0 && b != 0.0 => return Err(underflow()),
                ArithOp::Div if r == 0.0 && a != 0.0 && !b.is_infinite() => {
                    return Err(underflow())
                }
                _ => {}
            }
            Ok($canon(r))
        }
    };
}

float_arith!(
    /// `a op b` in binary64 with PostgreSQL's checks (`%` has no float operator).
    arith64,
    f64,
    canon64,
    "double precision"
);
float_arith!(
    /// `a op b` in binary32 with PostgreSQL's checks.
    arith32,
    f32,
    canon32,
    "real"
);

/// binary64 → binary32 (round to nearest even); a finite value out of REAL's range is an
/// overflow, a non-zero one that rounds to zero an underflow (as PostgreSQL).
pub fn to_f32(x: f64) -> Result<f32> {
    // `as` rounds to nearest, ties to even (IEEE conversion), the same on every platform.
    #[allow(clippy::cast_possible_truncation)]
    let r = x as f32;
    if r.is_infinite() && !x.is_infinite() {
        return Err(overflow());
    }
    if r == 0.0 && x != 0.0 {
        return Err(underflow());
    }
    Ok(canon32(r))
}

/// The digits and decimal exponent of the first digit of a positive number written in
/// decimal (`123.5`, `1.25e-3`, `1e16`): e.g. `1.25e-3` → ("125", -3). Leading and trailing
/// zeros are dropped.
fn shortest(text: &str) -> (String, i32) {
    let (mant, exp) = text.split_once(['e', 'E']).unwrap_or((text, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    let mut digits: String = int.chars().chain(frac.chars()).collect();
    // value = digits × 10^(exp - frac.len())
    let mut k = exp - i32::try_from(frac.len()).unwrap_or(0);
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
        k += 1;
    }
    let trimmed = digits.trim_start_matches('0');
    let digits = if trimmed.is_empty() {
        "0".to_string()
    } else {
        trimmed.to_string()
    };
    let n = i32::try_from(digits.len()).unwrap_or(0);
    (digits, k + n - 1)
}

/// PostgreSQL's layout of shortest digits: fixed notation for `-4 <= exp < fixed_max`,
/// otherwise `d.ddde±XX`.
fn layout(neg: bool, digits: &str, exp: i32, fixed_max: i32) -> String {
    let mut s = String::with_capacity(digits.len() + 8);
    if neg {
        s.push('-');
    }
    let n = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    if (-4..fixed_max).contains(&exp) {
        if exp < 0 {
            s.push_str("0.");
            for _ in 0..(-exp - 1) {
                s.push('0');
            }
            s.push_str(digits);
        } else if exp + 1 >= n {
            s.push_str(digits);
            for _ in 0..(exp + 1 - n) {
                s.push('0');
            }
        } else {
            let (a, b) = digits.split_at(usize::try_from(exp + 1).unwrap_or(0));
            s.push_str(a);
            s.push('.');
            s.push_str(b);
        }
    } else {
        let (a, b) = digits.split_at(1.min(digits.len()));
        s.push_str(a);
        if !b.is_empty() {
            s.push('.');
            s.push_str(b);
        }
        s.push('e');
        s.push(if exp < 0 { '-' } else { '+' });
        s.push_str(&format!("{:02}", exp.unsigned_abs()));
    }
    s
}

/// PostgreSQL's text output of a DOUBLE PRECISION value (`extra_float_digits = 1`, the
/// default: the shortest exact representation).
pub fn format64(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return (if x > 0.0 { "Infinity" } else { "-Infinity" }).into();
    }
    if x == 0.0 {
        return (if x.is_sign_negative() { "-0" } else { "0" }).into();
    }
    // Ryu (as PostgreSQL's d2s.c): the shortest digits that read back to `x`, ties to even
    let (d, e) = shortest(ryu::Buffer::new().format_finite(x.abs()));
    layout(x < 0.0, &d, e, 15)
}

/// PostgreSQL's text output of a REAL value.
pub fn format32(x: f32) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return (if x > 0.0 { "Infinity" } else { "-Infinity" }).into();
    }
    if x == 0.0 {
        return (if x.is_sign_negative() { "-0" } else { "0" }).into();
    }
    // Ryu (as PostgreSQL's f2s.c)
    let (d, e) = shortest(ryu::Buffer::new().format_finite(x.abs()));
    layout(x < 0.0, &d, e, 6)
}

/// Whether `t` (trimmed) spells infinity or NaN.
fn special(t: &str) -> Option<f64> {
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let l = body.to_ascii_lowercase();
    let v = match l.as_str() {
        "inf" | "infinity" => f64::INFINITY,
        "nan" => return Some(f64::from_bits(NAN64_BITS)),
        _ => return None,
    };
    Some(if neg { -v } else { v })
}

/// Whether a numeric literal has a non-zero digit before its exponent.
fn has_nonzero_digit(t: &str) -> bool {
    t.split(['e', 'E'])
        .next()
        .is_some_and(|m| m.bytes().any(|b| (b'1'..=b'9').contains(&b)))
}

fn plain_number(t: &str) -> bool {
    // digits, one point, optional exponent: what strtod accepts in PostgreSQL's inputs
    // (Rust's parser alone would also accept "inf"/"nan", handled by `special`)
    !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
}

/// Parses text as DOUBLE PRECISION (correctly rounded, as PostgreSQL's `strtod`).
pub fn parse64(s: &str) -> Result<f64> {
    let t = s.trim();
    if let Some(v) = special(t) {
        return Ok(v);
    }
    let bad = || {
        SqlError::Type(format!(
            "invalid input syntax for type double precision: \"{s}\""
        ))
    };
    if !plain_number(t) {
        return Err(bad());
    }
    let v: f64 = t.parse().map_err(|_| bad())?;
    if v.is_infinite() || (v == 0.0 && has_nonzero_digit(t)) {
        return Err(SqlError::Overflow(format!(
            "\"{s}\" is out of range for type double precision"
        )));
    }
    Ok(v)
}

/// Parses text as REAL (correctly rounded to binary32).
pub fn parse32(s: &str) -> Result<f32> {
    let t = s.trim();
    if let Some(v) = special(t) {
        #[allow(clippy::cast_possible_truncation)]
        return Ok(canon32(v as f32));
    }
    let bad = || SqlError::Type(format!("invalid input syntax for type real: \"{s}\""));
    if !plain_number(t) {
        return Err(bad());
    }
    let v: f32 = t.parse().map_err(|_| bad())?;
    if v.is_infinite() || (v == 0.0 && has_nonzero_digit(t)) {
        return Err(SqlError::Overflow(format!(
            "\"{s}\" is out of range for type real"
        )));
    }
    Ok(v)
}

/// Float → integer: rounds half to even (`rint`), then checks the range (`what` names the
/// target type in the error: "bigint" or "integer"). NaN and infinities are out of range.
pub fn to_int(x: f64, lo: i64, hi: i64, what: &str) -> Result<i64> {
    let r = x.round_ties_even();
    // ±2^63 bound the values an i64 holds (i64::MIN is exactly -2^63).
    const TWO63: f64 = 9_223_372_036_854_775_808.0;
    if r.is_nan() || !(-TWO63..TWO63).contains(&r) {
        return Err(SqlError::Overflow(format!("{what} out of range")));
    }
    #[allow(clippy::cast_possible_truncation)]
    let i = r as i64;
    if i < lo || i > hi {
        return Err(SqlError::Overflow(format!("{what} out of range")));
    }
    Ok(i)
}

/// Float → NUMERIC with `sig` significant digits (15 for DOUBLE PRECISION, 6 for REAL), as
/// PostgreSQL's `%.*g` conversion; NaN and infinities have no NUMERIC here (a documented
/// difference: PostgreSQL's NUMERIC has them).
pub fn to_decimal(x: f64, sig: usize) -> Result<Decimal> {
    if !x.is_finite() {
        return Err(SqlError::Overflow(format!(
            "cannot convert {} to numeric",
            format64(x)
        )));
    }
    if x == 0.0 {
        return Ok(Decimal::from_i64(0));
    }
    // `{:.N e}` rounds correctly (half to even on the exact binary value), as glibc's printf.
    let f = format!("{:.*e}", sig.saturating_sub(1), x.abs());
    let (mut digits, exp) = shortest(&f);
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    let n = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    let mut s = String::new();
    if x < 0.0 {
        s.push('-');
    }
    if exp < 0 {
        s.push_str("0.");
        for _ in 0..(-exp - 1) {
            s.push('0');
        }
        s.push_str(&digits);
    } else if exp + 1 >= n {
        s.push_str(&digits);
        for _ in 0..(exp + 1 - n) {
            s.push('0');
        }
    } else {
        let (a, b) = digits.split_at(usize::try_from(exp + 1).unwrap_or(0));
        s.push_str(a);
        s.push('.');
        s.push_str(b);
    }
    Decimal::parse(&s).map_err(|_| SqlError::Overflow("numeric value out of range".into()))
}

/// NUMERIC → DOUBLE PRECISION, correctly rounded (PostgreSQL goes through the text form).
pub fn from_decimal64(d: &Decimal) -> f64 {
    d.to_string().parse().unwrap_or(f64::from_bits(NAN64_BITS))
}

/// NUMERIC → REAL, correctly rounded.
pub fn from_decimal32(d: &Decimal) -> f32 {
    d.to_string().parse().unwrap_or(f32::from_bits(NAN32_BITS))
}

/// Float functions (DOUBLE PRECISION in and out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatFn {
    /// sqrt
    Sqrt,
    /// cbrt
    Cbrt,
    /// exp
    Exp,
    /// ln
    Ln,
    /// log / log10
    Log10,
    /// power / pow
    Power,
    /// sin
    Sin,
    /// cos
    Cos,
    /// tan
    Tan,
    /// asin
    Asin,
    /// acos
    Acos,
    /// atan
    Atan,
    /// atan2
    Atan2,
    /// floor
    Floor,
    /// ceil / ceiling
    Ceil,
    /// trunc
    Trunc,
    /// sign
    Sign,
    /// degrees
    Degrees,
    /// radians
    Radians,
    /// pi()
    Pi,
}

impl FloatFn {
    /// The function of a name, with its arity.
    pub fn by_name(n: &str) -> Option<(FloatFn, usize)> {
        Some(match n {
            "sqrt" => (FloatFn::Sqrt, 1),
            "cbrt" => (FloatFn::Cbrt, 1),
            "exp" => (FloatFn::Exp, 1),
            "ln" => (FloatFn::Ln, 1),
            "log" | "log10" => (FloatFn::Log10, 1),
            "power" | "pow" => (FloatFn::Power, 2),
            "sin" => (FloatFn::Sin, 1),
            "cos" => (FloatFn::Cos, 1),
            "tan" => (FloatFn::Tan, 1),
            "asin" => (FloatFn::Asin, 1),
            "acos" => (FloatFn::Acos, 1),
            "atan" => (FloatFn::Atan, 1),
            "atan2" => (FloatFn::Atan2, 2),
            "floor" => (FloatFn::Floor, 1),
            "ceil" | "ceiling" => (FloatFn::Ceil, 1),
            "trunc" => (FloatFn::Trunc, 1),
            "sign" => (FloatFn::Sign, 1),
            "degrees" => (FloatFn::Degrees, 1),
            "radians" => (FloatFn::Radians, 1),
            "pi" => (FloatFn::Pi, 0),
            _ => return None,
        })
    }

    /// Transcendental (software libm, charged more gas).
    pub fn is_transcendental(self) -> bool {
        !matches!(
            self,
            FloatFn::Floor | FloatFn::Ceil | FloatFn::Trunc | FloatFn::Sign | FloatFn::Pi
        )
    }
}

/// Evaluates a float function with PostgreSQL's domain checks and error texts.
pub fn call(f: FloatFn, a: f64, b: f64) -> Result<f64> {
    let range = || SqlError::Type("input is out of range".into());
    let r = match f {
        FloatFn::Sqrt => {
            if a < 0.0 {
                return Err(SqlError::Type(
                    "cannot take square root of a negative number".into(),
                ));
            }
            libm::sqrt(a)
        }
        FloatFn::Cbrt => libm::cbrt(a),
        FloatFn::Exp => {
            let r = libm::exp(a);
            if r.is_infinite() && a.is_finite() {
                return Err(overflow());
            }
            if r == 0.0 && a.is_finite() {
                return Err(underflow());
            }
            r
        }
        FloatFn::Ln | FloatFn::Log10 => {
            if a == 0.0 {
                return Err(SqlError::Type("cannot take logarithm of zero".into()));
            }
            if a < 0.0 {
                return Err(SqlError::Type(
                    "cannot take logarithm of a negative number".into(),
                ));
            }
            if f == FloatFn::Ln {
                libm::log(a)
            } else {
                libm::log10(a)
            }
        }
        FloatFn::Power => {
            if a == 0.0 && b < 0.0 {
                return Err(SqlError::Type(
                    "zero raised to a negative power is undefined".into(),
                ));
            }
            if a < 0.0 && b.is_finite() && b.floor() != b {
                return Err(SqlError::Type(
                    "a negative number raised to a non-integer power yields a complex result"
                        .into(),
                ));
            }
            let r = libm::pow(a, b);
            if r.is_infinite() && a.is_finite() && b.is_finite() {
                return Err(overflow());
            }
            if r == 0.0 && a != 0.0 && a.is_finite() && b.is_finite() {
                return Err(underflow());
            }
            r
        }
        FloatFn::Sin | FloatFn::Cos | FloatFn::Tan => {
            if a.is_infinite() {
                return Err(range());
            }
            match f {
                FloatFn::Sin => libm::sin(a),
                FloatFn::Cos => libm::cos(a),
                _ => libm::tan(a),
            }
        }
        FloatFn::Asin | FloatFn::Acos => {
            if !(-1.0..=1.0).contains(&a) && !a.is_nan() {
                return Err(range());
            }
            if f == FloatFn::Asin {
                libm::asin(a)
            } else {
                libm::acos(a)
            }
        }
        FloatFn::Atan => libm::atan(a),
        FloatFn::Atan2 => libm::atan2(a, b),
        FloatFn::Floor => libm::floor(a),
        FloatFn::Ceil => libm::ceil(a),
        FloatFn::Trunc => libm::trunc(a),
        FloatFn::Sign => {
            if a > 0.0 {
                1.0
            } else if a < 0.0 {
                -1.0
            } else {
                0.0
            }
        }
        FloatFn::Degrees => {
            let r = a * (180.0 / std::f64::consts::PI);
            if r.is_infinite() && a.is_finite() {
                return Err(overflow());
            }
            r
        }
        FloatFn::Radians => a * (std::f64::consts::PI / 180.0),
        FloatFn::Pi => std::f64::consts::PI,
    };
    Ok(canon64(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_text_output() {
        for (x, s) in [
            (1e15, "1e+15"),
            (1e14, "100000000000000"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5, "1.5"),
            (-2.0, "-2"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1.0 / 3.0, "0.3333333333333333"),
            (123.456, "123.456"),
            (1e100, "1e+100"),
            (-1.25e-10, "-1.25e-10"),
            (-0.0, "-0"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(format64(x), s, "{x:e}");
        }
        for (x, s) in [
            (0.1f32, "0.1"),
            (1e6f32, "1e+06"),
            (100000.0f32, "100000"),
            (12345679.0f32, "1.2345679e+07"),
            // a tie between two shortest candidates goes to the even digit (Ryu, PostgreSQL)
            (2_234_568.2_f32, "2.2345682e+06"),
        ] {
            assert_eq!(format32(x), s);
        }
    }

    #[test]
    fn parse_and_ranges() {
        assert_eq!(parse64(" 1.5 ").unwrap(), 1.5);
        assert!(parse64("-Infinity").unwrap().is_infinite());
        assert_eq!(parse64("NaN").unwrap().to_bits(), NAN64_BITS);
        assert!(parse64("1e400").is_err());
        assert!(parse64("1e-400").is_err());
        assert_eq!(parse64("0e-400").unwrap(), 0.0);
        assert!(parse64("abc").is_err());
        assert!(parse32("1e39").is_err());
        assert_eq!(parse32("0.1").unwrap(), 0.1f32);
    }

    #[test]
    fn order_and_arith() {
        let nan = f64::NAN;
        assert_eq!(cmp64(nan, f64::INFINITY), Ordering::Greater);
        assert_eq!(cmp64(nan, nan), Ordering::Equal);
        assert_eq!(cmp64(-0.0, 0.0), Ordering::Equal);
        assert!(matches!(
            arith64(ArithOp::Div, 1.0, 0.0),
            Err(SqlError::DivisionByZero)
        ));
        assert!(arith64(ArithOp::Mul, 1e308, 10.0).is_err());
        assert!(arith64(ArithOp::Mul, 1e-308, 1e-100).is_err());
        let r = arith64(ArithOp::Sub, f64::INFINITY, f64::INFINITY).unwrap();
        assert_eq!(r.to_bits(), NAN64_BITS);
        assert_eq!(to_int(2.5, i64::MIN, i64::MAX, "bigint").unwrap(), 2);
        assert_eq!(to_int(3.5, i64::MIN, i64::MAX, "bigint").unwrap(), 4);
        assert!(to_int(1e10, -(1 << 31), (1 << 31) - 1, "integer").is_err());
        assert!(to_int(9.3e18, i64::MIN, i64::MAX, "bigint").is_err());
        assert!(to_int(f64::NAN, i64::MIN, i64::MAX, "bigint").is_err());
        assert_eq!(
            to_decimal(1.0 / 3.0, 15).unwrap().to_string(),
            "0.333333333333333"
        );
        assert_eq!(to_decimal(2.0, 15).unwrap().to_string(), "2");
        assert_eq!(
            to_decimal(1e20, 15).unwrap().to_string(),
            "100000000000000000000"
        );
        assert_eq!(from_decimal64(&Decimal::parse("0.1").unwrap()), 0.1);
        assert_eq!(
            call(FloatFn::Sqrt, 2.0, 0.0).unwrap(),
            std::f64::consts::SQRT_2
        );
        assert!(call(FloatFn::Sqrt, -1.0, 0.0).is_err());
    }
}
