//! locus-analysis
pub mod tdx;
