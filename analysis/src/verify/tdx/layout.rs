//! Strict structural parse of a TDX quote (v4, v5): every length checked before use.
//!
//! dcap-qvl 0.7.1 decodes the same layout but tolerates a wrong signature-data length, a wrong
//! outer certification-data type and arbitrary trailing bytes; these checks close those gaps.

use super::error::TdxError;

/// No real quote comes near this; GCE hands quotes over in 8000-byte buffers.
pub const MAX_QUOTE_LEN: usize = 64 * 1024;

pub(crate) const HEADER_LEN: usize = 48;
pub(crate) const TD_REPORT10_LEN: usize = 584;
const TEE_TYPE_TDX: u32 = 0x81;
const AK_TYPE_ECDSA_P256: u16 = 2;
const CERT_TYPE_QE_REPORT: u16 = 6;
const CERT_TYPE_PCK_CHAIN: u16 = 5;
const QE_REPORT_LEN: usize = 384;
const SIG_LEN: usize = 64;
const AK_LEN: usize = 64;

/// Offset of the TD report body in a quote of `q`'s version, read unchecked: v5 puts a 6-byte
/// body descriptor (type, size) after the header, v4 (and anything else, which later checks
/// refuse) has the body right after it. For code that reads raw fields; [`parse`] checks.
pub(crate) fn body_offset(q: &[u8]) -> usize {
    match q.get(..2) {
        Some([5, 0]) => HEADER_LEN + 6,
        _ => HEADER_LEN,
    }
}

/// Where the parts of a well-formed quote lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) version: u16,
    /// Offset of the TD report body.
    pub(crate) body: usize,
    /// Offset of the signature-data length field (632 in v4).
    pub(crate) sig_len_field: usize,
    /// One past the last byte of the quote proper; zeros may follow.
    pub(crate) end: usize,
    /// Offset and length of the PEM PCK chain.
    pub(crate) pck_chain: (usize, usize),
}

fn bytes<const N: usize>(q: &[u8], at: usize) -> Result<[u8; N], TdxError> {
    at.checked_add(N)
        .and_then(|end| q.get(at..end))
        .and_then(|s| s.try_into().ok())
        .ok_or(TdxError::Truncated {
            need: at as u64 + N as u64,
            have: q.len(),
        })
}

fn u16_at(q: &[u8], at: usize) -> Result<u16, TdxError> {
    bytes::<2>(q, at).map(u16::from_le_bytes)
}

fn u32_at(q: &[u8], at: usize) -> Result<u32, TdxError> {
    bytes::<4>(q, at).map(u32::from_le_bytes)
}

fn need(q: &[u8], end: u64) -> Result<(), TdxError> {
    if end > q.len() as u64 {
        return Err(TdxError::Truncated {
            need: end,
            have: q.len(),
        });
    }
    Ok(())
}

/// Parse and check the layout of `q`. Never panics, never allocates.
pub(crate) fn parse(q: &[u8]) -> Result<Layout, TdxError> {
    if q.len() > MAX_QUOTE_LEN {
        return Err(TdxError::Oversized {
            have: q.len(),
            max: MAX_QUOTE_LEN,
        });
    }
    need(q, HEADER_LEN as u64)?;
    let version = u16_at(q, 0)?;
    if version != 4 && version != 5 {
        return Err(TdxError::HeaderVersion { found: version });
    }
    let key_type = u16_at(q, 2)?;
    if key_type != AK_TYPE_ECDSA_P256 {
        return Err(TdxError::HeaderKeyType { found: key_type });
    }
    let tee_type = u32_at(q, 4)?;
    if tee_type != TEE_TYPE_TDX {
        return Err(TdxError::HeaderTeeType { found: tee_type });
    }
    let vendor = bytes::<16>(q, 12)?;
    if vendor != dcap_qvl::INTEL_QE_VENDOR_ID {
        return Err(TdxError::HeaderQeVendor {
            found: hex::encode(vendor),
        });
    }

    let (body, body_len) = if version == 4 {
        (HEADER_LEN, TD_REPORT10_LEN)
    } else {
        let body_type = u16_at(q, HEADER_LEN)?;
        let size = u32_at(q, HEADER_LEN + 2)?;
        let expected = match body_type {
            2 => TD_REPORT10_LEN,
            3 => 648,
            4 => 885,
            _ => return Err(TdxError::BodyDescriptor { body_type, size }),
        };
        if size as usize != expected {
            return Err(TdxError::BodyDescriptor { body_type, size });
        }
        (HEADER_LEN + 6, expected)
    };

    let sig_len_field = body + body_len;
    let declared = u32_at(q, sig_len_field)?;
    let auth = sig_len_field + 4;
    let cert_type_at = auth + SIG_LEN + AK_LEN;
    let cert_type = u16_at(q, cert_type_at)?;
    if cert_type != CERT_TYPE_QE_REPORT {
        return Err(TdxError::CertificationDataType {
            offset: cert_type_at,
            found: cert_type,
            expected: CERT_TYPE_QE_REPORT,
        });
    }
    let cert_size_at = cert_type_at + 2;
    let cert_size = u32_at(q, cert_size_at)?;
    let expected_sig = (SIG_LEN + AK_LEN + 6) as u64 + u64::from(cert_size);
    if u64::from(declared) != expected_sig {
        return Err(TdxError::SignatureDataLength {
            offset: sig_len_field,
            declared,
            expected: expected_sig,
        });
    }

    let qe = cert_size_at + 4;
    let auth_len_at = qe + QE_REPORT_LEN + SIG_LEN;
    let auth_len = usize::from(u16_at(q, auth_len_at)?);
    let inner_type_at = auth_len_at + 2 + auth_len;
    let inner_type = u16_at(q, inner_type_at)?;
    if inner_type != CERT_TYPE_PCK_CHAIN {
        return Err(TdxError::CertificationDataType {
            offset: inner_type_at,
            found: inner_type,
            expected: CERT_TYPE_PCK_CHAIN,
        });
    }
    let inner_size = u32_at(q, inner_type_at + 2)?;
    let expected_cert = (QE_REPORT_LEN + SIG_LEN + 2 + auth_len + 6) as u64 + u64::from(inner_size);
    if u64::from(cert_size) != expected_cert {
        return Err(TdxError::CertificationDataLength {
            offset: cert_size_at,
            declared: cert_size,
            expected: expected_cert,
        });
    }

    let end = auth as u64 + u64::from(declared);
    need(q, end)?;
    // `end` fits: it is at most q.len().
    let end = end as usize;
    if let Some(pos) = q.get(end..).and_then(|t| t.iter().position(|&b| b != 0)) {
        return Err(TdxError::TrailingBytes {
            end,
            first: end + pos,
        });
    }
    let chain_at = inner_type_at + 6;
    Ok(Layout {
        version,
        body,
        sig_len_field,
        end,
        pck_chain: (chain_at, inner_size as usize),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_inputs_are_truncated_not_panics() {
        for len in 0..HEADER_LEN {
            let q = vec![0u8; len];
            assert!(
                matches!(parse(&q), Err(TdxError::Truncated { .. })),
                "{len}"
            );
        }
    }

    #[test]
    fn oversized_is_refused_before_parsing() {
        let q = vec![0u8; MAX_QUOTE_LEN + 1];
        assert_eq!(
            parse(&q),
            Err(TdxError::Oversized {
                have: MAX_QUOTE_LEN + 1,
                max: MAX_QUOTE_LEN
            })
        );
    }
}
