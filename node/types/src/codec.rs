//! The deterministic binary codec for consensus data: big-endian integers, length-prefixed
//! byte strings, no optional padding. Every decoder is strict: trailing bytes, truncation and
//! oversize lengths are errors, never panics.

/// A decoding failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended early.
    #[error("truncated input: needed {needed} more bytes for {what}")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Bytes missing.
        needed: usize,
    },
    /// Bytes remain after a complete value.
    #[error("{0} trailing bytes after a complete value")]
    Trailing(usize),
    /// A field holds a value outside its domain.
    #[error("invalid {what}: {message}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// Why.
        message: String,
    },
}

// The u32 length and count prefixes rely on every consensus value fitting in a block
// (asserted in `crate::limits`).

/// Appends fields to a byte buffer.
#[derive(Default)]
pub struct Writer {
    /// The bytes written so far.
    pub buf: Vec<u8>,
}

impl Writer {
    /// An empty writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }
    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    /// u32 big-endian.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    /// u64 big-endian.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    /// u128 big-endian.
    pub fn u128(&mut self, v: u128) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    /// Fixed bytes, no length.
    pub fn fixed(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    /// A u32 length then the bytes.
    ///
    /// Every byte string of the consensus formats is bounded far below 4 GiB: a decoder accepts
    /// at most [`crate::MAX_BLOCK_SIZE`] bytes in all, and encoders write values that were
    /// decoded or built under the same limits.
    // The format fixes a u32 length; the lengths written are bounded by the limits above
    // (asserted below `u32::MAX` at compile time), so the cast never truncates.
    #[allow(clippy::cast_possible_truncation)]
    pub fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
    }
    /// An unsigned LEB128 varint (7 bits a byte, low first; at most 5 bytes for a u32).
    // Each byte holds 7 bits of `v` (masked), so the cast never truncates what it keeps.
    #[allow(clippy::cast_possible_truncation)]
    pub fn varint(&mut self, mut v: u32) {
        loop {
            let low = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.buf.push(low);
                return;
            }
            self.buf.push(low | 0x80);
        }
    }
    /// The buffer.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads fields from a byte slice.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Reads from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }
    /// Bytes consumed.
    pub fn position(&self) -> usize {
        self.pos
    }
    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
    /// `n` raw bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.data.len())
            .ok_or(DecodeError::Truncated {
                what,
                needed: n.saturating_sub(self.remaining()),
            })?;
        let s = self
            .data
            .get(self.pos..end)
            .ok_or(DecodeError::Truncated { what, needed: n })?;
        self.pos = end;
        Ok(s)
    }
    /// A fixed array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    /// One byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }
    /// u32 big-endian.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    /// u64 big-endian.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }
    /// u128 big-endian.
    pub fn u128(&mut self, what: &'static str) -> Result<u128, DecodeError> {
        Ok(u128::from_be_bytes(self.array(what)?))
    }
    /// A u32-length-prefixed byte string of at most `max` bytes.
    pub fn bytes(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.u32(what)? as usize;
        if n > max {
            return Err(DecodeError::Invalid {
                what,
                message: format!("length {n} exceeds {max}"),
            });
        }
        self.take(n, what)
    }
    /// An unsigned LEB128 varint in its canonical (shortest) form: a u32 at most, no
    /// redundant trailing zero groups.
    pub fn varint(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let mut v: u32 = 0;
        for i in 0..5u32 {
            let b = self.u8(what)?;
            let group = u32::from(b & 0x7f);
            if i == 4 && group > 0x0f {
                return Err(DecodeError::Invalid {
                    what,
                    message: "varint exceeds u32".into(),
                });
            }
            v |= group << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && group == 0 {
                    return Err(DecodeError::Invalid {
                        what,
                        message: "varint not in its shortest form".into(),
                    });
                }
                return Ok(v);
            }
        }
        Err(DecodeError::Invalid {
            what,
            message: "varint longer than 5 bytes".into(),
        })
    }
    /// Errors if bytes remain.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_strictness() {
        let mut w = Writer::default();
        w.u8(7);
        w.u64(42);
        w.u128(u128::MAX);
        w.bytes(b"hello");
        let buf = w.finish();
        let mut r = Reader::new(&buf);
        assert_eq!(r.u8("a").unwrap(), 7);
        assert_eq!(r.u64("b").unwrap(), 42);
        assert_eq!(r.u128("c").unwrap(), u128::MAX);
        assert_eq!(r.bytes(10, "d").unwrap(), b"hello");
        r.finish().unwrap();
        let mut r = Reader::new(&buf[..buf.len() - 1]);
        r.u8("a").unwrap();
        r.u64("b").unwrap();
        r.u128("c").unwrap();
        assert!(matches!(
            r.bytes(10, "d"),
            Err(DecodeError::Truncated { .. })
        ));
        let mut r = Reader::new(&buf);
        r.u8("a").unwrap();
        r.u64("b").unwrap();
        r.u128("c").unwrap();
        assert!(matches!(r.bytes(3, "d"), Err(DecodeError::Invalid { .. })));
    }

    #[test]
    fn varints_round_trip_and_only_the_shortest_form_decodes() {
        for v in [0u32, 1, 127, 128, 300, 16_383, 16_384, u32::MAX] {
            let mut w = Writer::default();
            w.varint(v);
            let buf = w.finish();
            let mut r = Reader::new(&buf);
            assert_eq!(r.varint("v").unwrap(), v);
            r.finish().unwrap();
        }
        // 1 written as two bytes (a redundant zero group) is not canonical.
        assert!(Reader::new(&[0x81, 0x00]).varint("v").is_err());
        // Past u32, and longer than 5 bytes.
        assert!(Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x1f])
            .varint("v")
            .is_err());
        assert!(Reader::new(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01])
            .varint("v")
            .is_err());
        assert!(matches!(
            Reader::new(&[0x80]).varint("v"),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
