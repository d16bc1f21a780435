//! TDX quotes for evidence answers, behind [`TdxQuoter`]: the real Linux configfs-tsm backend
//! ([`configfs::ConfigfsQuoter`]) and a lab backend ([`lab::LabTdx`]) whose quotes verify only
//! under an explicitly configured lab root.

pub mod coalesce;
pub mod configfs;
pub mod lab;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

/// Produces a TDX quote whose REPORTDATA is `report_data`.
pub trait TdxQuoter: Send + Sync {
    /// A fresh quote binding `report_data` (see `locus_proto::binding` for what goes in it).
    fn quote(&self, report_data: [u8; 64]) -> Result<Vec<u8>, QuoteError>;
}

/// Why no quote was produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuoteError {
    /// The configfs-tsm report root does not exist: no TDX guest, or configfs not mounted
    /// (`mount -t configfs none /sys/kernel/config`).
    #[error(
        "configfs-tsm report root {root} does not exist (no TDX guest or configfs not mounted)"
    )]
    ConfigfsUnavailable { root: PathBuf },
    /// The process may not create or write report objects (run as root or grant access).
    #[error("permission denied on {path}")]
    PermissionDenied { path: PathBuf },
    /// The report object has no `provider` attribute: not a TSM report directory.
    #[error("no provider attribute at {path}")]
    ProviderMissing { path: PathBuf },
    /// The TSM provider is not the TDX guest driver (e.g. `sev_guest`).
    #[error("TSM provider is {found:?}, expected {expected:?}")]
    WrongProvider {
        found: String,
        expected: &'static str,
    },
    /// Another writer changed the report between our write and read, on every attempt.
    #[error("report generation raced ({before} -> {after}) on each of {attempts} attempts")]
    GenerationRaced {
        attempts: u32,
        before: u64,
        after: u64,
    },
    /// The provider stayed busy (EBUSY) on every attempt.
    #[error("TSM provider busy on each of {attempts} attempts")]
    Busy { attempts: u32 },
    /// `outblob` was empty.
    #[error("empty outblob at {path}")]
    EmptyOutblob { path: PathBuf },
    /// An attribute did not hold what the ABI says (e.g. a non-numeric generation).
    #[error("malformed attribute {path}: {found:?}")]
    Malformed { path: PathBuf, found: String },
    /// Any other I/O failure.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A coalesced quote failed; `reason` is the error the batch's quoter returned.
    #[error("coalesced TDX quote failed: {reason}")]
    Coalesced { reason: String },
    /// The lab backend failed (key or certificate generation, lab state files).
    #[error("lab TDX: {reason}")]
    Lab { reason: String },
}
