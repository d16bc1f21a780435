//! locus-analysis
pub mod anchor;
pub mod cloud;
pub mod endorse;
pub mod eventlog;
pub mod evidence;
pub mod frankenstein;
pub mod geo;
pub mod input;
mod joint;
pub mod poe;
pub mod policy;
pub mod policy_init;
pub mod region;
pub mod relocation;
pub mod rtt_bound;
mod summary;
pub mod tdx;
pub mod tpm;
pub mod verdict;

pub use input::{
    AnchorReport, BaselineMin, EchoSample, EvidenceSummary, InTdTimings, LandmarkRtt, NodeInput,
    Prober, ProberSeries, SamplesFile, Site, World,
};
pub use policy::{Policy, PolicyError, RelocationPolicy};
pub use summary::BundleFindings;
pub use verdict::{judge, judge_file, Check, CheckStatus, Judgement, Scores, Verdict};
