//! Verification of an anchor report (TLS round trips the responder timed from inside the TD):
//! binding, freshness, certificates, the handshake re-checked offline, and distance bounds.
//!
//! Pure: the verification time and the bound digest come in as arguments. Each check has its own
//! [`AnchorError`] variant. A report-level failure ([`AnchorReportError`]) makes every anchor
//! unusable; an anchor-level failure makes that anchor unusable and leaves the others.

mod handshake;
mod policy;

pub use policy::{AnchorEntry, AnchorPolicyError, AnchorPolicyFile, TrustEntry};

use locus_proto::anchor::{batch_leaf, AnchorFailure, AnchorReport, AnchorResult, Freshness};
use locus_proto::anchor::{ANCHOR_REPORT_BATCHED, ANCHOR_REPORT_V1};
use locus_proto::merkle::{root_from_proof, InclusionProof};
use rustls_pki_types::{CertificateDer, ServerName, SignatureVerificationAlgorithm, UnixTime};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Default conversion of round-trip time to distance: light in fiber covers about 200 km per ms
/// one way (2/3 c), so 1 ms of RTT bounds the distance by 100 km.
pub const DEFAULT_KM_PER_MS_RTT: f64 = 100.0;

/// The clocksource anchor reports must name unless a policy allows others: the TSC, which the
/// TDX module virtualises and the host cannot speed up.
pub const DEFAULT_CLOCKSOURCE: &str = locus_proto::anchor::TSC_CLOCKSOURCE;

/// A point on the earth, degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Position {
    pub lat: f64,
    pub lon: f64,
}

/// Great-circle distance in km (haversine, mean earth radius 6371 km).
pub fn great_circle_km(a: Position, b: Position) -> f64 {
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().min(1.0).asin()
}

/// How the verifier trusts an anchor's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnchorTrust {
    /// Mozilla's root store (`webpki-roots`); name and validity at the verification time.
    WebPki,
    /// These CA certificates (DER), e.g. the lab CA; name and validity checked.
    Roots(Vec<Vec<u8>>),
    /// SHA-256 of the leaf's SubjectPublicKeyInfo; the pin is the trust (no name or dates).
    PinnedSpki([u8; 32]),
}

/// An anchor the verifier knows: where it is and how it is trusted.
#[derive(Debug, Clone)]
pub struct KnownAnchor {
    pub name: String,
    /// The server name the responder must have used (SNI and certificate name).
    pub sni: String,
    pub site: Option<String>,
    pub position: Option<Position>,
    pub trust: AnchorTrust,
}

/// The verifier's anchor policy.
#[derive(Debug, Clone)]
pub struct AnchorPolicy {
    pub anchors: Vec<KnownAnchor>,
    /// km of distance per ms of RTT ([`DEFAULT_KM_PER_MS_RTT`]).
    pub km_per_ms_rtt: f64,
    /// Re-check each handshake from the recorded bytes and secret (see `handshake.rs`). Without
    /// it the CertificateVerify signature is still checked, but over the reported message, which
    /// is not tied to the ClientHello.
    pub recheck_handshake: bool,
    /// Clocksources a report may have been timed with (`anchor_clocksource`).
    pub allow_clocksource: Vec<String>,
    /// Whether a report must name its clocksource (version 2); without, version 1 passes.
    pub require_clocksource: bool,
}

impl AnchorPolicy {
    pub fn new(anchors: Vec<KnownAnchor>) -> Self {
        Self {
            anchors,
            km_per_ms_rtt: DEFAULT_KM_PER_MS_RTT,
            recheck_handshake: true,
            allow_clocksource: vec![DEFAULT_CLOCKSOURCE.to_string()],
            require_clocksource: true,
        }
    }

    /// The `anchor_clocksource` check: the report names a clocksource the policy allows (a
    /// version 1 report names none: refused unless the policy does not require one).
    pub fn check_clocksource(&self, report: &AnchorReport) -> Result<(), ClocksourceError> {
        match report.clocksource.as_deref() {
            None if self.require_clocksource => Err(ClocksourceError::NotRecorded {
                version: report.version,
            }),
            None => Ok(()),
            Some(c) if self.allow_clocksource.iter().any(|a| a == c) => Ok(()),
            Some(c) => Err(ClocksourceError::NotAllowed {
                found: c.to_string(),
                allowed: self.allow_clocksource.clone(),
            }),
        }
    }
}

/// Why the clock an anchor report was timed with is not trusted (`anchor_clocksource`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClocksourceError {
    /// A version 1 report: made by a responder that did not record its clock.
    #[error(
        "anchor report version {version} does not name the clocksource it was timed with; this \
         policy requires it (version 2 reports do; `require_clocksource = false` accepts older \
         ones)"
    )]
    NotRecorded { version: u16 },
    /// Timed with a clock the host controls (`kvm-clock`, `hpet`, ...): the host could make
    /// far anchors look near.
    #[error(
        "the anchors were timed with clocksource {found:?}, which the host can speed up; the \
         policy allows {}",
        allowed.join(", ")
    )]
    NotAllowed { found: String, allowed: Vec<String> },
}

/// Why a whole report is rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AnchorReportError {
    /// The report was changed after it was bound into the quote (or belongs to another quote).
    #[error("anchor report digest {found} differs from the value bound into the quote {expected}")]
    DigestMismatch { expected: String, found: String },
    #[error("anchor report version {found} is not supported (this build reads {supported})")]
    UnsupportedVersion { found: u16, supported: u16 },
    /// The clocksource field does not belong to the version: a version 1 report carrying one
    /// (outside its digest), or a version 2 report without one.
    #[error("anchor report version {version} {}", if *has { "carries a clocksource, which its digest does not cover" } else { "names no clocksource" })]
    ClocksourceField { version: u16, has: bool },
    /// The report answers another challenge: replayed or foreign.
    #[error("anchor report is for nonce {found}, the challenge was {expected}")]
    NonceMismatch { expected: String, found: String },
    /// The batch proof does not belong to the version: a version 3 report without one, or an
    /// earlier report carrying one (outside its digest).
    #[error("anchor report version {version} {}", if *has { "carries a batch proof, which its digest does not cover" } else { "names no batch" })]
    BatchField { version: u16, has: bool },
    /// The batch proof is not well formed: a root or sibling hash not 64 bytes, an index out
    /// of range, or a path of the wrong length for the batch size.
    #[error("malformed anchor batch proof: {detail}")]
    BatchProofMalformed { detail: String },
    /// The proof does not lead from this nonce to the stated root: a proof for another nonce,
    /// a tampered proof or root, or a batch report replayed for a nonce it never held.
    #[error("the batch proof folds this nonce to root {found}, the report states {expected}")]
    BatchProofMismatch { expected: String, found: String },
}

/// Why one anchor's measurement is not usable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AnchorError {
    #[error("anchor {name:?} is not in the policy")]
    UnknownAnchor { name: String },
    #[error("server name {found:?} differs from the policy's {expected:?}")]
    SniMismatch { expected: String, found: String },
    /// The responder recorded that the measurement failed.
    #[error("measurement failed: {0}")]
    Recorded(AnchorFailure),
    #[error("no TLS handshake recorded")]
    MissingTls,
    /// The recorded random is not the one derived from this nonce: a replay of an old handshake.
    #[error("ClientHello.random {found} is not the one derived from the nonce ({expected})")]
    ClientRandomMismatch { expected: String, found: String },
    /// In a batched report, the recorded random is not the one derived from the batch root the
    /// proof leads to: a handshake from another batch (or none), not later than this nonce.
    #[error("ClientHello.random {found} is not the one derived from the batch root ({expected})")]
    ClientRandomNotFromBatchRoot { expected: String, found: String },
    /// The recorded ClientHello bytes carry another random than the reported one.
    #[error("the recorded ClientHello carries random {found}, not {expected}")]
    ClientHelloMismatch { expected: String, found: String },
    #[error("no server certificate recorded")]
    EmptyChain,
    #[error("server certificate chain does not verify: {detail}")]
    ChainInvalid { detail: String },
    #[error("leaf SPKI sha256 {found} differs from the pin {expected}")]
    PinMismatch { expected: String, found: String },
    #[error("no CertificateVerify recorded")]
    MissingCertVerify,
    #[error("signature scheme 0x{scheme:04x} is not supported")]
    UnsupportedScheme { scheme: u16 },
    #[error("CertificateVerify signature does not verify with the leaf key: {detail}")]
    SignatureInvalid { detail: String },
    #[error("cipher suite 0x{suite:04x} is not supported for the offline re-check")]
    UnsupportedCipherSuite { suite: u16 },
    #[error("malformed handshake record: {detail}")]
    HandshakeMalformed { detail: String },
    #[error("server handshake record {record} does not decrypt with the recorded secret")]
    HandshakeDecrypt { record: u64 },
    /// The recorded ClientHello or server messages are not the ones this handshake finished
    /// over (the records decrypt, so the secret is right): the transcript was altered.
    #[error("the server Finished does not match the recorded transcript")]
    FinishedMismatch,
    #[error("HelloRetryRequest handshakes cannot be re-checked")]
    HelloRetryUnsupported,
    /// The reported chain or CertificateVerify differs from the one in the recorded handshake.
    #[error("reported {what} differs from the recorded handshake")]
    TranscriptMismatch { what: &'static str },
    #[error("round-trip samples are inconsistent: {detail}")]
    SamplesInconsistent { detail: String },
}

/// A usable anchor measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedAnchor {
    pub name: String,
    pub site: Option<String>,
    pub min_rtt_ns: u64,
    pub samples: u32,
    /// Hard bound: the TD was within this distance of the anchor.
    pub max_distance_km: f64,
    /// Whether the handshake was re-checked from the recorded bytes.
    pub handshake_rechecked: bool,
}

/// Two anchors whose RTTs cannot both be right: the TD cannot be within `bound_km_a` of one and
/// within `bound_km_b` of the other when they are `distance_km` apart. At least one answers from
/// closer than its stated location (anycast or CDN edge, or a wrong location in the policy).
#[derive(Debug, Clone, PartialEq)]
pub struct AnycastSuspect {
    pub a: String,
    pub b: String,
    pub distance_km: f64,
    pub bound_km_a: f64,
    pub bound_km_b: f64,
    /// The one with the shorter RTT, the likelier edge.
    pub likelier: String,
}

/// The outcome for one anchor in the report, in report order.
#[derive(Debug, Clone, PartialEq)]
pub struct AnchorCheck {
    pub name: String,
    pub outcome: Result<VerifiedAnchor, AnchorError>,
}

/// The outcome of [`verify_report`].
#[derive(Debug, Clone, PartialEq)]
pub struct AnchorVerification {
    pub anchors: Vec<AnchorCheck>,
    pub anycast_suspects: Vec<AnycastSuspect>,
}

impl AnchorVerification {
    /// The usable anchors with a site, as the verdict engine takes them (`NodeInput::anchors`).
    pub fn verdict_inputs(&self) -> Vec<crate::input::AnchorReport> {
        self.usable()
            .into_iter()
            .filter_map(|v| {
                Some(crate::input::AnchorReport {
                    site: v.site.clone()?,
                    min_rtt_ns: v.min_rtt_ns,
                    samples: v.samples,
                })
            })
            .collect()
    }

    /// Verified anchors that are in no anycast-suspect pair: the ones fit for distance bounds.
    pub fn usable(&self) -> Vec<&VerifiedAnchor> {
        self.anchors
            .iter()
            .filter_map(|c| c.outcome.as_ref().ok())
            .filter(|v| {
                !self
                    .anycast_suspects
                    .iter()
                    .any(|s| s.a == v.name || s.b == v.name)
            })
            .collect()
    }
}

/// Checks that `report` is the one bound into the quote (`bound_digest`, taken from the binding
/// the quote was verified against), and that it answers `nonce`: itself, or (version 3) through
/// a batch proof that leads from `nonce` to the root its randoms were derived from. Returns
/// that root, `None` for a report of its own.
pub fn verify_binding(
    report: &AnchorReport,
    bound_digest: &[u8; 32],
    nonce: &[u8],
) -> Result<Option<[u8; 64]>, AnchorReportError> {
    let found = report.digest();
    if &found != bound_digest {
        return Err(AnchorReportError::DigestMismatch {
            expected: hex::encode(bound_digest),
            found: hex::encode(found),
        });
    }
    if !(ANCHOR_REPORT_V1..=ANCHOR_REPORT_BATCHED).contains(&report.version) {
        return Err(AnchorReportError::UnsupportedVersion {
            found: report.version,
            supported: ANCHOR_REPORT_BATCHED,
        });
    }
    let has = report.clocksource.is_some();
    if has != (report.version >= 2) {
        return Err(AnchorReportError::ClocksourceField {
            version: report.version,
            has,
        });
    }
    let has = report.batch.is_some();
    if has != (report.version >= ANCHOR_REPORT_BATCHED) {
        return Err(AnchorReportError::BatchField {
            version: report.version,
            has,
        });
    }
    if report.nonce != nonce {
        return Err(AnchorReportError::NonceMismatch {
            expected: hex::encode(nonce),
            found: hex::encode(&report.nonce),
        });
    }
    report
        .batch
        .as_ref()
        .map(|b| batch_root(b, nonce))
        .transpose()
}

/// The batch root `b` states, once its proof is checked to lead there from `nonce`.
fn batch_root(
    b: &locus_proto::anchor::AnchorBatch,
    nonce: &[u8],
) -> Result<[u8; 64], AnchorReportError> {
    let malformed = |detail: String| AnchorReportError::BatchProofMalformed { detail };
    let root: [u8; 64] = b
        .root
        .as_slice()
        .try_into()
        .map_err(|_| malformed(format!("the root is {} bytes, not 64", b.root.len())))?;
    let path = b
        .path
        .iter()
        .enumerate()
        .map(|(i, h)| {
            <[u8; 64]>::try_from(h.as_slice())
                .map_err(|_| malformed(format!("hash {i} is {} bytes, not 64", h.len())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let proof = InclusionProof {
        index: b.index,
        size: b.size,
        path,
    };
    let folded = root_from_proof(&batch_leaf(nonce), &proof).ok_or_else(|| {
        malformed(format!(
            "index {} of {} with a path of {} hashes",
            b.index,
            b.size,
            b.path.len()
        ))
    })?;
    if folded != root {
        return Err(AnchorReportError::BatchProofMismatch {
            expected: hex::encode(root),
            found: hex::encode(folded),
        });
    }
    Ok(root)
}

/// Verifies a bound report: [`verify_binding`], then every anchor at `now_unix_s` under
/// `policy`, then the anycast cross-check between verified anchors.
pub fn verify_report(
    report: &AnchorReport,
    bound_digest: &[u8; 32],
    nonce: &[u8],
    policy: &AnchorPolicy,
    now_unix_s: u64,
) -> Result<AnchorVerification, AnchorReportError> {
    let root = verify_binding(report, bound_digest, nonce)?;
    let freshness = match &root {
        Some(r) => Freshness::BatchRoot(r),
        None => Freshness::Nonce(nonce),
    };
    let anchors: Vec<AnchorCheck> = report
        .anchors
        .iter()
        .enumerate()
        .map(|(i, a)| AnchorCheck {
            name: a.name.clone(),
            outcome: verify_anchor(a, i, freshness, policy, now_unix_s),
        })
        .collect();
    let anycast_suspects = anycast_suspects(&anchors, policy);
    Ok(AnchorVerification {
        anchors,
        anycast_suspects,
    })
}

fn verify_anchor(
    a: &AnchorResult,
    index: usize,
    freshness: Freshness<'_>,
    policy: &AnchorPolicy,
    now_unix_s: u64,
) -> Result<VerifiedAnchor, AnchorError> {
    let known = policy
        .anchors
        .iter()
        .find(|k| k.name == a.name)
        .ok_or_else(|| AnchorError::UnknownAnchor {
            name: a.name.clone(),
        })?;
    if known.sni != a.sni {
        return Err(AnchorError::SniMismatch {
            expected: known.sni.clone(),
            found: a.sni.clone(),
        });
    }
    if let Some(f) = &a.failure {
        return Err(AnchorError::Recorded(f.clone()));
    }
    let tls = a.tls.as_ref().ok_or(AnchorError::MissingTls)?;

    // Freshness: the random is the nonce's (or its batch root's), and it is the one in the
    // ClientHello sent.
    let index = u32::try_from(index).unwrap_or(u32::MAX);
    let expected = freshness.client_random(index, &a.name);
    if tls.client_random != expected {
        let (expected, found) = (hex::encode(expected), hex::encode(&tls.client_random));
        return Err(match freshness {
            Freshness::Nonce(_) => AnchorError::ClientRandomMismatch { expected, found },
            Freshness::BatchRoot(_) => {
                AnchorError::ClientRandomNotFromBatchRoot { expected, found }
            }
        });
    }
    let on_wire = tls.client_hello.get(11..43);
    if tls.client_hello.first() != Some(&22) || on_wire != Some(&expected[..]) {
        return Err(AnchorError::ClientHelloMismatch {
            expected: hex::encode(expected),
            found: hex::encode(on_wire.unwrap_or_default()),
        });
    }

    // Certificates at the verification time.
    let chain: Vec<CertificateDer<'_>> = tls
        .cert_chain
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let leaf = chain.first().ok_or(AnchorError::EmptyChain)?;
    let ee = webpki::EndEntityCert::try_from(leaf).map_err(|e| AnchorError::ChainInvalid {
        detail: e.to_string(),
    })?;
    verify_chain(&ee, leaf, &chain[1..], &known.trust, &known.sni, now_unix_s)?;

    // The CertificateVerify, re-derived from the handshake when asked.
    let cv = tls
        .cert_verify
        .as_ref()
        .ok_or(AnchorError::MissingCertVerify)?;
    let handshake_rechecked = policy.recheck_handshake;
    if handshake_rechecked {
        let r = handshake::recheck(
            tls.cipher_suite,
            &tls.client_hello,
            &tls.server_flight,
            &tls.server_handshake_secret,
        )?;
        if r.client_random != expected {
            return Err(AnchorError::ClientHelloMismatch {
                expected: hex::encode(expected),
                found: hex::encode(r.client_random),
            });
        }
        if r.cert_chain.len() != tls.cert_chain.len()
            || r.cert_chain
                .iter()
                .zip(&tls.cert_chain)
                .any(|(x, y)| x.as_slice() != y.as_slice())
        {
            return Err(AnchorError::TranscriptMismatch {
                what: "certificate chain",
            });
        }
        if r.scheme != cv.scheme || r.signature != cv.signature {
            return Err(AnchorError::TranscriptMismatch {
                what: "CertificateVerify",
            });
        }
        if r.signed_message != cv.signed_message {
            return Err(AnchorError::TranscriptMismatch {
                what: "signed transcript hash",
            });
        }
    }
    let alg = scheme_alg(cv.scheme)?;
    ee.verify_signature(alg, &cv.signed_message, &cv.signature)
        .map_err(|e| AnchorError::SignatureInvalid {
            detail: e.to_string(),
        })?;

    // Samples: what the minimum is taken over must be complete and consistent.
    let n = a.round_trips_ns.len();
    let requested = usize::try_from(a.round_trips_requested).unwrap_or(usize::MAX);
    let min = a.round_trips_ns.iter().min().copied();
    let problem = if n == 0 {
        Some("no round trips".to_owned())
    } else if n != requested {
        Some(format!("{n} round trips for {requested} requested"))
    } else if a.min_rtt_ns != min {
        Some(format!(
            "min_rtt_ns {:?} is not the minimum {min:?}",
            a.min_rtt_ns
        ))
    } else if a.round_trips_ns.contains(&0) {
        Some("a round trip of 0 ns".to_owned())
    } else {
        None
    };
    if let Some(detail) = problem {
        return Err(AnchorError::SamplesInconsistent { detail });
    }
    let min_rtt_ns = min.unwrap_or_default();
    Ok(VerifiedAnchor {
        name: a.name.clone(),
        site: known.site.clone(),
        min_rtt_ns,
        samples: u32::try_from(n).unwrap_or(u32::MAX),
        max_distance_km: max_distance_km(min_rtt_ns, policy.km_per_ms_rtt),
        handshake_rechecked,
    })
}

/// The distance bound for a round trip: `rtt_ms × km_per_ms_rtt`.
pub fn max_distance_km(rtt_ns: u64, km_per_ms_rtt: f64) -> f64 {
    // u64 ns to ms: exact enough in f64 for any RTT below 104 days.
    rtt_ns as f64 / 1e6 * km_per_ms_rtt
}

fn verify_chain(
    ee: &webpki::EndEntityCert<'_>,
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    trust: &AnchorTrust,
    sni: &str,
    now_unix_s: u64,
) -> Result<(), AnchorError> {
    let invalid = |e: webpki::Error| AnchorError::ChainInvalid {
        detail: e.to_string(),
    };
    let owned_roots;
    let roots: &[rustls_pki_types::TrustAnchor<'_>] = match trust {
        AnchorTrust::PinnedSpki(pin) => {
            let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| {
                AnchorError::ChainInvalid {
                    detail: e.to_string(),
                }
            })?;
            let found: [u8; 32] = Sha256::digest(parsed.tbs_certificate.subject_pki.raw).into();
            if &found != pin {
                return Err(AnchorError::PinMismatch {
                    expected: hex::encode(pin),
                    found: hex::encode(found),
                });
            }
            return Ok(());
        }
        AnchorTrust::WebPki => webpki_roots::TLS_SERVER_ROOTS,
        AnchorTrust::Roots(ders) => {
            owned_roots = ders
                .iter()
                .map(|d| {
                    webpki::anchor_from_trusted_cert(&CertificateDer::from(d.as_slice()))
                        .map(|a| a.to_owned())
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(invalid)?;
            &owned_roots
        }
    };
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(now_unix_s));
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        roots,
        intermediates,
        time,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map_err(invalid)?;
    let name = ServerName::try_from(sni).map_err(|_| AnchorError::ChainInvalid {
        detail: format!("{sni:?} is not a server name"),
    })?;
    ee.verify_is_valid_for_subject_name(&name).map_err(invalid)
}

/// TLS 1.3 SignatureScheme to a webpki algorithm.
fn scheme_alg(scheme: u16) -> Result<&'static dyn SignatureVerificationAlgorithm, AnchorError> {
    use webpki::ring as a;
    Ok(match scheme {
        0x0403 => a::ECDSA_P256_SHA256,
        0x0503 => a::ECDSA_P384_SHA384,
        0x0804 => a::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        0x0805 => a::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
        0x0806 => a::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
        0x0807 => a::ED25519,
        scheme => return Err(AnchorError::UnsupportedScheme { scheme }),
    })
}

/// Pairs of verified, located anchors whose distance bounds cannot both hold.
fn anycast_suspects(checks: &[AnchorCheck], policy: &AnchorPolicy) -> Vec<AnycastSuspect> {
    let located: Vec<(&VerifiedAnchor, Position)> = checks
        .iter()
        .filter_map(|c| c.outcome.as_ref().ok())
        .filter_map(|v| {
            let k = policy.anchors.iter().find(|k| k.name == v.name)?;
            Some((v, k.position?))
        })
        .collect();
    let mut out = Vec::new();
    for (i, (va, pa)) in located.iter().enumerate() {
        for (vb, pb) in &located[i + 1..] {
            let d = great_circle_km(*pa, *pb);
            if d > va.max_distance_km + vb.max_distance_km {
                out.push(AnycastSuspect {
                    a: va.name.clone(),
                    b: vb.name.clone(),
                    distance_km: d,
                    bound_km_a: va.max_distance_km,
                    bound_km_b: vb.max_distance_km,
                    likelier: if va.min_rtt_ns <= vb.min_rtt_ns {
                        va.name.clone()
                    } else {
                        vb.name.clone()
                    },
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_conversion_and_great_circle() {
        assert!((max_distance_km(1_000_000, DEFAULT_KM_PER_MS_RTT) - 100.0).abs() < 1e-9);
        assert!((max_distance_km(2_500_000, 200.0) - 500.0).abs() < 1e-9);
        let fra = Position {
            lat: 50.11,
            lon: 8.68,
        };
        let par = Position {
            lat: 48.86,
            lon: 2.35,
        };
        let d = great_circle_km(fra, par);
        assert!((470.0..490.0).contains(&d), "{d}");
        assert_eq!(great_circle_km(fra, fra), 0.0);
    }

    fn verified(name: &str, rtt_ms: f64) -> AnchorCheck {
        AnchorCheck {
            name: name.into(),
            outcome: Ok(VerifiedAnchor {
                name: name.into(),
                site: None,
                min_rtt_ns: (rtt_ms * 1e6) as u64,
                samples: 1,
                max_distance_km: rtt_ms * 100.0,
                handshake_rechecked: true,
            }),
        }
    }

    fn known(name: &str, lat: f64, lon: f64) -> KnownAnchor {
        KnownAnchor {
            name: name.into(),
            sni: format!("{name}.lab"),
            site: None,
            position: Some(Position { lat, lon }),
            trust: AnchorTrust::PinnedSpki([0; 32]),
        }
    }

    #[test]
    fn anycast_pair_is_flagged_and_consistent_pair_is_not() {
        let policy = AnchorPolicy::new(vec![
            known("fra", 50.11, 8.68),
            known("par", 48.86, 2.35),
            known("nyc", 40.71, -74.0),
        ]);
        // ~480 km apart: 1 ms + 4 ms bounds 500 km, consistent.
        let ok = vec![verified("fra", 1.0), verified("par", 4.0)];
        assert!(anycast_suspects(&ok, &policy).is_empty());
        // New York is ~6200 km from Frankfurt: 1 ms + 2 ms cannot both be true.
        let checks = vec![
            verified("fra", 1.0),
            verified("par", 4.0),
            verified("nyc", 2.0),
        ];
        let s = anycast_suspects(&checks, &policy);
        assert_eq!(s.len(), 2, "{s:?}");
        assert!(s.iter().all(|p| p.b == "nyc"));
        let v = AnchorVerification {
            anchors: checks,
            anycast_suspects: s,
        };
        let usable: Vec<&str> = v.usable().iter().map(|a| a.name.as_str()).collect();
        assert!(usable.is_empty(), "{usable:?}");
    }
}
