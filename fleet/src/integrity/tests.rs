use super::*;

/// The test vector of docs/integrity.md.
fn vector_round() -> (RoundRecord, Vec<SampleRecord>) {
    let r = RoundRecord {
        prober: "p-ams".into(),
        target: "node-fra-1".into(),
        claim: "fra".into(),
        address: "127.0.0.1:4433".into(),
        spki: Some("3059".into()),
        started_unix_ns: 1_800_000_000_000_000_000,
        duration_ns: 10_000_000_000,
        sent: 2,
        answered: 2,
        lost: 0,
        late: 0,
        out_of_order: 0,
        violations: 0,
        min_rtt_ns: Some(7_000_000),
        p50_rtt_ns: Some(7_500_000),
        p99_rtt_ns: Some(8_000_000),
        min_eff_rtt_ns: Some(6_980_000),
        inside_p50_ns: Some(20_000),
        error: None,
        seal: None,
    };
    let samples = vec![
        SampleRecord {
            sent_unix_ns: 1_800_000_000_500_000_000,
            rtt_ns: 8_000_000,
            inside_ns: 20_000,
        },
        SampleRecord {
            sent_unix_ns: 1_800_000_000_000_000_000,
            rtt_ns: 7_000_000,
            inside_ns: 20_000,
        },
    ];
    (r, samples)
}

fn vector_key() -> ProberIdentity {
    ProberIdentity::from_seed([0x11; 32])
}

#[test]
fn test_vector() {
    let (mut r, samples) = vector_round();
    let id = vector_key();
    seal_round(&id, &mut r, &samples);
    let seal = r.seal.as_ref().unwrap();
    let digest = seal.digest.as_deref().unwrap();
    let message = round_message(&r, digest);
    assert_eq!(id.public_key().to_string(), PUBLIC_KEY);
    assert_eq!(seal.key_id, KEY_ID);
    assert_eq!(hex::encode(digest), SAMPLES_SHA256);
    assert_eq!(hex::encode(&message), MESSAGE);
    assert_eq!(hex::encode(&seal.signature), SIGNATURE);
}

const PUBLIC_KEY: &str = "0EqyMnQrtKs6E2i9RhXk5tAiSrcaAWuvhSCjMsl3hzc=";
const KEY_ID: &str = "10ba682c8ad13513";
const SAMPLES_SHA256: &str = "94344ea108a200fc8cb949165537b89fb723a485db337bfbf261b62771773ca5";
// The message is the concatenation of the domain and the fields (docs/integrity.md).
const MESSAGE: &str = "6c6f6375732f666c6565742f726f756e642f76310000000005702d616d730000000a6e6f64652d6672612d31000000036672610000000e3132372e302e302e313a3434333301000000043330353918fae27693b4000000000002540be4000000000000000002000000000000000200000000000000000000000000000000000000000000000000000000000000000100000000006acfc00100000000007270e00100000000007a12000100000000006a81a0010000000000004e20000000002094344ea108a200fc8cb949165537b89fb723a485db337bfbf261b62771773ca5";
const SIGNATURE: &str = "6a6aa89e5fea72a02ba3a02b18441931395faafa67bcfb530ab071e38feb53124cec71401ab724e247af186528100f4a2deac3e21e6a87cc8f8f8f709cc9cc08";

fn trust() -> Trust {
    Trust::new(
        [("p-ams".to_string(), Some(vector_key().public_key()))],
        false,
    )
}

#[test]
fn a_sealed_round_verifies_and_every_altered_column_is_rejected() {
    let (mut r, samples) = vector_round();
    seal_round(&vector_key(), &mut r, &samples);
    let t = trust();
    t.check_round(&r, Some(&samples)).unwrap();
    // Sample order as returned by the database does not matter.
    let reversed: Vec<_> = samples.iter().rev().copied().collect();
    t.check_round(&r, Some(&reversed)).unwrap();
    type Alter = fn(&mut RoundRecord);
    let alters: &[(&str, Alter)] = &[
        ("prober", |r| r.prober = "p-par".into()),
        ("target", |r| r.target = "node-fra-2".into()),
        ("claim", |r| r.claim = "ams".into()),
        ("address", |r| r.address = "127.0.0.1:1".into()),
        ("spki", |r| r.spki = None),
        ("started", |r| r.started_unix_ns += 1),
        ("duration", |r| r.duration_ns += 1),
        ("sent", |r| r.sent += 1),
        ("answered", |r| r.answered -= 1),
        ("lost", |r| r.lost += 1),
        ("late", |r| r.late += 1),
        ("ooo", |r| r.out_of_order += 1),
        ("violations", |r| r.violations += 1),
        ("min", |r| r.min_rtt_ns = Some(700_000)),
        ("p50", |r| r.p50_rtt_ns = None),
        ("p99", |r| r.p99_rtt_ns = Some(1)),
        ("min_eff", |r| r.min_eff_rtt_ns = Some(698_000)),
        ("inside", |r| r.inside_p50_ns = Some(1)),
        ("error", |r| r.error = Some(String::new())),
        ("digest", |r| {
            r.seal.as_mut().unwrap().digest = Some(vec![0; 32]);
        }),
    ];
    for (name, alter) in alters {
        let mut bad = r.clone();
        alter(&mut bad);
        // A row moved to another prober is that prober's unknown row; all else fails to verify.
        let expected = if *name == "prober" {
            Rejection::UnknownProber
        } else {
            Rejection::BadSignature
        };
        assert_eq!(t.check_round(&bad, None), Err(expected), "{name}");
    }
    let mut tenth = samples.clone();
    for s in &mut tenth {
        s.rtt_ns /= 10;
    }
    assert_eq!(
        t.check_round(&r, Some(&tenth)),
        Err(Rejection::SamplesMismatch)
    );
    assert_eq!(
        t.check_round(&r, Some(&samples[..1])),
        Err(Rejection::SamplesMismatch)
    );
    // Pruned samples are not looked at: the round itself still verifies.
    t.check_round(&r, None).unwrap();
}

#[test]
fn unsigned_unknown_and_foreign_keys_are_rejected() {
    let (mut r, samples) = vector_round();
    let t = trust();
    assert_eq!(t.check_round(&r, None), Err(Rejection::Unsigned));
    seal_round(&ProberIdentity::from_seed([0x22; 32]), &mut r, &samples);
    assert_eq!(t.check_round(&r, None), Err(Rejection::UnknownKey));
    // The right key id on a signature by another key.
    let mut forged = r.clone();
    forged.seal.as_mut().unwrap().key_id = vector_key().public_key().key_id();
    assert_eq!(t.check_round(&forged, None), Err(Rejection::BadSignature));
    let mut other = r.clone();
    other.prober = "p-rogue".into();
    assert_eq!(t.check_round(&other, None), Err(Rejection::UnknownProber));
    // Unchecked trust takes every row; allow_unsigned takes unkeyed probers' rows only.
    Trust::unchecked().check_round(&other, None).unwrap();
    let mixed = Trust::new(
        [
            ("p-ams".to_string(), Some(vector_key().public_key())),
            ("p-old".to_string(), None),
        ],
        true,
    );
    let (mut old, _) = vector_round();
    old.prober = "p-old".into();
    mixed.check_round(&old, None).unwrap();
    let (unsigned, _) = vector_round();
    assert_eq!(mixed.check_round(&unsigned, None), Err(Rejection::Unsigned));
    assert_eq!(
        mixed.check_round(&other, None),
        Err(Rejection::UnknownProber)
    );
}

#[test]
fn evidence_records_are_sealed_with_their_bundle_digest() {
    let id = vector_key();
    let mut e = EvidenceRecord {
        prober: "p-ams".into(),
        target: "node-fra-1".into(),
        at_unix_ns: 1_800_000_000_000_000_000,
        rtt_ns: Some(5_000_000),
        ok: true,
        error: None,
        nonce: Some(vec![7; 32]),
        bundle: Some(b"bundle bytes".to_vec()),
        peer_spki: Some("3059".into()),
        seal: None,
    };
    seal_evidence(&id, &mut e);
    let t = trust();
    t.check_evidence(&e).unwrap();
    let mut pruned = e.clone();
    pruned.bundle = None;
    t.check_evidence(&pruned).unwrap();
    let mut swapped = e.clone();
    swapped.bundle = Some(b"other bundle".to_vec());
    assert_eq!(t.check_evidence(&swapped), Err(Rejection::BundleMismatch));
    let mut faster = e.clone();
    faster.rtt_ns = Some(1_000);
    assert_eq!(t.check_evidence(&faster), Err(Rejection::BadSignature));
    let mut nonce = e.clone();
    nonce.nonce = Some(vec![8; 32]);
    assert_eq!(t.check_evidence(&nonce), Err(Rejection::BadSignature));
    let mut key = e.clone();
    key.peer_spki = Some("3058".into());
    assert_eq!(t.check_evidence(&key), Err(Rejection::BadSignature));
    // A round's signature never passes for an evidence record (domains differ).
    assert_ne!(
        &evidence_message(&e, None)[..ROUND_DOMAIN.len()],
        ROUND_DOMAIN
    );
}
