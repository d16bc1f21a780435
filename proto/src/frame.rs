//! Stream framing: `version:u8 = 1 | kind:u8 | len:u32 | body` with a CBOR body.
//!
//! The header is checked (version, kind, length against the cap) before any body byte is
//! read or allocated. Bodies decode strictly ([`crate::cbor`]): unknown fields and any encoding
//! but the canonical one are refused, so a message has one encoding; a protocol change takes a
//! new version number, which is refused with a clear error.

use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

use crate::codec::{DecodeError, Reader};
use crate::PROTOCOL_VERSION;

/// Bytes of the frame header.
pub const HEADER_LEN: usize = 6;

/// Largest frame body accepted by default: room for a bundle with event logs and
/// certificate chains, small enough that a hostile length cannot exhaust memory.
pub const MAX_BODY_LEN: u32 = 4 << 20;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageKind {
    EvidenceRequest = 1,
    EvidenceResponse = 2,
    TranscriptRequest = 3,
    TranscriptResponse = 4,
    KeysRequest = 5,
    KeysResponse = 6,
    HelloRequest = 7,
    HelloResponse = 8,
    UdpEchoRequest = 9,
    UdpEchoResponse = 10,
    Error = 0x7f,
}

impl MessageKind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::EvidenceRequest,
            2 => Self::EvidenceResponse,
            3 => Self::TranscriptRequest,
            4 => Self::TranscriptResponse,
            5 => Self::KeysRequest,
            6 => Self::KeysResponse,
            7 => Self::HelloRequest,
            8 => Self::HelloResponse,
            9 => Self::UdpEchoRequest,
            10 => Self::UdpEchoResponse,
            0x7f => Self::Error,
            _ => return None,
        })
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub kind: MessageKind,
    pub body_len: u32,
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("bad frame: {0}")]
    Decode(#[from] DecodeError),
    #[error("frame body of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: u32, max: u32 },
    #[error("unknown message kind 0x{found:02x}")]
    UnknownKind { found: u8 },
    #[error("expected a {expected:?} message, got {found:?}")]
    UnexpectedKind {
        expected: MessageKind,
        found: MessageKind,
    },
    #[error("malformed {kind:?} body: {reason}")]
    Body { kind: MessageKind, reason: String },
    #[error("{kind:?} body is not canonically encoded: {error}")]
    NonCanonical {
        kind: MessageKind,
        error: crate::cbor::StrictError,
    },
    #[error("frame body ended after {have} of {need} bytes")]
    ShortBody { need: u32, have: usize },
}

impl Frame {
    /// Decodes and checks a header; `max_body` caps the length before anything is allocated.
    pub fn decode_header(buf: &[u8], max_body: u32) -> Result<Self, FrameError> {
        let mut r = Reader::new(buf);
        let version = r.u8()?;
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::WrongVersion {
                found: version,
                supported: PROTOCOL_VERSION,
            }
            .into());
        }
        let kind_byte = r.u8()?;
        let kind =
            MessageKind::from_u8(kind_byte).ok_or(FrameError::UnknownKind { found: kind_byte })?;
        let body_len = r.u32()?;
        if body_len > max_body {
            return Err(FrameError::TooLarge {
                len: body_len,
                max: max_body,
            });
        }
        Ok(Self { kind, body_len })
    }
}

/// Encodes `msg` as one frame.
pub fn encode<T: Serialize>(kind: MessageKind, msg: &T) -> Vec<u8> {
    let body = crate::cbor::encode(msg);
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.push(PROTOCOL_VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes one whole frame (header and body, nothing after) of the expected kind.
pub fn decode<T: DeserializeOwned + Serialize>(
    buf: &[u8],
    expected: MessageKind,
    max_body: u32,
) -> Result<T, FrameError> {
    let frame = Frame::decode_header(buf, max_body)?;
    let body = &buf[HEADER_LEN.min(buf.len())..];
    if body.len() < frame.body_len as usize {
        return Err(FrameError::ShortBody {
            need: frame.body_len,
            have: body.len(),
        });
    }
    if body.len() > frame.body_len as usize {
        return Err(DecodeError::TrailingData {
            extra: body.len() - frame.body_len as usize,
        }
        .into());
    }
    if frame.kind != expected {
        return Err(FrameError::UnexpectedKind {
            expected,
            found: frame.kind,
        });
    }
    decode_body(frame.kind, body)
}

/// Decodes a body whose header was already checked.
pub fn decode_body<T: DeserializeOwned + Serialize>(
    kind: MessageKind,
    body: &[u8],
) -> Result<T, FrameError> {
    crate::cbor::decode_canonical(body).map_err(|e| match e {
        crate::cbor::StrictError::Malformed { reason } => FrameError::Body { kind, reason },
        other => FrameError::NonCanonical { kind, error: other },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{ErrorMessage, EvidenceRequest, Include};

    fn request() -> EvidenceRequest {
        EvidenceRequest {
            nonce: vec![5; 32],
            include: Include {
                tdx: true,
                tpm: false,
                anchors: vec!["fra".into()],
            },
            issuer: Some("verifier".into()),
            sealed: None,
            auth: None,
        }
    }

    #[test]
    fn round_trip() {
        let f = encode(MessageKind::EvidenceRequest, &request());
        let back: EvidenceRequest = decode(&f, MessageKind::EvidenceRequest, MAX_BODY_LEN).unwrap();
        assert_eq!(back, request());
    }

    #[test]
    fn a_non_canonical_body_is_refused() {
        // The request's body with its first key ("nonce") written as a byte string.
        let mut f = encode(MessageKind::EvidenceRequest, &request());
        let at = HEADER_LEN + 1;
        assert_eq!(&f[at..at + 6], b"\x65nonce");
        f[at] = 0x45;
        let err =
            decode::<EvidenceRequest>(&f, MessageKind::EvidenceRequest, MAX_BODY_LEN).unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::NonCanonical {
                    kind: MessageKind::EvidenceRequest,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn sealed_requests_and_keys_round_trip_and_plain_requests_encode_as_before() {
        use crate::evidence::{EkCert, SealedNonce};
        use crate::messages::{KeysRequest, KeysResponse};
        // A plain request has no `sealed` key: it is byte-for-byte what older probers send.
        let plain = encode(MessageKind::EvidenceRequest, &request());
        assert!(!plain.windows(6).any(|w| w == b"sealed"));
        let mut sealed = request();
        sealed.nonce = Vec::new();
        sealed.sealed = Some(SealedNonce {
            ek_nv_index: 0x01c0_0002,
            id_object: vec![1; 68],
            encrypted_secret: vec![2; 256],
        });
        let f = encode(MessageKind::EvidenceRequest, &sealed);
        assert_eq!(
            decode::<EvidenceRequest>(&f, MessageKind::EvidenceRequest, MAX_BODY_LEN).unwrap(),
            sealed
        );
        let keys = KeysResponse {
            ak_public: vec![0, 2, 0x23, 0x0b],
            ek_certs: vec![EkCert {
                nv_index: 0x01c0_000a,
                der: vec![0x30; 40],
            }],
        };
        let f = encode(MessageKind::KeysResponse, &keys);
        assert_eq!(
            decode::<KeysResponse>(&f, MessageKind::KeysResponse, MAX_BODY_LEN).unwrap(),
            keys
        );
        let f = encode(MessageKind::KeysRequest, &KeysRequest::default());
        assert!(decode::<KeysRequest>(&f, MessageKind::KeysRequest, MAX_BODY_LEN).is_ok());
        // Another kind where keys were expected is refused, not misread.
        assert!(decode::<KeysResponse>(&f, MessageKind::KeysResponse, MAX_BODY_LEN).is_err());
    }

    #[test]
    fn every_prefix_fails() {
        let f = encode(MessageKind::EvidenceRequest, &request());
        for n in 0..f.len() {
            assert!(
                decode::<EvidenceRequest>(&f[..n], MessageKind::EvidenceRequest, MAX_BODY_LEN)
                    .is_err(),
                "prefix {n}"
            );
        }
    }

    #[test]
    fn bad_headers_are_typed() {
        let mut f = encode(MessageKind::EvidenceRequest, &request());
        f[0] = 9;
        assert_eq!(
            Frame::decode_header(&f, MAX_BODY_LEN),
            Err(FrameError::Decode(DecodeError::WrongVersion {
                found: 9,
                supported: 1
            }))
        );
        f[0] = 1;
        f[1] = 0x42;
        assert_eq!(
            Frame::decode_header(&f, MAX_BODY_LEN),
            Err(FrameError::UnknownKind { found: 0x42 })
        );
        let huge = [1, 1, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            Frame::decode_header(&huge, MAX_BODY_LEN),
            Err(FrameError::TooLarge {
                len: u32::MAX,
                max: MAX_BODY_LEN
            })
        );
        let err = encode(
            MessageKind::Error,
            &ErrorMessage {
                code: 1,
                message: "x".into(),
            },
        );
        assert!(matches!(
            decode::<EvidenceRequest>(&err, MessageKind::EvidenceRequest, MAX_BODY_LEN),
            Err(FrameError::UnexpectedKind { .. })
        ));
        let mut garbage = encode(MessageKind::EvidenceRequest, &request());
        garbage[HEADER_LEN] = 0xff;
        assert!(matches!(
            decode::<EvidenceRequest>(&garbage, MessageKind::EvidenceRequest, MAX_BODY_LEN),
            Err(FrameError::Body { .. })
        ));
    }

    #[test]
    fn unknown_fields_are_refused() {
        #[derive(serde::Serialize)]
        struct Newer {
            nonce: serde_bytes::ByteBuf,
            include: Include,
            issuer: Option<String>,
            future_field: u32,
        }
        let f = encode(
            MessageKind::EvidenceRequest,
            &Newer {
                nonce: serde_bytes::ByteBuf::from(vec![5; 32]),
                include: request().include,
                issuer: request().issuer,
                future_field: 7,
            },
        );
        let err =
            decode::<EvidenceRequest>(&f, MessageKind::EvidenceRequest, MAX_BODY_LEN).unwrap_err();
        assert!(
            matches!(&err, FrameError::Body { reason, .. } if reason.contains("future_field")),
            "{err:?}"
        );
    }
}
