//! Echo challenges and answers, carried one per QUIC datagram.
//!
//! Layout (version 1, big-endian):
//! - challenge: `version:u8 = 1 | type:u8 = 0x01 | seq:u64 | nonce:[u8; 32]` (42 bytes)
//! - answer: `version:u8 = 1 | type:u8 = 0x02 | seq:u64 | nonce:[u8; 32] | inside_ns:u64 |
//!   arrival:u64` (58 bytes), where `arrival` is the challenge's position in the order the
//!   responder received challenges on this connection (it feeds the signed transcript).
//!
//! No per-echo signature: QUIC's packet keys already tie every answer to the TLS session key.

use crate::codec::{DecodeError, Reader};
use crate::{Nonce, PROTOCOL_VERSION};

const TYPE_CHALLENGE: u8 = 0x01;
const TYPE_ANSWER: u8 = 0x02;

/// A prober's echo challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoChallenge {
    pub seq: u64,
    pub nonce: Nonce,
}

/// A responder's answer to one challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoAnswer {
    pub seq: u64,
    pub nonce: Nonce,
    /// Time between receiving the challenge and sending this answer, measured by the responder.
    pub inside_ns: u64,
    /// Position of the challenge in the responder's arrival order on this connection (from 0).
    pub arrival: u64,
}

impl EchoChallenge {
    pub const LEN: usize = 42;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[0] = PROTOCOL_VERSION;
        out[1] = TYPE_CHALLENGE;
        out[2..10].copy_from_slice(&self.seq.to_be_bytes());
        out[10..42].copy_from_slice(&self.nonce);
        out
    }

    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = header(buf, TYPE_CHALLENGE)?;
        let seq = r.u64()?;
        let nonce = r.array()?;
        r.finish()?;
        Ok(Self { seq, nonce })
    }
}

impl EchoAnswer {
    pub const LEN: usize = 58;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[0] = PROTOCOL_VERSION;
        out[1] = TYPE_ANSWER;
        out[2..10].copy_from_slice(&self.seq.to_be_bytes());
        out[10..42].copy_from_slice(&self.nonce);
        out[42..50].copy_from_slice(&self.inside_ns.to_be_bytes());
        out[50..58].copy_from_slice(&self.arrival.to_be_bytes());
        out
    }

    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = header(buf, TYPE_ANSWER)?;
        let seq = r.u64()?;
        let nonce = r.array()?;
        let inside_ns = r.u64()?;
        let arrival = r.u64()?;
        r.finish()?;
        Ok(Self {
            seq,
            nonce,
            inside_ns,
            arrival,
        })
    }
}

/// Checks version and type; version first, so a future version gets `WrongVersion`
/// rather than a confusing type or length error.
fn header(buf: &[u8], expected_type: u8) -> Result<Reader<'_>, DecodeError> {
    let mut r = Reader::new(buf);
    let version = r.u8()?;
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::WrongVersion {
            found: version,
            supported: PROTOCOL_VERSION,
        });
    }
    let ty = r.u8()?;
    if ty != expected_type {
        return Err(DecodeError::UnknownType { found: ty });
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn challenge_round_trips(seq: u64, nonce: [u8; 32]) {
            let c = EchoChallenge { seq, nonce };
            prop_assert_eq!(EchoChallenge::decode(&c.encode()), Ok(c));
        }

        #[test]
        fn answer_round_trips(seq: u64, nonce: [u8; 32], inside_ns: u64, arrival: u64) {
            let a = EchoAnswer { seq, nonce, inside_ns, arrival };
            prop_assert_eq!(EchoAnswer::decode(&a.encode()), Ok(a));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes: Vec<u8>) {
            let _ = EchoChallenge::decode(&bytes);
            let _ = EchoAnswer::decode(&bytes);
        }
    }

    #[test]
    fn every_prefix_is_truncated() {
        let c = EchoChallenge {
            seq: 7,
            nonce: [9; 32],
        }
        .encode();
        for n in 0..c.len() {
            assert!(
                matches!(
                    EchoChallenge::decode(&c[..n]),
                    Err(DecodeError::Truncated { .. })
                ),
                "prefix {n}"
            );
        }
        let a = EchoAnswer {
            seq: 7,
            nonce: [9; 32],
            inside_ns: 1,
            arrival: 2,
        }
        .encode();
        for n in 0..a.len() {
            assert!(
                matches!(
                    EchoAnswer::decode(&a[..n]),
                    Err(DecodeError::Truncated { .. })
                ),
                "prefix {n}"
            );
        }
    }

    #[test]
    fn wrong_version_is_named() {
        let mut c = EchoChallenge {
            seq: 1,
            nonce: [0; 32],
        }
        .encode();
        c[0] = 2;
        assert_eq!(
            EchoChallenge::decode(&c),
            Err(DecodeError::WrongVersion {
                found: 2,
                supported: 1
            })
        );
    }

    #[test]
    fn answer_is_not_a_challenge() {
        let a = EchoAnswer {
            seq: 1,
            nonce: [0; 32],
            inside_ns: 0,
            arrival: 0,
        }
        .encode();
        assert_eq!(
            EchoChallenge::decode(&a),
            Err(DecodeError::UnknownType { found: TYPE_ANSWER })
        );
    }

    #[test]
    fn oversized_datagram_is_trailing_data() {
        let mut c = EchoChallenge {
            seq: 1,
            nonce: [0; 32],
        }
        .encode()
        .to_vec();
        c.extend_from_slice(&[0; 100]);
        assert_eq!(
            EchoChallenge::decode(&c),
            Err(DecodeError::TrailingData { extra: 100 })
        );
    }
}
