//! locus-analysis: pure (sans-I/O) verification of attestation evidence and judgement of
//! where a node runs.
//!
//! Three layers, each importing only the ones below it:
//! - vocabulary at the root: [`check`] (checks and their outcomes), [`policy`] (the judge's
//!   policy file) and [`input`] (what the judge reads: samples plus verification findings);
//! - [`verify`]: evidence verification (TDX, vTPM, event logs, bundles, cloud evidence, POEs,
//!   anchors, endorsements);
//! - [`judge`]: judgement (geometry, regions, RTT bounds, relocation, Frankenstein, the verdict),
//!   consuming verification findings.
pub mod check;
pub mod input;
pub mod judge;
pub mod policy;
pub mod policy_init;
pub mod verify;

pub use check::{Check, CheckStatus};
pub use input::{
    AnchorReport, BaselineMin, EchoSample, EvidenceSource, EvidenceSummary, FailedAnchor,
    InTdTimings, LandmarkRtt, LandmarkSeries, NodeInput, Prober, ProberSeries, RefusedEvidence,
    SamplesFile, Site, VerifiedKey, World,
};
pub use judge::findings::BundleFindings;
pub use judge::verdict::{judge, judge_file, Judgement, Scores, Verdict};
pub use policy::{Policy, PolicyError, RelocationPolicy};
