//! Why a POE is rejected: one variant per failed condition, each belonging to one named check.

use thiserror::Error;

pub use crate::check::PoeCheckId;
use crate::verify::bundle::ekchain::EkChainError;

/// One reason a POE fails; [`PoeError::check`] names the check it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PoeError {
    #[error("the POE is {len} bytes, more than the {max} accepted")]
    TooLarge { len: usize, max: usize },
    #[error("not a tagged COSE_Sign1 (CBOR tag 18): {reason}")]
    NotCoseSign1 { reason: String },
    #[error("the COSE crit header lists {count} parameter(s): the POE profile forbids critical parameters")]
    Critical { count: usize },
    #[error("content type is {found}, expected \"application/rim+cbor\"")]
    ContentType { found: String },
    #[error("the COSE_Sign1 carries no payload (a detached payload is not a POE)")]
    NoPayload,
    #[error("{what} is not one well-formed CBOR item: {reason}")]
    Cbor { what: &'static str, reason: String },
    #[error("{field}: expected {expected}, found {found}")]
    Field {
        field: &'static str,
        expected: &'static str,
        found: String,
    },
    #[error("{field} appears {count} times in one map")]
    DuplicateKey { field: &'static str, count: usize },
    #[error("{field} holds {found} entries, the POE profile requires exactly one")]
    Cardinality { field: &'static str, found: usize },
    #[error("{side} environment class-id is {found}, expected the {expected}")]
    ClassId {
        side: &'static str,
        found: String,
        expected: &'static str,
    },
    #[error("the {side} measurement carries authorized-by, which the POE profile forbids")]
    AuthorizedBy { side: &'static str },
    #[error("the bound PIID is {found} bytes, the profile allows 16 or 32")]
    PiidLength { found: usize },
    #[error("the owner name is {found} bytes, the profile allows 1 to 1024")]
    OwnerLength { found: usize },

    #[error("COSE algorithm {found} is not ESP384 (-51) or ES384 (-35)")]
    Algorithm { found: String },
    #[error("no x5chain (COSE header 33) carries the signing certificate")]
    NoX5Chain,
    #[error("signing certificate: {reason}")]
    SignerCertificate { reason: String },
    #[error("the signature does not verify under the x5chain leaf key (altered POE or another signer's key)")]
    BadSignature,

    #[error("no POE trust anchor is configured")]
    NoTrustAnchor,
    #[error("x5chain does not chain to a configured POE trust anchor: {0}")]
    Chain(EkChainError),

    #[error("no profile (CoRIM key 3); a POE names {expected}")]
    ProfileMissing { expected: &'static str },
    #[error("profile is {found}, expected the URI (#6.32) {expected}")]
    Profile {
        found: String,
        expected: &'static str,
    },

    #[error("rim-validity (CoRIM key 4): {reason}")]
    ValidityMalformed { reason: String },
    #[error("the POE is valid only from {not_before} (verification time {now})")]
    NotYetValid { not_before: u64, now: u64 },
    #[error("the POE expired at {not_after} (verification time {now}, {} s ago)", now - not_after)]
    Expired { not_after: u64, now: u64 },

    #[error("the evidence names no platform instance ID (PIID)")]
    NoPlatformId,
    #[error("no given POE binds the platform's PIID {evidence} (the POEs bind {bound})")]
    NoPoeForPlatform { evidence: String, bound: String },
    #[error("the POE binds PIID {bound}, the evidence's PCK certificate names {evidence}")]
    PiidMismatch { bound: String, evidence: String },
    #[error("the POE endorses owner {found:?}, the expected operator is {expected:?}")]
    OwnerMismatch { expected: String, found: String },
    #[error("valid POEs for this platform disagree: {endorsements} (an old owner's POE that is still valid, or a forgery): resolve out of band")]
    Conflicting { endorsements: String },
    #[error("the POE places the platform at site {site}{}, not at the claimed site {claim}", facility.as_ref().map(|f| format!(" (facility {f})")).unwrap_or_default())]
    FacilityMismatch {
        site: String,
        facility: Option<String>,
        claim: String,
    },
}

impl PoeError {
    /// The check this failure belongs to.
    pub fn check(&self) -> PoeCheckId {
        use PoeError::*;
        match self {
            TooLarge { .. }
            | NotCoseSign1 { .. }
            | Critical { .. }
            | ContentType { .. }
            | NoPayload
            | Cbor { .. }
            | Field { .. }
            | DuplicateKey { .. }
            | Cardinality { .. }
            | ClassId { .. }
            | AuthorizedBy { .. }
            | PiidLength { .. }
            | OwnerLength { .. } => PoeCheckId::Format,
            Algorithm { .. } | NoX5Chain | SignerCertificate { .. } | BadSignature => {
                PoeCheckId::Signature
            }
            NoTrustAnchor | Chain(_) => PoeCheckId::Chain,
            ProfileMissing { .. } | Profile { .. } => PoeCheckId::Profile,
            ValidityMalformed { .. } | NotYetValid { .. } | Expired { .. } => PoeCheckId::Validity,
            NoPlatformId | NoPoeForPlatform { .. } | PiidMismatch { .. } => PoeCheckId::Piid,
            OwnerMismatch { .. } | Conflicting { .. } => PoeCheckId::Owner,
            FacilityMismatch { .. } => PoeCheckId::Facility,
        }
    }
}
