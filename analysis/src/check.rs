//! The vocabulary both layers share: the typed id of every check (evidence bundle, POE,
//! verdict rules), a check's outcome, and the names they serialize to.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckStatus {
    Pass,
    Fail,
    /// Not evaluated (data missing or an earlier finding decided).
    Skip,
}

/// One named check with its outcome and numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: CheckName,
    pub status: CheckStatus,
    pub detail: String,
}

/// Every check, in the order it runs. The snake_case names are used in policies and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckId {
    /// The bundle decodes, has a supported version and is within the size limit.
    BundleFormat,
    /// The bundle's binding version is at least the policy's `binding.min_version` (default
    /// 2: in-TD timings bound into REPORTDATA, AK-signed vTPM chain).
    BindingVersion,
    /// The nonce was issued by this verifier, is unused and within its window.
    Nonce,
    /// The echo transcript is signed by the session key.
    Transcript,
    /// The session SPKI is the QUIC peer's (needs the peer key as input).
    SessionSpki,
    /// The TDX quote verifies (DCAP, via `analysis::tdx`).
    TdxQuote,
    /// The verified quote's converged TCB status is one the policy accepts (`tdx.accept_tcb`,
    /// default `UpToDate`, `SWHardeningNeeded`): a stale platform (`OutOfDate`, ...) fails,
    /// naming the components behind, since which tcbDate and the advisories.
    TdxTcb,
    /// The bundle's Azure HCL report is well formed (size, header, TDX, SHA-256, `HCLAkPub`,
    /// `user-data`) and its TDREPORT is the one the TD quote was made from.
    HclReport,
    /// REPORTDATA equals the binding recomputed from the bundle, or, for a coalesced quote,
    /// the Merkle root its inclusion proof folds that binding into. With an HCL report:
    /// REPORTDATA[0..32] = SHA-256 of the HCL variable data.
    ReportData,
    /// REPORTDATA commits to the bundle's AK. With an HCL report: the HCL variable data
    /// (which REPORTDATA commits to) names the bundle's AK as `HCLAkPub`.
    AkHash,
    /// The HCL report was made for this bundle: its `user-data` is the bundle's binding value
    /// (the REPORTDATA of `docs/binding.md`), so the TD quote is fresh and bound to the nonce,
    /// session key and anchor report.
    HclUserData,
    /// The AK is a restricted signing key (ECC P-256 or RSA) and the quote signature verifies.
    TpmSignature,
    /// TPMS_ATTEST magic and type are a TPM-generated quote.
    TpmAttest,
    /// The quote's extraData is the binding's qualifying data.
    QualifyingData,
    /// The quote's pcrDigest equals the hash of the bundle's PCR values.
    PcrDigest,
    /// Binding version 2: the vTPM part carries its AK-signed chain with one timing per link;
    /// every link is a quote signed by the bundle's AK over the qualifying data chained from
    /// the previous signature; the fastest link is within the policy's bound, if any.
    VtpmChain,
    /// PCR values equal the policy's reference values.
    PcrReference,
    /// MRTD and RTMRs equal the policy's reference values.
    TdReference,
    /// The TCG event log replays to the quoted PCRs.
    TcgEventLog,
    /// The CCEL replays to the quote's RTMRs.
    CcelEventLog,
    /// The TCG log and the CCEL record the same events (PCR↔RTMR mapping).
    /// Policies written before the id was typed name it `pcr_rtmr` (once matched as a
    /// substring); the alias keeps those files loading.
    #[serde(alias = "pcr_rtmr")]
    PcrRtmrCrossCheck,
    /// An EK certificate chains to a configured provider root.
    EkChain,
    /// The AK lives in the TPM the EK certificate endorses: a provider AK certificate for this
    /// AK chains to an EK root, or the nonce was sealed to a chaining EK certificate for this
    /// AK (credential activation). Fails without either when `ek_chain` is required.
    AkEkBinding,
    /// The in-TD vTPM round trip is within the policy's bound.
    VtpmTiming,
    /// The anchor report verifies under the policy's anchors (nonce-derived ClientHello
    /// randoms, certificate chains, recorded handshakes); its digest is bound by `report_data`.
    Anchors,
    /// The anchor report names the clocksource its round trips were timed with (version 2),
    /// and the policy allows it (`tsc` unless `[anchors] allow_clocksource` says otherwise).
    AnchorClocksource,
}

impl CheckId {
    pub const ALL: [CheckId; 26] = [
        CheckId::BundleFormat,
        CheckId::BindingVersion,
        CheckId::Nonce,
        CheckId::Transcript,
        CheckId::SessionSpki,
        CheckId::TdxQuote,
        CheckId::TdxTcb,
        CheckId::HclReport,
        CheckId::ReportData,
        CheckId::AkHash,
        CheckId::HclUserData,
        CheckId::TpmSignature,
        CheckId::TpmAttest,
        CheckId::QualifyingData,
        CheckId::PcrDigest,
        CheckId::VtpmChain,
        CheckId::PcrReference,
        CheckId::TdReference,
        CheckId::TcgEventLog,
        CheckId::CcelEventLog,
        CheckId::PcrRtmrCrossCheck,
        CheckId::EkChain,
        CheckId::AkEkBinding,
        CheckId::VtpmTiming,
        CheckId::Anchors,
        CheckId::AnchorClocksource,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CheckId::BundleFormat => "bundle_format",
            CheckId::BindingVersion => "binding_version",
            CheckId::Nonce => "nonce",
            CheckId::Transcript => "transcript",
            CheckId::SessionSpki => "session_spki",
            CheckId::TdxQuote => "tdx_quote",
            CheckId::TdxTcb => "tdx_tcb",
            CheckId::HclReport => "hcl_report",
            CheckId::ReportData => "report_data",
            CheckId::AkHash => "ak_hash",
            CheckId::HclUserData => "hcl_user_data",
            CheckId::TpmSignature => "tpm_signature",
            CheckId::TpmAttest => "tpm_attest",
            CheckId::QualifyingData => "qualifying_data",
            CheckId::VtpmChain => "vtpm_chain",
            CheckId::PcrDigest => "pcr_digest",
            CheckId::PcrReference => "pcr_reference",
            CheckId::TdReference => "td_reference",
            CheckId::TcgEventLog => "tcg_event_log",
            CheckId::CcelEventLog => "ccel_event_log",
            CheckId::PcrRtmrCrossCheck => "pcr_rtmr_cross_check",
            CheckId::EkChain => "ek_chain",
            CheckId::AkEkBinding => "ak_ek_binding",
            CheckId::VtpmTiming => "vtpm_timing",
            CheckId::Anchors => "anchors",
            CheckId::AnchorClocksource => "anchor_clocksource",
        }
    }
}

impl FromStr for CheckId {
    type Err = UnknownCheck;

    /// Accepts the snake_case name (and `pcr_rtmr`, the alias policies use).
    fn from_str(s: &str) -> Result<Self, UnknownCheck> {
        if s == "pcr_rtmr" {
            return Ok(CheckId::PcrRtmrCrossCheck);
        }
        CheckId::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| UnknownCheck {
                name: s.to_string(),
            })
    }
}

impl fmt::Display for CheckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// The POE checks, in the order they run. The first five judge the document itself; the last
/// three relate it to the evidence, the policy and the claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PoeCheckId {
    /// COSE_Sign1 envelope and CoRIM/CoMID structure, cardinalities, class IDs, value sizes.
    Format,
    /// ESP384 / ES384 signature under the x5chain leaf key.
    Signature,
    /// The x5chain chains to a configured trust anchor, every certificate valid at the time.
    Chain,
    /// CoRIM profile `tag:intel.com,2026:tee.poe#1.<minor>` as a URI (#6.32).
    Profile,
    /// The verification time lies inside `rim-validity`.
    Validity,
    /// The bound PIID equals the PIID of the evidence's PCK certificate.
    Piid,
    /// The endorsed owner equals the expected operator.
    Owner,
    /// The site the POE places the platform at equals the claimed site.
    Facility,
}

impl PoeCheckId {
    pub const ALL: [PoeCheckId; 8] = [
        PoeCheckId::Format,
        PoeCheckId::Signature,
        PoeCheckId::Chain,
        PoeCheckId::Profile,
        PoeCheckId::Validity,
        PoeCheckId::Piid,
        PoeCheckId::Owner,
        PoeCheckId::Facility,
    ];

    /// The check's name in reports and judgements.
    pub fn name(self) -> &'static str {
        match self {
            PoeCheckId::Format => "poe-format",
            PoeCheckId::Signature => "poe-signature",
            PoeCheckId::Chain => "poe-chain",
            PoeCheckId::Profile => "poe-profile",
            PoeCheckId::Validity => "poe-validity",
            PoeCheckId::Piid => "poe-piid",
            PoeCheckId::Owner => "poe-owner",
            PoeCheckId::Facility => "poe-facility",
        }
    }

    /// Checks of the document alone (signature, chain, time); the others need the evidence,
    /// the policy or the claim.
    pub fn is_document_check(self) -> bool {
        !matches!(
            self,
            PoeCheckId::Piid | PoeCheckId::Owner | PoeCheckId::Facility
        )
    }
}

/// A check name that no check has.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown check {name:?}")]
pub struct UnknownCheck {
    pub name: String,
}

/// The rules of the verdict, in the order the judge applies them. Serialized in kebab-case
/// (`claim-timing`, `evidence-rtt`, ...), as judgements show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictCheck {
    /// The node's input names known sites and probers, once each.
    Input,
    /// Some prober got answers.
    Reachability,
    /// The evidence summary is valid (or failed only on binding checks).
    Evidence,
    /// The TDX and vTPM evidence are bound to one machine.
    TdxVtpmBinding,
    /// The vTPM answers as fast as a local one.
    VtpmLocal,
    /// The provider zone the AK certificate names maps to the claimed site.
    Zone,
    /// A signed inventory or POE endorses the platform.
    Endorsement,
    /// Samples count only under a session key that evidence verified for their prober binds.
    SessionKey,
    /// Enough probers with enough samples.
    Probers,
    /// The node's timing did not shift during the window or from its baseline.
    Relocation,
    /// The feasible region from the probers' bounds contains the claim.
    Region,
    /// The probers' RTTs fit a node at the claim.
    ClaimTiming,
    /// The TD's own RTTs to anchors fit the claim.
    Anchors,
    /// Evidence round trips are not longer than echo round trips allow.
    EvidenceRtt,
}

impl VerdictCheck {
    pub const ALL: [VerdictCheck; 14] = [
        VerdictCheck::Input,
        VerdictCheck::Reachability,
        VerdictCheck::Evidence,
        VerdictCheck::TdxVtpmBinding,
        VerdictCheck::VtpmLocal,
        VerdictCheck::Zone,
        VerdictCheck::Endorsement,
        VerdictCheck::SessionKey,
        VerdictCheck::Probers,
        VerdictCheck::Relocation,
        VerdictCheck::Region,
        VerdictCheck::ClaimTiming,
        VerdictCheck::Anchors,
        VerdictCheck::EvidenceRtt,
    ];

    pub fn name(self) -> &'static str {
        match self {
            VerdictCheck::Input => "input",
            VerdictCheck::Reachability => "reachability",
            VerdictCheck::Evidence => "evidence",
            VerdictCheck::TdxVtpmBinding => "tdx-vtpm-binding",
            VerdictCheck::VtpmLocal => "vtpm-local",
            VerdictCheck::Zone => "zone",
            VerdictCheck::Endorsement => "endorsement",
            VerdictCheck::SessionKey => "session-key",
            VerdictCheck::Probers => "probers",
            VerdictCheck::Relocation => "relocation",
            VerdictCheck::Region => "region",
            VerdictCheck::ClaimTiming => "claim-timing",
            VerdictCheck::Anchors => "anchors",
            VerdictCheck::EvidenceRtt => "evidence-rtt",
        }
    }
}

/// The id of a check in a judgement: a verdict rule or a POE check. Serialized as the check's
/// name (`claim-timing`, `poe-owner`), the spelling judgements have always used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckName {
    Verdict(VerdictCheck),
    Poe(PoeCheckId),
}

impl CheckName {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckName::Verdict(c) => c.name(),
            CheckName::Poe(c) => c.name(),
        }
    }
}

impl From<VerdictCheck> for CheckName {
    fn from(c: VerdictCheck) -> Self {
        CheckName::Verdict(c)
    }
}

impl From<PoeCheckId> for CheckName {
    fn from(c: PoeCheckId) -> Self {
        CheckName::Poe(c)
    }
}

impl PartialEq<VerdictCheck> for CheckName {
    fn eq(&self, other: &VerdictCheck) -> bool {
        *self == CheckName::Verdict(*other)
    }
}

impl PartialEq<PoeCheckId> for CheckName {
    fn eq(&self, other: &PoeCheckId) -> bool {
        *self == CheckName::Poe(*other)
    }
}

impl FromStr for CheckName {
    type Err = UnknownCheck;

    fn from_str(s: &str) -> Result<Self, UnknownCheck> {
        let verdict = VerdictCheck::ALL.into_iter().map(CheckName::Verdict);
        let poe = PoeCheckId::ALL.into_iter().map(CheckName::Poe);
        verdict
            .chain(poe)
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownCheck {
                name: s.to_string(),
            })
    }
}

impl fmt::Display for CheckName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl Serialize for CheckName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CheckName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The checks of a GCE vTPM attestation (`verify::cloud::gce`), named as reports and JSON
/// show them (PascalCase, the names of the `GceError` variants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GceCheck {
    Oversized,
    Decode,
    AkPublic,
    NoQuotes,
    QuoteParse,
    QuoteSignature,
    AkQualifiedName,
    NonceRequired,
    Nonce,
    PcrSelection,
    PcrDigest,
    EventLogMissing,
    EventLogParse,
    EventLogReplay,
    AkCertMissing,
    AkCertParse,
    AkCertChain,
    AkCertKey,
    InstanceIdentity,
    InstanceInfoMismatch,
}

impl GceCheck {
    pub fn name(self) -> &'static str {
        match self {
            GceCheck::Oversized => "Oversized",
            GceCheck::Decode => "Decode",
            GceCheck::AkPublic => "AkPublic",
            GceCheck::NoQuotes => "NoQuotes",
            GceCheck::QuoteParse => "QuoteParse",
            GceCheck::QuoteSignature => "QuoteSignature",
            GceCheck::AkQualifiedName => "AkQualifiedName",
            GceCheck::NonceRequired => "NonceRequired",
            GceCheck::Nonce => "Nonce",
            GceCheck::PcrSelection => "PcrSelection",
            GceCheck::PcrDigest => "PcrDigest",
            GceCheck::EventLogMissing => "EventLogMissing",
            GceCheck::EventLogParse => "EventLogParse",
            GceCheck::EventLogReplay => "EventLogReplay",
            GceCheck::AkCertMissing => "AkCertMissing",
            GceCheck::AkCertParse => "AkCertParse",
            GceCheck::AkCertChain => "AkCertChain",
            GceCheck::AkCertKey => "AkCertKey",
            GceCheck::InstanceIdentity => "InstanceIdentity",
            GceCheck::InstanceInfoMismatch => "InstanceInfoMismatch",
        }
    }
}

impl fmt::Display for GceCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// The checks of Azure TDX evidence (`verify::cloud::azure`), named as reports and JSON show
/// them (PascalCase, the names of the `AzureError` variants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AzureCheck {
    Oversized,
    Decode,
    HclReport,
    HclAkPub,
    TpmQuoteParse,
    TpmQuoteSignature,
    NonceRequired,
    Nonce,
    PcrSelection,
    PcrDigest,
    TdQuote,
    /// With collateral: the TD quote's converged TCB status is an accepted one.
    TdTcb,
    ReportData,
    HclTdReport,
    HclUserData,
}

impl AzureCheck {
    pub fn name(self) -> &'static str {
        match self {
            AzureCheck::Oversized => "Oversized",
            AzureCheck::Decode => "Decode",
            AzureCheck::HclReport => "HclReport",
            AzureCheck::HclAkPub => "HclAkPub",
            AzureCheck::TpmQuoteParse => "TpmQuoteParse",
            AzureCheck::TpmQuoteSignature => "TpmQuoteSignature",
            AzureCheck::NonceRequired => "NonceRequired",
            AzureCheck::Nonce => "Nonce",
            AzureCheck::PcrSelection => "PcrSelection",
            AzureCheck::PcrDigest => "PcrDigest",
            AzureCheck::TdQuote => "TdQuote",
            AzureCheck::TdTcb => "TdTcb",
            AzureCheck::ReportData => "ReportData",
            AzureCheck::HclTdReport => "HclTdReport",
            AzureCheck::HclUserData => "HclUserData",
        }
    }
}

impl fmt::Display for AzureCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_rejected() {
        for c in CheckId::ALL {
            assert_eq!(c.name().parse::<CheckId>(), Ok(c));
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.name()));
        }
        for c in VerdictCheck::ALL
            .into_iter()
            .map(CheckName::from)
            .chain(PoeCheckId::ALL.into_iter().map(CheckName::from))
        {
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{c}\""));
            assert_eq!(serde_json::from_str::<CheckName>(&json).unwrap(), c);
        }
        assert_eq!(
            "pcr_rtmr".parse::<CheckId>(),
            Ok(CheckId::PcrRtmrCrossCheck)
        );
        assert_eq!(
            "ak_hsah".parse::<CheckId>(),
            Err(UnknownCheck {
                name: "ak_hsah".into()
            })
        );
        assert!(serde_json::from_str::<CheckName>("\"claim_timing\"").is_err());
    }
}
