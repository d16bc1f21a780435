//! locus-prober
