//! Byte encodings: order-preserving keys (memcomparable) for primary keys and
//! index entries, and a compact tagged row format for table rows.

use crate::decimal::Decimal;
use crate::error::{Result, SqlError};
use crate::value::Value;

fn corrupt() -> SqlError {
    SqlError::Storage("corrupt row encoding".into())
}

fn push_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    if !bytes.contains(&0) {
        // the common case: nothing to escape
        out.reserve(bytes.len() + 2);
        out.extend_from_slice(bytes);
    } else {
        for &b in bytes {
            out.push(b);
            if b == 0 {
                out.push(0xff);
            }
        }
    }
    out.push(0);
    out.push(1);
}

/// Appends the order-preserving encoding of one key value. Values of the
/// same column type sort like SQL; NULL sorts first.
pub fn encode_key(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(0x00),
        Value::Bool(b) => {
            out.push(0x10);
            out.push(u8::from(*b));
        }
        Value::Int(i) => {
            out.push(0x20);
            out.extend_from_slice(&((*i as u64) ^ (1u64 << 63)).to_be_bytes());
        }
        Value::Ts(i) => {
            out.push(0x21);
            out.extend_from_slice(&((*i as u64) ^ (1u64 << 63)).to_be_bytes());
        }
        Value::Num(d) => {
            out.push(0x30);
            encode_decimal_key(out, d);
        }
        Value::Float(x) => {
            out.push(0x38);
            out.extend_from_slice(&float_key(*x));
        }
        Value::Real(x) => {
            out.push(0x38);
            out.extend_from_slice(&float_key(f64::from(*x)));
        }
        Value::Text(s) => {
            out.push(0x40);
            push_escaped(out, s.as_bytes());
        }
        Value::Bytes(b) => {
            out.push(0x50);
            push_escaped(out, b);
        }
        // arrays are never stored; this keys DISTINCT, GROUP BY and set operations: each
        // element after a 01 byte, then 00 (a prefix sorts first)
        Value::Array(a) => {
            out.push(0x60);
            for v in &a.items {
                out.push(1);
                encode_key(out, v);
            }
            out.push(0);
        }
    }
}

/// Order-preserving bytes of a float in PostgreSQL's order: -0 encodes as 0, every NaN as
/// the canonical NaN, which sorts above +Infinity (REAL values are widened exactly, so both
/// float types share one encoding).
pub fn float_key(x: f64) -> [u8; 8] {
    let x = if x == 0.0 {
        0.0
    } else {
        crate::float::canon64(x)
    };
    let bits = x.to_bits();
    let k = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1u64 << 63)
    };
    k.to_be_bytes()
}

// The exponent fits u16 by construction: at most 39 digits and a scale of at most MAX_SCALE
// (38) put it within 0x4000 ± 39.
#[allow(clippy::cast_possible_truncation)]
fn encode_decimal_key(out: &mut Vec<u8>, d: &Decimal) {
    let n = d.normalized();
    if n.is_zero() {
        out.push(1);
        return;
    }
    let digits = n.mantissa().unsigned_abs().to_string();
    // exponent of the most significant digit, biased to stay positive
    let exp = digits.len() as i64 - 1 - i64::from(n.scale()) + 0x4000;
    let mut body = Vec::with_capacity(digits.len() + 3);
    body.extend_from_slice(&(exp as u16).to_be_bytes());
    for c in digits.bytes() {
        body.push(c - b'0' + 1);
    }
    body.push(0);
    if n.signum() < 0 {
        out.push(0);
        out.extend(body.iter().map(|b| !b));
    } else {
        out.push(2);
        out.extend(body);
    }
}

/// Encodes a list of key values.
pub fn encode_key_tuple(vals: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in vals {
        encode_key(&mut out, v);
    }
    out
}

/// The u32 length prefix of a text or bytes value in a row.
fn row_len(n: usize) -> Result<[u8; 4]> {
    u32::try_from(n)
        .map(u32::to_le_bytes)
        .map_err(|_| SqlError::Overflow(format!("a value of {n} bytes does not fit in a row")))
}

/// Encodes a row (all columns, in table order). A text or bytes value longer than u32::MAX
/// bytes is an error.
pub fn encode_row(vals: &[Value]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_row_into(&mut out, vals)?;
    Ok(out)
}

/// [`encode_row`] into `out` (cleared first; its room reused).
pub fn encode_row_into(out: &mut Vec<u8>, vals: &[Value]) -> Result<()> {
    out.clear();
    let size: usize = vals
        .iter()
        .map(|v| match v {
            Value::Null | Value::Bool(_) => 1,
            Value::Int(_) | Value::Ts(_) => 9,
            Value::Num(_) => 18,
            Value::Float(_) => 9,
            Value::Real(_) => 5,
            Value::Text(s) => 5 + s.len(),
            Value::Bytes(b) => 5 + b.len(),
            Value::Array(_) => 0,
        })
        .sum();
    out.reserve(size);
    for v in vals {
        match v {
            Value::Null => out.push(0),
            Value::Bool(b) => out.push(if *b { 2 } else { 1 }),
            Value::Int(i) => {
                out.push(3);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Value::Ts(i) => {
                out.push(4);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Value::Num(d) => {
                out.push(5);
                out.push(scale_byte(d));
                out.extend_from_slice(&d.mantissa().to_le_bytes());
            }
            Value::Float(x) => {
                out.push(8);
                out.extend_from_slice(&crate::float::canon64(*x).to_le_bytes());
            }
            Value::Real(x) => {
                out.push(9);
                out.extend_from_slice(&crate::float::canon32(*x).to_le_bytes());
            }
            Value::Text(s) => {
                out.push(6);
                out.extend_from_slice(&row_len(s.len())?);
                out.extend_from_slice(s.as_bytes());
            }
            Value::Bytes(b) => {
                out.push(7);
                out.extend_from_slice(&row_len(b.len())?);
                out.extend_from_slice(b);
            }
            Value::Array(_) => {
                return Err(SqlError::Type(
                    "arrays cannot be stored in a table row".into(),
                ))
            }
        }
    }
    Ok(())
}

/// A decimal's scale as the one byte of the row format.
// A `Decimal`'s scale is at most MAX_SCALE (38, checked by every constructor), so it fits.
#[allow(clippy::cast_possible_truncation)]
fn scale_byte(d: &Decimal) -> u8 {
    d.scale() as u8
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if buf.len() < n {
        return Err(corrupt());
    }
    let (a, b) = buf.split_at(n);
    *buf = b;
    Ok(a)
}

/// A stored text value as `&str`: ASCII (the common case) checked by a word-at-a-time scan
/// instead of the general UTF-8 validation; anything else validated in full (invalid UTF-8
/// is a corrupt row either way).
fn stored_str(b: &[u8]) -> Result<&str> {
    if b.is_ascii() {
        // SAFETY: every ASCII byte sequence is valid UTF-8.
        Ok(unsafe { std::str::from_utf8_unchecked(b) })
    } else {
        std::str::from_utf8(b).map_err(|_| corrupt())
    }
}

/// Decodes a row written by [`encode_row`].
pub fn decode_row(buf: &[u8]) -> Result<Vec<Value>> {
    let mut vals = Vec::new();
    decode_row_into(&mut vals, buf)?;
    Ok(vals)
}

/// Decodes a row written by [`encode_row`] into `vals`, replacing its contents: a text value
/// decoded where `vals` already holds a text reuses that string's buffer (point statements
/// decode row after row into one buffer without allocating).
pub fn decode_row_into(vals: &mut Vec<Value>, mut buf: &[u8]) -> Result<()> {
    let mut i = 0usize;
    while !buf.is_empty() {
        if buf.first() == Some(&6) {
            if let Some(Value::Text(s)) = vals.get_mut(i) {
                take(&mut buf, 1)?;
                let b: [u8; 4] = take(&mut buf, 4)?.try_into().map_err(|_| corrupt())?;
                let n = u32::from_le_bytes(b) as usize;
                let text = stored_str(take(&mut buf, n)?)?;
                s.clear();
                s.push_str(text);
                i += 1;
                continue;
            }
        }
        let tag = take(&mut buf, 1)?[0];
        let v = match tag {
            0 => Value::Null,
            1 => Value::Bool(false),
            2 => Value::Bool(true),
            3 | 4 => {
                let b: [u8; 8] = take(&mut buf, 8)?.try_into().map_err(|_| corrupt())?;
                let i = i64::from_le_bytes(b);
                if tag == 3 {
                    Value::Int(i)
                } else {
                    Value::Ts(i)
                }
            }
            5 => {
                let s = u32::from(take(&mut buf, 1)?[0]);
                let b: [u8; 16] = take(&mut buf, 16)?.try_into().map_err(|_| corrupt())?;
                Value::Num(Decimal::new(i128::from_le_bytes(b), s)?)
            }
            6 | 7 => {
                let b: [u8; 4] = take(&mut buf, 4)?.try_into().map_err(|_| corrupt())?;
                let n = u32::from_le_bytes(b) as usize;
                let bytes = take(&mut buf, n)?;
                if tag == 6 {
                    Value::Text(stored_str(bytes)?.to_owned())
                } else {
                    Value::Bytes(bytes.to_vec())
                }
            }
            8 => {
                let b: [u8; 8] = take(&mut buf, 8)?.try_into().map_err(|_| corrupt())?;
                Value::Float(crate::float::canon64(f64::from_le_bytes(b)))
            }
            9 => {
                let b: [u8; 4] = take(&mut buf, 4)?.try_into().map_err(|_| corrupt())?;
                Value::Real(crate::float::canon32(f32::from_le_bytes(b)))
            }
            _ => return Err(corrupt()),
        };
        match vals.get_mut(i) {
            Some(slot) => *slot = v,
            None => vals.push(v),
        }
        i += 1;
    }
    vals.truncate(i);
    Ok(())
}

/// The smallest key greater than every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // all 0xff: no upper bound representable; use a long 0xff run
    vec![0xff; prefix.len() + 64]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dec(s: &str) -> Value {
        Value::Num(Decimal::parse(s).unwrap())
    }

    #[test]
    fn decimal_keys_sort_numerically() {
        let vals = [
            "-100.5", "-2", "-1.25", "-1.2", "0", "0.001", "1.2", "1.23", "9", "10.00", "11",
        ];
        let keys: Vec<_> = vals.iter().map(|s| encode_key_tuple(&[dec(s)])).collect();
        for w in keys.windows(2) {
            assert!(w[0] < w[1]);
        }
        assert_eq!(
            encode_key_tuple(&[dec("10.00")]),
            encode_key_tuple(&[dec("10")])
        );
    }

    /// Decoding into a used buffer gives the same row as a fresh decode, whatever the buffer
    /// held (longer, shorter, texts where the new row has other types), and reuses the text
    /// buffer it finds in place.
    #[test]
    fn decode_into_a_used_buffer() {
        let a = vec![Value::Text("alice".into()), dec("1.50"), Value::Int(7)];
        let b = vec![
            Value::Int(1),
            Value::Text("a much longer text value".into()),
        ];
        let c = vec![Value::Text("x".into())];
        let mut buf = vec![Value::Text(String::with_capacity(64)); 5];
        let cap = match &buf[0] {
            Value::Text(s) => s.capacity(),
            _ => 0,
        };
        for row in [&a, &b, &c, &a] {
            decode_row_into(&mut buf, &encode_row(row).unwrap()).unwrap();
            assert_eq!(format!("{buf:?}"), format!("{row:?}"));
        }
        match &buf[0] {
            Value::Text(s) => assert!(s.capacity() >= cap.min(64), "text buffer not reused"),
            v => panic!("{v:?}"),
        }
        assert!(decode_row_into(&mut buf, &[6, 9, 0, 0, 0, b'a']).is_err());
    }

    proptest! {
        #[test]
        fn int_and_text_keys_preserve_order(a: i64, b: i64, s: String, t: String) {
            let ka = encode_key_tuple(&[Value::Int(a), Value::Text(s.clone())]);
            let kb = encode_key_tuple(&[Value::Int(b), Value::Text(t.clone())]);
            prop_assert_eq!(ka.cmp(&kb), (a, s.as_bytes()).cmp(&(b, t.as_bytes())));
        }

        #[test]
        fn rows_roundtrip(a: i64, s: String, m: i64, sc in 0u32..10, bs: Vec<u8>) {
            let row = vec![Value::Int(a), Value::Text(s), Value::Null,
                Value::Num(Decimal::new(i128::from(m), sc).unwrap()), Value::Bytes(bs), Value::Bool(true)];
            let back = decode_row(&encode_row(&row).unwrap()).unwrap();
            prop_assert_eq!(format!("{row:?}"), format!("{back:?}"));
        }

        #[test]
        fn decode_never_panics(bytes: Vec<u8>) {
            let _ = decode_row(&bytes);
        }
    }

    #[test]
    fn float_keys_sort_like_postgresql() {
        let vals = [
            f64::NEG_INFINITY,
            -1e300,
            -1.5,
            -f64::MIN_POSITIVE,
            0.0,
            5e-324,
            1.0,
            1e300,
            f64::INFINITY,
            f64::NAN,
        ];
        let keys: Vec<_> = vals
            .iter()
            .map(|x| encode_key_tuple(&[Value::Float(*x)]))
            .collect();
        for w in keys.windows(2) {
            assert!(w[0] < w[1]);
        }
        assert_eq!(
            encode_key_tuple(&[Value::Float(-0.0)]),
            encode_key_tuple(&[Value::Float(0.0)])
        );
        assert_eq!(
            encode_key_tuple(&[Value::Float(f64::from_bits(0xfff8_0000_0000_0001))]),
            encode_key_tuple(&[Value::Float(f64::NAN)])
        );
        let row = vec![Value::Float(-0.0), Value::Real(0.1), Value::Float(f64::NAN)];
        let back = decode_row(&encode_row(&row).unwrap()).unwrap();
        assert!(matches!(back[0], Value::Float(x) if x.to_bits() == (-0.0f64).to_bits()));
        assert!(matches!(back[1], Value::Real(x) if x == 0.1f32));
        assert!(matches!(back[2], Value::Float(x) if x.to_bits() == crate::float::NAN64_BITS));
    }

    proptest! {
        #[test]
        fn float_keys_preserve_order(a: f64, b: f64) {
            let ka = encode_key_tuple(&[Value::Float(a)]);
            let kb = encode_key_tuple(&[Value::Float(b)]);
            prop_assert_eq!(ka.cmp(&kb), crate::float::cmp64(a, b));
        }
    }

    #[test]
    fn prefix_end_works() {
        assert_eq!(prefix_end(b"ab"), b"ac".to_vec());
        assert_eq!(prefix_end(&[1, 0xff]), vec![2]);
    }
}
