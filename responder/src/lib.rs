//! locus-responder
