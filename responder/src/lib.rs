//! locus-responder
pub mod tdx;
pub mod evidence;
pub mod tpm;
