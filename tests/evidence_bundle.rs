//! Evidence bundles from a real swtpm and the lab TDX backend, verified under a policy that
//! requires every check; each tampering and attack is rejected by the check named.

mod evidence_lab;

use evidence_lab::{lab, BOOT};
use locus_analysis::verify::bundle::{
    self as evidence, CheckId, EkChainError, EvidenceError, EvidenceReport, NonceError,
    NonceRecord, Outcome, VerifyInputs,
};
use locus_analysis::verify::eventlog::{rtmr_for_pcr, EventLogWriter, ALG_SHA256, ALG_SHA384};
use locus_analysis::verify::tpm::TpmError;
use locus_proto::evidence::{EvidenceBundle, MAX_BUNDLE_LEN};

fn verify(b: &EvidenceBundle, inputs: &VerifyInputs) -> EvidenceReport {
    evidence::verify_bundle(b, &lab().policy, inputs)
}

fn failed(r: &EvidenceReport) -> Vec<CheckId> {
    r.failed()
}

#[track_caller]
fn assert_fails(r: &EvidenceReport, check: CheckId) -> &EvidenceError {
    assert!(
        !r.valid(),
        "bundle accepted; expected {check} to fail: {:#?}",
        r.to_json()
    );
    r.error(check).unwrap_or_else(|| {
        panic!(
            "{check} did not fail (failed: {:?}): {:#?}",
            failed(r),
            r.to_json()
        )
    })
}

#[test]
fn the_lab_bundle_is_valid_with_every_check_passing() {
    let l = lab();
    let r = verify(&l.bundle, &l.inputs());
    assert!(r.valid(), "{:#}", r.to_json());
    for c in &r.checks {
        // No provider AK certificate, no anchor report and no Azure HCL report in this bundle.
        if matches!(
            c.check,
            CheckId::AkEkBinding
                | CheckId::Anchors
                | CheckId::AnchorClocksource
                | CheckId::HclReport
                | CheckId::HclUserData
        ) {
            assert!(matches!(c.outcome, Outcome::Skipped(_)));
        } else {
            assert!(
                matches!(c.outcome, Outcome::Pass),
                "{}: {:?}",
                c.check,
                c.outcome
            );
        }
    }
    assert!(r.tdx.is_some());
    // The CBOR round trip keeps everything.
    let again = EvidenceBundle::from_cbor(&l.bundle.to_cbor()).unwrap();
    assert_eq!(again, l.bundle);
}

#[test]
fn nonce_replayed_expired_and_foreign() {
    let l = lab();
    let mut inputs = l.inputs();
    inputs.nonce_record.as_mut().unwrap().used = true;
    let r = verify(&l.bundle, &inputs);
    assert!(matches!(
        assert_fails(&r, CheckId::Nonce),
        EvidenceError::Nonce(NonceError::Replayed)
    ));

    let mut inputs = l.inputs();
    inputs.now_unix += 61;
    let r = verify(&l.bundle, &inputs);
    assert!(matches!(
        assert_fails(&r, CheckId::Nonce),
        EvidenceError::Nonce(NonceError::Expired { .. })
    ));

    let mut inputs = l.inputs();
    inputs.nonce_record = None;
    let r = verify(&l.bundle, &inputs);
    assert!(matches!(
        assert_fails(&r, CheckId::Nonce),
        EvidenceError::Nonce(NonceError::Unknown)
    ));

    let mut inputs = l.inputs();
    inputs.nonce_record = Some(NonceRecord {
        issuer: "another-verifier".into(),
        ..inputs.nonce_record.unwrap()
    });
    let r = verify(&l.bundle, &inputs);
    assert!(matches!(
        assert_fails(&r, CheckId::Nonce),
        EvidenceError::Nonce(NonceError::ForeignIssuer { .. })
    ));
}

#[test]
fn a_changed_nonce_breaks_both_bindings() {
    let l = lab();
    let mut b = l.bundle.clone();
    b.nonce[0] ^= 1;
    let mut inputs = l.inputs();
    // Even with a ledger entry for the new nonce, both quotes were bound to the old one.
    inputs.nonce_record = Some(NonceRecord {
        nonce: b.nonce.clone(),
        ..inputs.nonce_record.unwrap()
    });
    let r = verify(&b, &inputs);
    assert!(matches!(
        assert_fails(&r, CheckId::QualifyingData),
        EvidenceError::QualifyingDataMismatch { .. }
    ));
    assert!(matches!(
        assert_fails(&r, CheckId::ReportData),
        EvidenceError::ReportDataMismatch { .. }
    ));
    assert!(r.error(CheckId::Nonce).is_none());
}

#[test]
fn a_changed_session_key_is_caught() {
    let l = lab();
    let mut b = l.bundle.clone();
    let n = b.session_spki.len();
    b.session_spki[n - 1] ^= 1;
    let r = verify(&b, &l.inputs());
    assert!(matches!(
        assert_fails(&r, CheckId::SessionSpki),
        EvidenceError::SpkiMismatch { .. }
    ));
    assert!(r.error(CheckId::Transcript).is_some());
    assert!(r.error(CheckId::QualifyingData).is_some());
    assert!(r.error(CheckId::ReportData).is_some());
}

#[test]
fn a_tampered_transcript_is_caught() {
    let l = lab();
    let mut b = l.bundle.clone();
    b.transcript.count += 1;
    let r = verify(&b, &l.inputs());
    assert!(matches!(
        assert_fails(&r, CheckId::Transcript),
        EvidenceError::Transcript(_)
    ));
    assert_eq!(failed(&r), vec![CheckId::Transcript]);
}

#[test]
fn a_tampered_tdx_quote_is_caught() {
    let l = lab();
    let mut b = l.bundle.clone();
    // A byte of MRCONFIGID in the TD report body: only the quote signature covers it.
    b.tdx.as_mut().unwrap().quote[48 + 200] ^= 1;
    let r = verify(&b, &l.inputs());
    assert!(matches!(
        assert_fails(&r, CheckId::TdxQuote),
        EvidenceError::Tdx(_)
    ));
}

#[test]
fn tampered_tpm_attest_and_signature_are_caught() {
    let l = lab();
    let mut b = l.bundle.clone();
    // The clock field of TPMS_ATTEST.
    let t = b.tpm.as_mut().unwrap();
    let at = t.attest.len() / 2;
    t.attest[at] ^= 1;
    let r = verify(&b, &l.inputs());
    assert!(matches!(
        assert_fails(&r, CheckId::TpmSignature),
        EvidenceError::Tpm(TpmError::SignatureMismatch)
    ));

    let mut b = l.bundle.clone();
    let t = b.tpm.as_mut().unwrap();
    let n = t.signature.len();
    t.signature[n - 1] ^= 1;
    let r = verify(&b, &l.inputs());
    assert!(matches!(
        assert_fails(&r, CheckId::TpmSignature),
        EvidenceError::Tpm(TpmError::SignatureMismatch)
    ));

    let mut b = l.bundle.clone();
    b.tpm.as_mut().unwrap().attest[0] ^= 0x80;
    let r = verify(&b, &l.inputs());
    assert!(matches!(
        assert_fails(&r, CheckId::TpmAttest),
        EvidenceError::Tpm(TpmError::BadMagic { .. })
    ));
}

#[test]
fn a_tampered_pcr_value_is_caught() {
    let l = lab();
    let mut b = l.bundle.clone();
    b.tpm.as_mut().unwrap().pcrs[3].digest[0] ^= 1;
    let r = verify(&b, &l.inputs());
    assert!(matches!(
        assert_fails(&r, CheckId::PcrDigest),
        EvidenceError::PcrDigestMismatch { .. }
    ));
}

#[test]
fn a_carried_pcr_above_23_is_rejected_not_compared_with_pcr_23() {
    let l = lab();
    let mut b = l.bundle.clone();
    // PCR 23 is never extended at boot: a PCR 30 carrying its value once passed the replay.
    let pcr = b.tpm.as_mut().unwrap().pcrs.last_mut().unwrap();
    pcr.index = 30;
    pcr.digest = vec![0; 32];
    let r = verify(&b, &l.inputs());
    assert!(matches!(
        assert_fails(&r, CheckId::TcgEventLog),
        EvidenceError::PcrIndexOutOfRange { index: 30, max: 23 }
    ));
}

#[test]
fn an_ak_swapped_in_is_caught() {
    let l = lab();
    let mut b = l.bundle.clone();
    b.tpm.as_mut().unwrap().ak_public = l.relayed_tpm.ak_public.clone();
    let r = verify(&b, &l.inputs());
    assert!(matches!(
        assert_fails(&r, CheckId::AkHash),
        EvidenceError::AkHashMismatch { .. }
    ));
    assert!(matches!(
        assert_fails(&r, CheckId::TpmSignature),
        EvidenceError::Tpm(TpmError::SignatureMismatch)
    ));
}

#[test]
fn a_vtpm_quote_relayed_from_a_second_swtpm_fails_on_the_ak_hash() {
    let l = lab();
    let mut b = l.bundle.clone();
    let t = b.tpm.as_mut().unwrap();
    t.attest = l.relayed_tpm.attest.clone();
    t.signature = l.relayed_tpm.signature.clone();
    t.ak_public = l.relayed_tpm.ak_public.clone();
    t.pcrs = l.relayed_tpm.pcrs.clone();
    let r = verify(&b, &l.inputs());
    // The relayed quote is genuine, fresh, bound to this nonce and session, same boot...
    for ok in [
        CheckId::TpmSignature,
        CheckId::TpmAttest,
        CheckId::QualifyingData,
        CheckId::PcrDigest,
        CheckId::PcrReference,
        CheckId::TcgEventLog,
    ] {
        assert!(matches!(r.outcome(ok), Some(Outcome::Pass)), "{ok}");
    }
    // ...but the TD's REPORTDATA commits to the TD's own AK.
    assert!(matches!(
        assert_fails(&r, CheckId::AkHash),
        EvidenceError::AkHashMismatch { .. }
    ));
}

#[test]
fn pcr_events_inserted_or_removed_are_caught() {
    let l = lab();
    let mut inserted = EventLogWriter::new(&[ALG_SHA256]);
    for (pcr, ty, data) in BOOT {
        inserted.push(*pcr, *ty, data);
        if *pcr == 4 {
            inserted.push(4, 0x8000_0003, b"an extra bootloader");
        }
    }
    let mut b = l.bundle.clone();
    b.tpm.as_mut().unwrap().event_log = Some(inserted.bytes());
    let r = verify(&b, &l.inputs());
    assert!(matches!(
        assert_fails(&r, CheckId::TcgEventLog),
        EvidenceError::ReplayMismatch { .. }
    ));
    assert!(r.error(CheckId::PcrRtmrCrossCheck).is_some());

    let mut removed = EventLogWriter::new(&[ALG_SHA256]);
    for (pcr, ty, data) in BOOT.iter().filter(|e| e.0 != 9) {
        removed.push(*pcr, *ty, data);
    }
    let mut b = l.bundle.clone();
    b.tpm.as_mut().unwrap().event_log = Some(removed.bytes());
    let r = verify(&b, &l.inputs());
    assert!(matches!(
        assert_fails(&r, CheckId::TcgEventLog),
        EvidenceError::ReplayMismatch { .. }
    ));
}

#[test]
fn a_tampered_ccel_is_caught() {
    let l = lab();
    // An event the TD did not measure: the CCEL no longer replays to the quoted RTMRs.
    let mut ccel = EventLogWriter::new(&[ALG_SHA384]);
    for (pcr, ty, data) in BOOT {
        if let Some(rtmr) = rtmr_for_pcr(*pcr) {
            ccel.push(rtmr as u32 + 1, *ty, data);
        }
    }
    ccel.push(3, 0xd, b"injected");
    let mut b = l.bundle.clone();
    b.tdx.as_mut().unwrap().ccel.as_mut().unwrap().data = ccel.bytes();
    let r = verify(&b, &l.inputs());
    assert!(matches!(
        assert_fails(&r, CheckId::CcelEventLog),
        EvidenceError::ReplayMismatch { .. }
    ));

    // Event data changed under an unchanged digest: replay cannot see it, the cross-check
    // (SHA-384 of the data against the CCEL digest) does.
    let mut b = l.bundle.clone();
    let ccel = b.tdx.as_mut().unwrap().ccel.as_mut().unwrap();
    let n = ccel.data.len();
    ccel.data[n - 1] ^= 1;
    let r = verify(&b, &l.inputs());
    assert!(matches!(
        assert_fails(&r, CheckId::PcrRtmrCrossCheck),
        EvidenceError::CrossCheck(_)
    ));
}

#[test]
fn an_ek_certificate_from_an_untrusted_ca_is_rejected() {
    let l = lab();
    let mut policy = l.policy.clone();
    policy.ek_roots = locus_analysis::verify::bundle::policy::certificates_from_bytes(
        l.other_ca_root_pem.as_bytes(),
    )
    .unwrap();
    let r = evidence::verify_bundle(&l.bundle, &policy, &l.inputs());
    assert!(matches!(
        r.error(CheckId::EkChain),
        Some(EvidenceError::EkChain(EkChainError::UntrustedIssuer { .. }))
    ));

    let mut b = l.bundle.clone();
    let t = b.tpm.as_mut().unwrap();
    let n = t.ek_certs[0].der.len();
    t.ek_certs[0].der[n - 1] ^= 1; // the CA's signature
    let r = verify(&b, &l.inputs());
    assert!(matches!(
        assert_fails(&r, CheckId::EkChain),
        EvidenceError::EkChain(EkChainError::UntrustedIssuer { .. })
    ));
}

#[test]
fn an_expired_ek_chain_is_rejected() {
    let l = lab();
    let mut inputs = l.inputs();
    // swtpm-localca certificates end at 9999-12-31T23:59:59Z.
    inputs.now_unix = 253_402_300_800;
    let r = verify(&l.bundle, &inputs);
    assert!(matches!(
        assert_fails(&r, CheckId::EkChain),
        EvidenceError::EkChain(EkChainError::Expired { .. })
    ));
}

#[test]
fn a_slow_vtpm_fails_the_timing_bound() {
    let l = lab();
    let mut b = l.bundle.clone();
    b.timings.tpm_cheap_rtt_min_ns = Some(20_000_000_000);
    let r = verify(&b, &l.inputs());
    assert!(matches!(
        assert_fails(&r, CheckId::VtpmTiming),
        EvidenceError::VtpmTooSlow { .. }
    ));
}

#[test]
fn truncated_and_oversized_bundles_fail_the_format_check() {
    let l = lab();
    let bytes = l.bundle.to_cbor();
    for n in [0, 1, bytes.len() / 3, bytes.len() - 1] {
        let r = evidence::verify_bundle_bytes(&bytes[..n], &l.policy, &l.inputs());
        assert!(matches!(
            assert_fails(&r, CheckId::BundleFormat),
            EvidenceError::Bundle(_)
        ));
    }
    let mut big = bytes.clone();
    big.resize(MAX_BUNDLE_LEN + 1, 0);
    let r = evidence::verify_bundle_bytes(&big, &l.policy, &l.inputs());
    assert!(matches!(
        assert_fails(&r, CheckId::BundleFormat),
        EvidenceError::Bundle(evidence::BundleErrorKind::TooLarge { .. })
    ));
}

#[test]
fn missing_parts_fail_required_checks() {
    let l = lab();
    let mut b = l.bundle.clone();
    b.tpm = None;
    let r = verify(&b, &l.inputs());
    assert!(!r.valid());
    assert!(failed(&r).contains(&CheckId::TpmSignature));
    assert!(failed(&r).contains(&CheckId::EkChain));
}

// Binding version 2 (docs/binding.md): the in-TD timings are bound into REPORTDATA, and the
// vTPM round trip is timed on a chain of AK-signed quotes.

/// One change to a bundle.
type Tamper = fn(&mut EvidenceBundle);

#[test]
fn the_lab_bundle_follows_binding_v2_with_a_timed_signed_chain() {
    let b = &lab().bundle;
    assert_eq!(b.version, locus_proto::evidence::BUNDLE_VERSION);
    let chain = &b.tpm.as_ref().unwrap().chain;
    assert_eq!(
        chain.len(),
        locus_responder::tpm::DEFAULT_CHAIN_LEN as usize
    );
    assert_eq!(b.timings.tpm_chain_ns.len(), chain.len());
    assert!(b.timings.tpm_chain_ns.iter().all(|ns| *ns > 0));
}

#[test]
fn a_tampered_pre_quote_timing_breaks_report_data() {
    let l = lab();
    let tampers: [(&str, Tamper); 4] = [
        ("tpm_quote_ns", |b| {
            b.timings.tpm_quote_ns = b.timings.tpm_quote_ns.map(|n| n + 1)
        }),
        ("tpm_chain_ns", |b| b.timings.tpm_chain_ns[1] /= 2),
        ("tpm_cheap_rtt_min_ns", |b| {
            b.timings.tpm_cheap_rtt_min_ns = Some(1)
        }),
        ("tpm_cheap_samples", |b| b.timings.tpm_cheap_samples += 1),
    ];
    for (field, tamper) in tampers {
        let mut b = l.bundle.clone();
        tamper(&mut b);
        let r = verify(&b, &l.inputs());
        assert!(
            matches!(
                assert_fails(&r, CheckId::ReportData),
                EvidenceError::ReportDataMismatch { .. }
            ),
            "{field}"
        );
        // The chain itself is intact: only the binding names the change.
        assert!(
            matches!(r.outcome(CheckId::VtpmChain), Some(Outcome::Pass)),
            "{field}"
        );
    }
    // Measured after the TDX quote, so not inside it (docs/binding.md says so).
    let mut b = l.bundle.clone();
    b.timings.evidence_ns = Some(1);
    b.timings.tdx_quote_ns = Some(1);
    assert!(verify(&b, &l.inputs()).valid());
}

#[test]
fn a_chain_with_a_broken_link_fails_vtpm_chain() {
    let l = lab();
    let breaks: [(u32, Tamper); 3] = [
        // Links 0 and 1 swapped: genuine AK signatures, but link 0 does not quote the value
        // chained from the main quote's signature.
        (0, |b| b.tpm.as_mut().unwrap().chain.swap(0, 1)),
        // Link 0 repeated as link 1: a valid signature by this AK, in the wrong position.
        (1, |b| {
            let chain = &mut b.tpm.as_mut().unwrap().chain;
            chain[1] = chain[0].clone();
        }),
        // A chain that does not start at the main quote's signature (its timing dropped too,
        // which `report_data` also names).
        (0, |b| {
            b.tpm.as_mut().unwrap().chain.remove(0);
            b.timings.tpm_chain_ns.remove(0);
        }),
    ];
    for (at, tamper) in breaks {
        let mut b = l.bundle.clone();
        tamper(&mut b);
        let r = verify(&b, &l.inputs());
        assert!(matches!(
            assert_fails(&r, CheckId::VtpmChain),
            EvidenceError::VtpmChainBroken { index, .. } if *index == at
        ));
        let timings_changed = b.timings != l.bundle.timings;
        let only = if timings_changed {
            vec![CheckId::ReportData, CheckId::AkHash, CheckId::VtpmChain]
        } else {
            vec![CheckId::VtpmChain]
        };
        assert_eq!(failed(&r), only, "{:#}", r.to_json());
    }
}

#[test]
fn a_chain_link_signed_by_another_key_fails_vtpm_chain() {
    let l = lab();
    // The second swtpm (a relayed vTPM) answered a chain for the same nonce and session.
    let relayed = &l.relayed_tpm.chain;
    assert!(!relayed.is_empty());
    let mut b = l.bundle.clone();
    b.tpm.as_mut().unwrap().chain[1] = relayed[1].clone();
    let r = verify(&b, &l.inputs());
    assert!(matches!(
        assert_fails(&r, CheckId::VtpmChain),
        EvidenceError::VtpmChainSignature {
            index: 1,
            error: TpmError::SignatureMismatch
        }
    ));
}

#[test]
fn a_vtpm_part_without_signed_timings_fails_vtpm_chain() {
    let l = lab();
    let strips: [Tamper; 3] = [
        |b| {
            b.tpm.as_mut().unwrap().chain.clear();
            b.timings.tpm_chain_ns.clear();
        },
        |b| b.timings.tpm_chain_ns.clear(),
        |b| b.timings.tpm_quote_ns = None,
    ];
    for strip in strips {
        let mut b = l.bundle.clone();
        strip(&mut b);
        let r = verify(&b, &l.inputs());
        assert!(
            matches!(
                assert_fails(&r, CheckId::VtpmChain),
                EvidenceError::VtpmTimingsMissing { .. }
            ),
            "{:#}",
            r.to_json()
        );
    }
    // Timings that do not match the links are refused as such.
    let mut b = l.bundle.clone();
    b.timings.tpm_chain_ns.pop();
    let r = verify(&b, &l.inputs());
    assert!(matches!(
        assert_fails(&r, CheckId::VtpmChain),
        EvidenceError::VtpmChainTimings {
            links: 2,
            timings: 1
        }
    ));
}

#[test]
fn a_slow_signed_chain_fails_its_bound() {
    let l = lab();
    let mut policy = l.policy.clone();
    // The fastest chain link: the main quote does not count (its qualifying data is known to
    // the vTPM transport, which could have it signed ahead of time).
    let fastest = *l.bundle.timings.tpm_chain_ns.iter().min().unwrap();
    policy.max_tpm_chain_rtt_ns = Some(fastest - 1);
    let r = evidence::verify_bundle(&l.bundle, &policy, &l.inputs());
    assert!(matches!(
        assert_fails(&r, CheckId::VtpmChain),
        EvidenceError::VtpmChainTooSlow { found_ns, .. } if *found_ns == fastest
    ));
    policy.max_tpm_chain_rtt_ns = Some(fastest);
    assert!(evidence::verify_bundle(&l.bundle, &policy, &l.inputs()).valid());
}

#[test]
fn a_v2_bundle_is_refused_by_default_naming_the_precomputable_chain() {
    let l = lab();
    let mut b = l.bundle.clone();
    b.version = locus_proto::evidence::BUNDLE_VERSION_V2;
    b.tpm.as_mut().unwrap().chain_secret = None;
    let r = evidence::verify_bundle_bytes(&b.to_cbor(), &l.policy, &l.inputs());
    let e = assert_fails(&r, CheckId::BindingVersion);
    assert!(
        matches!(
            e,
            EvidenceError::BindingTooOld {
                found: 2,
                required: 3
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("precompute"), "{e}");
    assert!(e.to_string().contains("min_version = 2"), "{e}");
    // Its links were made with the v3 secret, so under a v2 reading they do not chain.
    let mut policy = l.policy.clone();
    policy.min_binding_version = 2;
    let r = evidence::verify_bundle(&b, &policy, &l.inputs());
    assert!(matches!(
        assert_fails(&r, CheckId::VtpmChain),
        EvidenceError::VtpmChainBroken { index: 0, .. }
    ));
}

#[test]
fn a_v3_chain_without_its_secret_or_with_another_fails_vtpm_chain() {
    let l = lab();
    for secret in [None, Some(vec![0u8; 31]), Some(vec![0u8; 32])] {
        let mut b = l.bundle.clone();
        b.tpm.as_mut().unwrap().chain_secret = secret.clone();
        let r = evidence::verify_bundle(&b, &l.policy, &l.inputs());
        let e = assert_fails(&r, CheckId::VtpmChain);
        match secret.as_ref().map(Vec::len) {
            Some(32) => assert!(
                matches!(e, EvidenceError::VtpmChainBroken { index: 0, .. }),
                "{e}"
            ),
            len => assert!(
                matches!(e, EvidenceError::VtpmChainSecret { len: l } if Some(*l) == len.or(Some(0))),
                "{e}"
            ),
        }
        // The secret is bound into REPORTDATA too.
        assert_fails(&r, CheckId::ReportData);
    }
}

#[test]
fn a_v1_bundle_is_refused_by_a_v3_policy_with_the_reason() {
    let l = lab();
    let mut b = l.bundle.clone();
    b.version = locus_proto::evidence::BUNDLE_VERSION_V1;
    b.tpm.as_mut().unwrap().chain.clear();
    b.tpm.as_mut().unwrap().chain_secret = None;
    b.timings.tpm_chain_ns.clear();
    // It decodes (a v1 layout), so the verifier can say why it refuses it.
    let r = evidence::verify_bundle_bytes(&b.to_cbor(), &l.policy, &l.inputs());
    let e = assert_fails(&r, CheckId::BindingVersion);
    assert!(
        matches!(
            e,
            EvidenceError::BindingTooOld {
                found: 1,
                required: 3
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("min_version = 1"), "{e}");
    // A policy that still accepts version 1 lets the check pass (this bundle's quote was
    // taken over a v3 binding, so its REPORTDATA does not match the v1 recomputation).
    let mut policy = l.policy.clone();
    policy.min_binding_version = 1;
    let r = evidence::verify_bundle(&b, &policy, &l.inputs());
    assert!(matches!(
        r.outcome(CheckId::BindingVersion),
        Some(Outcome::Pass)
    ));
    assert!(matches!(
        r.outcome(CheckId::VtpmChain),
        Some(Outcome::Skipped(_))
    ));
    assert!(matches!(
        assert_fails(&r, CheckId::ReportData),
        EvidenceError::ReportDataMismatch { .. }
    ));
    // v2 fields in a v1 bundle: one layout per version.
    let mut b = l.bundle.clone();
    b.version = locus_proto::evidence::BUNDLE_VERSION_V1;
    let r = evidence::verify_bundle_bytes(&b.to_cbor(), &l.policy, &l.inputs());
    assert!(matches!(
        assert_fails(&r, CheckId::BundleFormat),
        EvidenceError::Bundle(evidence::BundleErrorKind::FieldNotInVersion {
            version: 1,
            field: "tpm.chain"
        })
    ));
}
