//! The TDX part of a bundle: the quote (`tdx_quote`) and the TD report fields the other
//! checks read from it, verified or not.

use locus_proto::evidence::EvidenceBundle;

use super::{CheckId, EvidencePolicy, Outcome, Run};
use crate::verify::tdx::{self, TdxVerified};

/// TD report fields needed by the binding and the reference checks, read from a quote at the
/// v4/v5 TD report offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdFields {
    pub td_attributes: [u8; 8],
    pub xfam: [u8; 8],
    pub mrtd: [u8; 48],
    pub mr_config_id: [u8; 48],
    pub rtmrs: [[u8; 48]; 4],
    pub report_data: [u8; 64],
}

/// What the TDX quote gives the later checks.
pub(super) struct TdxPart {
    /// The verified quote's fields, when `tdx_quote` passed.
    pub(super) verified: Option<TdxVerified>,
    /// The TD report fields: verified, or read at fixed offsets from an unchecked quote.
    pub(super) fields: Option<TdFields>,
    /// Whether `tdx_quote` passed, so that `fields` can be trusted.
    pub(super) checked: bool,
}

impl TdxPart {
    /// Appended to a skip reason when a check could only compare unverified fields.
    pub(super) fn unverified_note(&self) -> &'static str {
        if self.checked {
            ""
        } else {
            " (TDX quote signature not verified)"
        }
    }
}

/// `tdx_quote`: verified through DCAP when collateral is configured.
pub(super) fn check(
    run: &mut Run<'_>,
    b: &EvidenceBundle,
    policy: &EvidencePolicy,
    now_unix: u64,
) -> TdxPart {
    let mut verified = None;
    run.record(CheckId::TdxQuote, || {
        let Some(quote) = &b.tdx else {
            return Outcome::Skipped("the bundle has no TDX quote".into());
        };
        let Some(collateral) = &policy.tdx_collateral else {
            return Outcome::Skipped("no TDX collateral configured".into());
        };
        match tdx::verify(&quote.quote, collateral, &policy.tdx_root, now_unix) {
            Ok(v) => {
                verified = Some(v);
                Outcome::Pass
            }
            Err(e) => Outcome::Fail(e.into()),
        }
    });
    run.record(CheckId::TdxTcb, || match &verified {
        None => Outcome::Skipped("no verified TDX quote".into()),
        Some(v) => match tdx::check_tcb(v, &policy.accept_tcb) {
            Ok(()) => Outcome::Pass,
            Err(e) => Outcome::Fail(e.into()),
        },
    });
    let fields = match (&verified, &b.tdx) {
        (Some(v), Some(t)) => Some(TdFields {
            td_attributes: v.td_attributes,
            // XFAM is not among dcap-qvl's results: read it at its offset in the body the
            // verified signature covers.
            xfam: fields_unverified(&t.quote).map_or([0; 8], |f| f.xfam),
            mrtd: v.mr_td,
            mr_config_id: v.mr_config_id,
            rtmrs: v.rtmr,
            report_data: v.report_data,
        }),
        _ => b.tdx.as_ref().and_then(|t| fields_unverified(&t.quote)),
    };
    TdxPart {
        checked: run.passed(CheckId::TdxQuote),
        verified,
        fields,
    }
}

/// Offsets of the TD report body inside a quote (48-byte header; body layout of TDX 1.0:
/// TD attributes at +120, XFAM at +128, MRTD at +136, MRCONFIGID at +184, RTMR0-3 at +328,
/// REPORTDATA at +520). Unverified: checks that rely on these fields without a verified quote
/// say so.
pub fn fields_unverified(quote: &[u8]) -> Option<TdFields> {
    const BODY: usize = 48;
    let get = |at: usize, n: usize| quote.get(BODY + at..BODY + at + n);
    let mut f = TdFields {
        td_attributes: [0; 8],
        xfam: [0; 8],
        mrtd: [0; 48],
        mr_config_id: [0; 48],
        rtmrs: [[0; 48]; 4],
        report_data: [0; 64],
    };
    f.td_attributes.copy_from_slice(get(120, 8)?);
    f.xfam.copy_from_slice(get(128, 8)?);
    f.mrtd.copy_from_slice(get(136, 48)?);
    f.mr_config_id.copy_from_slice(get(184, 48)?);
    for (i, r) in f.rtmrs.iter_mut().enumerate() {
        r.copy_from_slice(get(328 + 48 * i, 48)?);
    }
    f.report_data.copy_from_slice(get(520, 64)?);
    Some(f)
}
