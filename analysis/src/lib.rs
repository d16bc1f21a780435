//! locus-analysis
