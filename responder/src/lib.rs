//! locus-responder
pub mod evidence;
pub mod tdx;
pub mod tpm;
