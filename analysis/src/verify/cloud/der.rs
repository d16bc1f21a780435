//! A minimal DER reader (definite lengths only, every length checked) for the few provider
//! extensions locus reads itself.

/// One TLV: its tag byte and contents.
pub(super) struct Tlv<'a> {
    pub(super) tag: u8,
    pub(super) value: &'a [u8],
}

/// Reads consecutive TLVs from a buffer.
pub(super) struct Der<'a> {
    buf: &'a [u8],
}

impl<'a> Der<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next TLV, or `None` when the bytes are not a well-formed definite-length TLV.
    /// Multi-byte tags are not supported (none of the structures read here uses them).
    pub(super) fn next(&mut self) -> Option<Tlv<'a>> {
        let (&tag, rest) = self.buf.split_first()?;
        if tag & 0x1f == 0x1f {
            return None;
        }
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            // Four length bytes are far beyond any certificate extension; 0 is indefinite.
            if n == 0 || n > 4 {
                return None;
            }
            let (bytes, rest) = rest.split_at_checked(n)?;
            let len = bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, rest)
        };
        let (value, rest) = rest.split_at_checked(len)?;
        self.buf = rest;
        Some(Tlv { tag, value })
    }

    /// The next TLV if it has `tag`.
    pub(super) fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        let t = self.next()?;
        (t.tag == tag).then_some(t.value)
    }
}

/// A non-negative DER INTEGER that fits a u64.
pub(super) fn uint(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value[0] & 0x80 != 0 {
        return None;
    }
    let first = value.iter().position(|b| *b != 0).unwrap_or(value.len());
    let digits = &value[first..];
    if digits.len() > 8 {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_and_long_lengths() {
        let mut d = Der::new(&[0x02, 0x01, 0x05, 0x0c, 0x81, 0x01, b'a']);
        assert_eq!(d.expect(0x02).map(uint), Some(Some(5)));
        assert_eq!(d.expect(0x0c), Some(&b"a"[..]));
        assert!(d.is_empty());
        assert!(Der::new(&[0x30, 0x05, 0x00]).next().is_none());
        assert!(Der::new(&[0x30, 0x80]).next().is_none());
        assert_eq!(uint(&[0x80]), None);
        assert_eq!(uint(&[0x00, 0xff]), Some(255));
    }
}
