//! Coalesced evidence end to end: concurrent collections through one coalescing
//! `EvidenceSource` (lab TDX, no vTPM) share quotes, every bundle verifies through its
//! inclusion proof, and a tampered, misplaced or misapplied proof fails `report_data`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use locus_analysis::verify::bundle::{
    self as evidence, policy::NonceSection, policy::TdxSection, CheckId, EvidenceError,
    EvidencePolicy, EvidenceReport, NonceLedger, Outcome, PolicyFile, Requirement, VerifyInputs,
};
use locus_proto::evidence::{ByteBuf, EvidenceBundle};
use locus_proto::messages::Include;
use locus_proto::transcript::Transcript;
use locus_responder::evidence::EvidenceSource;
use locus_responder::tdx::lab::{LabOptions, LabTdx};
use locus_responder::tdx::{QuoteError, TdxQuoter};
use p256::ecdsa::SigningKey;
use p256::pkcs8::EncodePublicKey;

const AT: u64 = 1_780_000_000;
const REQUESTS: u8 = 8;

/// Counts the quotes the inner quoter makes; each takes `delay` (real TDs take ~39 ms).
struct Counting {
    inner: Arc<dyn TdxQuoter>,
    calls: AtomicUsize,
    delay: Duration,
}

impl TdxQuoter for Counting {
    fn quote(&self, report_data: [u8; 64]) -> Result<Vec<u8>, QuoteError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        self.inner.quote(report_data)
    }
}

struct Fixture {
    policy: EvidencePolicy,
    ledger: NonceLedger,
    spki: Vec<u8>,
    /// Bundles collected concurrently through the coalescing source.
    coalesced: Vec<EvidenceBundle>,
    /// Quotes the coalescing source's quoter made for them.
    quotes: usize,
    /// A bundle collected through the plain source (same quoter, no coalescing).
    plain: EvidenceBundle,
    plain_quotes: usize,
}

fn nonce(i: u8) -> [u8; 32] {
    [i; 32]
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(build)
}

fn build() -> Fixture {
    let lab = LabTdx::generate_with(&LabOptions::at(AT)).unwrap();
    let key = SigningKey::from_slice(&[0x42; 32]).unwrap();
    let spki = key
        .verifying_key()
        .to_public_key_der()
        .unwrap()
        .as_bytes()
        .to_vec();
    let mut t = Transcript::new();
    t.record(0, &[7; 32]);
    let transcript = t.sign(&key);

    let mut ledger = NonceLedger::new("coalesce-verifier");
    for i in 0..=REQUESTS {
        ledger.issue(&nonce(i), AT);
    }

    let counting = Arc::new(Counting {
        inner: lab.quoter(),
        calls: AtomicUsize::new(0),
        delay: Duration::from_millis(60),
    });
    let source = Arc::new(EvidenceSource::new(Some(counting.clone()), None).with_coalescing(64));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let coalesced = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 1..=REQUESTS {
            let (source, spki, transcript) = (source.clone(), spki.clone(), transcript.clone());
            tasks.spawn(async move {
                source
                    .collect(&nonce(i), &spki, transcript, &tdx_only())
                    .await
                    .unwrap()
            });
        }
        let mut out = Vec::new();
        while let Some(b) = tasks.join_next().await {
            out.push(b.unwrap());
        }
        out
    });
    let quotes = counting.calls.load(Ordering::SeqCst);

    let plain_counting = Arc::new(Counting {
        inner: lab.quoter(),
        calls: AtomicUsize::new(0),
        delay: Duration::ZERO,
    });
    let plain_source = EvidenceSource::new(Some(plain_counting.clone()), None);
    let plain = rt
        .block_on(plain_source.collect(&nonce(0), &spki, transcript, &tdx_only()))
        .unwrap();

    let mut files = BTreeMap::new();
    files.insert("lab-root-ca.der".to_string(), lab.root_ca_der().to_vec());
    files.insert(
        "lab-collateral.json".to_string(),
        serde_json::to_vec(lab.collateral()).unwrap(),
    );
    // The checks a TDX-only bundle can pass are required; the vTPM, log and reference
    // checks are off (this test has no vTPM).
    let wanted = [
        CheckId::BundleFormat,
        CheckId::Nonce,
        CheckId::Transcript,
        CheckId::SessionSpki,
        CheckId::TdxQuote,
        CheckId::ReportData,
    ];
    let checks = CheckId::ALL
        .iter()
        .map(|c| {
            let r = if wanted.contains(c) {
                Requirement::Required
            } else {
                Requirement::Off
            };
            (*c, r)
        })
        .collect();
    let policy = PolicyFile {
        checks,
        nonce: NonceSection {
            issuer: "coalesce-verifier".into(),
            max_age_secs: 60,
            ledger: None,
        },
        tdx: TdxSection {
            root: Some("lab-root-ca.der".into()),
            collateral: Some("lab-collateral.json".into()),
            accept_tcb: None,
        },
        // These tests are about coalesced quotes; TD pinning has its own tests
        // (tests/evidence_bundle.rs), the vTPM's distance too (tests/vtpm_stub.rs).
        allow_unpinned_code: true,
        timing: locus_analysis::verify::bundle::policy::TimingSection {
            max_tpm_cheap_rtt_us: None,
            max_tpm_chain_rtt_us: Some(10_000_000),
        },
        ..PolicyFile::default()
    }
    .resolve(&|name: &str| files.get(name).cloned().ok_or_else(|| "missing".into()))
    .unwrap();

    Fixture {
        policy,
        ledger,
        spki,
        coalesced,
        quotes,
        plain,
        plain_quotes: plain_counting.calls.load(Ordering::SeqCst),
    }
}

fn tdx_only() -> Include {
    Include {
        tdx: true,
        ..Include::default()
    }
}

fn verify(b: &EvidenceBundle) -> EvidenceReport {
    let f = fixture();
    let inputs = VerifyInputs {
        now_unix: AT + 1,
        nonce_record: f.ledger.record(&b.nonce),
        peer_spki: Some(f.spki.clone()),
    };
    evidence::verify_bundle(b, &f.policy, &inputs)
}

#[track_caller]
fn report_data_error(b: &EvidenceBundle) -> EvidenceError {
    let r = verify(b);
    assert!(!r.valid(), "tampered bundle accepted: {:#}", r.to_json());
    assert_eq!(r.failed(), [CheckId::ReportData], "{:#}", r.to_json());
    r.error(CheckId::ReportData).unwrap().clone()
}

/// Two bundles that share one coalesced quote.
fn batch_pair() -> (&'static EvidenceBundle, &'static EvidenceBundle) {
    let mut by_quote: HashMap<&[u8], Vec<&EvidenceBundle>> = HashMap::new();
    for b in &fixture().coalesced {
        by_quote
            .entry(b.tdx.as_ref().unwrap().quote.as_slice())
            .or_default()
            .push(b);
    }
    let group = by_quote
        .into_values()
        .find(|g| g.len() >= 2)
        .expect("fewer quotes than requests, so some quote is shared");
    (group[0], group[1])
}

#[test]
fn concurrent_collections_share_quotes_and_every_bundle_verifies() {
    let f = fixture();
    assert_eq!(f.coalesced.len(), usize::from(REQUESTS));
    assert!(
        f.quotes < usize::from(REQUESTS),
        "{} quotes for {REQUESTS} overlapping requests",
        f.quotes
    );
    let distinct: std::collections::HashSet<&[u8]> = f
        .coalesced
        .iter()
        .map(|b| b.tdx.as_ref().unwrap().quote.as_slice())
        .collect();
    assert_eq!(
        distinct.len(),
        f.quotes,
        "each quote made is in some bundle"
    );
    let mut with_proof = 0;
    for b in &f.coalesced {
        let r = verify(b);
        assert!(r.valid(), "{:#}", r.to_json());
        assert!(matches!(
            r.outcome(CheckId::ReportData),
            Some(Outcome::Pass)
        ));
        let tdx = b.tdx.as_ref().unwrap();
        if let Some(p) = &tdx.inclusion {
            with_proof += 1;
            assert!(p.size >= 2 && p.index < p.size, "{p:?}");
            let batch = f
                .coalesced
                .iter()
                .filter(|o| o.tdx.as_ref().unwrap().quote == tdx.quote)
                .count();
            assert_eq!(
                p.size as usize, batch,
                "the batch is exactly the bundles sharing the quote"
            );
        }
        // The proof survives the bundle's CBOR encoding.
        assert_eq!(&EvidenceBundle::from_cbor(&b.to_cbor()).unwrap(), b);
    }
    assert!(with_proof >= 2);
}

#[test]
fn the_plain_path_is_unchanged() {
    let f = fixture();
    assert_eq!(f.plain_quotes, 1);
    let tdx = f.plain.tdx.as_ref().unwrap();
    assert_eq!(tdx.inclusion, None);
    let r = verify(&f.plain);
    assert!(r.valid(), "{:#}", r.to_json());
    // No proof, no field: such bundles encode as before the field existed.
    let cbor = f.plain.to_cbor();
    assert!(!cbor.windows(9).any(|w| w == b"inclusion"));
    assert_eq!(EvidenceBundle::from_cbor(&cbor).unwrap(), f.plain);
}

#[test]
fn a_tampered_sibling_hash_fails_report_data() {
    let (a, _) = batch_pair();
    let mut b = a.clone();
    b.tdx.as_mut().unwrap().inclusion.as_mut().unwrap().path[0][0] ^= 1;
    assert!(matches!(
        report_data_error(&b),
        EvidenceError::CoalescedReportDataMismatch { .. }
    ));
}

#[test]
fn a_proof_for_another_leaf_fails_report_data() {
    let (a, other) = batch_pair();
    // The other bundle's proof (same quote, another leaf).
    let mut b = a.clone();
    b.tdx.as_mut().unwrap().inclusion = other.tdx.as_ref().unwrap().inclusion.clone();
    assert!(matches!(
        report_data_error(&b),
        EvidenceError::CoalescedReportDataMismatch { .. }
    ));
    // This bundle's path claimed at another index.
    let mut b = a.clone();
    let p = b.tdx.as_mut().unwrap().inclusion.as_mut().unwrap();
    p.index = (p.index + 1) % p.size;
    assert!(matches!(
        report_data_error(&b),
        EvidenceError::CoalescedReportDataMismatch { .. }
            | EvidenceError::InclusionProofMalformed { .. }
    ));
    // Another bundle's binding under this bundle's proof: its nonce, its transcript.
    let mut b = other.clone();
    b.tdx = a.tdx.clone();
    assert!(matches!(
        report_data_error(&b),
        EvidenceError::CoalescedReportDataMismatch { .. }
    ));
}

#[test]
fn a_proof_on_an_uncoalesced_quote_fails_report_data() {
    let (a, _) = batch_pair();
    let mut b = fixture().plain.clone();
    b.tdx.as_mut().unwrap().inclusion = a.tdx.as_ref().unwrap().inclusion.clone();
    assert!(matches!(
        report_data_error(&b),
        EvidenceError::InclusionProofUncoalesced { .. }
    ));
}

#[test]
fn a_coalesced_quote_without_its_proof_fails_report_data() {
    let (a, _) = batch_pair();
    let mut b = a.clone();
    b.tdx.as_mut().unwrap().inclusion = None;
    assert!(matches!(
        report_data_error(&b),
        EvidenceError::ReportDataMismatch { .. }
    ));
}

#[test]
fn a_malformed_proof_fails_report_data() {
    let (a, _) = batch_pair();
    let mut short_hash = a.clone();
    let p = short_hash.tdx.as_mut().unwrap().inclusion.as_mut().unwrap();
    p.path[0] = ByteBuf::from(vec![0; 63]);
    let mut out_of_range = a.clone();
    let p = out_of_range
        .tdx
        .as_mut()
        .unwrap()
        .inclusion
        .as_mut()
        .unwrap();
    p.index = p.size;
    let mut extra_hash = a.clone();
    let p = extra_hash.tdx.as_mut().unwrap().inclusion.as_mut().unwrap();
    p.path.push(ByteBuf::from(vec![0; 64]));
    for b in [short_hash, out_of_range, extra_hash] {
        assert!(matches!(
            report_data_error(&b),
            EvidenceError::InclusionProofMalformed { .. }
        ));
    }
}
