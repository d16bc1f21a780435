//! TDX quote verification: dcap-qvl's DCAP checks plus locus's stricter structural checks.
//!
//! Pure: the quote, its collateral, the trust root and the verification time come in; no clock,
//! file or network is touched.

mod chain_only;
mod classify;
mod error;
mod layout;
mod merkle;
mod root;
mod tcb;
mod verified;

pub use chain_only::verify_without_collateral;
pub use dcap_qvl::QuoteCollateralV3 as Collateral;
pub use error::TdxError;
pub use layout::MAX_QUOTE_LEN;
pub use merkle::{coalesced_report_data, InclusionProof};
pub use root::{RootKind, TrustRoot, INTEL_SGX_ROOT_CA_DER};
pub use tcb::{check_tcb, parse_tcb_status, SvnBehind, TcbDetail, TcbStatus, DEFAULT_ACCEPT_TCB};
pub use verified::TdxVerified;

use dcap_qvl::quote::Report;
use dcap_qvl::verify::QuoteVerifier;

/// Decode collateral from dcap-qvl's JSON form (`QuoteCollateralV3`, byte fields as hex).
pub fn collateral_from_json(json: &[u8]) -> Result<Collateral, TdxError> {
    serde_json::from_slice(json).map_err(|e| TdxError::CollateralMalformed {
        reason: format!("collateral JSON: {e}"),
    })
}

/// Verify `quote` with `collateral` under `root` at `now_unix` (seconds since the epoch).
///
/// Checks, in order: layout (header, lengths at offsets 632 and 764 in v4, zero-only trailing
/// bytes), the root certificate embedded in the quote's PCK chain against `root`, then dcap-qvl's
/// full DCAP verification (collateral signatures and dates, CRLs, PCK chain, QE report, quote
/// signature, TCB matching, TD attributes: debug and migratable TDs fail by name). The TCB
/// status is reported, not judged, except `Revoked`, which is an error: [`check_tcb`] judges it
/// against a policy's accepted statuses.
pub fn verify(
    quote: &[u8],
    collateral: &Collateral,
    root: &TrustRoot,
    now_unix: u64,
) -> Result<TdxVerified, TdxError> {
    let (layout, chain) = structural(quote, root)?;

    let proper = quote.get(..layout.end).unwrap_or(quote);
    // dcap-qvl's claims carry what its one-shot report drops: the matched TCB levels, the PCK's
    // CPUSVN/PCESVN and the collateral's earliest expiry. Its checks are the same; the TCB
    // policy is ours (`check_tcb`), so dcap-qvl's own policy stage is `claims_only`.
    let claims = QuoteVerifier::new(root.der().to_vec())
        .verify_with_policy(
            proper,
            collateral,
            now_unix,
            &dcap_qvl::QuotePolicy::claims_only(now_unix),
        )
        .map_err(|e| {
            with_details(
                classify::classify(&format!("{e:#}")),
                collateral,
                proper,
                now_unix,
            )
        })?;
    let pck = pck_extension(&chain)?;
    let mut v = verified(root, layout.version, &claims.report, pck)?;
    v.tcb_status = claims.tcb.status.to_string();
    v.advisory_ids = claims.tcb.advisory_ids.clone();
    v.collateral_checked = true;
    v.collateral_expires_unix = Some(claims.earliest_expiration_date);
    v.tcb_detail = Some(tcb::detail(
        &claims,
        &collateral.tcb_info,
        &collateral.qe_identity,
    ));
    Ok(v)
}

/// dcap-qvl's messages do not say which date or attribute failed: add it from the inputs.
fn with_details(e: TdxError, collateral: &Collateral, quote: &[u8], now_unix: u64) -> TdxError {
    let tcb = || serde_json::from_str::<dcap_qvl::TcbInfo>(&collateral.tcb_info).ok();
    let qe = || serde_json::from_str::<dcap_qvl::QeIdentity>(&collateral.qe_identity).ok();
    // TD attributes: 8 bytes at offset 120 of the TD report body, after the 48-byte header.
    let attributes = || {
        quote
            .get(48 + 120..48 + 128)
            .map(hex::encode)
            .unwrap_or_default()
    };
    match e {
        TdxError::TcbInfoNotYetValid { .. } => TdxError::TcbInfoNotYetValid {
            issue_date: tcb().map(|t| t.issue_date).unwrap_or_default(),
        },
        TdxError::TcbInfoExpired { .. } => TdxError::TcbInfoExpired {
            next_update: tcb().map(|t| t.next_update).unwrap_or_default(),
        },
        TdxError::QeIdentityNotYetValid { .. } => TdxError::QeIdentityNotYetValid {
            issue_date: qe().map(|q| q.issue_date).unwrap_or_default(),
        },
        TdxError::QeIdentityExpired { .. } => TdxError::QeIdentityExpired {
            next_update: qe().map(|q| q.next_update).unwrap_or_default(),
        },
        TdxError::TdDebug { .. } => TdxError::TdDebug {
            attributes: attributes(),
        },
        TdxError::TdMigratable { .. } => TdxError::TdMigratable {
            attributes: attributes(),
        },
        TdxError::CrlExpired { reason, .. } => {
            let (crl, next_update) = expired_crl(collateral, now_unix).unwrap_or_default();
            TdxError::CrlExpired {
                crl,
                next_update,
                reason,
            }
        }
        other => other,
    }
}

/// The first collateral CRL whose nextUpdate is before `now_unix`, with that date.
fn expired_crl(collateral: &Collateral, now_unix: u64) -> Option<(String, String)> {
    use x509_parser::prelude::FromDer;
    use x509_parser::revocation_list::CertificateRevocationList;
    let crls = [
        ("root CA CRL", &collateral.root_ca_crl),
        ("PCK CRL", &collateral.pck_crl),
    ];
    crls.into_iter().find_map(|(name, der)| {
        let (_, crl) = CertificateRevocationList::from_der(der).ok()?;
        let next = crl.next_update()?;
        (next.timestamp() < i64::try_from(now_unix).unwrap_or(i64::MAX))
            .then(|| (name.to_string(), next.to_string()))
    })
}

fn pck_extension(chain: &[Vec<u8>]) -> Result<dcap_qvl::intel::PckExtension, TdxError> {
    let leaf = chain.first().map(Vec::as_slice).unwrap_or_default();
    dcap_qvl::intel::parse_pck_extension(leaf)
        .map_err(|e| classify::classify(&format!("Intel extension: {e:#}")))
}

/// The result fields of a verified quote; TCB status "Unknown" until collateral says more.
fn verified(
    root: &TrustRoot,
    version: u16,
    report: &Report,
    pck: dcap_qvl::intel::PckExtension,
) -> Result<TdxVerified, TdxError> {
    let td = match report {
        Report::TD10(r) => r,
        Report::TD15(r) => &r.base,
        Report::TD15Ex(r) => &r.base.base,
        Report::SgxEnclave(_) => {
            return Err(TdxError::HeaderTeeType { found: 0 });
        }
    };
    Ok(TdxVerified {
        root: root.kind(),
        quote_version: version,
        collateral_checked: false,
        tcb_status: "Unknown".to_owned(),
        advisory_ids: Vec::new(),
        tcb_detail: None,
        collateral_expires_unix: None,
        tee_tcb_svn: td.tee_tcb_svn,
        mr_td: td.mr_td,
        mr_config_id: td.mr_config_id,
        mr_owner: td.mr_owner,
        mr_owner_config: td.mr_owner_config,
        rtmr: [td.rt_mr0, td.rt_mr1, td.rt_mr2, td.rt_mr3],
        report_data: td.report_data,
        td_attributes: td.td_attributes,
        fmspc: pck.fmspc,
        pce_id: pck.pce_id,
        ppid: pck.ppid,
        piid: pck.platform_instance_id,
    })
}

/// The FMSPC in a quote's PCK certificate, to pick collateral from a cache. Unverified: use
/// only to look collateral up, never as a result.
pub fn quote_fmspc(quote: &[u8]) -> Result<[u8; 6], TdxError> {
    quote_pck_extension(quote).map(|ext| ext.fmspc)
}

/// The platform instance ID (PIID) in a quote's PCK certificate, when it has one
/// (Platform-CA certificates do). Unverified: use it to issue or find an endorsement; a
/// verdict takes the PIID of a verified quote ([`TdxVerified::piid`]).
pub fn quote_piid(quote: &[u8]) -> Result<Option<Vec<u8>>, TdxError> {
    quote_pck_extension(quote).map(|ext| ext.platform_instance_id)
}

fn quote_pck_extension(quote: &[u8]) -> Result<dcap_qvl::intel::PckExtension, TdxError> {
    let layout = layout::parse(quote)?;
    let (at, len) = layout.pck_chain;
    let pem_chain = quote.get(at..at + len).unwrap_or_default();
    let chain = pem::parse_many(pem_chain).map_err(|e| TdxError::PckChainEncoding {
        reason: e.to_string(),
    })?;
    let leaf = chain.first().ok_or(TdxError::PckChainEncoding {
        reason: "no certificate".into(),
    })?;
    dcap_qvl::intel::parse_pck_extension(leaf.contents()).map_err(|e| TdxError::CertificateChain {
        reason: format!("{e:#}"),
    })
}

/// locus's own checks, before dcap-qvl: the layout and the embedded root. Returns the layout
/// and the PCK chain (DER, leaf first, root last).
pub(crate) fn structural(
    quote: &[u8],
    root: &TrustRoot,
) -> Result<(layout::Layout, Vec<Vec<u8>>), TdxError> {
    let layout = layout::parse(quote)?;
    let (chain_at, chain_len) = layout.pck_chain;
    // The layout parse checked that the chain lies inside `quote`.
    let chain_pem = quote
        .get(chain_at..chain_at + chain_len)
        .ok_or(TdxError::Truncated {
            need: (chain_at + chain_len) as u64,
            have: quote.len(),
        })?;
    let chain = pem::parse_many(chain_pem).map_err(|e| TdxError::PckChainEncoding {
        reason: e.to_string(),
    })?;
    let Some(embedded_root) = chain.last() else {
        return Err(TdxError::PckChainEncoding {
            reason: "no certificate".into(),
        });
    };
    if chain.len() < 2 || embedded_root.contents() != root.der() {
        return Err(TdxError::EmbeddedRootMismatch {
            expected: root::sha256_hex(root.der()),
            found: root::sha256_hex(embedded_root.contents()),
        });
    }
    Ok((
        layout,
        chain.into_iter().map(pem::Pem::into_contents).collect(),
    ))
}

/// The bare dcap-qvl verification, for benchmarks that compare locus against it.
pub fn verify_dcap_only(
    quote: &[u8],
    collateral: &Collateral,
    root: &TrustRoot,
    now_unix: u64,
) -> Result<String, TdxError> {
    QuoteVerifier::new(root.der().to_vec())
        .verify(quote, collateral, now_unix)
        .map(|r| r.status)
        .map_err(|e| classify::classify(&format!("{e:#}")))
}

#[cfg(test)]
mod tests;
