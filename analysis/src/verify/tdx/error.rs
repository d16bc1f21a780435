//! Typed TDX verification failures: one variant per check, carrying what was found.

/// Why a TDX quote or its collateral was rejected.
///
/// Each variant names one check. Structural checks (header through `EmbeddedRootMismatch`) are
/// locus's own and run before dcap-qvl; the rest classify dcap-qvl's verdict. `Dcap` keeps the
/// message of any dcap-qvl failure that no variant names, so nothing is lost.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TdxError {
    /// The input ends before a field the layout requires. Re-read the quote: it was cut short.
    #[error("quote truncated: need {need} bytes, have {have}")]
    Truncated { need: u64, have: usize },
    /// The input is larger than any real quote (with padding); refused before parsing.
    #[error("quote is {have} bytes, above the {max}-byte cap")]
    Oversized { have: usize, max: usize },
    /// Header: version is not 4 or 5 (the TDX quote versions).
    #[error("header: quote version {found}, expected 4 or 5")]
    HeaderVersion { found: u16 },
    /// Header: attestation key type is not ECDSA P-256.
    #[error("header: attestation key type {found}, expected 2 (ECDSA-256 with P-256)")]
    HeaderKeyType { found: u16 },
    /// Header: TEE type is not TDX.
    #[error("header: TEE type {found:#x}, expected 0x81 (TDX)")]
    HeaderTeeType { found: u32 },
    /// Header: the QE vendor ID is not Intel's.
    #[error("header: QE vendor ID {found} is not Intel's")]
    HeaderQeVendor { found: String },
    /// Quote v5: the body descriptor names an unknown type or a wrong size.
    #[error("quote v5 body descriptor: type {body_type}, size {size}")]
    BodyDescriptor { body_type: u16, size: u32 },
    /// The signature-data length (offset 632 in v4) disagrees with the data it announces.
    /// dcap-qvl 0.7.1 accepts such quotes; locus does not.
    #[error(
        "signature data length at offset {offset} is {declared}, its contents need {expected}"
    )]
    SignatureDataLength {
        offset: usize,
        declared: u32,
        expected: u64,
    },
    /// A certification-data type is wrong: 6 (QE report) at offset 764 in v4, 5 (PCK chain)
    /// inside it. dcap-qvl 0.7.1 ignores the outer one; locus does not.
    #[error("certification data type at offset {offset} is {found}, expected {expected}")]
    CertificationDataType {
        offset: usize,
        found: u16,
        expected: u16,
    },
    /// The QE-report certification data length disagrees with its parts.
    #[error(
        "certification data size at offset {offset} is {declared}, its contents need {expected}"
    )]
    CertificationDataLength {
        offset: usize,
        declared: u32,
        expected: u64,
    },
    /// Non-zero bytes follow the quote's declared end. Zero padding is accepted (real quotes
    /// arrive in fixed-size buffers); anything else is smuggled data.
    #[error("non-zero byte at offset {first} after the quote's declared end {end}")]
    TrailingBytes { end: usize, first: usize },
    /// The PCK certificate chain embedded in the quote is not a PEM chain.
    #[error("PCK chain in the quote is not a PEM certificate chain: {reason}")]
    PckChainEncoding { reason: String },
    /// The root certificate embedded at the end of the quote's PCK chain is not the configured
    /// root. dcap-qvl 0.7.1 ignores this copy (it pins its own root); locus rejects it.
    #[error(
        "PCK chain ends with root certificate sha256:{found}, configured root is sha256:{expected}"
    )]
    EmbeddedRootMismatch { expected: String, found: String },
    /// Collateral could not be decoded (JSON, CRL DER, PEM issuer chain).
    #[error("collateral malformed: {reason}")]
    CollateralMalformed { reason: String },
    /// The root CA CRL does not verify under the configured root.
    #[error("root CA CRL rejected: {reason}")]
    RootCaCrl { reason: String },
    /// A CRL is past its nextUpdate at the verification time. Fetch fresh collateral.
    #[error("collateral CRL expired at the verification time: {crl} nextUpdate {next_update} ({reason})")]
    CrlExpired {
        /// `root CA CRL` or `PCK CRL` (empty when neither is past its nextUpdate: the
        /// failure came from elsewhere in the chain).
        crl: String,
        next_update: String,
        reason: String,
    },
    /// TCB info issueDate is after the verification time.
    #[error("TCB info is not yet valid at the verification time (issueDate {issue_date})")]
    TcbInfoNotYetValid { issue_date: String },
    /// TCB info nextUpdate is before the verification time. Fetch fresh collateral.
    #[error("TCB info expired at the verification time (nextUpdate {next_update})")]
    TcbInfoExpired { next_update: String },
    /// The TCB info signing certificate does not chain to the root.
    #[error("TCB info issuer chain rejected: {reason}")]
    TcbInfoChain { reason: String },
    /// The TCB info signature does not verify.
    #[error("TCB info signature invalid")]
    TcbInfoSignature,
    /// QE identity issueDate is after the verification time.
    #[error("QE identity is not yet valid at the verification time (issueDate {issue_date})")]
    QeIdentityNotYetValid { issue_date: String },
    /// QE identity nextUpdate is before the verification time. Fetch fresh collateral.
    #[error("QE identity expired at the verification time (nextUpdate {next_update})")]
    QeIdentityExpired { next_update: String },
    /// The QE identity signing certificate does not chain to the root.
    #[error("QE identity issuer chain rejected: {reason}")]
    QeIdentityChain { reason: String },
    /// The QE identity signature does not verify.
    #[error("QE identity signature invalid")]
    QeIdentitySignature,
    /// The QE identity is not a TD QE identity of a supported version.
    #[error("QE identity kind rejected: {reason}")]
    QeIdentityKind { reason: String },
    /// A certificate on a chain is revoked by the collateral CRLs.
    #[error("certificate revoked ({reason})")]
    CertificateRevoked { reason: String },
    /// A certificate on a chain is outside its validity period at the verification time.
    #[error("certificate not valid at the verification time ({reason})")]
    CertificateValidity { reason: String },
    /// A chain does not lead to the configured root: wrong root, or a foreign certificate.
    #[error("certificate chain does not lead to the configured root ({reason})")]
    UnknownIssuer { reason: String },
    /// A certificate chain does not verify for another reason (bad signature, encoding, a CA
    /// used as a leaf): the PCK chain, or the TCB info / QE identity signer chain (dcap-qvl's
    /// message does not say which).
    #[error("certificate chain rejected: {reason}")]
    CertificateChain { reason: String },
    /// The QE report's signature by the PCK key does not verify.
    #[error("QE report signature invalid")]
    QeReportSignature,
    /// The QE report does not bind the attestation key and QE auth data (SHA-256 mismatch).
    #[error("QE report data does not match the attestation key and QE auth data")]
    QeReportData,
    /// The QE report fails the QE identity policy (MRSIGNER, ISVPRODID, masks, ISVSVN).
    #[error("QE report fails the QE identity: {reason}")]
    QeIdentityPolicy { reason: String },
    /// The quote signature by the attestation key over header and TD report does not verify.
    #[error("quote signature (attestation key over header and TD report) invalid")]
    QuoteSignature,
    /// The PCK certificate's FMSPC is not the TCB info's.
    #[error("FMSPC of the PCK certificate does not match the TCB info")]
    FmspcMismatch,
    /// No TCB level (platform or TDX module) of the TCB info matches the quote.
    #[error("TCB level not appraisable: {reason}")]
    TcbLevel { reason: String },
    /// The matched TCB level is Revoked.
    #[error("TCB status is Revoked")]
    TcbRevoked,
    /// The converged TCB status is not one the policy accepts (`tdx.accept_tcb`, `--accept-tcb`;
    /// default `UpToDate`, `SWHardeningNeeded`). Update the platform (BIOS/microcode, TDX module)
    /// to the TCB the collateral calls up to date, or accept the status knowingly.
    #[error(
        "TCB status {status} is not accepted (accepted: {}); behind: {}; since tcbDate {}; advisories: {}",
        accepted.join(", "),
        super::tcb::behind_text(behind),
        since.as_deref().unwrap_or("unknown"),
        if advisory_ids.is_empty() { "none listed".to_string() } else { advisory_ids.join(", ") }
    )]
    TcbStatusNotAccepted {
        status: String,
        accepted: Vec<String>,
        behind: Vec<super::tcb::SvnBehind>,
        since: Option<String>,
        advisory_ids: Vec<String>,
    },
    /// TD attributes bit 0 (TUD.DEBUG) is set: the host VMM can read and write the TD's CPU
    /// state and private memory, so nothing the TD reports is its own.
    #[error("the TD is a debug TD (TD attributes bit 0 DEBUG set: {attributes}): the host can read and change it")]
    TdDebug { attributes: String },
    /// TD attributes bit 29 (SEC.MIGRATABLE) is set: a migration TD may move the TD, with its
    /// state, to another platform after it was attested.
    #[error("the TD is migratable (TD attributes bit 29 MIGRATABLE set: {attributes}): it may be moved to another platform after attestation")]
    TdMigratable { attributes: String },
    /// TD attributes forbid trust (profiling, reserved bits, SERVTD_EXT, SEPT_VE_DISABLE off).
    #[error("TD attributes rejected: {reason}")]
    TdAttributes { reason: String },
    /// Any other dcap-qvl failure, with its message.
    #[error("dcap-qvl: {message}")]
    Dcap { message: String },
}

impl TdxError {
    /// The name of the failed check (the variant name), for reports and JSON.
    pub fn check(&self) -> &'static str {
        match self {
            Self::Truncated { .. } => "Truncated",
            Self::Oversized { .. } => "Oversized",
            Self::HeaderVersion { .. } => "HeaderVersion",
            Self::HeaderKeyType { .. } => "HeaderKeyType",
            Self::HeaderTeeType { .. } => "HeaderTeeType",
            Self::HeaderQeVendor { .. } => "HeaderQeVendor",
            Self::BodyDescriptor { .. } => "BodyDescriptor",
            Self::SignatureDataLength { .. } => "SignatureDataLength",
            Self::CertificationDataType { .. } => "CertificationDataType",
            Self::CertificationDataLength { .. } => "CertificationDataLength",
            Self::TrailingBytes { .. } => "TrailingBytes",
            Self::PckChainEncoding { .. } => "PckChainEncoding",
            Self::EmbeddedRootMismatch { .. } => "EmbeddedRootMismatch",
            Self::CollateralMalformed { .. } => "CollateralMalformed",
            Self::RootCaCrl { .. } => "RootCaCrl",
            Self::CrlExpired { .. } => "CrlExpired",
            Self::TcbInfoNotYetValid { .. } => "TcbInfoNotYetValid",
            Self::TcbInfoExpired { .. } => "TcbInfoExpired",
            Self::TcbInfoChain { .. } => "TcbInfoChain",
            Self::TcbInfoSignature { .. } => "TcbInfoSignature",
            Self::QeIdentityNotYetValid { .. } => "QeIdentityNotYetValid",
            Self::QeIdentityExpired { .. } => "QeIdentityExpired",
            Self::QeIdentityChain { .. } => "QeIdentityChain",
            Self::QeIdentitySignature { .. } => "QeIdentitySignature",
            Self::QeIdentityKind { .. } => "QeIdentityKind",
            Self::CertificateRevoked { .. } => "CertificateRevoked",
            Self::CertificateValidity { .. } => "CertificateValidity",
            Self::UnknownIssuer { .. } => "UnknownIssuer",
            Self::CertificateChain { .. } => "CertificateChain",
            Self::QeReportSignature { .. } => "QeReportSignature",
            Self::QeReportData { .. } => "QeReportData",
            Self::QeIdentityPolicy { .. } => "QeIdentityPolicy",
            Self::QuoteSignature { .. } => "QuoteSignature",
            Self::FmspcMismatch { .. } => "FmspcMismatch",
            Self::TcbLevel { .. } => "TcbLevel",
            Self::TcbRevoked { .. } => "TcbRevoked",
            Self::TcbStatusNotAccepted { .. } => "TcbStatusNotAccepted",
            Self::TdDebug { .. } => "TdDebug",
            Self::TdMigratable { .. } => "TdMigratable",
            Self::TdAttributes { .. } => "TdAttributes",
            Self::Dcap { .. } => "Dcap",
        }
    }
}
