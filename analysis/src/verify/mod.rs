//! Evidence verification: each module checks one kind of evidence and reports typed findings.
//! Nothing here judges location; [`crate::judge`] consumes what these modules find.
pub mod anchor;
pub mod bundle;
pub mod cloud;
pub mod credential;
pub mod endorse;
pub mod eventlog;
pub mod poe;
pub mod tdx;
pub mod tpm;
