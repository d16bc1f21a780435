//! Intel Platform Ownership Endorsements (POE): a COSE_Sign1-signed CoRIM whose one
//! conditional endorsement says "the platform with this PIID belongs to this owner"
//! (profile `tag:intel.com,2026:tee.poe#1.0`, draft-bzb-rats-intel-poe-endorsements-02).
//!
//! Pure: the POE, the trust anchors and the verification time come in. Every failure is one of
//! eight named checks ([`PoeCheckId`]); `docs/poe.md` maps each field to its source and says
//! where locus chose (the facility/site parameters, the checks' strictness).

mod corim;
mod cose;
mod error;

use p384::pkcs8::{DecodePrivateKey, DecodePublicKey};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

pub use corim::{OWNER_ENV_OID, PIID_ENV_OID, PROFILE};
pub use cose::{HDR_FACILITY, HDR_SITE, MAX_POE_LEN};
pub use error::{PoeCheckId, PoeError};
/// The issuer's key type, re-exported so callers need no matching `p384` dependency.
pub use p384::ecdsa::SigningKey;

use crate::check::{Check, CheckStatus};
use crate::verify::bundle::ekchain;

/// What a POE states, as decoded (trust it only when [`PoeVerification::document_valid`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoeClaims {
    /// The bound platform instance ID, lowercase hex (16 or 32 bytes).
    pub piid: String,
    /// `tee.owner-name`: the endorsed owner.
    pub owner: String,
    /// CWT-Claims `iss`: who says it signed (informational).
    #[serde(default)]
    pub issuer: Option<String>,
    /// Subject of the x5chain leaf, when the signature verified.
    #[serde(default)]
    pub signer: Option<String>,
    /// locus's protected `locus.facility` parameter.
    #[serde(default)]
    pub facility: Option<String>,
    /// locus's protected `locus.site` parameter (a site name as in samples files).
    #[serde(default)]
    pub site: Option<String>,
    /// `rim-validity`, unix seconds, when well-formed.
    #[serde(default)]
    pub not_before: Option<u64>,
    #[serde(default)]
    pub not_after: Option<u64>,
    /// CoRIM `id` and CoMID `tag-id` (hex for UUIDs), informational.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub tag_id: Option<String>,
}

/// The outcome of verifying one POE: every check by name, and the claims when it decoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoeVerification {
    pub checks: Vec<Check>,
    pub claims: Option<PoeClaims>,
}

impl PoeVerification {
    fn status(&self, id: PoeCheckId) -> Option<CheckStatus> {
        self.checks.iter().find(|c| c.name == id).map(|c| c.status)
    }

    /// The document checks (format, signature, chain, profile, validity) all passed.
    pub fn document_valid(&self) -> bool {
        PoeCheckId::ALL
            .iter()
            .filter(|c| c.is_document_check())
            .all(|c| self.status(*c) == Some(CheckStatus::Pass))
    }

    /// No check failed (skipped relation checks do not invalidate).
    pub fn valid(&self) -> bool {
        self.document_valid() && self.failed().is_empty()
    }

    /// Names of the failed checks, in check order.
    pub fn failed(&self) -> Vec<&str> {
        self.checks
            .iter()
            .filter(|c| c.status == CheckStatus::Fail)
            .map(|c| c.name.as_str())
            .collect()
    }

    /// Adds the three relation checks ([`relate`]); skipped when the document did not verify.
    pub fn relate(&mut self, x: &Expectations<'_>) {
        let outcomes = match (&self.claims, self.document_valid()) {
            (Some(claims), true) => relate(claims, x),
            _ => [PoeCheckId::Piid, PoeCheckId::Owner, PoeCheckId::Facility]
                .map(|id| (id, Outcome::Skip("the POE itself did not verify".into()))),
        };
        self.checks
            .retain(|c| !outcomes.iter().any(|(id, _)| c.name == *id));
        self.checks
            .extend(outcomes.into_iter().map(|(id, o)| o.into_check(id)));
    }
}

/// What the POE is compared with.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expectations<'a> {
    /// The PIID of the evidence's PCK certificate.
    pub piid: Option<&'a [u8]>,
    /// The operator the policy expects to own the platform.
    pub owner: Option<&'a str>,
    /// The site the node claims.
    pub site: Option<&'a str>,
}

enum Outcome {
    Pass(String),
    Fail(PoeError),
    Skip(String),
}

impl Outcome {
    fn into_check(self, id: PoeCheckId) -> Check {
        let (status, detail) = match self {
            Outcome::Pass(d) => (CheckStatus::Pass, d),
            Outcome::Fail(e) => (CheckStatus::Fail, e.to_string()),
            Outcome::Skip(d) => (CheckStatus::Skip, d),
        };
        Check {
            name: id.into(),
            status,
            detail,
        }
    }
}

fn result(r: Result<String, PoeError>) -> Outcome {
    match r {
        Ok(d) => Outcome::Pass(d),
        Err(e) => Outcome::Fail(e),
    }
}

/// Verifies a POE's document checks at `now_unix` under the trust anchors (DER certificates
/// of the issuers' roots, configured out of band). Relation checks are added by
/// [`PoeVerification::relate`] or [`appraise`].
pub fn verify(bytes: &[u8], anchors: &[Vec<u8>], now_unix: u64) -> PoeVerification {
    let decoded = cose::parse(bytes).and_then(|env| corim::decode(&env.payload).map(|d| (env, d)));
    let (env, doc) = match decoded {
        Ok(x) => x,
        Err(e) => {
            let mut checks = vec![Outcome::Fail(e).into_check(PoeCheckId::Format)];
            checks.extend(
                PoeCheckId::ALL[1..]
                    .iter()
                    .map(|id| Outcome::Skip("the POE did not decode".into()).into_check(*id)),
            );
            return PoeVerification {
                checks,
                claims: None,
            };
        }
    };
    let mut out = vec![Outcome::Pass(
        "COSE_Sign1 over a POE CoRIM: one CoMID, one conditional endorsement".into(),
    )
    .into_check(PoeCheckId::Format)];

    let signer = cose::verify_signature(&env);
    let signer_name = signer.as_ref().ok().cloned();
    out.push(
        result(signer.map(|s| format!("signed (ESP384/ES384) by the x5chain leaf {s}")))
            .into_check(PoeCheckId::Signature),
    );

    let chain = match env.x5chain.split_first() {
        _ if anchors.is_empty() => Outcome::Fail(PoeError::NoTrustAnchor),
        None => Outcome::Skip("no x5chain (see poe-signature)".into()),
        Some((leaf, rest)) => {
            let now = i64::try_from(now_unix).unwrap_or(i64::MAX);
            result(
                ekchain::verify_chain(leaf, rest, anchors, now)
                    .map(|subjects| format!("x5chain {} (trust anchor)", subjects.join(" → ")))
                    .map_err(PoeError::Chain),
            )
        }
    };
    out.push(chain.into_check(PoeCheckId::Chain));

    out.push(
        result(corim::check_profile(doc.profile.as_ref()).map(|p| format!("profile {p}")))
            .into_check(PoeCheckId::Profile),
    );

    let window = corim::validity(doc.validity.as_ref());
    let validity = window.clone().and_then(|(nb, na)| {
        if now_unix < nb {
            Err(PoeError::NotYetValid {
                not_before: nb,
                now: now_unix,
            })
        } else if now_unix > na {
            Err(PoeError::Expired {
                not_after: na,
                now: now_unix,
            })
        } else {
            Ok(format!("rim-validity {nb}..{na} holds {now_unix}"))
        }
    });
    out.push(result(validity).into_check(PoeCheckId::Validity));

    let claims = PoeClaims {
        piid: hex::encode(&doc.piid),
        owner: doc.owner,
        issuer: env.issuer,
        signer: signer_name,
        facility: env.facility,
        site: env.site,
        not_before: window.as_ref().ok().map(|w| w.0),
        not_after: window.as_ref().ok().map(|w| w.1),
        id: doc.id,
        tag_id: doc.tag_id,
    };
    for id in [PoeCheckId::Piid, PoeCheckId::Owner, PoeCheckId::Facility] {
        out.push(Outcome::Skip("not compared".into()).into_check(id));
    }
    PoeVerification {
        checks: out,
        claims: Some(claims),
    }
}

/// [`verify`], then the relation checks against `x`.
pub fn appraise(
    bytes: &[u8],
    anchors: &[Vec<u8>],
    now_unix: u64,
    x: &Expectations<'_>,
) -> PoeVerification {
    let mut v = verify(bytes, anchors, now_unix);
    v.relate(x);
    v
}

/// PIID, owner and site of a verified POE against the evidence, the policy and the claim.
fn relate(claims: &PoeClaims, x: &Expectations<'_>) -> [(PoeCheckId, Outcome); 3] {
    let piid = match x.piid {
        None => Outcome::Skip("no platform PIID to compare with".into()),
        // Verbatim over the full length: a length difference is a mismatch.
        Some(p) if hex::encode(p) == claims.piid => Outcome::Pass(format!(
            "the POE binds PIID {}, as the PCK certificate names",
            claims.piid
        )),
        Some(p) => Outcome::Fail(PoeError::PiidMismatch {
            bound: claims.piid.clone(),
            evidence: hex::encode(p),
        }),
    };
    let owner = match x.owner {
        None => Outcome::Skip(format!(
            "endorsed owner {:?}; no expected operator configured",
            claims.owner
        )),
        Some(o) if o == claims.owner => {
            Outcome::Pass(format!("endorsed owner {o:?} is the expected operator"))
        }
        Some(o) => Outcome::Fail(PoeError::OwnerMismatch {
            expected: o.into(),
            found: claims.owner.clone(),
        }),
    };
    let facility = match (&claims.site, x.site) {
        (None, _) => Outcome::Skip("the POE names no site".into()),
        (Some(_), None) => Outcome::Skip("no claimed site to compare with".into()),
        (Some(s), Some(c)) if s == c => Outcome::Pass(format!(
            "the POE places the platform at the claimed site {c}{}",
            claims
                .facility
                .as_ref()
                .map(|f| format!(" (facility {f})"))
                .unwrap_or_default()
        )),
        (Some(s), Some(c)) => Outcome::Fail(PoeError::FacilityMismatch {
            site: s.clone(),
            facility: claims.facility.clone(),
            claim: c.into(),
        }),
    };
    [
        (PoeCheckId::Piid, piid),
        (PoeCheckId::Owner, owner),
        (PoeCheckId::Facility, facility),
    ]
}

/// The POE that endorses one node's platform, chosen among the given POEs by the PIID its
/// verified evidence names; input to [`crate::judge`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoeEndorsement {
    /// The PIID (hex) the node's verified evidence names.
    #[serde(default)]
    pub platform_id: Option<String>,
    /// The POE binding that PIID (the first that verified, if several do).
    #[serde(default)]
    pub poe: Option<PoeVerification>,
    /// PIIDs the given POEs bind (hex), for the reason when none matches.
    #[serde(default)]
    pub bound: Vec<String>,
    /// Every (owner, site) that valid POEs for this PIID name, when they differ: the owner
    /// check fails rather than let the order of the files decide.
    #[serde(default)]
    pub conflicting: Vec<String>,
}

impl PoeEndorsement {
    /// Picks the POE binding `platform_id` (hex, case-insensitive) among `poes`.
    pub fn resolve(poes: &[PoeVerification], platform_id: Option<&str>) -> PoeEndorsement {
        let id = platform_id.map(|p| p.trim().to_ascii_lowercase());
        let binds =
            |v: &&PoeVerification| matches!((&v.claims, &id), (Some(c), Some(p)) if &c.piid == p);
        let matching: Vec<&PoeVerification> = poes.iter().filter(binds).collect();
        let chosen = matching
            .iter()
            .find(|v| v.document_valid())
            .or(matching.first())
            .map(|v| (*v).clone());
        let mut bound: Vec<String> = poes
            .iter()
            .filter_map(|v| v.claims.as_ref().map(|c| c.piid.clone()))
            .collect();
        bound.sort();
        bound.dedup();
        let mut endorsed: Vec<String> = matching
            .iter()
            .filter(|v| v.document_valid())
            .filter_map(|v| v.claims.as_ref())
            .map(|c| {
                format!(
                    "{} at {}",
                    c.owner,
                    c.site.as_deref().unwrap_or("(no site)")
                )
            })
            .collect();
        endorsed.sort();
        endorsed.dedup();
        PoeEndorsement {
            platform_id: id,
            poe: chosen,
            bound,
            conflicting: if endorsed.len() > 1 {
                endorsed
            } else {
                Vec::new()
            },
        }
    }

    /// Every POE check for this node: the chosen POE's document checks, then PIID, owner
    /// (against `expected_owner`) and facility (against `claim`).
    pub fn checks(&self, expected_owner: Option<&str>, claim: &str) -> Vec<Check> {
        let skip_all = |why: &str, piid: PoeError| {
            let mut piid = Some(piid);
            PoeCheckId::ALL
                .iter()
                .map(|id| match (id, piid.take_if(|_| *id == PoeCheckId::Piid)) {
                    (_, Some(e)) => Outcome::Fail(e).into_check(*id),
                    _ => Outcome::Skip(why.into()).into_check(*id),
                })
                .collect::<Vec<Check>>()
        };
        let Some(pid) = &self.platform_id else {
            return skip_all("no platform PIID to select a POE", PoeError::NoPlatformId);
        };
        let Some(v) = &self.poe else {
            let bound = if self.bound.is_empty() {
                "no PIID".to_string()
            } else {
                self.bound.join(", ")
            };
            return skip_all(
                "no POE binds this platform",
                PoeError::NoPoeForPlatform {
                    evidence: pid.clone(),
                    bound,
                },
            );
        };
        let mut v = v.clone();
        let piid = hex::decode(pid).ok();
        v.relate(&Expectations {
            // an evidence ID that is not hex matches no POE
            piid: Some(piid.as_deref().unwrap_or(pid.as_bytes())),
            owner: expected_owner,
            site: Some(claim),
        });
        if !self.conflicting.is_empty() {
            let conflict = Outcome::Fail(PoeError::Conflicting {
                endorsements: self.conflicting.join("; "),
            })
            .into_check(PoeCheckId::Owner);
            for c in &mut v.checks {
                if c.name == conflict.name {
                    *c = conflict.clone();
                }
            }
        }
        v.checks
    }
}

/// What an issuer endorses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoeRequest<'a> {
    /// Platform instance ID, 16 or 32 bytes.
    pub piid: &'a [u8],
    /// Owner name, 1 to 1024 bytes (the profile recommends a DNS name).
    pub owner: &'a str,
    /// `rim-validity`, unix seconds.
    pub not_before: u64,
    pub not_after: u64,
    /// CWT-Claims `iss`; default: the signing certificate's common name.
    pub issuer: Option<&'a str>,
    /// locus's protected facility and site parameters.
    pub facility: Option<&'a str>,
    pub site: Option<&'a str>,
}

/// Why a POE cannot be issued.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IssueError {
    #[error("the PIID is {found} bytes; the POE profile allows 16 or 32")]
    PiidLength { found: usize },
    #[error("the owner name is {found} bytes; the POE profile allows 1 to 1024")]
    OwnerLength { found: usize },
    #[error("not-after {not_after} precedes not-before {not_before}")]
    Validity { not_before: u64, not_after: u64 },
    #[error("no signing certificate: the x5chain needs the leaf (and its intermediates)")]
    NoChain,
    #[error("signing certificate: {0}")]
    Certificate(String),
    #[error("the signing key is not the key of the chain's leaf certificate")]
    KeyMismatch,
    #[error("the signing key is not a P-384 private key in PKCS#8 PEM")]
    Key,
    #[error("COSE encoding failed: {0}")]
    Encoding(String),
}

/// Parses the issuer's P-384 private key (PKCS#8 PEM, `PRIVATE KEY`).
pub fn signing_key_from_pem(pem: &str) -> Result<SigningKey, IssueError> {
    p384::SecretKey::from_pkcs8_pem(pem.trim())
        .map(SigningKey::from)
        .map_err(|_| IssueError::Key)
}

/// Builds and signs a POE: the CoRIM of `req`, ESP384 under `key`, `chain` (DER, leaf first,
/// the root optional) as x5chain. Deterministic (RFC 6979 signatures), so pure.
pub fn issue(
    req: &PoeRequest<'_>,
    key: &SigningKey,
    chain: &[Vec<u8>],
) -> Result<Vec<u8>, IssueError> {
    if !matches!(req.piid.len(), 16 | 32) {
        return Err(IssueError::PiidLength {
            found: req.piid.len(),
        });
    }
    if !(1..=1024).contains(&req.owner.len()) {
        return Err(IssueError::OwnerLength {
            found: req.owner.len(),
        });
    }
    if req.not_after < req.not_before {
        return Err(IssueError::Validity {
            not_before: req.not_before,
            not_after: req.not_after,
        });
    }
    let leaf = chain.first().ok_or(IssueError::NoChain)?;
    let (_, cert) =
        X509Certificate::from_der(leaf).map_err(|e| IssueError::Certificate(e.to_string()))?;
    let leaf_key = p384::ecdsa::VerifyingKey::from_public_key_der(cert.public_key().raw)
        .map_err(|_| IssueError::Certificate("the leaf key is not P-384".into()))?;
    if &leaf_key != key.verifying_key() {
        return Err(IssueError::KeyMismatch);
    }
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .map(String::from)
        .unwrap_or_else(|| cert.subject().to_string());
    let payload = corim::encode(&corim::payload_value(&corim::Content {
        piid: req.piid.to_vec(),
        owner: req.owner.into(),
        not_before: req.not_before,
        not_after: req.not_after,
    }));
    let (protected, unprotected) = cose::headers(
        key,
        &cose::HeaderFields {
            chain,
            issuer: req.issuer.unwrap_or(&cn),
            facility: req.facility,
            site: req.site,
        },
    );
    cose::sign(payload, protected, unprotected, key)
        .map_err(|e| IssueError::Encoding(e.to_string()))
}

#[cfg(test)]
mod tests;
