//! Judgement: turns timing samples and verification findings into a verdict per node.
pub mod anchor_step;
mod attested;
pub mod bound;
pub mod findings;
pub mod frankenstein;
pub mod geo;
mod joint;
mod measure;
mod moved;
mod reach;
pub mod region;
pub mod relocation;
mod rules;
mod session_key;
pub mod verdict;
