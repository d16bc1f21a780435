//! One tampering case per region of a TDX quote and its collateral, each rejected with the
//! check that names it: on dcap-qvl's real sample (pinned time) and on a lab quote.

use locus_analysis::verify::tdx::{self, Collateral, TdxError, TrustRoot, MAX_QUOTE_LEN};
use locus_responder::tdx::lab::{LabOptions, LabTdx};
use locus_responder::tdx::TdxQuoter;

const SAMPLE: &[u8] = include_bytes!("vectors/dcap-qvl/tdx_quote");
const SAMPLE_COLLATERAL: &[u8] = include_bytes!("vectors/dcap-qvl/tdx_quote_collateral.json");
const SAMPLE_AT: u64 = 1_752_919_234;
const LAB_AT: u64 = 1_780_000_000;

/// What to change, relative to a valid (quote, collateral, root, time).
#[derive(Clone)]
enum Tamper {
    /// XOR a byte of the quote.
    Flip(usize),
    /// Replace a base64 character of the PEM chain with another base64 character.
    Pem(usize),
    Truncate(usize),
    Append(Vec<u8>),
    Collateral(fn(&mut Collateral)),
    At(u64),
    Root(TrustRoot),
}

struct Subject {
    name: &'static str,
    quote: Vec<u8>,
    collateral: Collateral,
    root: TrustRoot,
    at: u64,
    /// Offsets of the PEM certificates (leaf, CA, root) inside the quote.
    certs: Vec<usize>,
    /// Declared end of the quote proper.
    end: usize,
    /// The check a time long after the subject's validity fails first.
    expired_check: &'static str,
}

fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    (0..hay.len().saturating_sub(needle.len()))
        .filter(|&i| &hay[i..i + needle.len()] == needle)
        .collect()
}

fn subject(
    name: &'static str,
    quote: Vec<u8>,
    collateral: Collateral,
    root: TrustRoot,
    at: u64,
    expired_check: &'static str,
) -> Subject {
    let certs = find_all(&quote, b"-----BEGIN CERTIFICATE-----");
    let sig_len = u32::from_le_bytes(quote[632..636].try_into().unwrap()) as usize;
    Subject {
        name,
        certs,
        end: 636 + sig_len,
        quote,
        collateral,
        root,
        at,
        expired_check,
    }
}

fn sample() -> Subject {
    subject(
        "intel sample",
        SAMPLE.to_vec(),
        tdx::collateral_from_json(SAMPLE_COLLATERAL).unwrap(),
        TrustRoot::IntelSgx,
        SAMPLE_AT,
        // Its PCK CRL expires one second after SAMPLE_AT, but the TCB info is checked first.
        "TcbInfoExpired",
    )
}

fn lab_subject(lab: &LabTdx) -> Subject {
    let quote = lab.quoter().quote([0x42; 64]).unwrap();
    subject(
        "lab quote",
        quote,
        lab.collateral().clone(),
        TrustRoot::Configured(lab.root_ca_der().to_vec()),
        LAB_AT,
        // `lab()` keeps its CRLs valid longer than its TCB info.
        "TcbInfoExpired",
    )
}

fn apply(s: &Subject, t: &Tamper) -> Result<tdx::TdxVerified, TdxError> {
    let mut q = s.quote.clone();
    let mut c = s.collateral.clone();
    let mut root = s.root.clone();
    let mut at = s.at;
    match t {
        Tamper::Flip(i) => q[*i] ^= 0x01,
        Tamper::Pem(i) => q[*i] = if q[*i] == b'A' { b'B' } else { b'A' },
        Tamper::Truncate(n) => q.truncate(*n),
        Tamper::Append(b) => q.extend_from_slice(b),
        Tamper::Collateral(f) => f(&mut c),
        Tamper::At(t) => at = *t,
        Tamper::Root(r) => root = r.clone(),
    }
    tdx::verify(&q, &c, &root, at)
}

fn flip_last(v: &mut [u8]) {
    let n = v.len() - 1;
    v[n] ^= 0x01;
}

/// (region, tampering, expected check). Offsets are those of a v4 quote (both subjects are v4).
fn table(s: &Subject) -> Vec<(&'static str, Tamper, &'static str)> {
    use Tamper::*;
    // Inside the base64 body of a certificate, well past its header line: its TBS part.
    let pem = |k: usize| s.certs[k] + 28 + 300;
    // In the last base64 line of a certificate: its signature.
    let pem_sig = |k: usize| {
        let end = find_all(&s.quote[s.certs[k]..], b"-----END CERTIFICATE-----")[0];
        s.certs[k] + end - 12
    };
    vec![
        ("header: version", Flip(1), "HeaderVersion"),
        ("header: attestation key type", Flip(2), "HeaderKeyType"),
        ("header: TEE type", Flip(4), "HeaderTeeType"),
        ("header: QE vendor ID", Flip(12), "HeaderQeVendor"),
        ("header: user data (signed)", Flip(30), "QuoteSignature"),
        ("TD report: TEE_TCB_SVN", Flip(48 + 2), "QuoteSignature"),
        ("TD report: MRTD", Flip(184), "QuoteSignature"),
        ("TD report: RTMR0", Flip(376), "QuoteSignature"),
        ("REPORTDATA", Flip(568), "QuoteSignature"),
        ("REPORTDATA last byte", Flip(631), "QuoteSignature"),
        (
            "signature data length (632)",
            Flip(632),
            "SignatureDataLength",
        ),
        ("quote signature", Flip(636), "QuoteSignature"),
        ("attestation key", Flip(700), "QeReportData"),
        (
            "certification data type (764)",
            Flip(764),
            "CertificationDataType",
        ),
        ("certification data size", Flip(766), "SignatureDataLength"),
        ("QE report: MRENCLAVE", Flip(770 + 64), "QeReportSignature"),
        (
            "QE report: REPORTDATA",
            Flip(770 + 320),
            "QeReportSignature",
        ),
        ("QE report signature", Flip(1154), "QeReportSignature"),
        ("QE auth data length", Flip(1218), "CertificationDataType"),
        ("QE auth data", Flip(1220), "QeReportData"),
        ("PCK chain type", Flip(1252), "CertificationDataType"),
        ("PCK chain size", Flip(1254), "CertificationDataLength"),
        (
            "PCK chain: leaf certificate body",
            Pem(pem(0)),
            "CertificateChain",
        ),
        (
            "PCK chain: leaf certificate signature",
            Pem(pem_sig(0)),
            "CertificateChain",
        ),
        (
            "PCK chain: PCK CA certificate signature",
            Pem(pem_sig(1)),
            "CertificateChain",
        ),
        (
            "PCK chain: embedded root",
            Pem(pem(2)),
            "EmbeddedRootMismatch",
        ),
        (
            "trailing non-zero byte",
            Append(vec![0, 0, 7]),
            "TrailingBytes",
        ),
        ("truncated by one byte", Truncate(s.end - 1), "Truncated"),
        ("truncated inside the header", Truncate(20), "Truncated"),
        ("oversized", Append(vec![0; MAX_QUOTE_LEN]), "Oversized"),
        (
            "collateral: TCB info body",
            Collateral(|c| c.tcb_info = c.tcb_info.replacen("\"version\":3", "\"version\":4", 1)),
            "TcbInfoSignature",
        ),
        (
            "collateral: TCB info signature",
            Collateral(|c| c.tcb_info_signature[5] ^= 1),
            "TcbInfoSignature",
        ),
        (
            "collateral: QE identity body",
            Collateral(|c| {
                c.qe_identity = c
                    .qe_identity
                    .replacen("\"isvprodid\":2", "\"isvprodid\":3", 1)
            }),
            "QeIdentitySignature",
        ),
        (
            "collateral: QE identity signature",
            Collateral(|c| c.qe_identity_signature[5] ^= 1),
            "QeIdentitySignature",
        ),
        (
            "collateral: root CA CRL signature",
            Collateral(|c| flip_last(&mut c.root_ca_crl)),
            "RootCaCrl",
        ),
        (
            "collateral: PCK CRL signature",
            Collateral(|c| flip_last(&mut c.pck_crl)),
            "CertificateChain",
        ),
        (
            "collateral: TCB info issuer chain",
            Collateral(|c| c.tcb_info_issuer_chain = c.pck_crl_issuer_chain.clone()),
            "CertificateChain",
        ),
        (
            "time: not yet valid",
            At(s.at - 40 * 86_400),
            "TcbInfoNotYetValid",
        ),
        ("time: expired", At(s.at + 40 * 86_400), s.expired_check),
        (
            "root: another root",
            Root(TrustRoot::Configured(b"not a root".to_vec())),
            "EmbeddedRootMismatch",
        ),
    ]
}

fn run_table(s: &Subject) {
    tdx::verify(&s.quote, &s.collateral, &s.root, s.at).expect("the untampered subject verifies");
    let mut failures = Vec::new();
    for (region, t, want) in table(s) {
        match apply(s, &t) {
            Ok(_) => failures.push(format!("{region}: accepted, want {want}")),
            Err(e) if e.check() == want => {}
            Err(e) => failures.push(format!("{region}: got {} ({e}), want {want}", e.check())),
        }
    }
    assert!(failures.is_empty(), "{}:\n{}", s.name, failures.join("\n"));
}

#[test]
fn real_sample_every_region_rejected_by_its_check() {
    run_table(&sample());
}

#[test]
fn lab_quote_every_region_rejected_by_its_check() {
    let lab = lab();
    run_table(&lab_subject(&lab));
}

#[test]
fn real_sample_crl_expiry_is_its_own_check() {
    let s = sample();
    let err = apply(&s, &Tamper::At(SAMPLE_AT + 1)).unwrap_err();
    assert_eq!(err.check(), "CrlExpired", "{err}");
}

#[test]
fn zero_padding_is_accepted() {
    let lab = LabTdx::generate_with(&LabOptions::at(LAB_AT)).unwrap();
    let s = lab_subject(&lab);
    let r = apply(&s, &Tamper::Append(vec![0; 3000])).unwrap();
    assert_eq!(r.report_data, [0x42; 64]);
}

#[test]
fn revoked_pck_certificate_is_rejected() {
    let lab = LabTdx::generate_with(&LabOptions {
        revoke_pck_leaf: true,
        ..LabOptions::at(LAB_AT)
    })
    .unwrap();
    let s = lab_subject(&lab);
    let err = tdx::verify(&s.quote, &s.collateral, &s.root, s.at).unwrap_err();
    assert_eq!(err.check(), "CertificateRevoked", "{err}");
}

#[test]
fn collateral_from_another_root_is_rejected() {
    // The quote's embedded root is the configured one, but (parts of) the collateral come
    // from another lab.
    let (a, b) = (lab(), lab());
    let s = lab_subject(&a);
    let err = tdx::verify(&s.quote, b.collateral(), &s.root, s.at).unwrap_err();
    assert_eq!(err.check(), "RootCaCrl", "{err}");
    let mut mixed = a.collateral().clone();
    let other = b.collateral();
    mixed.tcb_info_issuer_chain = other.tcb_info_issuer_chain.clone();
    mixed.tcb_info = other.tcb_info.clone();
    mixed.tcb_info_signature = other.tcb_info_signature.clone();
    let err = tdx::verify(&s.quote, &mixed, &s.root, s.at).unwrap_err();
    assert_eq!(err.check(), "UnknownIssuer", "{err}");
}

fn lab() -> LabTdx {
    LabTdx::generate_with(&LabOptions {
        crl_validity_secs: 60 * 86_400,
        ..LabOptions::at(LAB_AT)
    })
    .unwrap()
}

#[test]
fn every_prefix_of_a_lab_quote_fails() {
    let lab = LabTdx::generate_with(&LabOptions::at(LAB_AT)).unwrap();
    let s = lab_subject(&lab);
    for n in (0..s.quote.len()).step_by(7).chain([s.quote.len() - 1]) {
        assert!(
            tdx::verify(&s.quote[..n], &s.collateral, &s.root, s.at).is_err(),
            "prefix {n}"
        );
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Random single-byte changes anywhere in the quote proper never panic and are
        /// never accepted unless the byte is unchanged.
        #[test]
        fn byte_changes_in_a_lab_quote_are_rejected(at in 0usize..4000, x in 1u8..=255) {
            let lab = lab_once();
            let s = lab_subject(lab);
            let at = at % s.end;
            let mut q = s.quote.clone();
            q[at] ^= x;
            let r = tdx::verify(&q, &s.collateral, &s.root, s.at);
            // A PEM line break or padding byte may be rewritten harmlessly only if the chain
            // still decodes to the same DER; anything else must fail.
            if r.is_ok() {
                prop_assert!(s.certs.iter().any(|&c| at > c), "accepted change at {at}");
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..6000)) {
            let s = lab_subject(lab_once());
            let _ = tdx::verify(&bytes, &s.collateral, &s.root, s.at);
        }
    }

    fn lab_once() -> &'static LabTdx {
        static LAB: std::sync::OnceLock<LabTdx> = std::sync::OnceLock::new();
        LAB.get_or_init(|| LabTdx::generate_with(&LabOptions::at(LAB_AT)).unwrap())
    }
}
