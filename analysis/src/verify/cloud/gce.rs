//! GCE vTPM attestations: go-tpm-tools' `attest.Attestation` protobuf, verified bank by bank
//! (AK signature, nonce, PCR digest), its TCG event log replayed against the quoted PCRs, its AK
//! certificate chained to Google's EK/AK CA and matched to the AK, and the instance identity
//! (zone, project, instance) read from the certificate's extension 1.3.6.1.4.1.11129.2.1.21.
//!
//! Schema: go-tpm-tools `proto/attest.proto` and `proto/tpm.proto` (Apache-2.0); only the fields
//! verified here are declared, the SEV-SNP/TDX attachments (fields 8, 9) are skipped.

use std::collections::BTreeMap;

use prost::Message;
use serde::Serialize;
use thiserror::Error;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use super::der::{uint, Der};
use super::{Checks, NamedCheck, MAX_EVIDENCE_LEN};
pub use crate::check::GceCheck;
use crate::verify::bundle::ekchain::{self, EkChainError};
use crate::verify::eventlog::{self, EventLog, EventLogError};
use crate::verify::tpm::{self, AkKey, AkPublic, TpmError};

/// OID of Google's instance-identity certificate extension.
pub const INSTANCE_IDENTITY_OID: &str = "1.3.6.1.4.1.11129.2.1.21";

/// TPM_ALG_SHA1 (the legacy bank GCE still quotes).
const ALG_SHA1: u16 = 0x0004;

/// `attest.Attestation` (fields 1-7).
#[derive(Clone, PartialEq, Message)]
struct Attestation {
    /// TPMT_PUBLIC of the AK, TPM wire format.
    #[prost(bytes = "vec", tag = "1")]
    ak_pub: Vec<u8>,
    #[prost(message, repeated, tag = "2")]
    quotes: Vec<Quote>,
    /// TCG PC Client crypto-agile event log.
    #[prost(bytes = "vec", tag = "3")]
    event_log: Vec<u8>,
    /// Unsigned; compared with the certificate's identity when present.
    #[prost(message, optional, tag = "4")]
    instance_info: Option<InstanceInfo>,
    #[prost(bytes = "vec", tag = "5")]
    canonical_event_log: Vec<u8>,
    /// DER.
    #[prost(bytes = "vec", tag = "6")]
    ak_cert: Vec<u8>,
    #[prost(bytes = "vec", repeated, tag = "7")]
    intermediate_certs: Vec<Vec<u8>>,
}

/// `attest.GCEInstanceInfo`.
#[derive(Clone, PartialEq, Message)]
struct InstanceInfo {
    #[prost(string, tag = "1")]
    zone: String,
    #[prost(string, tag = "2")]
    project_id: String,
    #[prost(uint64, tag = "3")]
    project_number: u64,
    #[prost(string, tag = "4")]
    instance_name: String,
    #[prost(uint64, tag = "5")]
    instance_id: u64,
}

/// `tpm.Quote`.
#[derive(Clone, PartialEq, Message)]
struct Quote {
    /// TPMS_ATTEST.
    #[prost(bytes = "vec", tag = "1")]
    quote: Vec<u8>,
    /// TPMT_SIGNATURE.
    #[prost(bytes = "vec", tag = "2")]
    raw_sig: Vec<u8>,
    #[prost(message, optional, tag = "3")]
    pcrs: Option<Pcrs>,
}

/// `tpm.PCRs`: `hash` is a `tpm.HashAlgo`, whose values are the TPM_ALG_IDs.
#[derive(Clone, PartialEq, Message)]
struct Pcrs {
    #[prost(int32, tag = "1")]
    hash: i32,
    #[prost(btree_map = "uint32, bytes", tag = "2")]
    pcrs: BTreeMap<u32, Vec<u8>>,
}

/// Decodes the protobuf alone (for property tests and tools): `Err` with the reason when the
/// bytes are not an `attest.Attestation`.
pub fn decode(bytes: &[u8]) -> Result<(), GceError> {
    decode_attestation(bytes).map(|_| ())
}

fn decode_attestation(bytes: &[u8]) -> Result<Attestation, GceError> {
    if bytes.len() > MAX_EVIDENCE_LEN {
        return Err(GceError::Oversized {
            len: bytes.len(),
            max: MAX_EVIDENCE_LEN,
        });
    }
    if bytes.is_empty() {
        return Err(GceError::Decode {
            reason: "empty file".into(),
        });
    }
    Attestation::decode(bytes).map_err(|e| GceError::Decode {
        reason: e.to_string(),
    })
}

/// The GCE instance a certificate's identity extension names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GceInstance {
    pub zone: String,
    pub project_number: u64,
    pub project_id: String,
    pub instance_id: u64,
    pub instance_name: String,
}

/// Why a GCE attestation (or one of its parts) was rejected. Each variant is one check.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GceError {
    /// The file is larger than any real attestation.
    #[error("attestation of {len} bytes exceeds {max}")]
    Oversized { len: usize, max: usize },
    /// Not an `attest.Attestation` protobuf.
    #[error("not an attest.Attestation protobuf: {reason}")]
    Decode { reason: String },
    /// `ak_pub` is not an attestation key's TPMT_PUBLIC.
    #[error("ak_pub: {0}")]
    AkPublic(TpmError),
    /// The attestation carries no quote.
    #[error("the attestation carries no quote")]
    NoQuotes,
    /// A quote's TPMS_ATTEST does not parse as a quote.
    #[error("quote {bank}: {err}")]
    QuoteParse { bank: usize, err: TpmError },
    /// A quote's signature does not verify under `ak_pub`.
    #[error("quote {bank}: {err}")]
    QuoteSignature { bank: usize, err: TpmError },
    /// The verifier gave no nonce and did not allow nonce-less evidence.
    #[error("no nonce expected: evidence without a fresh nonce is not accepted (quote extraData {found})")]
    NonceRequired { found: String },
    /// A quote's qualifiedSigner is not the qualified name of `ak_pub` as a primary key of the
    /// endorsement hierarchy (how GCE and go-tpm-tools create AKs): some other key, or an
    /// `ak_pub` whose attributes or policy were changed, signed.
    #[error("quote {bank}: qualifiedSigner {found} is not ak_pub's qualified name {expected}")]
    AkQualifiedName {
        bank: usize,
        expected: String,
        found: String,
    },
    /// A quote's extraData is not the expected nonce.
    #[error("quote {bank}: extraData {found} is not the nonce {expected}")]
    NonceMismatch {
        bank: usize,
        expected: String,
        found: String,
    },
    /// A quote's PCR selection does not match its PCR values (bank, indices, value lengths).
    #[error("quote {bank}: {reason}")]
    PcrSelection { bank: usize, reason: String },
    /// SHA-256 over a bank's PCR values is not the quote's pcrDigest.
    #[error("quote {bank}: PCR values hash to {found}, the quote's pcrDigest is {expected}")]
    PcrDigest {
        bank: usize,
        expected: String,
        found: String,
    },
    /// The attestation carries no event log.
    #[error("the attestation carries no event log")]
    EventLogMissing,
    /// The event log does not parse.
    #[error("event log: {0}")]
    EventLogParse(EventLogError),
    /// Replaying the event log does not give a quoted PCR value.
    #[error("quote {bank}: event log replays PCR{pcr} to {replayed}, quoted {quoted}")]
    EventLogReplay {
        bank: usize,
        pcr: u32,
        replayed: String,
        quoted: String,
    },
    /// The attestation carries no AK certificate.
    #[error("the attestation carries no AK certificate")]
    AkCertMissing,
    /// The AK certificate (or an intermediate) is not X.509 DER.
    #[error("AK certificate: {reason}")]
    AkCertParse { reason: String },
    /// The AK certificate does not chain to a trusted root at the verification time.
    #[error("AK certificate chain: {0}")]
    AkCertChain(EkChainError),
    /// The AK certificate certifies another key than `ak_pub`.
    #[error("the AK certificate's key is not ak_pub: {reason}")]
    AkCertKey { reason: String },
    /// The AK certificate lacks a well-formed instance-identity extension.
    #[error("instance identity extension {INSTANCE_IDENTITY_OID}: {reason}")]
    InstanceIdentity { reason: String },
    /// The unsigned `instance_info` disagrees with the certificate.
    #[error("instance_info names {claimed}, the AK certificate {certified}")]
    InstanceInfoMismatch { claimed: String, certified: String },
}

impl NamedCheck for GceError {
    type Id = GceCheck;

    fn check(&self) -> GceCheck {
        match self {
            Self::Oversized { .. } => GceCheck::Oversized,
            Self::Decode { .. } => GceCheck::Decode,
            Self::AkPublic(_) => GceCheck::AkPublic,
            Self::NoQuotes => GceCheck::NoQuotes,
            Self::QuoteParse { .. } => GceCheck::QuoteParse,
            Self::QuoteSignature { .. } => GceCheck::QuoteSignature,
            Self::AkQualifiedName { .. } => GceCheck::AkQualifiedName,
            Self::NonceRequired { .. } => GceCheck::NonceRequired,
            Self::NonceMismatch { .. } => GceCheck::Nonce,
            Self::PcrSelection { .. } => GceCheck::PcrSelection,
            Self::PcrDigest { .. } => GceCheck::PcrDigest,
            Self::EventLogMissing => GceCheck::EventLogMissing,
            Self::EventLogParse(_) => GceCheck::EventLogParse,
            Self::EventLogReplay { .. } => GceCheck::EventLogReplay,
            Self::AkCertMissing => GceCheck::AkCertMissing,
            Self::AkCertParse { .. } => GceCheck::AkCertParse,
            Self::AkCertChain(_) => GceCheck::AkCertChain,
            Self::AkCertKey { .. } => GceCheck::AkCertKey,
            Self::InstanceIdentity { .. } => GceCheck::InstanceIdentity,
            Self::InstanceInfoMismatch { .. } => GceCheck::InstanceInfoMismatch,
        }
    }
}

/// One quoted PCR bank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GceBank {
    /// `sha1`, `sha256`, `sha384`, … or the TPM_ALG_ID in hex.
    pub hash: String,
    /// PCR index → value (hex).
    pub pcrs: BTreeMap<u32, String>,
}

/// The result of verifying a GCE attestation: every check and what the evidence names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GceReport {
    pub valid: bool,
    pub failed_checks: Vec<GceCheck>,
    pub checks: Checks<GceError>,
    /// From the AK certificate's extension (trust it only when `valid`).
    pub identity: Option<GceInstance>,
    /// Subjects of the AK certificate chain, leaf first, when it verified.
    pub ak_cert_chain: Vec<String>,
    /// The quoted banks as the file gives them.
    pub banks: Vec<GceBank>,
    /// The quotes' extraData (hex) of the first quote.
    pub extra_data: Option<String>,
}

impl GceReport {
    /// The zone the verified AK certificate names: an endorsement of location, `None` unless
    /// every check passed.
    pub fn endorsed_zone(&self) -> Option<&str> {
        if self.valid {
            self.identity.as_ref().map(|i| i.zone.as_str())
        } else {
            None
        }
    }

    /// What the verdict engine needs: validity, the failed checks, and the zone the verified
    /// AK certificate names (an endorsement of location: `[zone_sites]` in the policy).
    pub fn evidence_summary(&self) -> crate::EvidenceSummary {
        crate::EvidenceSummary {
            valid: self.valid,
            failed_checks: self.failed_checks.iter().map(|c| c.to_string()).collect(),
            tdx_vtpm_bound: None,
            lab_root: false,
            platform_id: None,
            zone: self.endorsed_zone().map(str::to_owned),
            // GCE verification pins no code: no reference values, no TD.
            unpinned_code: true,
            // Nothing here binds the session key to the quote.
            session_keys: Vec::new(),
        }
    }
}

fn alg_name(alg: u16) -> String {
    match alg {
        ALG_SHA1 => "sha1".into(),
        eventlog::ALG_SHA256 => "sha256".into(),
        eventlog::ALG_SHA384 => "sha384".into(),
        0x000d => "sha512".into(),
        _ => format!("{alg:#06x}"),
    }
}

fn digest_len(alg: u16) -> Option<usize> {
    match alg {
        ALG_SHA1 => Some(20),
        eventlog::ALG_SHA256 => Some(32),
        eventlog::ALG_SHA384 => Some(48),
        _ => None,
    }
}

fn hash(alg: u16, data: &[u8]) -> Option<Vec<u8>> {
    if alg == ALG_SHA1 {
        // SHA-1 only to replay the legacy bank the TPM itself computes; never for signatures.
        Some(
            ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, data)
                .as_ref()
                .to_vec(),
        )
    } else {
        eventlog::hash(alg, data)
    }
}

/// Replays `alg` into every PCR the log extends (SHA-1 included, unlike
/// [`EventLog::replay`]). `None` when `alg` is not supported.
fn replay(log: &EventLog, alg: u16) -> Option<BTreeMap<u32, Vec<u8>>> {
    let len = digest_len(alg)?;
    let mut regs: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    for e in &log.events {
        if e.event_type == eventlog::EV_NO_ACTION {
            continue;
        }
        let Some(d) = e.digest(alg) else { continue };
        let reg = regs.entry(e.index).or_insert_with(|| {
            let mut init = vec![0u8; len];
            if let (0, Some(loc)) = (e.index, log.startup_locality) {
                init[len - 1] = loc;
            }
            init
        });
        let mut data = reg.clone();
        data.extend_from_slice(d);
        *reg = hash(alg, &data)?;
    }
    Some(regs)
}

/// Verifies a GCE attestation.
///
/// `expected_nonce`: the verifier's nonce, which every quote's extraData must equal; an empty
/// one is rejected (`NonceRequired`). `None` accepts any extraData (archival checks of
/// evidence made without a nonce; nothing then shows the evidence is fresh).
/// `roots`: DER certificates; the self-signed ones are the trust anchors, the others (and the
/// attestation's own `intermediate_certs`) are used as intermediates.
pub fn verify_attestation(
    bytes: &[u8],
    expected_nonce: Option<&[u8]>,
    roots: &[Vec<u8>],
    now_unix: u64,
) -> GceReport {
    let mut checks = Checks::new();
    let mut report = GceReport {
        valid: false,
        failed_checks: Vec::new(),
        checks: Checks::new(),
        identity: None,
        ak_cert_chain: Vec::new(),
        banks: Vec::new(),
        extra_data: None,
    };
    if let Some(att) = checks.record(
        GceCheck::Decode,
        decode_attestation(bytes),
        "attest.Attestation",
    ) {
        verify_decoded(
            &att,
            expected_nonce,
            roots,
            now_unix,
            &mut checks,
            &mut report,
        );
    }
    report.valid = checks.valid();
    report.failed_checks = checks.failed();
    report.checks = checks;
    report
}

fn verify_decoded(
    att: &Attestation,
    expected_nonce: Option<&[u8]>,
    roots: &[Vec<u8>],
    now_unix: u64,
    checks: &mut Checks<GceError>,
    report: &mut GceReport,
) {
    let ak = parse_ak(&att.ak_pub);
    let ak = checks.record(GceCheck::AkPublic, ak, "restricted signing key");

    verify_quotes(att, ak.as_ref(), expected_nonce, checks, report);
    verify_event_log(att, checks);

    // AK certificate: chain, key, identity.
    if att.ak_cert.is_empty() {
        checks.fail(GceError::AkCertMissing);
        return;
    }
    let cert = match X509Certificate::from_der(&att.ak_cert) {
        Ok(([], c)) => c,
        Ok(_) => {
            checks.fail(GceError::AkCertParse {
                reason: "trailing bytes after the certificate".into(),
            });
            return;
        }
        Err(e) => {
            checks.fail(GceError::AkCertParse {
                reason: e.to_string(),
            });
            return;
        }
    };
    checks.pass(GceCheck::AkCertParse, "X.509 DER");
    let (anchors, mut intermediates) = super::roots::split(roots);
    intermediates.extend(att.intermediate_certs.iter().cloned());
    match ekchain::verify_chain(&att.ak_cert, &intermediates, &anchors, now_unix as i64) {
        Ok(chain) => {
            let chain: Vec<String> = chain
                .into_iter()
                .map(|s| {
                    if s.is_empty() {
                        "(empty subject)".into()
                    } else {
                        s
                    }
                })
                .collect();
            checks.pass(GceCheck::AkCertChain, chain.join(" -> "));
            report.ak_cert_chain = chain;
        }
        Err(e) => checks.fail(GceError::AkCertChain(e)),
    }
    match &ak {
        Some(ak) => {
            checks.record(
                GceCheck::AkCertKey,
                cert_key_matches(&cert, ak),
                "certifies ak_pub",
            );
        }
        None => checks.skip(GceCheck::AkCertKey, "ak_pub did not parse"),
    }
    let identity = instance_identity(&cert);
    if let Some(id) = checks.record(GceCheck::InstanceIdentity, identity, INSTANCE_IDENTITY_OID) {
        if let Some(info) = &att.instance_info {
            let claimed = format!("{}/{}/{}", info.zone, info.project_id, info.instance_id);
            let certified = format!("{}/{}/{}", id.zone, id.project_id, id.instance_id);
            if claimed == certified {
                checks.pass(
                    GceCheck::InstanceInfoMismatch,
                    "instance_info = certificate",
                );
            } else {
                checks.fail(GceError::InstanceInfoMismatch { claimed, certified });
            }
        }
        report.identity = Some(id);
    }
}

fn parse_ak(tpmt_public: &[u8]) -> Result<AkPublic, GceError> {
    let len = u16::try_from(tpmt_public.len()).map_err(|_| {
        GceError::AkPublic(TpmError::TrailingBytes {
            what: "TPMT_PUBLIC",
            extra: tpmt_public.len() - usize::from(u16::MAX),
        })
    })?;
    let mut tpm2b = len.to_be_bytes().to_vec();
    tpm2b.extend_from_slice(tpmt_public);
    tpm::parse_ak_public(&tpm2b).map_err(GceError::AkPublic)
}

fn verify_quotes(
    att: &Attestation,
    ak: Option<&AkPublic>,
    expected_nonce: Option<&[u8]>,
    checks: &mut Checks<GceError>,
    report: &mut GceReport,
) {
    if att.quotes.is_empty() {
        checks.fail(GceError::NoQuotes);
        return;
    }
    let mut nonce_required_reported = false;
    for (bank, q) in att.quotes.iter().enumerate() {
        let alg = q
            .pcrs
            .as_ref()
            .and_then(|p| u16::try_from(p.hash).ok())
            .unwrap_or(0);
        report.banks.push(GceBank {
            hash: alg_name(alg),
            pcrs: q
                .pcrs
                .as_ref()
                .map(|p| p.pcrs.iter().map(|(i, v)| (*i, hex::encode(v))).collect())
                .unwrap_or_default(),
        });
        let name = alg_name(alg);
        let attest =
            tpm::parse_quote_attest(&q.quote).map_err(|err| GceError::QuoteParse { bank, err });
        let Some(attest) = checks.record(GceCheck::QuoteParse, attest, &format!("{name} bank"))
        else {
            continue;
        };
        match ak {
            Some(ak) => {
                let sig = tpm::verify_signature(ak, &q.quote, &q.raw_sig)
                    .map_err(|err| GceError::QuoteSignature { bank, err });
                checks.record(
                    GceCheck::QuoteSignature,
                    sig,
                    &format!("{name} bank signed by ak_pub"),
                );
                let qn = qualified_name_matches(bank, &att.ak_pub, &attest.qualified_signer);
                checks.record(
                    GceCheck::AkQualifiedName,
                    qn,
                    &format!("{name} bank: qualifiedSigner = endorsement primary ak_pub"),
                );
            }
            None => checks.skip(GceCheck::QuoteSignature, "ak_pub did not parse"),
        }
        if report.extra_data.is_none() {
            report.extra_data = Some(hex::encode(&attest.extra_data));
        }
        match expected_nonce {
            None => checks.skip(
                GceCheck::Nonce,
                format!(
                    "{name} bank: no nonce required (extraData {})",
                    hex::encode(&attest.extra_data)
                ),
            ),
            Some([]) => {
                if !nonce_required_reported {
                    nonce_required_reported = true;
                    checks.fail(GceError::NonceRequired {
                        found: hex::encode(&attest.extra_data),
                    });
                }
            }
            Some(n) if attest.extra_data == n => {
                checks.pass(GceCheck::Nonce, format!("{name} bank"))
            }
            Some(n) => checks.fail(GceError::NonceMismatch {
                bank,
                expected: hex::encode(n),
                found: hex::encode(&attest.extra_data),
            }),
        }
        let values = pcr_values(bank, alg, q.pcrs.as_ref(), &attest);
        let Some(values) = checks.record(GceCheck::PcrSelection, values, &format!("{name} bank"))
        else {
            continue;
        };
        let found = tpm::pcr_digest(values.iter().map(Vec::as_slice));
        if found[..] == attest.pcr_digest[..] {
            checks.pass(GceCheck::PcrDigest, format!("{name} bank"));
        } else {
            checks.fail(GceError::PcrDigest {
                bank,
                expected: hex::encode(&attest.pcr_digest),
                found: hex::encode(found),
            });
        }
    }
}

/// TPM_RH_ENDORSEMENT: the qualified name of the endorsement hierarchy.
const RH_ENDORSEMENT: u32 = 0x4000_000b;

/// qualifiedSigner of a primary key in the endorsement hierarchy: nameAlg ||
/// H(TPM_RH_ENDORSEMENT || Name), Name = nameAlg || H(TPMT_PUBLIC) (TPM 2.0 Part 1, 16).
/// Binds the whole public area, attributes and policy included, to the signed quote.
fn qualified_name_matches(bank: usize, tpmt_public: &[u8], found: &[u8]) -> Result<(), GceError> {
    let name_alg = match tpmt_public.get(2..4) {
        Some(&[a, b]) => u16::from_be_bytes([a, b]),
        _ => 0,
    };
    let expected = hash(name_alg, tpmt_public).and_then(|h| {
        let mut name = name_alg.to_be_bytes().to_vec();
        name.extend_from_slice(&h);
        let mut parent_and_name = RH_ENDORSEMENT.to_be_bytes().to_vec();
        parent_and_name.extend_from_slice(&name);
        let qn = hash(name_alg, &parent_and_name)?;
        let mut out = name_alg.to_be_bytes().to_vec();
        out.extend_from_slice(&qn);
        Some(out)
    });
    match expected {
        Some(e) if e == found => Ok(()),
        Some(e) => Err(GceError::AkQualifiedName {
            bank,
            expected: hex::encode(e),
            found: hex::encode(found),
        }),
        None => Err(GceError::AkQualifiedName {
            bank,
            expected: format!("(unsupported nameAlg {name_alg:#06x})"),
            found: hex::encode(found),
        }),
    }
}

/// The bank's PCR values in index order, after checking they are exactly the quote's selection.
fn pcr_values(
    bank: usize,
    alg: u16,
    pcrs: Option<&Pcrs>,
    attest: &tpm::QuoteAttest,
) -> Result<Vec<Vec<u8>>, GceError> {
    let err = |reason: String| GceError::PcrSelection { bank, reason };
    let pcrs = pcrs.ok_or_else(|| err("no PCR values".into()))?;
    let [sel] = attest.selections.as_slice() else {
        return Err(err(format!(
            "the quote selects {} banks, expected one",
            attest.selections.len()
        )));
    };
    if sel.hash_alg != alg {
        return Err(err(format!(
            "the quote selects bank {}, the values are {}",
            alg_name(sel.hash_alg),
            alg_name(alg)
        )));
    }
    let selected: Vec<u32> = sel.pcrs.iter().map(|p| u32::from(*p)).collect();
    let given: Vec<u32> = pcrs.pcrs.keys().copied().collect();
    if selected != given {
        return Err(err(format!(
            "the quote selects PCRs {selected:?}, the values are for {given:?}"
        )));
    }
    let len = digest_len(alg).ok_or_else(|| err(format!("unsupported bank {}", alg_name(alg))))?;
    if let Some((i, v)) = pcrs.pcrs.iter().find(|(_, v)| v.len() != len) {
        return Err(err(format!(
            "PCR{i} has {} bytes, {} needs {len}",
            v.len(),
            alg_name(alg)
        )));
    }
    Ok(pcrs.pcrs.values().cloned().collect())
}

fn verify_event_log(att: &Attestation, checks: &mut Checks<GceError>) {
    if att.event_log.is_empty() {
        checks.fail(GceError::EventLogMissing);
        return;
    }
    let log = eventlog::parse(&att.event_log).map_err(GceError::EventLogParse);
    let Some(log) = checks.record(GceCheck::EventLogParse, log, "TCG crypto-agile") else {
        return;
    };
    for (bank, q) in att.quotes.iter().enumerate() {
        let Some(pcrs) = &q.pcrs else { continue };
        let alg = u16::try_from(pcrs.hash).unwrap_or(0);
        let Some(replayed) = replay(&log, alg) else {
            checks.skip(
                GceCheck::EventLogReplay,
                format!("bank {} not supported", alg_name(alg)),
            );
            continue;
        };
        let mut ok = Vec::new();
        let mut failed = false;
        for (pcr, value) in &replayed {
            match pcrs.pcrs.get(pcr) {
                Some(quoted) if quoted == value => ok.push(*pcr),
                Some(quoted) => {
                    failed = true;
                    checks.fail(GceError::EventLogReplay {
                        bank,
                        pcr: *pcr,
                        replayed: hex::encode(value),
                        quoted: hex::encode(quoted),
                    });
                }
                // Logged but not quoted: nothing to compare.
                None => {}
            }
        }
        if !failed {
            checks.pass(
                GceCheck::EventLogReplay,
                format!("{} bank: PCRs {ok:?} replay", alg_name(alg)),
            );
        }
    }
}

fn strip_zeros(v: &[u8]) -> &[u8] {
    let first = v.iter().position(|b| *b != 0).unwrap_or(v.len());
    &v[first..]
}

fn cert_key_matches(cert: &X509Certificate<'_>, ak: &AkPublic) -> Result<(), GceError> {
    let err = |reason: &str| GceError::AkCertKey {
        reason: reason.into(),
    };
    let parsed = cert
        .public_key()
        .parsed()
        .map_err(|e| err(&format!("certificate key: {e}")))?;
    match (&ak.key, parsed) {
        (AkKey::Rsa { n, e }, PublicKey::RSA(k)) => {
            if strip_zeros(n) == strip_zeros(k.modulus) && strip_zeros(e) == strip_zeros(k.exponent)
            {
                Ok(())
            } else {
                Err(err("RSA modulus or exponent differs"))
            }
        }
        (AkKey::Ecc { x, y }, PublicKey::EC(point)) => {
            let data = point.data();
            let pad = |v: &[u8]| {
                let v = strip_zeros(v);
                let mut out = vec![0u8; 32usize.saturating_sub(v.len())];
                out.extend_from_slice(v);
                out
            };
            let mut sec1 = vec![0x04];
            sec1.extend(pad(x));
            sec1.extend(pad(y));
            if data == sec1.as_slice() {
                Ok(())
            } else {
                Err(err("EC point differs"))
            }
        }
        _ => Err(err("key types differ")),
    }
}

/// The instance identity a GCE EK/AK certificate (DER) names. Reads the certificate only:
/// the caller must have verified it (chain to Google's CA, key = the quoting AK) before
/// treating the zone as an endorsement.
pub fn certified_instance(cert_der: &[u8]) -> Result<GceInstance, GceError> {
    let cert = match X509Certificate::from_der(cert_der) {
        Ok(([], c)) => c,
        Ok(_) => {
            return Err(GceError::AkCertParse {
                reason: "trailing bytes after the certificate".into(),
            })
        }
        Err(e) => {
            return Err(GceError::AkCertParse {
                reason: e.to_string(),
            })
        }
    };
    instance_identity(&cert)
}

/// Reads `SEQUENCE { zone UTF8String, project_number INTEGER, project_id UTF8String,
/// instance_id INTEGER, instance_name UTF8String, ... }`.
fn instance_identity(cert: &X509Certificate<'_>) -> Result<GceInstance, GceError> {
    let err = |reason: &str| GceError::InstanceIdentity {
        reason: reason.into(),
    };
    let mut found = cert
        .extensions()
        .iter()
        .filter(|e| e.oid.to_id_string() == INSTANCE_IDENTITY_OID);
    let ext = found.next().ok_or_else(|| err("absent"))?;
    if found.next().is_some() {
        return Err(err("present twice"));
    }
    let mut outer = Der::new(ext.value);
    let seq = outer.expect(0x30).ok_or_else(|| err("not a SEQUENCE"))?;
    if !outer.is_empty() {
        return Err(err("trailing bytes"));
    }
    let mut d = Der::new(seq);
    let text = |v: Option<&[u8]>, what: &str| -> Result<String, GceError> {
        let v = v.ok_or_else(|| err(&format!("{what} missing or not a UTF8String")))?;
        String::from_utf8(v.to_vec()).map_err(|_| err(&format!("{what} is not UTF-8")))
    };
    let number = |v: Option<&[u8]>, what: &str| -> Result<u64, GceError> {
        v.and_then(uint)
            .ok_or_else(|| err(&format!("{what} missing or not a u64 INTEGER")))
    };
    let zone = text(d.expect(0x0c), "zone")?;
    let project_number = number(d.expect(0x02), "project_number")?;
    let project_id = text(d.expect(0x0c), "project_id")?;
    let instance_id = number(d.expect(0x02), "instance_id")?;
    let instance_name = text(d.expect(0x0c), "instance_name")?;
    if zone.is_empty() {
        return Err(err("empty zone"));
    }
    Ok(GceInstance {
        zone,
        project_number,
        project_id,
        instance_id,
        instance_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PB: &[u8] = include_bytes!("../../../../tests/vectors/gce-vtpm/gce-cos-85-no-nonce.pb");
    /// 2025-01-01, inside the AK certificate's validity (2021-08-31 .. 2051-08-24).
    const AT: u64 = 1_735_689_600;

    #[test]
    fn the_vector_verifies_without_a_nonce_requirement() {
        let roots = super::super::roots::named("gce").unwrap();
        let r = verify_attestation(PB, None, &roots, AT);
        assert!(r.valid, "{:?}", r.failed_checks);
        let id = r.identity.as_ref().unwrap();
        assert_eq!(id.zone, "us-central1-a");
        assert_eq!(r.endorsed_zone(), Some("us-central1-a"));
        assert_eq!(r.banks.len(), 3);
        let names: Vec<GceCheck> = r.checks.all().iter().map(|c| c.check).collect();
        for want in [
            GceCheck::QuoteSignature,
            GceCheck::PcrDigest,
            GceCheck::EventLogReplay,
            GceCheck::AkCertChain,
            GceCheck::AkCertKey,
        ] {
            let per_bank = !matches!(want, GceCheck::AkCertChain | GceCheck::AkCertKey);
            assert_eq!(
                names.iter().filter(|n| **n == want).count(),
                if per_bank { 3 } else { 1 },
                "{want}"
            );
        }
    }

    #[test]
    fn an_empty_expected_nonce_is_rejected() {
        let roots = super::super::roots::named("gce").unwrap();
        let r = verify_attestation(PB, Some(&[]), &roots, AT);
        assert_eq!(r.failed_checks, vec![GceCheck::NonceRequired]);
        assert_eq!(r.endorsed_zone(), None);
    }

    fn bytes(max: usize) -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        proptest::collection::vec(proptest::num::u8::ANY, 0..max)
    }

    fn quote() -> impl proptest::strategy::Strategy<Value = Quote> {
        use proptest::strategy::Strategy;
        (
            bytes(64),
            bytes(64),
            proptest::option::of((
                proptest::num::i32::ANY,
                proptest::collection::btree_map(0u32..24, bytes(48), 0..24),
            )),
        )
            .prop_map(|(quote, raw_sig, pcrs)| Quote {
                quote,
                raw_sig,
                pcrs: pcrs.map(|(hash, pcrs)| Pcrs { hash, pcrs }),
            })
    }

    proptest::proptest! {
        /// The hand-written schema round-trips through prost's encoder and decoder.
        #[test]
        fn attestations_round_trip(
            ak_pub in bytes(64),
            quotes in proptest::collection::vec(quote(), 0..4),
            event_log in bytes(128),
            zone in "[a-z0-9-]{0,16}",
            project_number in proptest::num::u64::ANY,
            ak_cert in bytes(128),
            intermediate_certs in proptest::collection::vec(bytes(32), 0..3),
        ) {
            let m = Attestation {
                ak_pub,
                quotes,
                event_log,
                instance_info: Some(InstanceInfo {
                    zone,
                    project_number,
                    ..Default::default()
                }),
                canonical_event_log: Vec::new(),
                ak_cert,
                intermediate_certs,
            };
            let decoded = decode_attestation(&m.encode_to_vec()).unwrap();
            proptest::prop_assert_eq!(decoded, m);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = decode(&bytes);
            let _ = verify_attestation(&bytes, Some(b"n"), &[], AT);
        }

        #[test]
        fn flipped_vector_bytes_never_panic(at in 0usize..PB.len(), bit in 0u8..8) {
            let mut b = PB.to_vec();
            b[at] ^= 1 << bit;
            let r = verify_attestation(&b, None, &[], AT);
            proptest::prop_assert!(!r.valid);
        }
    }
}
