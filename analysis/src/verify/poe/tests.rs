//! POE round trips, one negative test per check (the table names the check that must reject),
//! and property tests over PIIDs, owners, windows, prefixes and flipped bytes.

use std::sync::OnceLock;

use ciborium::value::Value;
use coset::{iana, RegisteredLabelWithPrivate};
use proptest::prelude::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, PKCS_ECDSA_P384_SHA384};

use super::corim::{self, int, Content};
use super::cose;
use super::*;

const T0: u64 = 1_800_000_000;
const PIID: [u8; 16] = [0xA5; 16];

/// A POE issuer: root certificate (the trust anchor), leaf certificate, leaf key.
struct Issuer {
    root: Vec<u8>,
    leaf: Vec<u8>,
    key: SigningKey,
}

fn time(unix: u64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix as i64).unwrap()
}

fn issuer_valid(name: &str, from: u64, until: u64) -> Issuer {
    let root_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let mut rp = CertificateParams::new(Vec::<String>::new()).unwrap();
    rp.distinguished_name
        .push(DnType::CommonName, format!("{name} POE root"));
    rp.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    rp.not_before = time(from);
    rp.not_after = time(until);
    let root = rp.self_signed(&root_key).unwrap();
    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let mut lp = CertificateParams::new(Vec::<String>::new()).unwrap();
    lp.distinguished_name.push(DnType::CommonName, name);
    lp.not_before = time(from);
    lp.not_after = time(until);
    let leaf = lp.signed_by(&leaf_key, &root, &root_key).unwrap();
    Issuer {
        root: root.der().to_vec(),
        leaf: leaf.der().to_vec(),
        key: SigningKey::from(p384::SecretKey::from_pkcs8_der(leaf_key.serialized_der()).unwrap()),
    }
}

/// A POE signed by a certificate that an end-entity certificate under a trusted root issued:
/// `[sub_leaf, leaf (not a CA), root]`. The root is the anchor; only CAs may issue.
fn minted_by_end_entity() -> (Vec<u8>, Vec<u8>) {
    let (from, until) = (T0 - 10_000_000, T0 + 100_000_000);
    let root_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let mut rp = CertificateParams::new(Vec::<String>::new()).unwrap();
    rp.distinguished_name
        .push(DnType::CommonName, "acme.example POE root");
    rp.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    rp.not_before = time(from);
    rp.not_after = time(until);
    let root = rp.self_signed(&root_key).unwrap();
    let ee_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let mut ep = CertificateParams::new(Vec::<String>::new()).unwrap();
    ep.distinguished_name
        .push(DnType::CommonName, "acme.example");
    ep.not_before = time(from);
    ep.not_after = time(until);
    let ee = ep.signed_by(&ee_key, &root, &root_key).unwrap();
    let sub_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let mut sp = CertificateParams::new(Vec::<String>::new()).unwrap();
    sp.distinguished_name.push(DnType::CommonName, "mallory");
    sp.not_before = time(from);
    sp.not_after = time(until);
    let sub = sp.signed_by(&sub_key, &ee, &ee_key).unwrap();
    let key = SigningKey::from(p384::SecretKey::from_pkcs8_der(sub_key.serialized_der()).unwrap());
    let chain = [sub.der().to_vec(), ee.der().to_vec(), root.der().to_vec()];
    (
        issue(&request(&PIID), &key, &chain).unwrap(),
        root.der().to_vec(),
    )
}

/// The default issuer ("acme.example"), made once: key generation dominates test time.
fn acme() -> &'static Issuer {
    static I: OnceLock<Issuer> = OnceLock::new();
    I.get_or_init(|| issuer_valid("acme.example", T0 - 10_000_000, T0 + 100_000_000))
}

fn request(piid: &[u8]) -> PoeRequest<'_> {
    PoeRequest {
        piid,
        owner: "acme.example",
        not_before: T0 - 1_000,
        not_after: T0 + 1_000_000,
        issuer: None,
        facility: Some("FRA-1"),
        site: Some("fra"),
    }
}

fn issue_by(i: &Issuer, req: &PoeRequest<'_>) -> Vec<u8> {
    issue(req, &i.key, &[i.leaf.clone(), i.root.clone()]).unwrap()
}

fn good() -> Vec<u8> {
    issue_by(acme(), &request(&PIID))
}

fn expect<'a>() -> Expectations<'a> {
    Expectations {
        piid: Some(&PIID),
        owner: Some("acme.example"),
        site: Some("fra"),
    }
}

fn appraise_acme(bytes: &[u8], now: u64, x: &Expectations<'_>) -> PoeVerification {
    appraise(bytes, &[acme().root.clone()], now, x)
}

/// Signs a hand-made payload (and optionally altered headers) as the acme issuer.
fn sign_custom(
    payload: &Value,
    alter: impl FnOnce(&mut coset::Header, &mut coset::Header),
) -> Vec<u8> {
    let i = acme();
    let chain = [i.leaf.clone(), i.root.clone()];
    let (mut p, mut u) = cose::headers(
        &i.key,
        &cose::HeaderFields {
            chain: &chain,
            issuer: "acme.example",
            facility: Some("FRA-1"),
            site: Some("fra"),
        },
    );
    alter(&mut p, &mut u);
    cose::sign(corim::encode(payload), p, u, &i.key).unwrap()
}

fn content() -> Content {
    Content {
        piid: PIID.to_vec(),
        owner: "acme.example".into(),
        not_before: T0 - 1_000,
        not_after: T0 + 1_000_000,
    }
}

/// The corim-map inside the payload's tag 501.
fn corim_map(v: &mut Value) -> &mut Vec<(Value, Value)> {
    match v {
        Value::Tag(501, inner) => match inner.as_mut() {
            Value::Map(m) => m,
            _ => unreachable!(),
        },
        _ => unreachable!(),
    }
}

fn entry(m: &mut [(Value, Value)], key: i64) -> &mut Value {
    &mut m.iter_mut().find(|(k, _)| *k == int(key)).unwrap().1
}

/// Rewrites the CoMID inside the payload with `f`.
fn with_comid(f: impl FnOnce(&mut Vec<(Value, Value)>)) -> Value {
    let mut v = corim::payload_value(&content());
    let m = corim_map(&mut v);
    let Value::Array(tags) = entry(m, 1) else {
        unreachable!()
    };
    let Value::Tag(506, inner) = &mut tags[0] else {
        unreachable!()
    };
    let Value::Bytes(b) = inner.as_mut() else {
        unreachable!()
    };
    let mut comid = corim::decode_value(b, "test").unwrap();
    let Value::Map(cm) = &mut comid else {
        unreachable!()
    };
    f(cm);
    *b = corim::encode(&comid);
    v
}

/// The one conditional-endorsement record of a CoMID map.
fn record(cm: &mut [(Value, Value)]) -> &mut Vec<Value> {
    let Value::Map(triples) = entry(cm, 4) else {
        unreachable!()
    };
    let Value::Array(records) = entry(triples, 10) else {
        unreachable!()
    };
    let Value::Array(r) = &mut records[0] else {
        unreachable!()
    };
    r
}

/// The measurement map of side `i` (0 condition, 1 endorsement).
fn measurement(cm: &mut [(Value, Value)], i: usize) -> &mut Vec<(Value, Value)> {
    let Value::Array(side) = &mut record(cm)[i] else {
        unreachable!()
    };
    let Value::Array(pair) = &mut side[0] else {
        unreachable!()
    };
    let Value::Array(ms) = &mut pair[1] else {
        unreachable!()
    };
    let Value::Map(m) = &mut ms[0] else {
        unreachable!()
    };
    m
}

#[test]
fn issued_poe_verifies_and_reads_back() {
    let v = appraise_acme(&good(), T0, &expect());
    assert!(v.valid(), "{:#?}", v.checks);
    assert_eq!(
        v.checks.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        PoeCheckId::ALL.map(PoeCheckId::name)
    );
    let c = v.claims.unwrap();
    assert_eq!(c.piid, hex::encode(PIID));
    assert_eq!(c.owner, "acme.example");
    assert_eq!(c.issuer.as_deref(), Some("acme.example"));
    assert_eq!(c.signer.as_deref(), Some("CN=acme.example"));
    assert_eq!(
        (c.facility.as_deref(), c.site.as_deref()),
        (Some("FRA-1"), Some("fra"))
    );
    assert_eq!(
        (c.not_before, c.not_after),
        (Some(T0 - 1_000), Some(T0 + 1_000_000))
    );
    assert_eq!(c.id.as_ref().map(String::len), Some(32));
    // UUIDv8 version and variant bits
    let id = hex::decode(c.id.unwrap()).unwrap();
    assert_eq!((id[6] >> 4, id[8] >> 6), (8, 2));
}

#[test]
fn the_envelope_and_payload_use_the_registered_codes() {
    let bytes = good();
    // COSE_Sign1 is tag 18 (0xd2); the payload a tagged corim-map (501) with the profile URI.
    assert_eq!(bytes[0], 0xd2);
    let env = cose::parse(&bytes).unwrap();
    assert_eq!(
        env.alg,
        Some(RegisteredLabelWithPrivate::Assigned(
            iana::Algorithm::ESP384
        ))
    );
    let v = corim::decode_value(&env.payload, "test").unwrap();
    let Value::Tag(501, m) = v else {
        panic!("not tag 501")
    };
    let Value::Map(m) = *m else { panic!() };
    assert!(m
        .iter()
        .any(|(k, v)| *k == int(3) && *v == Value::Tag(32, Box::new(Value::Text(PROFILE.into())))));
    // kid: the SHA-384 thumbprint of the leaf key (48 bytes)
    let sign1 =
        <coset::CoseSign1 as coset::TaggedCborSerializable>::from_tagged_slice(&bytes).unwrap();
    assert_eq!(
        sign1.protected.header.key_id,
        cose::kid(acme().key.verifying_key())
    );
    assert_eq!(sign1.protected.header.key_id.len(), 48);
}

/// One fault per row; the named check (and only it) must fail.
#[test]
fn each_fault_is_rejected_by_its_named_check() {
    let other = issuer_valid("intruder.example", T0 - 10_000_000, T0 + 100_000_000);
    let (minted, minted_root) = minted_by_end_entity();
    let stale = issuer_valid("acme.example", T0 - 10_000_000, T0 - 5_000_000);
    let anchors_of = |i: &Issuer| vec![i.root.clone()];
    let foreign_piid = [0x5A; 16];
    let altered = {
        let b = good();
        let needle = b"acme.example";
        // the owner inside the signed payload (the last occurrence; the first is `iss`)
        let at = b.windows(needle.len()).rposition(|w| w == needle).unwrap();
        let mut b = b;
        b[at] = b'x';
        b
    };
    let es256 = sign_custom(&corim::payload_value(&content()), |p, _| {
        p.alg = Some(RegisteredLabelWithPrivate::Assigned(iana::Algorithm::ES256));
    });
    let crit = sign_custom(&corim::payload_value(&content()), |p, _| {
        p.crit.push(RegisteredLabelWithPrivate::Assigned(
            iana::HeaderParameter::Kid,
        ));
    });
    let ctype = sign_custom(&corim::payload_value(&content()), |p, _| {
        p.content_type = Some(coset::ContentType::Text("application/cbor".into()));
    });
    let profile = |v: Value| {
        let mut p = corim::payload_value(&content());
        *entry(corim_map(&mut p), 3) = v;
        sign_custom(&p, |_, _| {})
    };
    let two_tags = {
        let mut p = corim::payload_value(&content());
        let m = corim_map(&mut p);
        let Value::Array(tags) = entry(m, 1) else {
            unreachable!()
        };
        tags.push(tags[0].clone());
        sign_custom(&p, |_, _| {})
    };
    let two_records = sign_custom(
        &with_comid(|cm| {
            let Value::Map(t) = entry(cm, 4) else {
                unreachable!()
            };
            let Value::Array(r) = entry(t, 10) else {
                unreachable!()
            };
            r.push(r[0].clone());
        }),
        |_, _| {},
    );
    let authorized_by = sign_custom(
        &with_comid(|cm| measurement(cm, 1).push((int(2), Value::Bytes(vec![1])))),
        |_, _| {},
    );
    let piid_len = sign_custom(
        &with_comid(|cm| {
            let Value::Map(mval) = entry(measurement(cm, 0), 1) else {
                unreachable!()
            };
            mval[0].1 = Value::Bytes(vec![1; 20]);
        }),
        |_, _| {},
    );
    let swapped_class = sign_custom(
        &with_comid(|cm| {
            let r = record(cm);
            r.swap(0, 1);
        }),
        |_, _| {},
    );
    let duplicate = {
        let mut p = corim::payload_value(&content());
        let m = corim_map(&mut p);
        let owner_profile = m.iter().find(|(k, _)| *k == int(3)).unwrap().clone();
        m.push(owner_profile);
        sign_custom(&p, |_, _| {})
    };
    let no_validity = {
        let mut p = corim::payload_value(&content());
        corim_map(&mut p).retain(|(k, _)| *k != int(4));
        sign_custom(&p, |_, _| {})
    };

    let x = expect();
    let acme_anchor = anchors_of(acme());
    /// what, POE, trust anchors, time, expectations, the check that must reject, its detail
    struct Case<'a>(
        &'a str,
        Vec<u8>,
        Vec<Vec<u8>>,
        u64,
        Expectations<'a>,
        PoeCheckId,
        &'a str,
    );
    let cases = vec![
        Case(
            "wrong signer",
            issue_by(&other, &request(&PIID)),
            acme_anchor.clone(),
            T0,
            x,
            PoeCheckId::Chain,
            "no trusted root",
        ),
        Case(
            "signer certified by an end-entity certificate",
            minted,
            vec![minted_root],
            T0,
            x,
            PoeCheckId::Chain,
            "CN=acme.example issued CN=mallory but may not issue certificates",
        ),
        Case(
            "no trust anchor",
            good(),
            vec![],
            T0,
            x,
            PoeCheckId::Chain,
            "no POE trust anchor",
        ),
        Case(
            "altered payload",
            altered,
            acme_anchor.clone(),
            T0,
            x,
            PoeCheckId::Signature,
            "does not verify",
        ),
        Case(
            "ES256",
            es256,
            acme_anchor.clone(),
            T0,
            x,
            PoeCheckId::Signature,
            "ES256",
        ),
        Case(
            "expired",
            good(),
            acme_anchor.clone(),
            T0 + 1_000_001,
            x,
            PoeCheckId::Validity,
            "expired at",
        ),
        Case(
            "not yet valid",
            good(),
            acme_anchor.clone(),
            T0 - 1_001,
            x,
            PoeCheckId::Validity,
            "valid only from",
        ),
        Case(
            "signing certificate expired",
            issue_by(&stale, &request(&PIID)),
            anchors_of(&stale),
            T0,
            x,
            PoeCheckId::Chain,
            "expired",
        ),
        Case(
            "wrong PIID",
            issue_by(acme(), &request(&foreign_piid)),
            acme_anchor.clone(),
            T0,
            x,
            PoeCheckId::Piid,
            "binds PIID 5a5a",
        ),
        Case(
            "foreign owner",
            good(),
            acme_anchor.clone(),
            T0,
            Expectations {
                owner: Some("rival.example"),
                ..x
            },
            PoeCheckId::Owner,
            "rival.example",
        ),
        Case(
            "other site",
            good(),
            acme_anchor.clone(),
            T0,
            Expectations {
                site: Some("waw"),
                ..x
            },
            PoeCheckId::Facility,
            "not at the claimed site waw",
        ),
        Case(
            "profile major 2",
            profile(Value::Tag(
                32,
                Box::new(Value::Text("tag:intel.com,2026:tee.poe#2.0".into())),
            )),
            acme_anchor.clone(),
            T0,
            x,
            PoeCheckId::Profile,
            "#2.0",
        ),
        Case(
            "profile untagged",
            profile(Value::Text(PROFILE.into())),
            acme_anchor.clone(),
            T0,
            x,
            PoeCheckId::Profile,
            "untagged",
        ),
        Case(
            "no rim-validity",
            no_validity,
            acme_anchor.clone(),
            T0,
            x,
            PoeCheckId::Validity,
            "missing",
        ),
        Case(
            "crit",
            crit,
            acme_anchor.clone(),
            T0,
            x,
            PoeCheckId::Format,
            "crit",
        ),
        Case(
            "content type",
            ctype,
            acme_anchor.clone(),
            T0,
            x,
            PoeCheckId::Format,
            "application/cbor",
        ),
        Case(
            "two CoMIDs",
            two_tags,
            acme_anchor.clone(),
            T0,
            x,
            PoeCheckId::Format,
            "tags holds 2",
        ),
        Case(
            "two records",
            two_records,
            acme_anchor.clone(),
            T0,
            x,
            PoeCheckId::Format,
            "holds 2",
        ),
        Case(
            "authorized-by",
            authorized_by,
            acme_anchor.clone(),
            T0,
            x,
            PoeCheckId::Format,
            "authorized-by",
        ),
        Case(
            "PIID of 20 bytes",
            piid_len,
            acme_anchor.clone(),
            T0,
            x,
            PoeCheckId::Format,
            "20 bytes",
        ),
        Case(
            "swapped class IDs",
            swapped_class,
            acme_anchor.clone(),
            T0,
            x,
            PoeCheckId::Format,
            "class-id",
        ),
        Case(
            "duplicate profile key",
            duplicate,
            acme_anchor.clone(),
            T0,
            x,
            PoeCheckId::Format,
            "appears 2 times",
        ),
        Case(
            "untagged COSE_Sign1",
            cose::untagged(&good()),
            acme_anchor.clone(),
            T0,
            x,
            PoeCheckId::Format,
            "tag 18",
        ),
        Case(
            "not CBOR",
            b"{\"owner\": \"acme\"}".to_vec(),
            acme_anchor.clone(),
            T0,
            x,
            PoeCheckId::Format,
            "COSE_Sign1",
        ),
    ];
    for Case(what, bytes, anchors, now, x, check, detail) in cases {
        let v = appraise(&bytes, &anchors, now, &x);
        assert_eq!(v.failed(), vec![check.name()], "{what}: {:#?}", v.checks);
        let c = v.checks.iter().find(|c| c.name == check).unwrap();
        assert!(c.detail.contains(detail), "{what}: {}", c.detail);
    }
}

#[test]
fn es384_is_accepted_as_well_as_esp384() {
    let b = sign_custom(&corim::payload_value(&content()), |p, _| {
        p.alg = Some(RegisteredLabelWithPrivate::Assigned(iana::Algorithm::ES384));
    });
    assert!(appraise_acme(&b, T0, &expect()).valid());
}

#[test]
fn facility_outside_the_protected_header_is_not_read() {
    // An unsigned (unprotected) site must not count: anyone could have added it.
    let b = sign_custom(&corim::payload_value(&content()), |p, u| {
        p.rest.retain(|(l, _)| !matches!(l, coset::Label::Text(_)));
        u.rest.push((
            coset::Label::Text(HDR_SITE.into()),
            Value::Text("fra".into()),
        ));
    });
    let v = appraise_acme(&b, T0, &expect());
    assert!(v.valid());
    assert_eq!(v.claims.unwrap().site, None);
    let facility = v
        .checks
        .iter()
        .find(|c| c.name == PoeCheckId::Facility)
        .unwrap();
    assert_eq!(facility.status, CheckStatus::Skip);
}

#[test]
fn typed_errors_carry_found_and_expected() {
    let two = {
        let mut p = corim::payload_value(&content());
        let Value::Array(tags) = entry(corim_map(&mut p), 1) else {
            unreachable!()
        };
        tags.push(tags[0].clone());
        corim::encode(&p)
    };
    assert_eq!(
        corim::decode(&two).unwrap_err(),
        PoeError::Cardinality {
            field: "tags",
            found: 2
        }
    );
    let e = PoeError::Expired {
        not_after: 10,
        now: 25,
    };
    assert_eq!(e.check(), PoeCheckId::Validity);
    assert!(e.to_string().contains("15 s ago"));
    let mut trailing = corim::encode(&corim::payload_value(&content()));
    trailing.push(0);
    assert!(matches!(
        corim::decode(&trailing),
        Err(PoeError::Cbor { reason, .. }) if reason.contains("1 bytes after")
    ));
}

#[test]
fn issuing_refuses_bad_requests() {
    let i = acme();
    let chain = [i.leaf.clone(), i.root.clone()];
    let bad = |r: PoeRequest<'_>| issue(&r, &i.key, &chain).unwrap_err();
    assert_eq!(bad(request(&[1; 20])), IssueError::PiidLength { found: 20 });
    assert_eq!(
        bad(PoeRequest {
            owner: "",
            ..request(&PIID)
        }),
        IssueError::OwnerLength { found: 0 }
    );
    assert!(matches!(
        bad(PoeRequest {
            not_after: 0,
            ..request(&PIID)
        }),
        IssueError::Validity { .. }
    ));
    let other = issuer_valid("other", T0 - 10, T0 + 10);
    assert_eq!(
        issue(&request(&PIID), &other.key, &chain).unwrap_err(),
        IssueError::KeyMismatch
    );
    assert_eq!(
        issue(&request(&PIID), &i.key, &[]).unwrap_err(),
        IssueError::NoChain
    );
    assert_eq!(signing_key_from_pem("nope").unwrap_err(), IssueError::Key);
}

#[test]
fn a_leaf_only_chain_verifies_under_its_root() {
    // The profile lets the issuer omit the root: x5chain is then a bare bstr.
    let i = acme();
    let b = issue(&request(&PIID), &i.key, std::slice::from_ref(&i.leaf)).unwrap();
    assert!(appraise_acme(&b, T0, &expect()).valid());
}

#[test]
fn resolve_picks_the_poe_of_the_platform() {
    let anchors = [acme().root.clone()];
    let mine = verify(&good(), &anchors, T0);
    let other = verify(&issue_by(acme(), &request(&[7; 32])), &anchors, T0);
    let forged = verify(
        &issue_by(&issuer_valid("x", T0 - 10, T0 + 10), &request(&PIID)),
        &anchors,
        T0,
    );
    let all = [forged.clone(), other.clone(), mine.clone()];
    let pid = hex::encode(PIID).to_uppercase();
    // the verified POE wins over a forged one for the same PIID
    let e = PoeEndorsement::resolve(&all, Some(&pid));
    assert_eq!(e.poe.as_ref(), Some(&mine));
    let checks = e.checks(Some("acme.example"), "fra");
    assert!(
        checks.iter().all(|c| c.status == CheckStatus::Pass),
        "{checks:#?}"
    );
    // only the forged one: chosen, and its chain check fails
    let e = PoeEndorsement::resolve(&[forged], Some(&pid));
    let failed: Vec<_> = e
        .checks(None, "fra")
        .into_iter()
        .filter(|c| c.status == CheckStatus::Fail)
        .map(|c| c.name)
        .collect();
    assert_eq!(failed, [PoeCheckId::Chain]);
    // none binds the platform
    let e = PoeEndorsement::resolve(&[other], Some(&pid));
    let c = e.checks(None, "fra");
    let piid = c.iter().find(|c| c.name == PoeCheckId::Piid).unwrap();
    assert_eq!(piid.status, CheckStatus::Fail);
    assert!(piid.detail.contains(&"07".repeat(32)), "{}", piid.detail);
    // no platform ID in the evidence
    let e = PoeEndorsement::resolve(&all, None);
    let c = e.checks(None, "fra");
    assert!(c.iter().any(|c| c.name == PoeCheckId::Piid
        && c.status == CheckStatus::Fail
        && c.detail.contains("names no platform instance ID")));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Any PIID, owner and window round-trip; the POE is valid exactly inside its window.
    #[test]
    fn round_trip_and_window(
        piid in prop_oneof![prop::collection::vec(any::<u8>(), 16), prop::collection::vec(any::<u8>(), 32)],
        owner in "[a-z0-9.-]{1,40}",
        start in (T0 - 5_000_000)..T0,
        len in 0u64..5_000_000,
        at in (T0 - 6_000_000)..(T0 + 6_000_000),
    ) {
        let req = PoeRequest { piid: &piid, owner: &owner, not_before: start, not_after: start + len, issuer: None, facility: None, site: None };
        let b = issue_by(acme(), &req);
        let v = appraise_acme(&b, at, &Expectations { piid: Some(&piid), owner: Some(&owner), site: None });
        let inside = start <= at && at <= start + len;
        prop_assert_eq!(v.valid(), inside, "{:?}", v.failed());
        if !inside {
            prop_assert_eq!(v.failed(), vec!["poe-validity"]);
        }
        let c = v.claims.unwrap();
        prop_assert_eq!(c.piid, hex::encode(&piid));
        prop_assert_eq!(c.owner, owner);
    }

    /// A flipped byte never yields a POE that verifies with other claims.
    #[test]
    fn flipped_bytes_never_pass_with_other_claims(at in 0usize..2_000, bit in 0u8..8) {
        let b = good();
        let original = appraise_acme(&b, T0, &expect()).claims;
        let mut f = b.clone();
        let i = at % f.len();
        f[i] ^= 1 << bit;
        let v = appraise_acme(&f, T0, &expect());
        if v.document_valid() {
            prop_assert_eq!(v.claims, original);
        }
    }
}

#[test]
fn every_prefix_is_rejected_without_panicking() {
    let b = good();
    for n in 0..b.len() {
        let v = verify(&b[..n], &[acme().root.clone()], T0);
        assert_eq!(v.failed(), vec!["poe-format"], "prefix of {n} bytes");
    }
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let v = verify(&vec![0u8; MAX_POE_LEN + 1], &[], T0);
    assert_eq!(v.failed(), vec!["poe-format"]);
    assert!(v.checks[0].detail.contains("more than"));
}
