//! locus-anchors
