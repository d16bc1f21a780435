//! Checked big-endian reading: every read checks the remaining length first, nothing panics.

use thiserror::Error;

/// Why a byte string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input ended early.
    #[error("truncated: needed {need} more bytes, {have} left")]
    Truncated { need: usize, have: usize },
    /// Bytes followed a complete message.
    #[error("{extra} unexpected bytes after the end of the message")]
    TrailingData { extra: usize },
    /// The message speaks another protocol version.
    #[error("unsupported protocol version {found} (this build speaks {supported})")]
    WrongVersion { found: u8, supported: u8 },
    /// The message type byte is not one this version defines.
    #[error("unknown message type 0x{found:02x}")]
    UnknownType { found: u8 },
}

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        match self.buf.split_at_checked(n) {
            Some((head, rest)) => {
                self.buf = rest;
                Ok(head)
            }
            None => Err(DecodeError::Truncated {
                need: n,
                have: self.buf.len(),
            }),
        }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// Rejects trailing bytes, so that one encoding maps to one message.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.buf.len() {
            0 => Ok(()),
            extra => Err(DecodeError::TrailingData { extra }),
        }
    }
}
