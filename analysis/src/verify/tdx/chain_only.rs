//! Verification without collateral, for real quotes whose platform has no offline collateral
//! here (the GCE and Azure vectors): layout, embedded root, PCK chain signatures and validity,
//! QE report signature, the QE report's binding of the attestation key, the quote signature and
//! the TD debug bit.
//!
//! Not checked, and reported as unknown (`collateral_checked: false`, TCB status "Unknown"):
//! TCB level, QE identity, TDX module identity, revocation. Never a substitute for [`super::verify`]
//! when collateral exists.

use dcap_qvl::quote::Quote;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::time::ASN1Time;

use super::{pck_extension, structural, verified, TdxError, TdxVerified, TrustRoot};

fn chain_err(reason: impl Into<String>) -> TdxError {
    TdxError::CertificateChain {
        reason: reason.into(),
    }
}

fn p256_key(sec1: &[u8]) -> Result<VerifyingKey, TdxError> {
    VerifyingKey::from_sec1_bytes(sec1).map_err(|e| chain_err(format!("P-256 key: {e}")))
}

fn raw_sig(raw: &[u8]) -> Option<Signature> {
    Signature::from_slice(raw).ok()
}

/// Verify the leaf-to-root chain: each certificate signed by the next, names linked, all valid
/// at `now`, every issuer a CA. The root is the configured one (checked by `structural`).
fn check_chain(chain: &[Vec<u8>], now_unix: u64) -> Result<(), TdxError> {
    let certs = chain
        .iter()
        .map(|der| {
            X509Certificate::from_der(der)
                .map(|(_, c)| c)
                .map_err(|e| chain_err(format!("certificate: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let now = i64::try_from(now_unix)
        .ok()
        .and_then(|t| ASN1Time::from_timestamp(t).ok())
        .ok_or_else(|| chain_err("verification time out of range"))?;
    for (i, cert) in certs.iter().enumerate() {
        if !cert.validity().is_valid_at(now) {
            return Err(TdxError::CertificateValidity {
                reason: format!("certificate {i} ({}) at {now_unix}", cert.subject()),
            });
        }
        let issuer = certs.get(i + 1).unwrap_or(cert);
        if cert.issuer().as_raw() != issuer.subject().as_raw() {
            return Err(TdxError::UnknownIssuer {
                reason: format!("certificate {i} issued by {}", cert.issuer()),
            });
        }
        let is_ca = issuer
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(chain_err(format!("issuer of certificate {i} is not a CA")));
        }
        cert.verify_signature(Some(issuer.public_key()))
            .map_err(|e| chain_err(format!("certificate {i} signature: {e}")))?;
    }
    Ok(())
}

/// Verify `quote` under `root` at `now_unix` without collateral; see the module doc for what
/// that leaves unknown.
pub fn verify_without_collateral(
    quote: &[u8],
    root: &TrustRoot,
    now_unix: u64,
) -> Result<TdxVerified, TdxError> {
    let (layout, chain) = structural(quote, root)?;
    check_chain(&chain, now_unix)?;

    // Offsets inside the signature data; `structural` checked they lie inside the quote.
    let auth = layout.sig_len_field + 4;
    let part = |at: usize, len: usize| quote.get(at..at + len).unwrap_or_default();
    let quote_sig = part(auth, 64);
    let ak = part(auth + 64, 64);
    let qe_report = part(auth + 134, 384);
    let qe_sig = part(auth + 134 + 384, 64);
    let auth_len_at = auth + 134 + 448;
    let auth_len = usize::from(u16::from_le_bytes(
        part(auth_len_at, 2).try_into().unwrap_or_default(),
    ));
    let auth_data = part(auth_len_at + 2, auth_len);

    let (_, leaf) = X509Certificate::from_der(&chain[0])
        .map_err(|e| chain_err(format!("PCK certificate: {e}")))?;
    let pck_key = p256_key(&leaf.public_key().subject_public_key.data)?;
    raw_sig(qe_sig)
        .and_then(|s| pck_key.verify(qe_report, &s).ok())
        .ok_or(TdxError::QeReportSignature)?;

    let mut h = Sha256::new();
    h.update(ak);
    h.update(auth_data);
    if qe_report.get(320..352) != Some(&h.finalize()[..]) {
        return Err(TdxError::QeReportData);
    }

    let mut sec1 = [0x04u8; 65];
    sec1[1..].copy_from_slice(ak);
    let ak_key = VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| TdxError::QeReportData)?;
    raw_sig(quote_sig)
        .and_then(|s| ak_key.verify(part(0, layout.sig_len_field), &s).ok())
        .ok_or(TdxError::QuoteSignature)?;

    let parsed = Quote::parse(part(0, layout.end)).map_err(|e| TdxError::Dcap {
        message: format!("{e:#}"),
    })?;
    let v = verified(root, layout.version, &parsed.report, pck_extension(&chain)?)?;
    // TD attributes as Intel's TDX module ABI defines them (ABI spec 348551, TDATTRIBUTES;
    // dcap-qvl's `TDAttributes::parse` reads the same bits): bit 0 TUD.DEBUG, bit 29
    // SEC.MIGRATABLE.
    let attributes = u64::from_le_bytes(v.td_attributes);
    if attributes & 1 != 0 {
        return Err(TdxError::TdDebug {
            attributes: hex::encode(v.td_attributes),
        });
    }
    if attributes & (1 << 29) != 0 {
        return Err(TdxError::TdMigratable {
            attributes: hex::encode(v.td_attributes),
        });
    }
    // The other TUD bits (profiling): the host can observe such a TD.
    if v.td_attributes[0] != 0 {
        return Err(TdxError::TdAttributes {
            reason: format!("TUD bits {:#04x} set (profiling)", v.td_attributes[0]),
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GCE: &[u8] =
        include_bytes!("../../../../tests/vectors/gce-tdx-ccel/cos-113-tdx-quote.dat");
    const AZURE: &[u8] = include_bytes!("../../../../tests/vectors/azure-tdx-vtpm/td-quote.bin");
    /// 2025-01-01: inside both PCK chains' validity (GCE 2024-07-02.., Azure 2023-09-13..).
    const AT: u64 = 1_735_689_600;

    #[test]
    fn real_quotes_without_collateral_verify_with_unknown_tcb() {
        for (name, q) in [("gce", GCE), ("azure", AZURE)] {
            let v = verify_without_collateral(q, &TrustRoot::IntelSgx, AT)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!v.collateral_checked);
            assert_eq!(v.tcb_status, "Unknown");
            assert_eq!(hex::encode(v.fmspc), "00806f050000", "{name}");
        }
        // GCE's REPORTDATA is its nonce.dat: 64 zero bytes.
        let v = verify_without_collateral(GCE, &TrustRoot::IntelSgx, AT).unwrap();
        assert_eq!(v.report_data, [0; 64]);
    }

    #[test]
    fn tampering_without_collateral_is_still_caught() {
        let cases: [(usize, &str); 5] = [
            (568, "QuoteSignature"),
            (636, "QuoteSignature"),
            (700, "QeReportData"),
            (770 + 64, "QeReportSignature"),
            (1154, "QeReportSignature"),
        ];
        for (at, want) in cases {
            let mut q = GCE.to_vec();
            q[at] ^= 1;
            let err = verify_without_collateral(&q, &TrustRoot::IntelSgx, AT).unwrap_err();
            assert_eq!(err.check(), want, "offset {at}: {err}");
        }
        let err = verify_without_collateral(GCE, &TrustRoot::IntelSgx, 1_600_000_000).unwrap_err();
        assert_eq!(err.check(), "CertificateValidity");
    }
}
