//! `locus verify gce-attestation` and `cloud::gce` on the real GCE vTPM attestation
//! (`vectors/gce-vtpm/gce-cos-85-no-nonce.pb`): it verifies, every tampered region is rejected
//! by its named check, and its certified zone reaches a verdict.

use std::process::Command;

use locus_analysis::check::GceCheck;
use locus_analysis::verify::cloud::{gce, roots};
use locus_analysis::verify::eventlog;
use locus_analysis::{judge, NodeInput, Policy, Site, Verdict, World};

const PB: &[u8] = include_bytes!("vectors/gce-vtpm/gce-cos-85-no-nonce.pb");
const PB_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/gce-vtpm/gce-cos-85-no-nonce.pb"
);
const CA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/gce-vtpm/ca-certs"
);
/// 2025-01-01, inside the AK chain's validity (2021-08-31 .. 2051-08-24).
const AT: u64 = 1_735_689_600;

// ---------------------------------------------------------------- protobuf regions

fn varint(b: &[u8], at: &mut usize) -> u64 {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let c = b[*at];
        *at += 1;
        v |= u64::from(c & 0x7f) << shift;
        if c < 0x80 {
            break;
        }
    }
    v
}

/// Top-level fields of a protobuf message: (field number, value range; for varints the varint).
fn fields(b: &[u8], base: usize) -> Vec<(u64, std::ops::Range<usize>)> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < b.len() {
        let key = varint(b, &mut at);
        match key & 7 {
            0 => {
                let start = at;
                varint(b, &mut at);
                out.push((key >> 3, base + start..base + at));
            }
            2 => {
                let n = varint(b, &mut at) as usize;
                out.push((key >> 3, base + at..base + at + n));
                at += n;
            }
            t => panic!("wire type {t}"),
        }
    }
    out
}

fn field(b: &[u8], base: usize, n: u64) -> Vec<std::ops::Range<usize>> {
    fields(&b[base..], base)
        .into_iter()
        .filter(|(f, _)| *f == n)
        .map(|(_, r)| r)
        .collect()
}

fn sub(r: &std::ops::Range<usize>, n: u64) -> Vec<std::ops::Range<usize>> {
    fields(&PB[r.clone()], r.start)
        .into_iter()
        .filter(|(f, _)| *f == n)
        .map(|(_, r)| r)
        .collect()
}

/// The value range of PCR `index` in quote `q`.
fn pcr_value(q: usize, index: u64) -> std::ops::Range<usize> {
    let quote = &field(PB, 0, 2)[q];
    let pcrs = &sub(quote, 3)[0];
    for entry in sub(pcrs, 2) {
        let parts = fields(&PB[entry.clone()], entry.start);
        let mut key_at = parts.iter().find(|(f, _)| *f == 1).unwrap().1.start;
        if varint(PB, &mut key_at) == index {
            return parts.iter().find(|(f, _)| *f == 2).unwrap().1.clone();
        }
    }
    panic!("no PCR{index} in quote {q}");
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> usize {
    from + hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("pattern present")
}

fn flipped(at: usize) -> Vec<u8> {
    let mut b = PB.to_vec();
    b[at] ^= 0x01;
    b
}

fn gce_roots() -> Vec<Vec<u8>> {
    roots::named("gce").unwrap()
}

fn failed(bytes: &[u8], nonce: Option<&[u8]>) -> Vec<GceCheck> {
    let r = gce::verify_attestation(bytes, nonce, &gce_roots(), AT);
    assert_eq!(r.valid, r.failed_checks.is_empty());
    r.failed_checks
}

// ---------------------------------------------------------------- library

#[test]
fn the_vector_verifies_and_names_its_zone() {
    let r = gce::verify_attestation(PB, None, &gce_roots(), AT);
    assert!(r.valid, "{:?}", r.checks);
    let id = r.identity.unwrap();
    assert_eq!(id.zone, "us-central1-a");
    assert_eq!(id.instance_name, "cos-test");
    assert_eq!(
        r.banks.iter().map(|b| b.hash.as_str()).collect::<Vec<_>>(),
        ["sha1", "sha256", "sha384"]
    );
    assert_eq!(r.ak_cert_chain.len(), 3);
}

#[test]
fn only_the_legacy_chain_files_verify_it() {
    let file = |n: &str| std::fs::read(format!("{CA}/{n}")).unwrap();
    let legacy = vec![file("tpm_ek_intermediate_2.crt"), file("tpm_ek_root_1.cer")];
    assert!(gce::verify_attestation(PB, None, &legacy, AT).valid);
    let cas = vec![
        file("gcp_ek_ak_ca_intermediate_v3.crt"),
        file("gcp_ek_ak_ca_root.crt"),
    ];
    for (name, roots) in [
        ("cas", cas),
        ("root without intermediate", vec![file("tpm_ek_root_1.cer")]),
        ("none", vec![]),
    ] {
        let r = gce::verify_attestation(PB, None, &roots, AT);
        assert_eq!(r.failed_checks, [GceCheck::AkCertChain], "{name}");
        assert_eq!(r.endorsed_zone(), None);
    }
    // Outside the validity window.
    let r = gce::verify_attestation(PB, None, &gce_roots(), 1_600_000_000);
    assert_eq!(r.failed_checks, [GceCheck::AkCertChain]);
}

#[test]
fn nonces_are_required_and_compared() {
    assert_eq!(failed(PB, Some(&[])), [GceCheck::NonceRequired]);
    assert_eq!(failed(PB, Some(b"fresh")), [GceCheck::Nonce]);
    let r = gce::verify_attestation(PB, Some(b"fresh"), &gce_roots(), AT);
    assert_eq!(r.checks.errors().count(), 3, "one per bank");
    assert!(r.checks.errors().all(|e| matches!(
        e,
        gce::GceError::NonceMismatch { expected, found, .. } if expected == "6672657368" && found.is_empty()
    )));
}

#[test]
fn every_tampered_region_is_rejected_by_its_check() {
    let ak_pub = &field(PB, 0, 1)[0];
    let quotes = field(PB, 0, 2);
    let event_log = &field(PB, 0, 3)[0];
    let ak_cert = &field(PB, 0, 6)[0];

    // An event digest (sha256 bank of the first measured event) inside the log.
    let log = eventlog::parse(&PB[event_log.clone()]).unwrap();
    let first = log
        .events
        .iter()
        .find(|e| e.event_type != eventlog::EV_NO_ACTION && e.index == 0)
        .unwrap();
    let digest = first.digest(eventlog::ALG_SHA256).unwrap();
    let digest_at = find(PB, digest, event_log.start);
    assert!(digest_at < event_log.end);
    let zone_at = find(PB, b"us-central1-a", ak_cert.start);
    assert!(zone_at < ak_cert.end);

    let mut cases: Vec<(&str, usize, Vec<GceCheck>)> = vec![
        // TPMT_PUBLIC: objectAttributes (sign bit) and the RSA modulus' last byte
        (
            "ak_pub attributes (restricted)",
            ak_pub.start + 5,
            vec![GceCheck::AkPublic],
        ),
        (
            "ak_pub modulus",
            ak_pub.end - 1,
            vec![
                GceCheck::QuoteSignature,
                GceCheck::AkQualifiedName,
                GceCheck::AkCertKey,
            ],
        ),
        // a reserved attribute bit: the key still parses and is the certified one, but the
        // quotes' qualifiedSigner names the original public area
        (
            "ak_pub attributes (reserved bit)",
            ak_pub.start + 7,
            vec![GceCheck::AkQualifiedName],
        ),
        (
            "event log header",
            event_log.start + 4,
            vec![GceCheck::EventLogParse],
        ),
        ("event digest", digest_at, vec![GceCheck::EventLogReplay]),
        ("AK certificate zone", zone_at, vec![GceCheck::AkCertChain]),
        (
            "AK certificate signature",
            ak_cert.end - 1,
            vec![GceCheck::AkCertChain],
        ),
    ];
    for (q, quote) in quotes.iter().enumerate() {
        let attest = &sub(quote, 1)[0];
        let sig = &sub(quote, 2)[0];
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        cases.extend([
            (
                leak(format!("quote {q} qualifiedSigner")),
                attest.start + 10,
                vec![GceCheck::QuoteSignature, GceCheck::AkQualifiedName],
            ),
            (
                leak(format!("quote {q} magic")),
                attest.start,
                vec![GceCheck::QuoteParse],
            ),
            // clock field: signed, not otherwise checked
            (
                leak(format!("quote {q} clock")),
                attest.start + 45,
                vec![GceCheck::QuoteSignature],
            ),
            (
                leak(format!("quote {q} pcrDigest")),
                attest.end - 1,
                vec![GceCheck::QuoteSignature, GceCheck::PcrDigest],
            ),
            (
                leak(format!("quote {q} signature")),
                sig.end - 1,
                vec![GceCheck::QuoteSignature],
            ),
            (
                leak(format!("quote {q} PCR0")),
                pcr_value(q, 0).start,
                vec![GceCheck::PcrDigest, GceCheck::EventLogReplay],
            ),
            // PCR15 is quoted but not in the event log
            (
                leak(format!("quote {q} PCR15")),
                pcr_value(q, 15).end - 1,
                vec![GceCheck::PcrDigest],
            ),
        ]);
    }
    for (name, at, want) in cases {
        assert_eq!(failed(&flipped(at), None), want, "{name} (offset {at})");
    }
}

#[test]
fn no_byte_of_the_ak_public_area_or_the_quotes_can_change() {
    let mut regions = vec![field(PB, 0, 1)[0].clone()];
    for quote in field(PB, 0, 2) {
        regions.push(sub(&quote, 1)[0].clone());
        regions.push(sub(&quote, 2)[0].clone());
    }
    for r in regions {
        for at in r {
            let r = gce::verify_attestation(&flipped(at), None, &gce_roots(), AT);
            assert!(!r.valid, "offset {at}");
        }
    }
}

#[test]
fn a_zone_edited_with_a_valid_structure_still_fails_the_chain() {
    // Same length, other zone: the certificate still parses, only its signature breaks.
    let ak_cert = &field(PB, 0, 6)[0];
    let at = find(PB, b"us-central1-a", ak_cert.start);
    let mut b = PB.to_vec();
    b[at..at + 13].copy_from_slice(b"europe-west3a");
    let r = gce::verify_attestation(&b, None, &gce_roots(), AT);
    assert_eq!(r.failed_checks, [GceCheck::AkCertChain]);
    assert_eq!(r.identity.as_ref().unwrap().zone, "europe-west3a");
    assert_eq!(
        r.endorsed_zone(),
        None,
        "an unverified zone is no endorsement"
    );
}

#[test]
fn truncated_and_oversized_files_are_rejected() {
    assert_eq!(failed(&[], None), [GceCheck::Decode]);
    assert_eq!(failed(&PB[..PB.len() - 1], None), [GceCheck::Decode]);
    // Prefixes ending on a field boundary decode, with fields missing.
    let ak_cert = &field(PB, 0, 6)[0];
    // field 6's tag (0x32) and its two-byte length precede the certificate
    let before_cert = ak_cert.start - 3;
    assert_eq!(PB[before_cert], 0x32);
    assert_eq!(failed(&PB[..before_cert], None), [GceCheck::AkCertMissing]);
    for n in (0..PB.len()).step_by(101) {
        let r = gce::verify_attestation(&PB[..n], None, &gce_roots(), AT);
        assert!(!r.valid, "prefix {n}");
        assert!(!r.failed_checks.is_empty());
    }
    let mut big = PB.to_vec();
    big.resize(locus_analysis::verify::cloud::MAX_EVIDENCE_LEN + 1, 0);
    assert_eq!(failed(&big, None), [GceCheck::Oversized]);
}

// ---------------------------------------------------------------- verdict

fn site(name: &str, lat: f64, lon: f64) -> Site {
    Site {
        name: name.into(),
        lat,
        lon,
    }
}

#[test]
fn a_node_claiming_europe_west3_with_this_vtpm_is_relocated_to_us_central1_a() {
    let world = World {
        sites: vec![site("fra", 50.11, 8.68), site("iowa", 41.26, -95.86)],
        probers: vec![],
        landmarks: vec![],
    };
    let mut policy = Policy::default();
    policy
        .zone_sites
        .insert("europe-west3".into(), "fra".into());
    policy
        .zone_sites
        .insert("us-central1".into(), "iowa".into());
    let report = gce::verify_attestation(PB, None, &gce_roots(), AT);
    // GCE's verification pins no code: the verdict it feeds is capped.
    assert!(report.evidence_summary().unpinned_code);
    let node = |claim: &str| NodeInput {
        name: "gce-node".into(),
        claim: claim.into(),
        probes: vec![],
        in_td: Default::default(),
        anchors: vec![],
        evidence: Some(report.evidence_summary()),
        baseline: vec![],
        endorsement: None,
        poe: None,
        ..NodeInput::default()
    };

    let j = judge(&world, &node("fra"), &policy);
    assert_eq!(j.verdict, Verdict::Relocated, "{:#?}", j.reasons);
    assert!(
        j.reasons.iter().any(|r| r.contains("us-central1-a")),
        "{:#?}",
        j.reasons
    );

    // Claiming the certified zone's site passes the zone check.
    let j = judge(&world, &node("iowa"), &policy);
    assert_ne!(j.verdict, Verdict::Relocated, "{:#?}", j.reasons);
    assert!(j
        .checks
        .iter()
        .any(|c| c.name == locus_analysis::check::VerdictCheck::Zone
            && c.status == locus_analysis::CheckStatus::Pass));

    // A tampered certificate endorses nothing: the evidence is invalid instead.
    let ak_cert = &field(PB, 0, 6)[0];
    let bad = gce::verify_attestation(
        &flipped(find(PB, b"us-central1-a", ak_cert.start)),
        None,
        &gce_roots(),
        AT,
    );
    assert_eq!(bad.evidence_summary().zone, None);
    let mut n = node("fra");
    n.evidence = Some(bad.evidence_summary());
    assert_eq!(judge(&world, &n, &policy).verdict, Verdict::EvidenceInvalid);
}

// ---------------------------------------------------------------- CLI

fn locus(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_locus"))
        .args(["verify", "gce-attestation"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_verifies_the_vector_with_named_and_file_roots() {
    let (code, out, err) = locus(&[
        PB_PATH,
        "--roots",
        "gce",
        "--allow-no-nonce",
        "--at",
        "2025-01-01T00:00:00Z",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["identity"]["zone"], "us-central1-a");
    assert_eq!(v["at"], AT);
    assert!(v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["check"] == "AkCertChain" && c["status"] == "pass"));

    let inter = format!("{CA}/tpm_ek_intermediate_2.crt");
    let root = format!("{CA}/tpm_ek_root_1.cer");
    let (code, out, _) = locus(&[
        PB_PATH,
        "--roots",
        &inter,
        &root,
        "--allow-no-nonce",
        "--at",
        "1735689600",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("zone:          us-central1-a"), "{out}");
}

#[test]
fn cli_rejects_missing_wrong_nonces_and_the_wrong_root() {
    let at = ["--at", "1735689600"];
    let (code, out, _) = locus(&[&[PB_PATH, "--roots", "gce"][..], &at].concat());
    assert_eq!(code, 1);
    assert!(out.contains("failed checks NonceRequired"), "{out}");

    let (code, out, _) =
        locus(&[&[PB_PATH, "--roots", "gce", "--nonce", "00ff"][..], &at].concat());
    assert_eq!(code, 1);
    assert!(out.contains("failed checks Nonce\n"), "{out}");

    let cas = format!("{CA}/gcp_ek_ak_ca_root.crt");
    let (code, out, _) =
        locus(&[&[PB_PATH, "--roots", &cas, "--allow-no-nonce"][..], &at].concat());
    assert_eq!(code, 1);
    assert!(out.contains("failed checks AkCertChain"), "{out}");
}

#[test]
fn cli_usage_and_unreadable_input_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pb");
    let missing = missing.to_str().unwrap();
    for args in [
        vec![missing, "--roots", "gce", "--allow-no-nonce"],
        vec![PB_PATH, "--allow-no-nonce"],
        vec![PB_PATH, "--roots", "no-such-set", "--allow-no-nonce"],
        vec![PB_PATH, "--roots", "gce", "--nonce", "zz"],
        vec![
            PB_PATH,
            "--roots",
            "gce",
            "--nonce",
            "00",
            "--allow-no-nonce",
        ],
        vec![
            PB_PATH,
            "--roots",
            "gce",
            "--allow-no-nonce",
            "--at",
            "yesterday",
        ],
    ] {
        let (code, out, err) = locus(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
    }
    // Truncated and oversized files are read, then rejected by their check.
    let short = dir.path().join("short.pb");
    std::fs::write(&short, &PB[..1000]).unwrap();
    let (code, out, _) = locus(&[
        short.to_str().unwrap(),
        "--roots",
        "gce",
        "--allow-no-nonce",
    ]);
    assert_eq!(code, 1);
    assert!(out.contains("failed checks Decode"), "{out}");
    let big = dir.path().join("big.pb");
    let mut b = PB.to_vec();
    b.resize(3 << 20, 0);
    std::fs::write(&big, b).unwrap();
    let (code, out, _) = locus(&[big.to_str().unwrap(), "--roots", "gce", "--allow-no-nonce"]);
    assert_eq!(code, 1);
    assert!(out.contains("failed checks Oversized"), "{out}");
}

// ---------------------------------------------------------------- policy

#[test]
fn policies_select_the_gce_roots_by_name() {
    use locus_analysis::verify::bundle::ekchain;
    use locus_analysis::verify::bundle::policy::PolicyFile;

    // EK roots only: no TD to pin here (pinning is tested in tests/evidence_bundle.rs), no
    // vTPM chain to bound (tests/vtpm_stub.rs).
    const UNBOUND: &str = "allow_unpinned_code = true\n[checks]\nvtpm_chain = \"optional\"\n";
    let file = PolicyFile::from_toml(&format!("{UNBOUND}[ek]\nroots = [\"gce\"]\n")).unwrap();
    let policy = file
        .resolve(&|p: &str| Err(format!("no file {p} in this test")))
        .unwrap();
    assert_eq!(policy.ek_roots.len(), 2, "legacy and CAS roots");
    assert_eq!(policy.ek_intermediates.len(), 3);
    let ak_cert = &PB[field(PB, 0, 6)[0].clone()];
    let chain = ekchain::verify_chain(
        ak_cert,
        &policy.ek_intermediates,
        &policy.ek_roots,
        AT as i64,
    )
    .unwrap();
    assert_eq!(chain.len(), 3);

    // Only the CAS set: the legacy-CA AK certificate does not chain.
    let cas = PolicyFile::from_toml(&format!("{UNBOUND}[ek]\nroots = [\"gce-cas\"]\n"))
        .unwrap()
        .resolve(&|p: &str| Err(format!("no file {p}")))
        .unwrap();
    assert!(matches!(
        ekchain::verify_chain(ak_cert, &cas.ek_intermediates, &cas.ek_roots, AT as i64),
        Err(ekchain::EkChainError::UntrustedIssuer { .. })
    ));
    // Other names are still files.
    assert!(
        PolicyFile::from_toml("allow_unpinned_code = true\n[ek]\nroots = [\"aws\"]\n")
            .unwrap()
            .resolve(&|p: &str| Err(format!("no file {p}")))
            .is_err()
    );
}
