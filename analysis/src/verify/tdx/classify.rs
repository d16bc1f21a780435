//! Map a dcap-qvl failure onto the check it names.
//!
//! dcap-qvl 0.7.1 reports failures as `anyhow` messages. They are matched here, in the order
//! dcap-qvl runs its steps, on the exact phrases of that version (Cargo.lock pins it); the
//! tamper tests fail if an upgrade changes a phrase. Unmatched messages stay as `Dcap`.

use super::error::TdxError;

/// `chain` is dcap-qvl's full error chain (`{:#}`), outermost context first.
pub(crate) fn classify(chain: &str) -> TdxError {
    let reason = || chain.to_owned();
    let has = |s: &str| chain.contains(s);

    // Collateral decoding and the root CA CRL, checked before anything else.
    if has("Failed to parse root CA CRL") {
        return if has("Signature") {
            TdxError::RootCaCrl { reason: reason() }
        } else {
            TdxError::CollateralMalformed { reason: reason() }
        };
    }
    if has("Failed to parse PCK CRL")
        || has("Failed to decode TcbInfo")
        || has("Failed to decode QeIdentity")
        || has("Failed to parse certs")
        || has("Failed to parse RFC3339")
    {
        return TdxError::CollateralMalformed { reason: reason() };
    }
    if has("TCBInfo issue date is in the future") {
        return TdxError::TcbInfoNotYetValid {
            issue_date: String::new(),
        };
    }
    if has("TCBInfo expired") {
        return TdxError::TcbInfoExpired {
            next_update: String::new(),
        };
    }
    if has("QE Identity issue date is in the future") {
        return TdxError::QeIdentityNotYetValid {
            issue_date: String::new(),
        };
    }
    if has("QE Identity expired") {
        return TdxError::QeIdentityExpired {
            next_update: String::new(),
        };
    }
    if has("Signature is invalid for tcb_info") {
        return TdxError::TcbInfoSignature;
    }
    if has("Signature is invalid for qe_identity") {
        return TdxError::QeIdentitySignature;
    }
    if has("Unsupported QE Identity id/version") {
        return TdxError::QeIdentityKind { reason: reason() };
    }
    // Certificate path failures: webpki's error names, whichever chain they come from.
    if has("CertRevoked") {
        return TdxError::CertificateRevoked { reason: reason() };
    }
    if has("CrlExpired") {
        return TdxError::CrlExpired {
            crl: String::new(),
            next_update: String::new(),
            reason: reason(),
        };
    }
    if has("CertExpired") || has("CertNotValidYet") {
        return TdxError::CertificateValidity { reason: reason() };
    }
    if has("UnknownIssuer") {
        return TdxError::UnknownIssuer { reason: reason() };
    }
    if has("TCB Info leaf certificate") || has("chain is too short for TCB Info") {
        return TdxError::TcbInfoChain { reason: reason() };
    }
    if has("QE Identity leaf certificate") || has("chain is too short for QE Identity") {
        return TdxError::QeIdentityChain { reason: reason() };
    }
    if has("TCB Info signer must be issued directly") {
        return TdxError::TcbInfoChain { reason: reason() };
    }
    if has("QE Identity signer must be issued directly") {
        return TdxError::QeIdentityChain { reason: reason() };
    }
    if has("Signature is invalid for qe_report") {
        return TdxError::QeReportSignature;
    }
    if has("QE report hash mismatch") || has("Invalid QE auth data length") {
        return TdxError::QeReportData;
    }
    if has("PCK certificate")
        || has("Failed to verify certificate chain")
        || has("Certificate chain is too short in quote")
        || has("Intel extension")
    {
        return TdxError::CertificateChain { reason: reason() };
    }
    if has("QE MRSIGNER")
        || has("QE ISVPRODID")
        || has("QE MISCSELECT")
        || has("QE ATTRIBUTES")
        || has("QE ISVSVN")
        || has("QE report validation failed")
        || has("No TCB levels found in QE Identity")
    {
        return TdxError::QeIdentityPolicy { reason: reason() };
    }
    if has("ISV enclave report signature is invalid") {
        return TdxError::QuoteSignature;
    }
    if has("Fmspc mismatch") {
        return TdxError::FmspcMismatch;
    }
    if has("TCB status is invalid: Revoked") {
        return TdxError::TcbRevoked;
    }
    if has("TCB level")
        || has("TDX module")
        || has("TCB info")
        || has("TCB Info")
        || has("component count mismatch")
        || has("Unrecognized TCB status")
    {
        return TdxError::TcbLevel { reason: reason() };
    }
    if has("Debug mode is enabled") {
        return TdxError::TdDebug {
            attributes: String::new(),
        };
    }
    if has("TD migration is enabled") {
        return TdxError::TdMigratable {
            attributes: String::new(),
        };
    }
    if has("TD profiling")
        || has("TD attributes")
        || has("SERVTD_EXT")
        || has("SEPT_VE_DISABLE")
        || has("MR service TD")
    {
        return TdxError::TdAttributes { reason: reason() };
    }
    TdxError::Dcap { message: reason() }
}
