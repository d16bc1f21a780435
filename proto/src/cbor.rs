//! Strict CBOR decoding: one value has exactly one accepted encoding.
//!
//! ciborium is lenient on input: it skips unknown map keys, reads a key encoded as a byte string
//! as the text key, and accepts non-minimal integer heads, indefinite lengths and tags. A
//! verifier that accepts several encodings of one bundle lets an attacker vary bytes that no
//! signature covers (and stores or hashes what it never checked). So every struct that crosses
//! a trust boundary denies unknown fields, and what decodes must re-encode to the very bytes
//! that came in: our encoder (definite lengths, shortest heads, text keys in field order) is
//! the one canonical form.

use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

/// Why bytes were refused by [`decode_canonical`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StrictError {
    /// Not CBOR of the expected shape (including unknown or duplicate fields).
    #[error("{reason}")]
    Malformed { reason: String },
    /// Well-formed, but not in the one encoding this protocol accepts: a byte-string key, a
    /// non-minimal integer, an indefinite length, a tag, a field written as null that is
    /// omitted when absent, or trailing bytes.
    #[error(
        "non-canonical encoding: re-encoding differs from the input at byte {offset} \
         (input {input_len} bytes, canonical {canonical_len} bytes)"
    )]
    NonCanonical {
        offset: usize,
        input_len: usize,
        canonical_len: usize,
    },
}

/// Encodes `value` in the canonical form.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Serializing plain structs into a Vec cannot fail.
    ciborium::into_writer(value, &mut out).expect("CBOR encoding into memory");
    out
}

/// Decodes `bytes`, then refuses them unless they are exactly the canonical encoding of what
/// they decoded to.
pub fn decode_canonical<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<T, StrictError> {
    let value: T = ciborium::from_reader(bytes).map_err(|e| StrictError::Malformed {
        reason: e.to_string(),
    })?;
    let canonical = encode(&value);
    if canonical != bytes {
        let offset = canonical
            .iter()
            .zip(bytes)
            .position(|(a, b)| a != b)
            .unwrap_or(canonical.len().min(bytes.len()));
        return Err(StrictError::NonCanonical {
            offset,
            input_len: bytes.len(),
            canonical_len: canonical.len(),
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Pair {
        a: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        b: Option<u8>,
    }

    fn value(v: &ciborium::Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(v, &mut out).unwrap();
        out
    }

    fn text(s: &str) -> ciborium::Value {
        ciborium::Value::Text(s.into())
    }

    #[test]
    fn the_canonical_encoding_round_trips() {
        let p = Pair { a: 300, b: Some(1) };
        assert_eq!(decode_canonical::<Pair>(&encode(&p)).unwrap(), p);
        let q = Pair { a: 0, b: None };
        assert_eq!(decode_canonical::<Pair>(&encode(&q)).unwrap(), q);
    }

    #[test]
    fn an_unknown_field_is_malformed() {
        let v = ciborium::Value::Map(vec![(text("a"), 1.into()), (text("extra"), 2.into())]);
        let err = decode_canonical::<Pair>(&value(&v)).unwrap_err();
        assert!(
            matches!(&err, StrictError::Malformed { reason } if reason.contains("extra")),
            "{err:?}"
        );
    }

    #[test]
    fn a_byte_string_key_is_not_read_as_the_text_key() {
        let v = ciborium::Value::Map(vec![(ciborium::Value::Bytes(b"a".to_vec()), 1.into())]);
        // ciborium alone accepts this as field `a`; the canonical check refuses it.
        assert!(ciborium::from_reader::<Pair, _>(value(&v).as_slice()).is_ok());
        assert!(matches!(
            decode_canonical::<Pair>(&value(&v)),
            Err(StrictError::NonCanonical { offset: 1, .. })
        ));
    }

    #[test]
    fn a_non_minimal_integer_head_is_refused() {
        // {"a": 1} with the 1 written as a one-byte-argument head (0x18 0x01) instead of 0x01.
        let bytes = [0xa1, 0x61, b'a', 0x18, 0x01];
        assert!(ciborium::from_reader::<Pair, _>(&bytes[..]).is_ok());
        assert!(matches!(
            decode_canonical::<Pair>(&bytes),
            Err(StrictError::NonCanonical { offset: 3, .. })
        ));
    }

    #[test]
    fn an_indefinite_length_map_is_refused() {
        let bytes = [0xbf, 0x61, b'a', 0x01, 0xff];
        assert!(matches!(
            decode_canonical::<Pair>(&bytes),
            Err(StrictError::NonCanonical { offset: 0, .. })
        ));
    }

    #[test]
    fn an_explicit_null_for_an_omitted_field_is_refused() {
        let v = ciborium::Value::Map(vec![
            (text("a"), 1.into()),
            (text("b"), ciborium::Value::Null),
        ]);
        assert!(matches!(
            decode_canonical::<Pair>(&value(&v)),
            Err(StrictError::NonCanonical { .. })
        ));
    }

    #[test]
    fn a_duplicate_field_is_malformed() {
        let v = ciborium::Value::Map(vec![(text("a"), 1.into()), (text("a"), 2.into())]);
        assert!(matches!(
            decode_canonical::<Pair>(&value(&v)),
            Err(StrictError::Malformed { .. })
        ));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode(&Pair { a: 1, b: None });
        bytes.push(0);
        assert!(matches!(
            decode_canonical::<Pair>(&bytes),
            Err(StrictError::NonCanonical { .. })
        ));
    }
}
