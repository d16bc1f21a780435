//! Batched anchor measurements end to end: concurrent collections through one coalescing
//! `EvidenceSource` (lab TDX, two lab anchors) share anchor measurements and TDX quotes, and
//! every bundle verifies through both inclusion proofs (`docs/binding.md`, "Batched anchor
//! measurements"); another bundle's anchor report fails the `anchors` check by name.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use locus_analysis::verify::anchor::{AnchorPolicy, AnchorReportError, AnchorTrust, KnownAnchor};
use locus_analysis::verify::bundle::{
    self as evidence, policy::NonceSection, policy::TdxSection, CheckId, EvidenceError,
    EvidencePolicy, NonceLedger, Outcome, PolicyFile, Requirement, VerifyInputs,
};
use locus_anchors::{AnchorServer, AnchorSpec, AnchorsConfig, ClockOptions, LabCa, MeasureOptions};
use locus_proto::evidence::EvidenceBundle;
use locus_proto::messages::Include;
use locus_proto::transcript::Transcript;
use locus_responder::evidence::EvidenceSource;
use locus_responder::tdx::lab::{LabOptions, LabTdx};
use locus_responder::tdx::{QuoteError, TdxQuoter};
use p256::ecdsa::SigningKey;
use p256::pkcs8::EncodePublicKey;

const AT: u64 = 1_780_000_000;
const REQUESTS: u8 = 8;

/// Takes `delay` per quote, so that requests overlap as on a real TD.
struct Slow(Arc<dyn TdxQuoter>);

impl TdxQuoter for Slow {
    fn quote(&self, report_data: [u8; 64]) -> Result<Vec<u8>, QuoteError> {
        std::thread::sleep(Duration::from_millis(30));
        self.0.quote(report_data)
    }
}

fn nonce(i: u8) -> [u8; 32] {
    [0x50 + i; 32]
}

#[test]
fn concurrent_bundles_share_anchor_measurements_and_each_verifies() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let lab = LabTdx::generate_with(&LabOptions::at(AT)).unwrap();
    let ca = LabCa::generate().unwrap();
    let (servers, specs): (Vec<AnchorServer>, Vec<AnchorSpec>) = rt.block_on(async {
        let mut out = (Vec::new(), Vec::new());
        for (i, name) in ["fra", "par"].iter().enumerate() {
            let sni = format!("{name}.anchor.lab");
            let addr = format!("127.80.0.{}:0", i + 1).parse().unwrap();
            let s = AnchorServer::start(addr, &ca, &sni).await.unwrap();
            out.1
                .push(AnchorSpec::lab(name, s.local_addr(), &sni, &ca).unwrap());
            out.0.push(s);
        }
        out
    });
    let config = AnchorsConfig {
        options: MeasureOptions {
            round_trips: 2,
            clock: ClockOptions::lab(),
            ..MeasureOptions::default()
        },
        anchors: specs.clone(),
    };
    let include = Include {
        tdx: true,
        tpm: false,
        anchors: vec!["fra".into(), "par".into()],
    };
    let key = SigningKey::from_slice(&[0x43; 32]).unwrap();
    let spki = key
        .verifying_key()
        .to_public_key_der()
        .unwrap()
        .as_bytes()
        .to_vec();
    let transcript = Transcript::new().sign(&key);
    let source = Arc::new(
        EvidenceSource::new(Some(Arc::new(Slow(lab.quoter()))), None)
            .with_anchors(config)
            .with_coalescing(64),
    );
    let bundles: Vec<EvidenceBundle> = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..REQUESTS {
            let (source, spki, t, inc) = (
                source.clone(),
                spki.clone(),
                transcript.clone(),
                include.clone(),
            );
            tasks.spawn(async move { source.collect(&nonce(i), &spki, t, &inc).await.unwrap() });
        }
        let mut out = Vec::new();
        while let Some(b) = tasks.join_next().await {
            out.push(b.unwrap());
        }
        out
    });
    drop(servers);

    let policy = policy(&lab, &ca, &specs, &bundles[0]);
    let mut ledger = NonceLedger::new("anchor-batch-verifier");
    for i in 0..REQUESTS {
        ledger.issue(&nonce(i), AT);
    }
    let verify = |b: &EvidenceBundle| {
        let inputs = VerifyInputs {
            now_unix: AT + 1,
            nonce_record: ledger.record(&b.nonce),
            peer_spki: Some(spki.clone()),
        };
        evidence::verify_bundle(b, &policy, &inputs)
    };

    let batched: Vec<&EvidenceBundle> = bundles
        .iter()
        .filter(|b| b.anchors.as_ref().unwrap().batch.is_some())
        .collect();
    assert!(
        batched.len() >= 2,
        "overlapping requests share measurements: {} of {REQUESTS} batched",
        batched.len()
    );
    for b in &bundles {
        let r = verify(b);
        assert!(r.valid(), "{:#}", r.to_json());
        assert!(matches!(r.outcome(CheckId::Anchors), Some(Outcome::Pass)));
    }

    // Two members of one batch: swap their anchor reports (each bound into the other's quote).
    let a = batched[0];
    let sibling = batched
        .iter()
        .find(|o| {
            o.nonce != a.nonce
                && o.anchors.as_ref().unwrap().anchors == a.anchors.as_ref().unwrap().anchors
        })
        .expect("a batch of two or more");
    let mut swapped = a.clone();
    swapped.anchors = sibling.anchors.clone();
    let r = verify(&swapped);
    assert!(!r.valid());
    // The report is not the one the quote binds, and it answers another nonce.
    assert!(
        r.failed().contains(&CheckId::ReportData),
        "{:#}",
        r.to_json()
    );
    assert!(matches!(
        r.error(CheckId::Anchors),
        Some(EvidenceError::Anchors(
            AnchorReportError::NonceMismatch { .. }
        ))
    ));
    // Its nonce rewritten too: its proof does not lead from this nonce to its root.
    swapped.anchors.as_mut().unwrap().nonce = a.nonce.clone();
    assert!(matches!(
        verify(&swapped).error(CheckId::Anchors),
        Some(EvidenceError::Anchors(
            AnchorReportError::BatchProofMismatch { .. }
        ))
    ));
}

fn policy(
    lab: &LabTdx,
    ca: &LabCa,
    specs: &[AnchorSpec],
    sample: &EvidenceBundle,
) -> EvidencePolicy {
    let mut files = BTreeMap::new();
    files.insert("lab-root-ca.der".to_string(), lab.root_ca_der().to_vec());
    files.insert(
        "lab-collateral.json".to_string(),
        serde_json::to_vec(lab.collateral()).unwrap(),
    );
    let wanted = [
        CheckId::BundleFormat,
        CheckId::Nonce,
        CheckId::Transcript,
        CheckId::SessionSpki,
        CheckId::TdxQuote,
        CheckId::ReportData,
        CheckId::Anchors,
        CheckId::AnchorClocksource,
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
    let mut policy = PolicyFile {
        checks,
        nonce: NonceSection {
            issuer: "anchor-batch-verifier".into(),
            max_age_secs: 60,
            ledger: None,
        },
        tdx: TdxSection {
            root: Some("lab-root-ca.der".into()),
            collateral: Some("lab-collateral.json".into()),
            accept_tcb: None,
        },
        allow_unpinned_code: true,
        ..PolicyFile::default()
    }
    .resolve(&|name: &str| files.get(name).cloned().ok_or_else(|| "missing".into()))
    .unwrap();
    let positions = [(50.11, 8.68), (50.12, 8.69)];
    let mut anchors = AnchorPolicy::new(
        specs
            .iter()
            .zip(positions)
            .map(|(s, (lat, lon))| KnownAnchor {
                name: s.name.clone(),
                sni: s.sni.to_str().into_owned(),
                site: Some(s.name.clone()),
                position: Some(locus_analysis::verify::anchor::Position { lat, lon }),
                trust: AnchorTrust::Roots(vec![ca.cert_der().to_vec()]),
            })
            .collect(),
    );
    // This machine's clock, as the lab measured with it.
    anchors.allow_clocksource = vec![sample
        .anchors
        .as_ref()
        .unwrap()
        .clocksource
        .clone()
        .unwrap()];
    policy.anchors = Some(anchors);
    policy
}
