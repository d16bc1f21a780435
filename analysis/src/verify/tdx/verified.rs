//! What a verified TDX quote tells: TCB verdict, measurements, platform identity.

use serde::Serialize;

use super::root::RootKind;

/// A quote that passed every check, with the fields a location verdict needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TdxVerified {
    /// The root the chains were verified under; `Configured` means a lab (or other) root.
    pub root: RootKind,
    /// Quote version (4 or 5).
    pub quote_version: u16,
    /// Whether collateral was checked. `false` ([`super::verify_without_collateral`]): the
    /// signatures and the PCK chain hold, but TCB status, QE identity and revocation are unknown.
    pub collateral_checked: bool,
    /// Converged TCB status (platform, TDX module, QE), e.g. `UpToDate`, `OutOfDate`.
    pub tcb_status: String,
    /// Intel security advisories that apply to the matched TCB level.
    pub advisory_ids: Vec<String>,
    /// Which components are below the collateral's up-to-date level, and since when (with
    /// collateral only).
    pub tcb_detail: Option<super::TcbDetail>,
    /// The earliest nextUpdate / notAfter of the collateral and the chains it verified under
    /// (unix seconds): after it, this quote no longer verifies with this collateral. Alert
    /// before it passes.
    pub collateral_expires_unix: Option<u64>,
    /// TEE_TCB_SVN of the TD report.
    #[serde(serialize_with = "hex_ser")]
    pub tee_tcb_svn: [u8; 16],
    /// MRTD: measurement of the initial TD contents.
    #[serde(serialize_with = "hex_ser")]
    pub mr_td: [u8; 48],
    /// MRCONFIGID, MROWNER, MROWNERCONFIG.
    #[serde(serialize_with = "hex_ser")]
    pub mr_config_id: [u8; 48],
    #[serde(serialize_with = "hex_ser")]
    pub mr_owner: [u8; 48],
    #[serde(serialize_with = "hex_ser")]
    pub mr_owner_config: [u8; 48],
    /// RTMR0-3.
    #[serde(serialize_with = "hex_ser_rtmr")]
    pub rtmr: [[u8; 48]; 4],
    /// REPORTDATA: the 64 bytes the TD bound into the quote (locus: the nonce binding).
    #[serde(serialize_with = "hex_ser")]
    pub report_data: [u8; 64],
    /// TD attributes (little-endian bit field).
    #[serde(serialize_with = "hex_ser")]
    pub td_attributes: [u8; 8],
    /// FMSPC of the PCK certificate (platform family).
    #[serde(serialize_with = "hex_ser")]
    pub fmspc: [u8; 6],
    /// PCE ID of the PCK certificate.
    #[serde(serialize_with = "hex_ser")]
    pub pce_id: Vec<u8>,
    /// PPID of the PCK certificate.
    #[serde(serialize_with = "hex_ser")]
    pub ppid: Vec<u8>,
    /// Platform instance ID (PIID), present in Platform-CA PCK certificates.
    #[serde(serialize_with = "hex_ser_opt")]
    pub piid: Option<Vec<u8>>,
}

fn hex_ser<S: serde::Serializer>(v: impl AsRef<[u8]>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v.as_ref()))
}

fn hex_ser_opt<S: serde::Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_some(&hex::encode(v)),
        None => s.serialize_none(),
    }
}

fn hex_ser_rtmr<S: serde::Serializer>(v: &[[u8; 48]; 4], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(hex::encode))
}
