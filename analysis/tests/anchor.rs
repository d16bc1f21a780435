//! Anchor report verification on real reports measured against lab anchors over loopback: the
//! honest report passes, and each tampering or replay is rejected by its own check.

use std::net::SocketAddr;

use locus_analysis::verify::anchor::{
    verify_report, AnchorError, AnchorPolicy, AnchorPolicyFile, AnchorReportError, AnchorTrust,
    KnownAnchor, Position, VerifiedAnchor,
};
use locus_anchors::{measure_all, AnchorFailure, AnchorServer, AnchorSpec, LabCa, MeasureOptions};
use locus_proto::anchor::AnchorReport;

const NONCE: [u8; 32] = [0x11; 32];
const OLD_NONCE: [u8; 32] = [0x22; 32];
/// 2026-11-25, inside the lab certificates' validity.
const NOW: u64 = 1_795_600_000;

struct Lab {
    ca: LabCa,
    _servers: Vec<AnchorServer>,
    specs: Vec<AnchorSpec>,
}

async fn lab(names: &[&str]) -> Lab {
    let ca = LabCa::generate().unwrap();
    let mut servers = Vec::new();
    let mut specs = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let addr: SocketAddr = format!("127.78.0.{}:0", i + 1).parse().unwrap();
        let sni = format!("{name}.anchor.lab");
        let s = AnchorServer::start(addr, &ca, &sni).await.unwrap();
        specs.push(AnchorSpec::lab(name, s.local_addr(), &sni, &ca).unwrap());
        servers.push(s);
    }
    Lab {
        ca,
        _servers: servers,
        specs,
    }
}

fn policy(lab: &Lab) -> AnchorPolicy {
    // Loopback answers in microseconds: anchors a few km apart keep that consistent.
    let positions = [(50.11, 8.68), (50.12, 8.69)];
    AnchorPolicy::new(
        lab.specs
            .iter()
            .zip(positions)
            .map(|(s, (lat, lon))| KnownAnchor {
                name: s.name.clone(),
                sni: s.sni.to_str().into_owned(),
                site: Some(s.name.clone()),
                position: Some(Position { lat, lon }),
                trust: AnchorTrust::Roots(vec![lab.ca.cert_der().to_vec()]),
            })
            .collect(),
    )
}

async fn measured(lab: &Lab, nonce: &[u8]) -> AnchorReport {
    let opts = MeasureOptions {
        round_trips: 3,
        clock: locus_anchors::ClockOptions::lab(),
        ..MeasureOptions::default()
    };
    measure_all(&lab.specs, nonce, &opts).await
}

fn only_anchor_error(r: &AnchorReport, nonce: &[u8], policy: &AnchorPolicy) -> AnchorError {
    let v = verify_report(r, &r.digest(), nonce, policy, NOW).unwrap();
    v.anchors[0].outcome.clone().unwrap_err()
}

#[tokio::test]
async fn honest_report_verifies_with_the_handshake_rechecked() {
    // (Placed 480 km apart, loopback RTTs would flag the pair as anycast; see the unit test.)
    let lab = lab(&["fra", "par"]).await;
    let report = measured(&lab, &NONCE).await;
    let bound = report.digest();
    let v = verify_report(&report, &bound, &NONCE, &policy(&lab), NOW).unwrap();
    assert_eq!(v.anchors.len(), 2);
    for c in &v.anchors {
        let ok: &VerifiedAnchor = c.outcome.as_ref().unwrap();
        assert!(ok.handshake_rechecked);
        assert_eq!(ok.samples, 3);
        assert!(ok.max_distance_km > 0.0);
    }
    assert!(v.anycast_suspects.is_empty());
    assert_eq!(v.usable().len(), 2);
    let inputs = v.verdict_inputs();
    assert_eq!(inputs.len(), 2);
    assert_eq!(inputs[0].site, "fra");
    assert_eq!(inputs[0].samples, 3);
    assert_eq!(Some(inputs[0].min_rtt_ns), report.anchors[0].min_rtt_ns);
}

#[tokio::test]
async fn report_tampered_after_binding_is_rejected() {
    let lab = lab(&["fra"]).await;
    let mut report = measured(&lab, &NONCE).await;
    let bound = report.digest();
    report.anchors[0].round_trips_ns[0] = 1;
    report.anchors[0].min_rtt_ns = Some(1);
    let err = verify_report(&report, &bound, &NONCE, &policy(&lab), NOW).unwrap_err();
    assert!(
        matches!(err, AnchorReportError::DigestMismatch { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn replayed_report_with_an_old_nonce_is_rejected_at_every_layer() {
    let lab = lab(&["fra"]).await;
    let policy = policy(&lab);
    let old = measured(&lab, &OLD_NONCE).await;

    // As recorded: it answers another challenge.
    let err = verify_report(&old, &old.digest(), &NONCE, &policy, NOW).unwrap_err();
    assert!(
        matches!(err, AnchorReportError::NonceMismatch { .. }),
        "{err}"
    );

    // Nonce field rewritten (and re-bound): the ClientHello.random was derived from the old one.
    let mut r = old.clone();
    r.nonce = NONCE.to_vec();
    assert!(matches!(
        only_anchor_error(&r, &NONCE, &policy),
        AnchorError::ClientRandomMismatch { .. }
    ));

    // Random rewritten too: the recorded ClientHello still carries the old one.
    let fresh = locus_proto::anchor::derive_client_random(&NONCE, 0, "fra");
    let tls = r.anchors[0].tls.as_mut().unwrap();
    tls.client_random = fresh.to_vec();
    assert!(matches!(
        only_anchor_error(&r, &NONCE, &policy),
        AnchorError::ClientHelloMismatch { .. }
    ));

    // ClientHello bytes patched as well: the server finished (and signed) a transcript over the
    // old ClientHello, so the re-checked handshake no longer holds together.
    let tls = r.anchors[0].tls.as_mut().unwrap();
    tls.client_hello[11..43].copy_from_slice(&fresh);
    assert_eq!(
        only_anchor_error(&r, &NONCE, &policy),
        AnchorError::FinishedMismatch
    );
    // Without the re-check, the reported signed message still hashes the old transcript; it
    // verifies, but nothing ties it to the patched ClientHello: that is what the re-check is for.
    let mut lax = policy.clone();
    lax.recheck_handshake = false;
    assert!(verify_report(&r, &r.digest(), &NONCE, &lax, NOW)
        .unwrap()
        .anchors[0]
        .outcome
        .is_ok());
}

#[tokio::test]
async fn certificate_checks_fail_with_their_own_reason() {
    let lab = lab(&["fra"]).await;
    let report = measured(&lab, &NONCE).await;

    let mut p = policy(&lab);
    p.anchors[0].trust = AnchorTrust::Roots(vec![LabCa::generate().unwrap().cert_der().to_vec()]);
    assert!(matches!(
        only_anchor_error(&report, &NONCE, &p),
        AnchorError::ChainInvalid { .. }
    ));

    // Before the certificates' validity (rcgen's default starts in 1975).
    let v = verify_report(&report, &report.digest(), &NONCE, &policy(&lab), 0).unwrap();
    match v.anchors[0].outcome.as_ref().unwrap_err() {
        AnchorError::ChainInvalid { detail } => assert!(detail.contains("NotValidYet"), "{detail}"),
        e => panic!("{e}"),
    }

    let mut p = policy(&lab);
    p.anchors[0].trust = AnchorTrust::PinnedSpki([7; 32]);
    assert!(matches!(
        only_anchor_error(&report, &NONCE, &p),
        AnchorError::PinMismatch { .. }
    ));

    let mut p = policy(&lab);
    p.anchors[0].sni = "other.anchor.lab".into();
    assert!(matches!(
        only_anchor_error(&report, &NONCE, &p),
        AnchorError::SniMismatch { .. }
    ));

    let mut p = policy(&lab);
    p.anchors[0].name = "elsewhere".into();
    assert!(matches!(
        only_anchor_error(&report, &NONCE, &p),
        AnchorError::UnknownAnchor { .. }
    ));
}

#[tokio::test]
async fn tampered_handshake_fields_are_caught() {
    let lab = lab(&["fra"]).await;
    let report = measured(&lab, &NONCE).await;
    let policy = policy(&lab);

    let mut r = report.clone();
    r.anchors[0]
        .tls
        .as_mut()
        .unwrap()
        .cert_verify
        .as_mut()
        .unwrap()
        .signature[10] ^= 1;
    assert_eq!(
        only_anchor_error(&r, &NONCE, &policy),
        AnchorError::TranscriptMismatch {
            what: "CertificateVerify"
        }
    );
    // Without the re-check the signature itself fails.
    let mut lax = policy.clone();
    lax.recheck_handshake = false;
    assert!(matches!(
        only_anchor_error(&r, &NONCE, &lax),
        AnchorError::SignatureInvalid { .. }
    ));

    let mut r = report.clone();
    r.anchors[0].tls.as_mut().unwrap().server_handshake_secret[0] ^= 1;
    assert!(matches!(
        only_anchor_error(&r, &NONCE, &policy),
        AnchorError::HandshakeDecrypt { .. }
    ));

    let mut r = report.clone();
    r.anchors[0].min_rtt_ns = Some(r.anchors[0].min_rtt_ns.unwrap() - 1);
    assert!(matches!(
        only_anchor_error(&r, &NONCE, &policy),
        AnchorError::SamplesInconsistent { .. }
    ));

    let mut r = report.clone();
    r.anchors[0].round_trips_ns.pop();
    r.anchors[0].min_rtt_ns = r.anchors[0].round_trips_ns.iter().min().copied();
    assert!(matches!(
        only_anchor_error(&r, &NONCE, &policy),
        AnchorError::SamplesInconsistent { .. }
    ));
}

#[tokio::test]
async fn recorded_failures_are_never_usable() {
    let lab = lab(&["fra"]).await;
    let listener = std::net::TcpListener::bind("127.78.1.1:0").unwrap();
    let dead = listener.local_addr().unwrap();
    drop(listener);
    let spec = AnchorSpec::lab("fra", dead, "fra.anchor.lab", &lab.ca).unwrap();
    let report = measure_all(&[spec], &NONCE, &MeasureOptions::default()).await;
    assert_eq!(
        only_anchor_error(&report, &NONCE, &policy(&lab)),
        AnchorError::Recorded(AnchorFailure::Refused)
    );
}

#[tokio::test]
async fn policy_file_with_the_lab_ca_verifies_a_lab_report() {
    let lab = lab(&["fra"]).await;
    let report = measured(&lab, &NONCE).await;
    let text = format!(
        // A CA-trusted anchor is unpinned: only a lab/test policy may say so.
        "allow_unpinned = true\n[[anchor]]\nname = \"fra\"\nsni = \"{}\"\nlat = 50.11\nlon = 8.68\ntrust = {{ ca_file = \"lab-ca.pem\" }}\n",
        lab.specs[0].sni.to_str()
    );
    let file: AnchorPolicyFile = toml::from_str(&text).unwrap();
    let pem = lab.ca.cert_pem();
    let policy = file
        .resolve(&|path: &str| {
            assert_eq!(path, "lab-ca.pem");
            Ok(pem.clone().into_bytes())
        })
        .unwrap();
    let v = verify_report(&report, &report.digest(), &NONCE, &policy, NOW).unwrap();
    assert!(v.anchors[0].outcome.is_ok(), "{:?}", v.anchors[0].outcome);
}

#[tokio::test]
async fn every_truncation_or_bit_flip_of_the_recorded_handshake_is_rejected() {
    let lab = lab(&["fra"]).await;
    let report = measured(&lab, &NONCE).await;
    let policy = policy(&lab);
    let tls = report.anchors[0].tls.clone().unwrap();
    let check = |flight: Vec<u8>, hello: Vec<u8>| {
        let mut r = report.clone();
        let t = r.anchors[0].tls.as_mut().unwrap();
        t.server_flight = flight;
        t.client_hello = hello;
        let v = verify_report(&r, &r.digest(), &NONCE, &policy, NOW).unwrap();
        v.anchors[0].outcome.clone()
    };
    assert!(check(tls.server_flight.clone(), tls.client_hello.clone()).is_ok());

    // Every proper prefix fails (and none panics).
    let n = tls.server_flight.len();
    for cut in 0..n {
        let mut flight = tls.server_flight.clone();
        flight.truncate(cut);
        assert!(
            check(flight, tls.client_hello.clone()).is_err(),
            "flight prefix {cut}/{n}"
        );
    }
    for cut in 0..tls.client_hello.len() {
        let mut hello = tls.client_hello.clone();
        hello.truncate(cut);
        assert!(
            check(tls.server_flight.clone(), hello).is_err(),
            "hello prefix {cut}"
        );
    }

    // A flipped bit is rejected unless it is outside the transcript and the AEAD: the
    // legacy_record_version of a plaintext record, or the ChangeCipherSpec compatibility record.
    let mut outside = Vec::new();
    let mut at = 0;
    while at + 5 <= n {
        let ty = tls.server_flight[at];
        let len = usize::from(u16::from_be_bytes([
            tls.server_flight[at + 3],
            tls.server_flight[at + 4],
        ]));
        match ty {
            22 => outside.extend([at + 1, at + 2]),
            20 => outside.extend([at + 1, at + 2].into_iter().chain(at + 5..at + 5 + len)),
            _ => {}
        }
        at += 5 + len;
    }
    for i in 0..n {
        let mut flight = tls.server_flight.clone();
        flight[i] ^= 0x01;
        let accepted = check(flight, tls.client_hello.clone()).is_ok();
        assert_eq!(accepted, outside.contains(&i), "flip at {i} of {n}");
    }
}

/// Reports of one batched measurement for `nonces` (version 3, each with its proof).
async fn measured_batch(lab: &Lab, nonces: &[[u8; 32]]) -> Vec<AnchorReport> {
    let opts = MeasureOptions {
        round_trips: 3,
        clock: locus_anchors::ClockOptions::lab(),
        ..MeasureOptions::default()
    };
    let refs: Vec<&[u8]> = nonces.iter().map(|n| &n[..]).collect();
    locus_anchors::measure_batch(&lab.specs, &refs, &opts).await
}

const BATCH: [[u8; 32]; 3] = [[0x31; 32], [0x32; 32], [0x33; 32]];

fn report_error(r: &AnchorReport, nonce: &[u8], policy: &AnchorPolicy) -> AnchorReportError {
    verify_report(r, &r.digest(), nonce, policy, NOW).unwrap_err()
}

#[tokio::test]
async fn every_member_of_a_batch_verifies_against_the_one_shared_measurement() {
    let lab = lab(&["fra", "par"]).await;
    let policy = policy(&lab);
    let reports = measured_batch(&lab, &BATCH).await;
    assert_eq!(reports.len(), 3);
    for (i, (r, nonce)) in reports.iter().zip(BATCH).enumerate() {
        assert_eq!(r.version, locus_proto::anchor::ANCHOR_REPORT_BATCHED);
        assert_eq!(r.anchors, reports[0].anchors, "one measurement");
        let b = r.batch.as_ref().unwrap();
        assert_eq!((b.index, b.size), (i as u64, 3));
        let v = verify_report(r, &r.digest(), &nonce, &policy, NOW).unwrap();
        assert_eq!(v.usable().len(), 2, "member {i}");
    }
    // A batch of one is today's report: version 2, no proof, the nonce's own randoms.
    let one = measured_batch(&lab, &BATCH[..1]).await;
    assert_eq!((one[0].version, one[0].batch.is_none()), (2, true));
    let v = verify_report(&one[0], &one[0].digest(), &BATCH[0], &policy, NOW).unwrap();
    assert_eq!(v.usable().len(), 2);
}

#[tokio::test]
async fn a_proof_for_another_nonce_is_rejected_by_the_proof_check() {
    let lab = lab(&["fra"]).await;
    let policy = policy(&lab);
    let reports = measured_batch(&lab, &BATCH).await;
    // Member 1's report (its proof) presented for member 0's nonce.
    let mut r = reports[1].clone();
    r.nonce = BATCH[0].to_vec();
    assert!(matches!(
        report_error(&r, &BATCH[0], &policy),
        AnchorReportError::BatchProofMismatch { .. }
    ));
}

#[tokio::test]
async fn a_tampered_proof_or_root_is_rejected_by_the_proof_check() {
    let lab = lab(&["fra"]).await;
    let policy = policy(&lab);
    let honest = measured_batch(&lab, &BATCH).await.remove(0);

    let mut r = honest.clone();
    r.batch.as_mut().unwrap().path[0][5] ^= 1;
    assert!(matches!(
        report_error(&r, &BATCH[0], &policy),
        AnchorReportError::BatchProofMismatch { .. }
    ));

    let mut r = honest.clone();
    r.batch.as_mut().unwrap().root[0] ^= 1;
    assert!(matches!(
        report_error(&r, &BATCH[0], &policy),
        AnchorReportError::BatchProofMismatch { .. }
    ));

    let mut r = honest.clone();
    r.batch.as_mut().unwrap().index = 1;
    assert!(matches!(
        report_error(&r, &BATCH[0], &policy),
        AnchorReportError::BatchProofMismatch { .. }
    ));

    let mut r = honest.clone();
    r.batch.as_mut().unwrap().path.pop();
    assert!(matches!(
        report_error(&r, &BATCH[0], &policy),
        AnchorReportError::BatchProofMalformed { .. }
    ));

    let mut r = honest.clone();
    r.batch.as_mut().unwrap().root.truncate(32);
    assert!(matches!(
        report_error(&r, &BATCH[0], &policy),
        AnchorReportError::BatchProofMalformed { .. }
    ));

    // Changed after binding: the digest covers the proof.
    let mut r = honest.clone();
    let bound = r.digest();
    r.batch.as_mut().unwrap().size = 4;
    assert!(matches!(
        verify_report(&r, &bound, &BATCH[0], &policy, NOW).unwrap_err(),
        AnchorReportError::DigestMismatch { .. }
    ));

    // The version says what the digest covers: a version 2 report cannot carry a proof, and a
    // version 3 one must.
    let mut r = honest.clone();
    r.version = 2;
    assert_eq!(
        report_error(&r, &BATCH[0], &policy),
        AnchorReportError::BatchField {
            version: 2,
            has: true
        }
    );
    let mut r = honest;
    r.batch = None;
    assert_eq!(
        report_error(&r, &BATCH[0], &policy),
        AnchorReportError::BatchField {
            version: 3,
            has: false
        }
    );
}

#[tokio::test]
async fn a_report_from_another_batch_is_rejected_by_the_client_random_check() {
    let lab = lab(&["fra"]).await;
    let policy = policy(&lab);
    let ours = measured_batch(&lab, &BATCH).await.remove(0);
    let other = measured_batch(&lab, &[[0x41; 32], [0x42; 32]])
        .await
        .remove(0);
    // Our (valid) proof and root over the other batch's measurement.
    let mut r = other.clone();
    r.nonce = ours.nonce.clone();
    r.batch = ours.batch.clone();
    assert!(matches!(
        only_anchor_error(&r, &BATCH[0], &policy),
        AnchorError::ClientRandomNotFromBatchRoot { .. }
    ));
}

#[tokio::test]
async fn a_client_random_not_from_the_root_is_rejected() {
    let lab = lab(&["fra"]).await;
    let policy = policy(&lab);
    let batched = measured_batch(&lab, &BATCH).await.remove(0);
    // A measurement for the nonce itself (randoms from the nonce, not the root) dressed up
    // with the batch's proof.
    let mut r = measured(&lab, &BATCH[0]).await;
    r.version = batched.version;
    r.batch = batched.batch.clone();
    assert!(matches!(
        only_anchor_error(&r, &BATCH[0], &policy),
        AnchorError::ClientRandomNotFromBatchRoot { .. }
    ));
    // And the other way: the batch's measurement without its proof claims the nonce's randoms.
    let mut r = batched;
    r.version = 2;
    r.batch = None;
    assert!(matches!(
        only_anchor_error(&r, &BATCH[0], &policy),
        AnchorError::ClientRandomMismatch { .. }
    ));
}

#[tokio::test]
async fn a_batch_report_replayed_for_a_new_nonce_is_rejected() {
    let lab = lab(&["fra"]).await;
    let policy = policy(&lab);
    let old = measured_batch(&lab, &BATCH).await.remove(0);

    // As recorded: it answers another challenge.
    assert!(matches!(
        report_error(&old, &NONCE, &policy),
        AnchorReportError::NonceMismatch { .. }
    ));
    // Nonce rewritten: the old proof does not lead from the new nonce to the old root.
    let mut r = old.clone();
    r.nonce = NONCE.to_vec();
    assert!(matches!(
        report_error(&r, &NONCE, &policy),
        AnchorReportError::BatchProofMismatch { .. }
    ));
    // A new tree that holds the new nonce beside the old batch's: its root is another, and
    // the old handshakes' randoms are not derived from it.
    let mut nonces = BATCH.to_vec();
    nonces.push(NONCE);
    let leaves: Vec<[u8; 64]> = nonces
        .iter()
        .map(|n| locus_proto::anchor::batch_leaf(n))
        .collect();
    let (root, paths) = locus_proto::merkle::batch_root(&leaves).unwrap();
    let b = r.batch.as_mut().unwrap();
    b.root = root.to_vec();
    b.index = 3;
    b.size = 4;
    b.path = paths[3]
        .iter()
        .map(|h| locus_proto::evidence::ByteBuf::from(h.to_vec()))
        .collect();
    assert!(matches!(
        only_anchor_error(&r, &NONCE, &policy),
        AnchorError::ClientRandomNotFromBatchRoot { .. }
    ));
}
