//! Credential activation end to end (issue 18, item 3): the prober seals its nonce to the
//! vTPM's certified EK for its AK, a real responder unseals it with swtpm's
//! TPM2_ActivateCredential, and `ak_ek_binding` decides. A software TPM carrying another
//! TPM's genuine EK certificate cannot unseal, and every bundle it can offer instead fails
//! `ak_ek_binding` by name; so do a wrong secret, a credential replayed from another request
//! and a credential made for another AK.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use locus_analysis::verify::bundle::policy::{EkSection, PolicyFile};
use locus_analysis::verify::bundle::{
    verify_bundle, CheckId, EvidenceError, EvidencePolicy, NonceRecord, Outcome, Requirement,
    VerifyInputs,
};
use locus_analysis::verify::credential::SealError;
use locus_prober::requests::{
    request_evidence_from, request_evidence_sealed, request_keys, RequestError,
};
use locus_prober::{connect, SpkiPolicy, Target};
use locus_proto::credential::{object_name, seal_nonce, EkPublic};
use locus_proto::evidence::{EvidenceBundle, SealedNonce};
use locus_proto::messages::{codes, Include};
use locus_proto::Nonce;
use locus_responder::evidence::EvidenceSource;
use locus_responder::server::{Server, ServerConfig};
use locus_responder::session_key::SessionKey;
use locus_responder::tpm::swtpm::{Swtpm, SwtpmOptions};
use locus_responder::tpm::{EkKind, Vtpm, VtpmConfig, EK_CERT_NV_RSA};

const ISSUER: &str = "cred-verifier";

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn vtpm(tpm: &Swtpm) -> Arc<Vtpm> {
    let mut c = VtpmConfig::new(tpm.tcti());
    c.command_timeout = Duration::from_secs(10);
    Arc::new(Vtpm::open(c).unwrap())
}

async fn serve(source: EvidenceSource) -> (Server, Target) {
    let server = Server::start(
        ServerConfig::new(loopback()),
        SessionKey::generate().unwrap(),
        source,
    )
    .unwrap();
    let target = connect(
        server.local_addr().unwrap(),
        loopback(),
        SpkiPolicy::Pinned(server.session_key().spki_der().to_vec()),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    (server, target)
}

fn tpm_only() -> Include {
    Include {
        tpm: true,
        ..Include::default()
    }
}

/// The EK chain to swtpm A's CA is required, and with it `ak_ek_binding`; no TDX part here.
fn policy(genuine: &Swtpm) -> EvidencePolicy {
    let mut file = PolicyFile {
        ek: EkSection {
            roots: vec!["ek-root.pem".into()],
            intermediates: vec!["ek-issuer.pem".into()],
        },
        // No TD here: these tests are about the vTPM's EK and AK (pinning has its own tests).
        allow_unpinned_code: true,
        ..PolicyFile::default()
    };
    // Nor the vTPM's distance (tests/vtpm_stub.rs): a bound no swtpm misses.
    file.timing.max_tpm_chain_rtt_us = Some(10_000_000);
    file.nonce.issuer = ISSUER.into();
    for c in [CheckId::TdxQuote, CheckId::ReportData, CheckId::AkHash] {
        file.checks.insert(c, Requirement::Off);
    }
    file.checks.insert(CheckId::EkChain, Requirement::Required);
    file.checks
        .insert(CheckId::AkEkBinding, Requirement::Required);
    let ca = genuine.ek_ca_certs().unwrap();
    file.resolve(&|name: &str| match name {
        "ek-issuer.pem" => Ok(ca[0].clone().into_bytes()),
        "ek-root.pem" => Ok(ca[1].clone().into_bytes()),
        other => Err(format!("no file {other}")),
    })
    .unwrap()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn verify(b: &EvidenceBundle, policy: &EvidencePolicy, issued: &Nonce) -> Vec<(CheckId, Outcome)> {
    // Swtpm's EK certificates are dated at their creation, moments ago.
    verify_at(b, policy, issued, unix_now() + 1)
}

fn verify_at(
    b: &EvidenceBundle,
    policy: &EvidencePolicy,
    issued: &Nonce,
    now: u64,
) -> Vec<(CheckId, Outcome)> {
    let inputs = VerifyInputs {
        now_unix: now,
        nonce_record: Some(NonceRecord {
            nonce: issued.to_vec(),
            issuer: ISSUER.into(),
            issued_at: now - 1,
            used: false,
        }),
        peer_spki: None,
    };
    verify_bundle(b, policy, &inputs)
        .checks
        .into_iter()
        .map(|c| (c.check, c.outcome))
        .collect()
}

fn outcome(report: &[(CheckId, Outcome)], check: CheckId) -> &Outcome {
    &report.iter().find(|(c, _)| *c == check).unwrap().1
}

fn seal_error(report: &[(CheckId, Outcome)]) -> SealError {
    match outcome(report, CheckId::AkEkBinding) {
        Outcome::Fail(EvidenceError::Seal(e)) => e.clone(),
        other => panic!("ak_ek_binding: {other:?}"),
    }
}

/// What the prober sends: `nonce` sealed to the EK of `ek_cert` for the AK `ak_public`.
fn sealed(ek_cert: &[u8], ak_public: &[u8], nonce: &Nonce) -> SealedNonce {
    let ek = EkPublic::from_certificate_der(ek_cert).unwrap();
    let c = seal_nonce(&ek, &object_name(ak_public).unwrap(), nonce).unwrap();
    SealedNonce {
        ek_nv_index: EK_CERT_NV_RSA,
        id_object: c.id_object,
        encrypted_secret: c.encrypted_secret,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_ek_certificate_fails_ak_ek_binding_and_the_honest_vtpm_passes() {
    let genuine_tpm = Swtpm::start(SwtpmOptions {
        create_ek_cert: true,
        ..SwtpmOptions::default()
    })
    .unwrap();
    let copier_tpm = Swtpm::start(SwtpmOptions::default()).unwrap();
    let genuine = vtpm(&genuine_tpm);
    let copier = vtpm(&copier_tpm);
    let genuine_certs = genuine.ek_certs().unwrap();
    let ek_cert = genuine_certs
        .iter()
        .find(|c| c.nv_index == EK_CERT_NV_RSA)
        .unwrap()
        .der
        .clone();
    let policy = policy(&genuine_tpm);

    // Honest: the nonce travels sealed, the vTPM unseals it, every check passes.
    let (honest_server, honest) = serve(EvidenceSource::new(None, Some(genuine.clone()))).await;
    let nonce = [0x11; 32];
    let b = request_evidence_sealed(&honest, &nonce, tpm_only(), Some(ISSUER.into()))
        .await
        .unwrap();
    assert_eq!(b.nonce, nonce);
    let s = b.tpm.as_ref().unwrap().sealed_nonce.as_ref().unwrap();
    assert_eq!(s.ek_nv_index, EK_CERT_NV_RSA);
    let report = verify(&b, &policy, &nonce);
    for (check, o) in &report {
        assert!(!matches!(o, Outcome::Fail(_)), "{check}: {o:?}");
    }
    assert!(matches!(outcome(&report, CheckId::EkChain), Outcome::Pass));
    assert!(matches!(
        outcome(&report, CheckId::AkEkBinding),
        Outcome::Pass
    ));
    // Sealed to a certificate the bundle does not carry, or to one that no longer chains.
    let mut elsewhere = b.clone();
    let moved = elsewhere
        .tpm
        .as_mut()
        .unwrap()
        .sealed_nonce
        .as_mut()
        .unwrap();
    moved.ek_nv_index = 0x01c0_000a;
    assert_eq!(
        seal_error(&verify(&elsewhere, &policy, &nonce)),
        SealError::NoSuchEkCert {
            nv_index: 0x01c0_000a
        }
    );
    // Before the certificates were issued (swtpm's local CA issues them without expiry).
    assert!(matches!(
        seal_error(&verify_at(&b, &policy, &nonce, 1_000_000)),
        SealError::EkCertUntrusted {
            nv_index: EK_CERT_NV_RSA,
            ..
        }
    ));

    // The copier: a software TPM presenting the genuine TPM's EK certificate with its own AK.
    let (copier_server, copied) =
        serve(EvidenceSource::new(None, Some(copier.clone())).with_ek_certs(genuine_certs)).await;
    let keys = request_keys(&copied).await.unwrap();
    assert_eq!(keys.ak_public, copier.ak_public().unwrap());
    // It cannot unseal a nonce sealed to that EK: the request is refused.
    let nonce = [0x22; 32];
    match request_evidence_sealed(&copied, &nonce, tpm_only(), Some(ISSUER.into())).await {
        Err(RequestError::Refused { code, message }) => {
            assert_eq!(code, codes::UNAVAILABLE);
            assert!(message.contains("activate_credential"), "{message}");
        }
        other => panic!("the copier unsealed: {other:?}"),
    }
    // What it can offer instead: a bundle for a nonce in clear, whose EK certificate chains.
    let clear = request_evidence_from(&copied, &nonce, tpm_only(), Some(ISSUER.into()))
        .await
        .unwrap();
    let report = verify(&clear, &policy, &nonce);
    assert!(matches!(outcome(&report, CheckId::EkChain), Outcome::Pass));
    assert_eq!(seal_error(&report), SealError::NoProof);
    // Or the prober's sealed credential with a nonce of its own choosing (a wrong secret).
    let mut guessed = request_evidence_from(&copied, &[0x33; 32], tpm_only(), None)
        .await
        .unwrap();
    guessed.tpm.as_mut().unwrap().sealed_nonce = Some(sealed(&ek_cert, &keys.ak_public, &nonce));
    let report = verify(&guessed, &policy, &nonce);
    assert_eq!(
        seal_error(&report),
        SealError::NotThisNonce {
            nv_index: EK_CERT_NV_RSA
        }
    );

    // A credential replayed from another request, with a fresh bundle for this nonce.
    let old = request_evidence_sealed(&honest, &[0x44; 32], tpm_only(), None)
        .await
        .unwrap();
    let nonce = [0x55; 32];
    let mut replayed = request_evidence_from(&honest, &nonce, tpm_only(), Some(ISSUER.into()))
        .await
        .unwrap();
    replayed.tpm.as_mut().unwrap().sealed_nonce = old.tpm.unwrap().sealed_nonce;
    assert_eq!(
        seal_error(&verify(&replayed, &policy, &nonce)),
        SealError::NotThisNonce {
            nv_index: EK_CERT_NV_RSA
        }
    );

    // A credential for this nonce and EK, but made for another AK (the copier's).
    let for_other_ak = sealed(&ek_cert, &keys.ak_public, &nonce);
    let mut other_ak = replayed.clone();
    other_ak.tpm.as_mut().unwrap().sealed_nonce = Some(for_other_ak.clone());
    assert!(matches!(
        seal_error(&verify(&other_ak, &policy, &nonce)),
        SealError::AnotherAk { .. }
    ));
    // The real vTPM refuses to unseal such a credential, too.
    let e = genuine
        .activate_credential(
            EkKind::Rsa2048,
            &for_other_ak.id_object,
            &for_other_ak.encrypted_secret,
        )
        .unwrap_err();
    assert!(e.to_string().contains("activate_credential"), "{e}");

    honest_server.shutdown().await;
    copier_server.shutdown().await;
}
