//! The COSE_Sign1 envelope of a POE (RFC 9052): ESP384 / ES384 over the CoRIM, the x5chain
//! (RFC 9360) carrying the signer's certificates, CWT-Claims `iss` (RFC 9597), and locus's two
//! protected text parameters for the platform's facility and site.

use ciborium::value::Value;
use coset::{
    iana, ContentType, CoseSign1, CoseSign1Builder, Header, HeaderBuilder, Label,
    RegisteredLabelWithPrivate, TaggedCborSerializable,
};
use p384::ecdsa::signature::{Signer, Verifier};
use p384::ecdsa::{Signature, SigningKey, VerifyingKey};
use p384::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha384};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::corim::{describe, encode, int};
use super::error::PoeError;

/// Largest POE read: a CoRIM of one CoMID and a few certificates is a few kB.
pub const MAX_POE_LEN: usize = 64 * 1024;
pub(crate) const CONTENT_TYPE: &str = "application/rim+cbor";
const HDR_CWT_CLAIMS: i64 = 15;
const HDR_X5CHAIN: i64 = 33;
/// Protected text parameter: the facility the issuer places the platform in (locus's choice;
/// the POE profile defines no location claim, see docs/poe.md).
pub const HDR_FACILITY: &str = "locus.facility";
/// Protected text parameter: the site (as named in samples files) of that facility.
pub const HDR_SITE: &str = "locus.site";

/// A decoded envelope, not yet verified.
pub(crate) struct Envelope {
    sign1: CoseSign1,
    pub(crate) alg: Option<coset::Algorithm>,
    pub(crate) issuer: Option<String>,
    pub(crate) facility: Option<String>,
    pub(crate) site: Option<String>,
    /// Leaf first.
    pub(crate) x5chain: Vec<Vec<u8>>,
    pub(crate) payload: Vec<u8>,
}

fn text_param(h: &Header, label: &'static str) -> Result<Option<String>, PoeError> {
    let mut found = h
        .rest
        .iter()
        .filter(|(l, _)| matches!(l, Label::Text(t) if t == label));
    let first = found.next();
    if found.next().is_some() {
        return Err(PoeError::DuplicateKey {
            field: label,
            count: 2,
        });
    }
    match first {
        None => Ok(None),
        Some((_, Value::Text(t))) => Ok(Some(t.clone())),
        Some((_, other)) => Err(PoeError::Field {
            field: label,
            expected: "text",
            found: describe(other),
        }),
    }
}

fn int_param(h: &Header, label: i64) -> Option<&Value> {
    h.rest
        .iter()
        .find(|(l, _)| *l == Label::Int(label))
        .map(|(_, v)| v)
}

fn x5chain(v: &Value) -> Result<Vec<Vec<u8>>, PoeError> {
    let bad = |found: String| PoeError::Field {
        field: "x5chain",
        expected: "a certificate (bytes) or an array of them",
        found,
    };
    match v {
        Value::Bytes(b) => Ok(vec![b.clone()]),
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(|c| match c {
                Value::Bytes(b) => Ok(b.clone()),
                other => Err(bad(format!("an array holding {}", describe(other)))),
            })
            .collect(),
        other => Err(bad(describe(other))),
    }
}

/// Decodes the envelope: tag 18, no critical parameters, the CoRIM content type, a payload.
/// The algorithm and signature are judged by [`verify_signature`].
pub(crate) fn parse(bytes: &[u8]) -> Result<Envelope, PoeError> {
    if bytes.len() > MAX_POE_LEN {
        return Err(PoeError::TooLarge {
            len: bytes.len(),
            max: MAX_POE_LEN,
        });
    }
    let sign1 = CoseSign1::from_tagged_slice(bytes).map_err(|e| PoeError::NotCoseSign1 {
        reason: e.to_string(),
    })?;
    let p = &sign1.protected.header;
    let crit = p.crit.len() + sign1.unprotected.crit.len();
    if crit > 0 {
        return Err(PoeError::Critical { count: crit });
    }
    match &p.content_type {
        Some(ContentType::Text(t)) if t == CONTENT_TYPE => {}
        Some(ContentType::Text(t)) => {
            return Err(PoeError::ContentType {
                found: format!("{t:?}"),
            })
        }
        Some(ContentType::Assigned(c)) => {
            return Err(PoeError::ContentType {
                found: format!("CoAP content format {}", *c as i64),
            })
        }
        None => {
            return Err(PoeError::ContentType {
                found: "absent".into(),
            })
        }
    }
    let payload = sign1.payload.clone().ok_or(PoeError::NoPayload)?;
    let issuer = match int_param(p, HDR_CWT_CLAIMS) {
        Some(Value::Map(claims)) => match super::corim::get(claims, 1, "CWT iss")? {
            Some(Value::Text(t)) => Some(t.clone()),
            _ => None,
        },
        _ => None,
    };
    // RFC 9360 lets x5chain sit in either bucket; it is not trusted either way, only chained.
    let chain = match int_param(p, HDR_X5CHAIN).or(int_param(&sign1.unprotected, HDR_X5CHAIN)) {
        Some(v) => x5chain(v)?,
        None => Vec::new(),
    };
    // Only the protected bucket is signed: facility and site are read from there alone.
    Ok(Envelope {
        alg: p.alg.clone(),
        issuer,
        facility: text_param(p, HDR_FACILITY)?,
        site: text_param(p, HDR_SITE)?,
        x5chain: chain,
        payload,
        sign1,
    })
}

/// The x5chain leaf's subject and P-384 key.
pub(crate) fn leaf_key(env: &Envelope) -> Result<(String, VerifyingKey), PoeError> {
    let leaf = env.x5chain.first().ok_or(PoeError::NoX5Chain)?;
    let (_, cert) = X509Certificate::from_der(leaf).map_err(|e| PoeError::SignerCertificate {
        reason: format!("not X.509 DER: {e}"),
    })?;
    let key = VerifyingKey::from_public_key_der(cert.public_key().raw).map_err(|_| {
        PoeError::SignerCertificate {
            reason: "the leaf key is not an ECDSA P-384 key".into(),
        }
    })?;
    Ok((cert.subject().to_string(), key))
}

/// ESP384 (-51) or ES384 (-35), then the signature over the Sig_structure under the leaf key.
pub(crate) fn verify_signature(env: &Envelope) -> Result<String, PoeError> {
    match &env.alg {
        Some(RegisteredLabelWithPrivate::Assigned(
            iana::Algorithm::ESP384 | iana::Algorithm::ES384,
        )) => {}
        Some(RegisteredLabelWithPrivate::Assigned(a)) => {
            return Err(PoeError::Algorithm {
                found: format!("{a:?} ({})", *a as i64),
            })
        }
        Some(other) => {
            return Err(PoeError::Algorithm {
                found: format!("{other:?}"),
            })
        }
        None => {
            return Err(PoeError::Algorithm {
                found: "absent".into(),
            })
        }
    }
    let (subject, key) = leaf_key(env)?;
    env.sign1.verify_signature(b"", |sig, data| {
        let sig = Signature::from_slice(sig).map_err(|_| PoeError::BadSignature)?;
        key.verify(data, &sig).map_err(|_| PoeError::BadSignature)
    })?;
    Ok(subject)
}

/// RFC 9679 COSE Key Thumbprint (SHA-384) of a P-384 key: the POE profile's `kid`.
pub(crate) fn kid(key: &VerifyingKey) -> Vec<u8> {
    let point = key.to_encoded_point(false);
    let coord =
        |c: Option<&p384::FieldBytes>| Value::Bytes(c.map(|b| b.to_vec()).unwrap_or_default());
    // Deterministic encoding: keys 1, -1, -2, -3 sort as 0x01, 0x20, 0x21, 0x22.
    let cose_key = Value::Map(vec![
        (int(1), int(2)),  // kty: EC2
        (int(-1), int(2)), // crv: P-384
        (int(-2), coord(point.x())),
        (int(-3), coord(point.y())),
    ]);
    Sha384::digest(encode(&cose_key)).to_vec()
}

/// What the issuer puts in the headers.
pub(crate) struct HeaderFields<'a> {
    pub(crate) chain: &'a [Vec<u8>],
    pub(crate) issuer: &'a str,
    pub(crate) facility: Option<&'a str>,
    pub(crate) site: Option<&'a str>,
}

/// Protected and unprotected headers as the profile's producer rules say (ESP384, content
/// type, kid, CWT-Claims `iss`; x5chain unprotected), plus locus's facility and site.
pub(crate) fn headers(key: &SigningKey, f: &HeaderFields<'_>) -> (Header, Header) {
    let mut protected = HeaderBuilder::new()
        .algorithm(iana::Algorithm::ESP384)
        .content_type(CONTENT_TYPE.into())
        .key_id(kid(key.verifying_key()))
        .value(
            HDR_CWT_CLAIMS,
            Value::Map(vec![(int(1), Value::Text(f.issuer.into()))]),
        );
    if let Some(fac) = f.facility {
        protected = protected.text_value(HDR_FACILITY.into(), Value::Text(fac.into()));
    }
    if let Some(site) = f.site {
        protected = protected.text_value(HDR_SITE.into(), Value::Text(site.into()));
    }
    let chain = match f.chain {
        [one] => Value::Bytes(one.clone()),
        many => Value::Array(many.iter().map(|c| Value::Bytes(c.clone())).collect()),
    };
    let unprotected = HeaderBuilder::new().value(HDR_X5CHAIN, chain).build();
    (protected.build(), unprotected)
}

/// Signs `payload` under `key` with the given headers; the tagged COSE_Sign1 bytes.
pub(crate) fn sign(
    payload: Vec<u8>,
    protected: Header,
    unprotected: Header,
    key: &SigningKey,
) -> Result<Vec<u8>, coset::CoseError> {
    CoseSign1Builder::new()
        .protected(protected)
        .unprotected(unprotected)
        .payload(payload)
        .create_signature(b"", |tbs| {
            let sig: Signature = key.sign(tbs);
            sig.to_bytes().to_vec()
        })
        .build()
        .to_tagged_vec()
}

/// Re-encodes an envelope untagged, for tests of the tag check.
#[cfg(test)]
pub(crate) fn untagged(bytes: &[u8]) -> Vec<u8> {
    CoseSign1::from_tagged_slice(bytes)
        .and_then(coset::CborSerializable::to_vec)
        .expect("a valid envelope")
}
