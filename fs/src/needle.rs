//! Needle encoding and decoding (byte layout in `fs/FORMAT.md`).
//!
//! A needle is one stored blob: a 32-byte header, the data, an optional name and MIME type,
//! and a footer holding the CRC32C of everything before it, padded with zeros to a multiple
//! of 8 bytes. Decoding checks the magic, every length, the padding and the CRC before any
//! byte is handed out, so a damaged needle is an error, never wrong data.

/// Magic at the start of every needle: the bytes `ANDL` read as a little-endian u32.
pub const NEEDLE_MAGIC: u32 = u32::from_le_bytes(*b"ANDL");
/// Header length in bytes.
pub const HEADER_LEN: usize = 32;
/// Footer (CRC32C) length in bytes, before padding.
pub const FOOTER_LEN: usize = 4;
/// Needles start and end on multiples of this.
pub const ALIGN: usize = 8;
/// The smallest possible needle (empty data, no name, no MIME type).
pub const MIN_NEEDLE_LEN: usize = align_up(HEADER_LEN + FOOTER_LEN);
pub use crate::limits::{MAX_DATA_LEN, MAX_OVERHEAD};

/// The needle marks a deletion of `key` (a tombstone); it has no data.
pub const FLAG_TOMBSTONE: u8 = 0x01;
/// A name is stored.
pub const FLAG_NAME: u8 = 0x02;
/// A MIME type is stored.
pub const FLAG_MIME: u8 = 0x04;
/// `last_modified` is meaningful.
pub const FLAG_LAST_MODIFIED: u8 = 0x08;
const KNOWN_FLAGS: u8 = FLAG_TOMBSTONE | FLAG_NAME | FLAG_MIME | FLAG_LAST_MODIFIED;

/// Rounds `n` up to a multiple of [`ALIGN`].
pub const fn align_up(n: usize) -> usize {
    (n + ALIGN - 1) & !(ALIGN - 1)
}

/// Errors from decoding or encoding a needle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NeedleError {
    /// Fewer bytes than the header or than the lengths the header announces.
    #[error("needle truncated: have {have} bytes, need {need}")]
    Truncated {
        /// Bytes available.
        have: usize,
        /// Bytes required.
        need: usize,
    },
    /// The magic number is wrong (not a needle, or overwritten).
    #[error("bad needle magic {0:#010x}")]
    BadMagic(u32),
    /// Unknown flag bits, inconsistent lengths or non-zero padding.
    #[error("malformed needle: {0}")]
    Malformed(&'static str),
    /// The stored CRC32C does not match the content.
    #[error("needle CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc {
        /// CRC in the footer.
        stored: u32,
        /// CRC of the bytes read.
        computed: u32,
    },
    /// Data, name or MIME type too long to encode.
    #[error("{0} too long")]
    TooLong(&'static str),
}

/// Optional metadata stored with a needle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// Original file name (at most 255 bytes of UTF-8).
    pub name: Option<String>,
    /// MIME type (at most 255 bytes of UTF-8).
    pub mime: Option<String>,
    /// Last modification time, Unix seconds.
    pub last_modified: Option<u64>,
}

/// The fixed header of a needle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Random secret that must match the file id's cookie.
    pub cookie: u32,
    /// The needle's key within its volume.
    pub key: u64,
    /// Data length in bytes.
    pub size: u32,
    /// `FLAG_*` bits.
    pub flags: u8,
    /// Name length in bytes.
    pub name_len: u8,
    /// MIME type length in bytes.
    pub mime_len: u8,
    /// Unix seconds, meaningful when `FLAG_LAST_MODIFIED` is set.
    pub last_modified: u64,
}

impl Header {
    /// Parses and sanity-checks a header from the first [`HEADER_LEN`] bytes of `b`.
    pub fn parse(b: &[u8]) -> Result<Header, NeedleError> {
        if b.len() < HEADER_LEN {
            return Err(NeedleError::Truncated {
                have: b.len(),
                need: HEADER_LEN,
            });
        }
        let magic = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if magic != NEEDLE_MAGIC {
            return Err(NeedleError::BadMagic(magic));
        }
        let h = Header {
            cookie: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            key: u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
            size: u32::from_le_bytes([b[16], b[17], b[18], b[19]]),
            flags: b[20],
            name_len: b[21],
            mime_len: b[22],
            last_modified: u64::from_le_bytes([
                b[24], b[25], b[26], b[27], b[28], b[29], b[30], b[31],
            ]),
        };
        if b[23] != 0 {
            return Err(NeedleError::Malformed("reserved header byte is not zero"));
        }
        if h.flags & !KNOWN_FLAGS != 0 {
            return Err(NeedleError::Malformed("unknown flag bits"));
        }
        if (h.flags & FLAG_NAME == 0) != (h.name_len == 0) {
            return Err(NeedleError::Malformed("name flag and length disagree"));
        }
        if (h.flags & FLAG_MIME == 0) != (h.mime_len == 0) {
            return Err(NeedleError::Malformed("mime flag and length disagree"));
        }
        if h.flags & FLAG_LAST_MODIFIED == 0 && h.last_modified != 0 {
            return Err(NeedleError::Malformed("last-modified set without its flag"));
        }
        if h.flags & FLAG_TOMBSTONE != 0 && h.size != 0 {
            return Err(NeedleError::Malformed("tombstone with data"));
        }
        if h.size as usize > MAX_DATA_LEN {
            return Err(NeedleError::Malformed("data size too large"));
        }
        Ok(h)
    }

    /// Whether this needle is a tombstone.
    pub fn is_tombstone(&self) -> bool {
        self.flags & FLAG_TOMBSTONE != 0
    }

    /// Total on-disk length of the needle this header starts, padding included.
    pub fn total_len(&self) -> usize {
        total_len(
            self.size as usize,
            self.name_len as usize,
            self.mime_len as usize,
        )
    }

    fn bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&NEEDLE_MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&self.cookie.to_le_bytes());
        b[8..16].copy_from_slice(&self.key.to_le_bytes());
        b[16..20].copy_from_slice(&self.size.to_le_bytes());
        b[20..24].copy_from_slice(&[self.flags, self.name_len, self.mime_len, 0]);
        b[24..32].copy_from_slice(&self.last_modified.to_le_bytes());
        b
    }
}

/// On-disk length of a needle with these field lengths.
pub const fn total_len(data: usize, name: usize, mime: usize) -> usize {
    align_up(HEADER_LEN + data + name + mime + FOOTER_LEN)
}

/// A needle under construction: room for the header, then the data, appended as it arrives
/// (an upload is read straight into it), then [`NeedleBuf::seal`]ed into the encoded needle in
/// the same allocation — the data is never copied a second time.
#[derive(Debug)]
pub struct NeedleBuf {
    buf: Vec<u8>,
}

impl Default for NeedleBuf {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl NeedleBuf {
    /// An empty needle buffer with room for `data` bytes of data and the largest metadata,
    /// so sealing it does not reallocate.
    pub fn with_capacity(data: usize) -> Self {
        let mut buf = Vec::with_capacity(data.saturating_add(MAX_OVERHEAD));
        buf.resize(HEADER_LEN, 0);
        NeedleBuf { buf }
    }

    /// A needle buffer holding a copy of `data`.
    pub fn from_data(data: &[u8]) -> Self {
        let mut b = Self::with_capacity(data.len());
        b.extend(data);
        b
    }

    /// Appends data bytes.
    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Makes room for at least `more` further data bytes plus the largest metadata.
    pub fn reserve_exact(&mut self, more: usize) {
        let want = self.data_len().saturating_add(more);
        let need = HEADER_LEN
            .saturating_add(want)
            .saturating_add(MAX_OVERHEAD - HEADER_LEN);
        if need > self.buf.capacity() {
            self.buf.reserve_exact(need - self.buf.len());
        }
    }

    /// Data bytes held.
    pub fn data_len(&self) -> usize {
        self.buf.len() - HEADER_LEN
    }

    /// The data held.
    pub fn data(&self) -> &[u8] {
        &self.buf[HEADER_LEN..]
    }

    /// Bytes allocated (what the buffer costs in memory).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Fills in the header, appends name, MIME type, CRC32C footer and padding, and returns
    /// the encoded needle. `tombstone` needles carry no data.
    pub fn seal(
        self,
        key: u64,
        cookie: u32,
        meta: &Meta,
        tombstone: bool,
    ) -> Result<Vec<u8>, NeedleError> {
        let size = self.data_len();
        if size > MAX_DATA_LEN {
            return Err(NeedleError::TooLong("data"));
        }
        if tombstone && size != 0 {
            return Err(NeedleError::Malformed("tombstone with data"));
        }
        let name = meta.name.as_deref().unwrap_or("").as_bytes();
        let mime = meta.mime.as_deref().unwrap_or("").as_bytes();
        let name_len = u8::try_from(name.len()).map_err(|_| NeedleError::TooLong("name"))?;
        let mime_len = u8::try_from(mime.len()).map_err(|_| NeedleError::TooLong("mime type"))?;
        let mut flags = 0u8;
        if tombstone {
            flags |= FLAG_TOMBSTONE;
        }
        if name_len > 0 {
            flags |= FLAG_NAME;
        }
        if mime_len > 0 {
            flags |= FLAG_MIME;
        }
        if meta.last_modified.is_some() {
            flags |= FLAG_LAST_MODIFIED;
        }
        let h = Header {
            cookie,
            key,
            size: u32::try_from(size).map_err(|_| NeedleError::TooLong("data"))?,
            flags,
            name_len,
            mime_len,
            last_modified: meta.last_modified.unwrap_or(0),
        };
        let total = h.total_len();
        let mut out = self.buf;
        out.reserve_exact(total.saturating_sub(out.len()));
        out[..HEADER_LEN].copy_from_slice(&h.bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(mime);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.resize(total, 0);
        Ok(out)
    }
}

/// Encodes a needle. `tombstone` needles carry no data.
pub fn encode(
    key: u64,
    cookie: u32,
    data: &[u8],
    meta: &Meta,
    tombstone: bool,
) -> Result<Vec<u8>, NeedleError> {
    if data.len() > MAX_DATA_LEN {
        return Err(NeedleError::TooLong("data"));
    }
    NeedleBuf::from_data(data).seal(key, cookie, meta, tombstone)
}

/// The CRC32C stored in the footer of an encoded needle (as produced by [`encode`]).
pub fn footer_crc(encoded: &[u8]) -> Option<u32> {
    let h = Header::parse(encoded).ok()?;
    let at = HEADER_LEN + h.size as usize + h.name_len as usize + h.mime_len as usize;
    let b = encoded.get(at..at + FOOTER_LEN)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// A decoded, verified needle. Owns the buffer it was read into (no copy of the data).
#[derive(Debug, Clone)]
pub struct Needle {
    /// The header.
    pub header: Header,
    /// The CRC32C stored in the footer (verified).
    pub crc: u32,
    buf: Vec<u8>,
}

impl Needle {
    /// Decodes and verifies a needle that starts at `buf[0]`. Bytes past the needle's
    /// length are ignored (and dropped).
    pub fn decode(mut buf: Vec<u8>) -> Result<Needle, NeedleError> {
        let header = Header::parse(&buf)?;
        let total = header.total_len();
        if buf.len() < total {
            return Err(NeedleError::Truncated {
                have: buf.len(),
                need: total,
            });
        }
        let body =
            HEADER_LEN + header.size as usize + header.name_len as usize + header.mime_len as usize;
        let stored = u32::from_le_bytes([buf[body], buf[body + 1], buf[body + 2], buf[body + 3]]);
        if buf[body + FOOTER_LEN..total].iter().any(|&b| b != 0) {
            return Err(NeedleError::Malformed("non-zero padding"));
        }
        let computed = crc32c::crc32c(&buf[..body]);
        if stored != computed {
            return Err(NeedleError::Crc { stored, computed });
        }
        let name_start = HEADER_LEN + header.size as usize;
        let meta_end = name_start + header.name_len as usize + header.mime_len as usize;
        if std::str::from_utf8(&buf[name_start..meta_end]).is_err() {
            return Err(NeedleError::Malformed("name or mime type is not UTF-8"));
        }
        buf.truncate(total);
        Ok(Needle {
            header,
            crc: stored,
            buf,
        })
    }

    /// The stored data.
    pub fn data(&self) -> &[u8] {
        &self.buf[HEADER_LEN..HEADER_LEN + self.header.size as usize]
    }

    /// Byte range of the data inside [`Needle::into_buf`]'s buffer.
    pub fn data_range(&self) -> std::ops::Range<usize> {
        HEADER_LEN..HEADER_LEN + self.header.size as usize
    }

    /// The whole encoded needle.
    pub fn into_buf(self) -> Vec<u8> {
        self.buf
    }

    fn text(&self, start: usize, len: u8) -> Option<&str> {
        if len == 0 {
            return None;
        }
        std::str::from_utf8(&self.buf[start..start + len as usize]).ok()
    }

    /// The stored name.
    pub fn name(&self) -> Option<&str> {
        self.text(HEADER_LEN + self.header.size as usize, self.header.name_len)
    }

    /// The stored MIME type.
    pub fn mime(&self) -> Option<&str> {
        self.text(
            HEADER_LEN + self.header.size as usize + self.header.name_len as usize,
            self.header.mime_len,
        )
    }

    /// Last-modified time (Unix seconds), if stored.
    pub fn last_modified(&self) -> Option<u64> {
        (self.header.flags & FLAG_LAST_MODIFIED != 0).then_some(self.header.last_modified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_with_meta() {
        let meta = Meta {
            name: Some("a.txt".into()),
            mime: Some("text/plain".into()),
            last_modified: Some(1_700_000_000),
        };
        let b = encode(42, 0xdead_beef, b"hello", &meta, false).unwrap();
        assert_eq!(b.len() % ALIGN, 0);
        assert_eq!(b.len(), total_len(5, 5, 10));
        let n = Needle::decode(b).unwrap();
        assert_eq!(n.data(), b"hello");
        assert_eq!(n.header.key, 42);
        assert_eq!(n.header.cookie, 0xdead_beef);
        assert_eq!(n.name(), Some("a.txt"));
        assert_eq!(n.mime(), Some("text/plain"));
        assert_eq!(n.last_modified(), Some(1_700_000_000));
    }

    #[test]
    fn built_in_place_equals_encoded_and_does_not_reallocate() {
        let meta = Meta {
            name: Some("n".repeat(255)),
            mime: Some("m".repeat(255)),
            last_modified: Some(3),
        };
        let mut b = NeedleBuf::with_capacity(1000);
        let cap = b.capacity();
        for chunk in [&[1u8; 300][..], &[2u8; 700][..]] {
            b.extend(chunk);
        }
        assert_eq!(b.data_len(), 1000);
        let data = b.data().to_vec();
        let sealed = b.seal(9, 8, &meta, false).unwrap();
        assert_eq!(sealed.capacity(), cap, "sealing reallocated");
        assert_eq!(sealed, encode(9, 8, &data, &meta, false).unwrap());
        let mut g = NeedleBuf::default();
        g.reserve_exact(10);
        g.extend(b"0123456789");
        assert_eq!(
            Needle::decode(g.seal(1, 1, &Meta::default(), false).unwrap())
                .unwrap()
                .data(),
            b"0123456789"
        );
    }

    #[test]
    fn empty_and_tombstone() {
        let b = encode(1, 2, b"", &Meta::default(), true).unwrap();
        assert_eq!(b.len(), MIN_NEEDLE_LEN);
        let n = Needle::decode(b).unwrap();
        assert!(n.header.is_tombstone());
        assert!(n.data().is_empty());
        assert_eq!(n.name(), None);
        assert!(encode(1, 2, b"x", &Meta::default(), true).is_err());
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let b = encode(7, 9, b"some data here", &Meta::default(), false).unwrap();
        for i in 0..b.len() * 8 {
            let mut c = b.clone();
            c[i / 8] ^= 1 << (i % 8);
            assert!(Needle::decode(c).is_err(), "flip of bit {i} undetected");
        }
    }

    #[test]
    fn truncation_is_detected() {
        let b = encode(7, 9, b"some data here", &Meta::default(), false).unwrap();
        for n in 0..b.len() {
            assert!(matches!(
                Needle::decode(b[..n].to_vec()),
                Err(NeedleError::Truncated { .. }) | Err(NeedleError::BadMagic(_))
            ));
        }
    }

    #[test]
    fn long_name_rejected() {
        let meta = Meta {
            name: Some("x".repeat(256)),
            ..Meta::default()
        };
        assert_eq!(
            encode(1, 1, b"", &meta, false),
            Err(NeedleError::TooLong("name"))
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Needle::decode(bytes);
        }

        #[test]
        fn decode_of_mutated_needle_never_panics_or_lies(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            pos in any::<prop::sample::Index>(),
            val in any::<u8>(),
        ) {
            let b = encode(5, 6, &data, &Meta::default(), false).unwrap();
            let mut c = b.clone();
            let i = pos.index(c.len());
            c[i] = val;
            match Needle::decode(c) {
                Ok(n) => prop_assert!(b[i] == val && n.data() == &data[..]),
                Err(_) => prop_assert!(b[i] != val),
            }
        }

        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..2000),
                      key in any::<u64>(), cookie in any::<u32>(),
                      name in proptest::option::of("[a-z.]{1,40}")) {
            let meta = Meta { name, ..Meta::default() };
            let n = Needle::decode(encode(key, cookie, &data, &meta, false).unwrap()).unwrap();
            prop_assert_eq!(n.data(), &data[..]);
            prop_assert_eq!(n.header.key, key);
            prop_assert_eq!(n.name(), meta.name.as_deref());
        }
    }
}
