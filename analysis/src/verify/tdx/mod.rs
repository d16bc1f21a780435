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
mod verified;

pub use chain_only::verify_without_collateral;
pub use dcap_qvl::QuoteCollateralV3 as Collateral;
pub use error::TdxError;
pub use layout::MAX_QUOTE_LEN;
pub use merkle::{coalesced_report_data, InclusionProof};
pub use root::{RootKind, TrustRoot, INTEL_SGX_ROOT_CA_DER};
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
/// signature, TCB matching, TD attributes). The TCB status is reported, not judged, except
/// `Revoked`, which is an error.
pub fn verify(
    quote: &[u8],
    collateral: &Collateral,
    root: &TrustRoot,
    now_unix: u64,
) -> Result<TdxVerified, TdxError> {
    let (layout, chain) = structural(quote, root)?;

    let proper = quote.get(..layout.end).unwrap_or(quote);
    let report = QuoteVerifier::new(root.der().to_vec())
        .verify(proper, collateral, now_unix)
        .map_err(|e| classify::classify(&format!("{e:#}")))?;
    let pck = pck_extension(&chain)?;
    let mut v = verified(root, layout.version, &report.report, pck)?;
    v.tcb_status = report.status;
    v.advisory_ids = report.advisory_ids;
    v.collateral_checked = true;
    Ok(v)
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
