//! locus-responder
pub mod tdx;
