//! What the verdict engine judges: sites, probers, per-node timing samples, in-TD timings,
//! anchor reports and a summary of verified evidence. All serde, so stored JSON can be re-judged.

use serde::{Deserialize, Serialize};

/// A named place with coordinates (a data center, a prober's location, an anchor's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    pub name: String,
    pub lat: f64,
    pub lon: f64,
}

impl Site {
    pub fn position(&self) -> LatLon {
        LatLon::new(self.lat, self.lon)
    }
}

/// A prober and the site it runs at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prober {
    /// Unique id; [`ProberSeries::prober`] refers to it.
    pub id: String,
    /// A [`Site::name`].
    pub site: String,
}

/// A prober's measured minimum RTT to a landmark with a known site (another prober, an anchor),
/// used to calibrate that prober's CBG bestline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandmarkRtt {
    pub prober: String,
    pub site: String,
    pub min_rtt_ns: u64,
}

/// A prober's echoes to a landmark during a node's window, on the prober's clock (the same
/// clock as its [`ProberSeries`] of that node, so their rounds line up). The node's RTT minus
/// the landmark's, round by round, cancels what both paths share: a route change of the
/// prober's path to the landmark's site is no step in the difference, a move of the node is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandmarkSeries {
    /// A [`Prober::id`].
    pub prober: String,
    /// The landmark's [`Site::name`].
    pub site: String,
    pub samples: Vec<EchoSample>,
}

/// The fixed part of the world: sites, probers and their calibration data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct World {
    pub sites: Vec<Site>,
    pub probers: Vec<Prober>,
    #[serde(default)]
    pub landmarks: Vec<LandmarkRtt>,
}

impl World {
    pub fn site(&self, name: &str) -> Option<&Site> {
        self.sites.iter().find(|s| s.name == name)
    }

    pub fn prober(&self, id: &str) -> Option<&Prober> {
        self.probers.iter().find(|p| p.id == id)
    }

    /// Every inconsistency in the world itself (unknown sites, duplicates, bad coordinates).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, s) in self.sites.iter().enumerate() {
            if !s.position().is_valid() {
                out.push(format!(
                    "site {} has invalid coordinates ({}, {})",
                    s.name, s.lat, s.lon
                ));
            }
            if self.sites[..i].iter().any(|o| o.name == s.name) {
                out.push(format!("site {} is defined twice", s.name));
            }
        }
        for (i, p) in self.probers.iter().enumerate() {
            if self.site(&p.site).is_none() {
                out.push(format!("prober {} is at unknown site {}", p.id, p.site));
            }
            if self.probers[..i].iter().any(|o| o.id == p.id) {
                out.push(format!("prober {} is defined twice", p.id));
            }
        }
        for l in &self.landmarks {
            if self.prober(&l.prober).is_none() {
                out.push(format!("landmark RTT names unknown prober {}", l.prober));
            }
            if self.site(&l.site).is_none() {
                out.push(format!("landmark RTT names unknown site {}", l.site));
            }
        }
        out
    }
}

/// One answered echo challenge, as the prober recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EchoSample {
    /// When the challenge was sent, ns on the prober's monotonic clock (any epoch, but one
    /// clock per series). Orders samples into rounds.
    pub sent_ns: u64,
    /// Round-trip time measured by the prober.
    pub rtt_ns: u64,
    /// Time the responder reports it spent between receiving and answering.
    #[serde(default)]
    pub inside_ns: u64,
}

/// Everything one prober measured against one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProberSeries {
    /// A [`Prober::id`].
    pub prober: String,
    pub samples: Vec<EchoSample>,
    /// Challenges sent (answered or not); 0 when unknown.
    #[serde(default)]
    pub sent: u64,
    /// Round trips of evidence requests (request sent → evidence answer received), ns.
    #[serde(default)]
    pub evidence_rtt_ns: Vec<u64>,
    /// Hex SPKI of the QUIC peer that answered these samples (the connection's session key).
    /// When the node's verified evidence names session keys, only a series under one of them
    /// counts (`session-key`); None (older files) never matches one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_spki: Option<String>,
}

/// Timings the responder measured inside the TD with the TD's own clock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InTdTimings {
    /// Time to obtain a TDX quote, ns.
    #[serde(default)]
    pub tdx_quote_ns: Option<u64>,
    /// Time to obtain a vTPM quote, ns.
    #[serde(default)]
    pub tpm_quote_ns: Option<u64>,
    /// Round trips of a cheap vTPM command (e.g. TPM2_GetRandom) issued from inside the TD,
    /// ns: a vTPM relayed from elsewhere shows its network RTT here. Only the minimum is used,
    /// so a single value (the minimum the responder kept) is fine.
    #[serde(default)]
    pub tpm_cmd_rtt_ns: Vec<u64>,
    /// Total in-TD time to produce one evidence answer (request received → answer sent), ns.
    /// Enables the evidence-round-trip check.
    #[serde(default)]
    pub evidence_ns: Option<u64>,
}

/// The minimum TLS round trip the responder measured, from inside the TD, to an anchor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorReport {
    /// A [`Site::name`].
    pub site: String,
    pub min_rtt_ns: u64,
    /// Round trips the minimum was taken over (informational).
    #[serde(default)]
    pub samples: u32,
}

/// A requested anchor that gave no usable round trip. A far TD cannot reach an anchor at the
/// claim quickly and may prefer to report it as down: a failure is never read as honest, it
/// makes the anchors check inconclusive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailedAnchor {
    /// The anchor's name in the anchor policy.
    pub name: String,
    /// Why it failed (as the verifier says it).
    pub reason: String,
}

/// Result of the evidence verifiers (TDX quote, vTPM quote, their binding), reduced to what
/// the verdict needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceSummary {
    pub valid: bool,
    /// Names of the checks that failed, as the verifiers name them.
    #[serde(default)]
    pub failed_checks: Vec<String>,
    /// Whether TDX and vTPM evidence come from the same machine (AK hash in REPORTDATA,
    /// PCR ↔ RTMR cross-check); None when not checked (e.g. one of them missing).
    #[serde(default)]
    pub tdx_vtpm_bound: Option<bool>,
    /// The quote chains to the lab root rather than Intel's.
    #[serde(default)]
    pub lab_root: bool,
    /// Platform ID the evidence names (hex; e.g. the PIID from the PCK certificate), for the
    /// endorsement lookup.
    #[serde(default)]
    pub platform_id: Option<String>,
    /// Provider zone named by the vTPM's EK/AK certificate (GCP: the subject's `L=`, e.g.
    /// `europe-west3-a`), when the chain verified.
    #[serde(default)]
    pub zone: Option<String>,
    /// The evidence policy did not pin the TD's code (`allow_unpinned_code = true`): the
    /// verdict is at most `inconclusive`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unpinned_code: bool,
    /// The session keys that verified bundles bind, with the prober each was requested over.
    /// When not empty, only samples under these keys count (`session-key`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub session_keys: Vec<VerifiedKey>,
}

/// A session key that a verified evidence bundle binds (`session_spki`: signed transcript,
/// hashed into REPORTDATA and the vTPM quote).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifiedKey {
    /// Hex SPKI (DER).
    pub spki: String,
    /// The prober whose connection the bundle was requested over; None when not known (a
    /// bundle file judged offline): then it vouches for every prober's samples under that key,
    /// since each such QUIC peer proved it holds the key the TD bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prober: Option<String>,
    /// The in-TD evidence time of that bundle, ns: its prober's evidence round trip is held
    /// against this, not against another request's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_ns: Option<u64>,
}

impl VerifiedKey {
    /// Whether this key vouches for samples `prober` took under `spki` (hex).
    pub fn vouches_for(&self, prober: &str, spki: &str) -> bool {
        self.spki.eq_ignore_ascii_case(spki) && self.prober.as_deref().is_none_or(|p| p == prober)
    }
}

/// A prober's minimum effective RTT (processing subtracted) to this node in an earlier period
/// (the node's history).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineMin {
    pub prober: String,
    pub min_rtt_ns: u64,
}

impl BaselineMin {
    /// Baseline from a history of per-round minima: their median (robust to a few bad rounds).
    /// None for an empty history.
    pub fn from_history(prober: impl Into<String>, round_mins_ns: &[u64]) -> Option<BaselineMin> {
        if round_mins_ns.is_empty() {
            return None;
        }
        let mut v = round_mins_ns.to_vec();
        v.sort_unstable();
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            ((u128::from(v[n / 2 - 1]) + u128::from(v[n / 2])) / 2) as u64
        };
        Some(BaselineMin {
            prober: prober.into(),
            min_rtt_ns: median,
        })
    }
}

/// Everything observed about one node (responder) over one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeInput {
    pub name: String,
    /// The [`Site::name`] the operator claims the node runs at.
    pub claim: String,
    #[serde(default)]
    pub probes: Vec<ProberSeries>,
    #[serde(default)]
    pub in_td: InTdTimings,
    #[serde(default)]
    pub anchors: Vec<AnchorReport>,
    /// Requested anchors that failed (from the verified anchor report).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_anchors: Vec<FailedAnchor>,
    /// None when no evidence was collected or verified.
    #[serde(default)]
    pub evidence: Option<EvidenceSummary>,
    /// Per-prober minimum RTTs from earlier windows; empty ⇒ the first rounds of this window
    /// are the baseline.
    #[serde(default)]
    pub baseline: Vec<BaselineMin>,
    /// Each prober's echoes to landmarks over this window (see [`LandmarkSeries`]): with a
    /// landmark at the claim, relocation detection reads the node's rounds differenced against
    /// it. Empty ⇒ the node's own rounds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub landmark_series: Vec<LandmarkSeries>,
    /// The TD's own anchor minima from earlier windows (its history): a TD that moved away
    /// from an anchor at the claim shows its RTT to it risen by more than any route change
    /// within the metro can add. Empty ⇒ no such check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anchor_history: Vec<AnchorReport>,
    /// The platform's endorsement (signed inventory lookup), when one was resolved.
    #[serde(default)]
    pub endorsement: Option<crate::verify::endorse::Endorsement>,
    /// The Intel Platform Ownership Endorsement chosen for the node's PIID, when POEs were
    /// given ([`crate::verify::poe::PoeEndorsement::resolve`]).
    #[serde(default)]
    pub poe: Option<crate::verify::poe::PoeEndorsement>,
    /// Where [`NodeInput::evidence`] came from. Set by the reader of stored data (`locus
    /// judge`), never read from a samples file: a file cannot vouch for itself.
    #[serde(skip)]
    pub evidence_source: EvidenceSource,
    /// Evidence the reader found but did not use, and why; each makes the node `inconclusive`
    /// naming it.
    #[serde(skip)]
    pub refused_evidence: Vec<RefusedEvidence>,
}

/// Where a node's evidence summary came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EvidenceSource {
    /// Not said (library callers that verified the evidence themselves: the lab, the monitor).
    #[default]
    Unspecified,
    /// A bundle verified by the reader under an evidence policy.
    VerifiedBundle,
    /// An unsigned summary (`NODE.json`, or the samples file's own `evidence`) that the
    /// operator chose to trust (`locus judge --trust-summaries`).
    TrustedSummary { source: String },
}

/// Evidence that was found but not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusedEvidence {
    /// An unsigned summary anyone could have written; trusting it is the operator's choice.
    #[error(
        "evidence summary {origin} is unsigned and was not used (pass --trust-summaries to trust \
         unsigned summaries)"
    )]
    UnsignedSummary { origin: String },
    /// A bundle with no verification policy to check it under: trust roots and the nonce
    /// ledger are never taken from the directory being judged.
    #[error(
        "evidence bundle {path} was not verified: no evidence policy (pass --evidence-policy FILE)"
    )]
    UnverifiedBundle { path: String },
}

/// Version of the samples file layout ([`SamplesFile`]).
pub const SAMPLES_VERSION: u32 = 1;

/// The stored-samples file `locus judge --samples` reads: one world, many nodes
/// (documented in `docs/judge.md`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplesFile {
    pub version: u32,
    pub sites: Vec<Site>,
    pub probers: Vec<Prober>,
    #[serde(default)]
    pub landmarks: Vec<LandmarkRtt>,
    pub nodes: Vec<NodeInput>,
}

impl SamplesFile {
    /// The world part (sites, probers, landmarks).
    pub fn world(&self) -> World {
        World {
            sites: self.sites.clone(),
            probers: self.probers.clone(),
            landmarks: self.landmarks.clone(),
        }
    }
}

/// A point on the sphere, degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatLon {
    pub lat: f64,
    pub lon: f64,
}

impl LatLon {
    pub fn new(lat: f64, lon: f64) -> Self {
        Self { lat, lon }
    }

    /// Whether the coordinates are finite and in range (lat ±90, lon ±180).
    pub fn is_valid(&self) -> bool {
        self.lat.is_finite()
            && self.lon.is_finite()
            && (-90.0..=90.0).contains(&self.lat)
            && (-180.0..=180.0).contains(&self.lon)
    }
}
