//! The POE CoRIM payload: a tagged corim-map (draft-ietf-rats-corim-10) holding one CoMID with
//! one conditional-endorsement triple, PIID condition → owner endorsement, shaped as
//! draft-bzb-rats-intel-poe-endorsements-02 pins it. Encoding and the reading a verifier needs.

use ciborium::value::Value;
use sha2::{Digest, Sha384};

use super::error::PoeError;

/// CoRIM `tagged-corim-map`.
pub(crate) const TAG_CORIM: u64 = 501;
/// CoRIM `tagged-concise-mid-tag` (the CoMID is a bstr inside it).
pub(crate) const TAG_COMID: u64 = 506;
/// `tagged-oid-type` (RFC 9090).
const TAG_OID: u64 = 111;
/// CoRIM `uri` (RFC 8949 URI tag).
pub(crate) const TAG_URI: u64 = 32;
/// Epoch-based date/time (RFC 8949 §3.4.2).
const TAG_EPOCH: u64 = 1;

/// The profile this module implements; verifiers accept any `#1.<minor>`.
pub const PROFILE: &str = "tag:intel.com,2026:tee.poe#1.0";
pub(crate) const PROFILE_MAJOR: &str = "tag:intel.com,2026:tee.poe#1.";

/// 2.16.840.1.113741.1.13.2.6.1, the Intel PIID environment class.
pub const PIID_ENV_OID: [u8; 12] = [
    0x60, 0x86, 0x48, 0x01, 0x86, 0xF8, 0x4D, 0x01, 0x0D, 0x02, 0x06, 0x01,
];
/// 2.16.840.1.113741.1.13.2.12.1, the Intel Owner-Endorsement environment class (v1).
pub const OWNER_ENV_OID: [u8; 12] = [
    0x60, 0x86, 0x48, 0x01, 0x86, 0xF8, 0x4D, 0x01, 0x0D, 0x02, 0x0C, 0x01,
];
/// `tee.platform-instance-id` in a measurement-values-map.
const KEY_PIID: i64 = -101;
/// `tee.owner-name` in a measurement-values-map.
const KEY_OWNER: i64 = -401;
const MKEY_PIID: &str = "tee.poe.platform-binding";
const MKEY_OWNER: &str = "tee.poe.ownership-claims";

/// What an issuer binds: the platform, its owner, and the binding's lifetime (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Content {
    pub(crate) piid: Vec<u8>,
    pub(crate) owner: String,
    pub(crate) not_before: u64,
    pub(crate) not_after: u64,
}

/// A decoded payload. Profile and validity stay raw: their own checks judge them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decoded {
    pub(crate) id: Option<String>,
    pub(crate) tag_id: Option<String>,
    pub(crate) profile: Option<Value>,
    pub(crate) validity: Option<Value>,
    pub(crate) piid: Vec<u8>,
    pub(crate) owner: String,
}

pub(crate) fn int(v: i64) -> Value {
    Value::Integer(v.into())
}

fn key_value(k: i64, v: Value) -> (Value, Value) {
    (int(k), v)
}

pub(crate) fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing a Value into a Vec cannot fail.
    ciborium::ser::into_writer(v, &mut out).expect("CBOR encoding into memory");
    out
}

/// UUIDv8 from the left 16 bytes of SHA-384 (the draft's `id` / `tag-id` derivation).
fn uuid8(data: &[u8]) -> Vec<u8> {
    let mut b = Sha384::digest(data)[..16].to_vec();
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}

fn environment(oid: &[u8]) -> Value {
    // environment-map { class: { class-id: #6.111(oid) } }
    Value::Map(vec![key_value(
        0,
        Value::Map(vec![key_value(
            0,
            Value::Tag(TAG_OID, Box::new(Value::Bytes(oid.to_vec()))),
        )]),
    )])
}

fn measurement(mkey: &str, key: i64, value: Value) -> Value {
    Value::Map(vec![
        key_value(0, Value::Text(mkey.into())),
        key_value(1, Value::Map(vec![key_value(key, value)])),
    ])
}

/// The CoMID's `triples` map: `{10: [[conditions, endorsements]]}`.
fn triples(c: &Content) -> Value {
    let condition = Value::Array(vec![
        environment(&PIID_ENV_OID),
        Value::Array(vec![measurement(
            MKEY_PIID,
            KEY_PIID,
            Value::Bytes(c.piid.clone()),
        )]),
    ]);
    let endorsement = Value::Array(vec![
        environment(&OWNER_ENV_OID),
        Value::Array(vec![measurement(
            MKEY_OWNER,
            KEY_OWNER,
            Value::Text(c.owner.clone()),
        )]),
    ]);
    let record = Value::Array(vec![
        Value::Array(vec![condition]),
        Value::Array(vec![endorsement]),
    ]);
    Value::Map(vec![key_value(10, Value::Array(vec![record]))])
}

fn epoch(t: u64) -> Value {
    Value::Tag(TAG_EPOCH, Box::new(Value::Integer(t.into())))
}

/// The tagged corim-map for `c`. Maps are built in deterministic (CDE) key order so the
/// derived `tag-id` and `id` follow the draft's derivation.
pub(crate) fn payload_value(c: &Content) -> Value {
    let triples = triples(c);
    let tag_id = uuid8(&encode(&triples));
    let comid = Value::Map(vec![
        key_value(1, Value::Map(vec![key_value(0, Value::Bytes(tag_id))])),
        key_value(4, triples),
    ]);
    let tags = Value::Array(vec![Value::Tag(
        TAG_COMID,
        Box::new(Value::Bytes(encode(&comid))),
    )]);
    let profile = Value::Tag(TAG_URI, Box::new(Value::Text(PROFILE.into())));
    let validity = Value::Map(vec![
        key_value(0, epoch(c.not_before)),
        key_value(1, epoch(c.not_after)),
    ]);
    let without_id = Value::Map(vec![
        key_value(1, tags.clone()),
        key_value(3, profile.clone()),
        key_value(4, validity.clone()),
    ]);
    let id = uuid8(&encode(&Value::Tag(TAG_CORIM, Box::new(without_id))));
    Value::Tag(
        TAG_CORIM,
        Box::new(Value::Map(vec![
            key_value(0, Value::Bytes(id)),
            key_value(1, tags),
            key_value(3, profile),
            key_value(4, validity),
        ])),
    )
}

/// One CBOR item filling all of `bytes`.
pub(crate) fn decode_value(bytes: &[u8], what: &'static str) -> Result<Value, PoeError> {
    let mut rest = bytes;
    let v: Value = ciborium::de::from_reader(&mut rest).map_err(|e| PoeError::Cbor {
        what,
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(PoeError::Cbor {
            what,
            reason: format!("{} bytes after the item", rest.len()),
        });
    }
    Ok(v)
}

/// A short description of a value's type, for errors.
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::Integer(i) => format!("integer {}", i128::from(*i)),
        Value::Bytes(b) => format!("bytes ({} bytes)", b.len()),
        Value::Float(_) => "float".into(),
        Value::Text(t) => format!("text {t:?}"),
        Value::Bool(b) => format!("bool {b}"),
        Value::Null => "null".into(),
        Value::Tag(t, _) => format!("tag {t}"),
        Value::Array(a) => format!("array of {}", a.len()),
        Value::Map(m) => format!("map of {}", m.len()),
        _ => "another CBOR type".into(),
    }
}

fn is_key(k: &Value, key: i64) -> bool {
    matches!(k, Value::Integer(i) if i128::from(*i) == i128::from(key))
}

/// The value under integer `key`; a key present twice is an error (two readers could take
/// different ones).
pub(crate) fn get<'a>(
    map: &'a [(Value, Value)],
    key: i64,
    field: &'static str,
) -> Result<Option<&'a Value>, PoeError> {
    let mut found = map.iter().filter(|(k, _)| is_key(k, key));
    let first = found.next().map(|(_, v)| v);
    let more = found.count();
    if more > 0 {
        return Err(PoeError::DuplicateKey {
            field,
            count: more + 1,
        });
    }
    Ok(first)
}

fn need<'a>(
    map: &'a [(Value, Value)],
    key: i64,
    field: &'static str,
    expected: &'static str,
) -> Result<&'a Value, PoeError> {
    get(map, key, field)?.ok_or(PoeError::Field {
        field,
        expected,
        found: "nothing".into(),
    })
}

fn as_map<'a>(v: &'a Value, field: &'static str) -> Result<&'a Vec<(Value, Value)>, PoeError> {
    match v {
        Value::Map(m) => Ok(m),
        other => Err(PoeError::Field {
            field,
            expected: "a map",
            found: describe(other),
        }),
    }
}

fn as_array<'a>(v: &'a Value, field: &'static str) -> Result<&'a Vec<Value>, PoeError> {
    match v {
        Value::Array(a) => Ok(a),
        other => Err(PoeError::Field {
            field,
            expected: "an array",
            found: describe(other),
        }),
    }
}

/// The only element of an array the profile pins to one entry.
fn single<'a>(v: &'a Value, field: &'static str) -> Result<&'a Value, PoeError> {
    match as_array(v, field)?.as_slice() {
        [one] => Ok(one),
        other => Err(PoeError::Cardinality {
            field,
            found: other.len(),
        }),
    }
}

fn untag<'a>(
    v: &'a Value,
    tag: u64,
    field: &'static str,
    expected: &'static str,
) -> Result<&'a Value, PoeError> {
    match v {
        Value::Tag(t, inner) if *t == tag => Ok(inner),
        other => Err(PoeError::Field {
            field,
            expected,
            found: describe(other),
        }),
    }
}

/// `id` / `tag-id`: bstr (UUID) or tstr, informational only.
fn identifier(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Bytes(b) => Some(hex::encode(b)),
        Value::Text(t) => Some(t.clone()),
        _ => None,
    }
}

fn oid_hex(v: &Value) -> String {
    match v {
        Value::Tag(TAG_OID, inner) => match inner.as_ref() {
            Value::Bytes(b) => format!("OID {}", hex::encode(b)),
            other => format!("tag 111 around {}", describe(other)),
        },
        other => describe(other),
    }
}

/// The value one side of the triple binds: its environment must name `oid`, its single
/// measurement must not carry authorized-by, and its mval must hold `key`.
fn side<'a>(
    record: &'a Value,
    side: &'static str,
    oid: &[u8],
    expected_oid: &'static str,
    key: i64,
) -> Result<&'a Value, PoeError> {
    let pair = as_array(record, side)?;
    let [env, measurements, ..] = pair.as_slice() else {
        return Err(PoeError::Field {
            field: side,
            expected: "[environment-map, [measurement-map]]",
            found: describe(record),
        });
    };
    let class = need(
        as_map(env, "environment-map")?,
        0,
        "environment class",
        "a class map",
    )?;
    let class_id = need(
        as_map(class, "environment class")?,
        0,
        "class-id",
        "a tagged OID",
    )?;
    match class_id {
        Value::Tag(TAG_OID, inner) if matches!(inner.as_ref(), Value::Bytes(b) if b == oid) => {}
        other => {
            return Err(PoeError::ClassId {
                side,
                found: oid_hex(other),
                expected: expected_oid,
            })
        }
    }
    let m = as_map(
        single(measurements, "measurements of one environment")?,
        "measurement-map",
    )?;
    if get(m, 2, "authorized-by")?.is_some() {
        return Err(PoeError::AuthorizedBy { side });
    }
    let mval = as_map(
        need(m, 1, "mval", "a measurement-values-map")?,
        "measurement-values-map",
    )?;
    need(mval, key, "profile claim", "the POE claim key")
}

/// Reads the POE fields of a payload (`#6.501(corim-map)`); unknown keys are ignored, as the
/// profile's verifier rules require.
pub(crate) fn decode(payload: &[u8]) -> Result<Decoded, PoeError> {
    let v = decode_value(payload, "the COSE payload")?;
    let corim = as_map(
        untag(&v, TAG_CORIM, "payload", "a tagged-corim-map (#6.501)")?,
        "corim-map",
    )?;
    let tag = single(need(corim, 1, "tags", "an array of one CoMID")?, "tags")?;
    let comid_bytes = match untag(tag, TAG_COMID, "tags[0]", "a CoMID (#6.506)")? {
        Value::Bytes(b) => b,
        other => {
            return Err(PoeError::Field {
                field: "tags[0]",
                expected: "a bstr-wrapped CoMID",
                found: describe(other),
            })
        }
    };
    let comid_v = decode_value(comid_bytes, "the CoMID")?;
    let comid = as_map(&comid_v, "concise-mid-tag")?;
    let tag_id = match get(comid, 1, "tag-identity")? {
        Some(ti) => identifier(get(as_map(ti, "tag-identity")?, 0, "tag-id")?),
        None => None,
    };
    let triples = as_map(need(comid, 4, "triples", "a triples map")?, "triples")?;
    let record = single(
        need(
            triples,
            10,
            "conditional-endorsement-triples",
            "one conditional-endorsement record",
        )?,
        "conditional-endorsement-triples",
    )?;
    let parts = as_array(record, "conditional-endorsement record")?;
    let [conditions, endorsements, ..] = parts.as_slice() else {
        return Err(PoeError::Field {
            field: "conditional-endorsement record",
            expected: "[conditions, endorsements]",
            found: describe(record),
        });
    };
    let condition = single(conditions, "conditions")?;
    let endorsement = single(endorsements, "endorsements")?;
    let piid = match side(
        condition,
        "condition",
        &PIID_ENV_OID,
        "PIID environment OID 2.16.840.1.113741.1.13.2.6.1",
        KEY_PIID,
    )? {
        Value::Bytes(b) if b.len() == 16 || b.len() == 32 => b.clone(),
        Value::Bytes(b) => return Err(PoeError::PiidLength { found: b.len() }),
        other => {
            return Err(PoeError::Field {
                field: "tee.platform-instance-id (-101)",
                expected: "bytes",
                found: describe(other),
            })
        }
    };
    let owner = match side(
        endorsement,
        "endorsement",
        &OWNER_ENV_OID,
        "Owner-Endorsement OID 2.16.840.1.113741.1.13.2.12.1",
        KEY_OWNER,
    )? {
        Value::Text(t) if (1..=1024).contains(&t.len()) => t.clone(),
        Value::Text(t) => return Err(PoeError::OwnerLength { found: t.len() }),
        other => {
            return Err(PoeError::Field {
                field: "tee.owner-name (-401)",
                expected: "text",
                found: describe(other),
            })
        }
    };
    Ok(Decoded {
        id: identifier(get(corim, 0, "id")?),
        tag_id,
        profile: get(corim, 3, "profile")?.cloned(),
        validity: get(corim, 4, "rim-validity")?.cloned(),
        piid,
        owner,
    })
}

/// The profile URI, when it is the one this module implements (any `#1.<minor>`).
pub(crate) fn check_profile(v: Option<&Value>) -> Result<String, PoeError> {
    let v = v.ok_or(PoeError::ProfileMissing { expected: PROFILE })?;
    let bad = |found: String| PoeError::Profile {
        found,
        expected: PROFILE,
    };
    let uri = match v {
        Value::Tag(TAG_URI, inner) => match inner.as_ref() {
            Value::Text(t) => t,
            other => return Err(bad(format!("tag 32 around {}", describe(other)))),
        },
        // draft -01 carried the bare text; -02 requires the URI type.
        Value::Text(t) => return Err(bad(format!("the untagged text {t:?}"))),
        other => return Err(bad(describe(other))),
    };
    let minor = uri.strip_prefix(PROFILE_MAJOR);
    if minor.is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit())) {
        Ok(uri.clone())
    } else {
        Err(bad(format!("{uri:?}")))
    }
}

fn epoch_value(v: &Value, field: &str) -> Result<u64, PoeError> {
    let malformed = |what: String| PoeError::ValidityMalformed {
        reason: format!("{field} is {what}, expected #6.1 epoch seconds"),
    };
    match v {
        Value::Tag(TAG_EPOCH, inner) => match inner.as_ref() {
            Value::Integer(i) => u64::try_from(*i).map_err(|_| malformed("negative".into())),
            other => Err(malformed(format!("tag 1 around {}", describe(other)))),
        },
        other => Err(malformed(describe(other))),
    }
}

/// `rim-validity` as (not-before, not-after), both required by the profile.
pub(crate) fn validity(v: Option<&Value>) -> Result<(u64, u64), PoeError> {
    let v = v.ok_or(PoeError::ValidityMalformed {
        reason: "missing (the POE profile requires it)".into(),
    })?;
    let m = match v {
        Value::Map(m) => m,
        other => {
            return Err(PoeError::ValidityMalformed {
                reason: format!("expected a map, found {}", describe(other)),
            })
        }
    };
    let field = |k: i64, name: &'static str| -> Result<u64, PoeError> {
        match get(m, k, name)? {
            Some(x) => epoch_value(x, name),
            None => Err(PoeError::ValidityMalformed {
                reason: format!("{name} is missing (the POE profile requires it)"),
            }),
        }
    };
    let (nb, na) = (field(0, "not-before")?, field(1, "not-after")?);
    if na < nb {
        return Err(PoeError::ValidityMalformed {
            reason: format!("not-after {na} precedes not-before {nb}"),
        });
    }
    Ok((nb, na))
}
