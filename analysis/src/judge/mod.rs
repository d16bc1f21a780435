//! Judgement: turns timing samples and verification findings into a verdict per node.
pub mod bound;
pub mod findings;
pub mod frankenstein;
pub mod geo;
mod joint;
pub mod region;
pub mod relocation;
pub mod verdict;
