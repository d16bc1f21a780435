//! TCB acceptance: which converged TCB statuses a verifier accepts and, for a platform it does
//! not accept, which component is behind the collateral's up-to-date level and since when.
//!
//! dcap-qvl matches the TCB level and converges the status; it rejects only `Revoked`. The rest
//! of the policy (`OutOfDate` and the configuration statuses) is decided here.

use dcap_qvl::tcb_info::{SvnComponent, TcbInfo};
use dcap_qvl::{QeIdentity, QuoteClaims};
use serde::Serialize;

pub use dcap_qvl::TcbStatus;

use super::error::TdxError;
use super::verified::TdxVerified;

/// The statuses accepted unless a policy says otherwise: the platform is at its latest TCB, or
/// needs only software hardening the TD's own code can apply. `OutOfDate` (a TCB recovery the
/// platform has not installed) and the `Configuration*` statuses are refused.
pub const DEFAULT_ACCEPT_TCB: [TcbStatus; 2] = [TcbStatus::UpToDate, TcbStatus::SWHardeningNeeded];

/// A TCB status by its Intel name (`UpToDate`, `OutOfDate`, `SWHardeningNeeded`, ...).
pub fn parse_tcb_status(name: &str) -> Result<TcbStatus, String> {
    serde_json::from_value(serde_json::Value::String(name.trim().to_owned()))
        .map_err(|_| format!("unknown TCB status {name:?} (Intel names, e.g. UpToDate, OutOfDate, SWHardeningNeeded, ConfigurationNeeded)"))
}

/// One security version number below what the collateral's up-to-date level requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SvnBehind {
    /// `SGX component i` (CPUSVN byte i of the PCK certificate), `PCESVN`, `TDX component i`
    /// (TEE_TCB_SVN byte i), `TDX module ISVSVN` or `QE ISVSVN`.
    pub component: String,
    pub have: u16,
    pub need: u16,
}

/// How the quote's TCB compares with the collateral's up-to-date levels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TcbDetail {
    /// The components below the nearest up-to-date level (empty when none is behind or the
    /// collateral lists no up-to-date level).
    pub behind: Vec<SvnBehind>,
    /// The `tcbDate` of the level the platform matched.
    pub matched_tcb_date: Option<String>,
    /// The `tcbDate` of the up-to-date level the platform falls short of: behind since then.
    pub up_to_date_tcb_date: Option<String>,
}

/// The components the quote has below the collateral's nearest `UpToDate` levels.
pub(crate) fn detail(claims: &QuoteClaims, tcb_info: &str, qe_identity: &str) -> TcbDetail {
    let mut d = TcbDetail {
        matched_tcb_date: Some(claims.platform.tcb_level.tcb_date.clone()),
        ..TcbDetail::default()
    };
    // An up-to-date platform matched an up-to-date level: nothing is behind (and the TCB info
    // need not be parsed again on the common path).
    if claims.tcb.status == TcbStatus::UpToDate {
        return d;
    }
    let tee_tcb_svn = match &claims.report {
        dcap_qvl::quote::Report::TD10(r) => Some(r.tee_tcb_svn),
        dcap_qvl::quote::Report::TD15(r) => Some(r.base.tee_tcb_svn),
        dcap_qvl::quote::Report::TD15Ex(r) => Some(r.base.base.tee_tcb_svn),
        dcap_qvl::quote::Report::SgxEnclave(_) => None,
    };
    // The collateral already verified; a parse failure here only leaves the detail empty.
    if let Ok(info) = serde_json::from_str::<TcbInfo>(tcb_info) {
        let pck = &claims.platform.pck;
        // Of the up-to-date levels, the one the platform is nearest to.
        let nearest = info
            .tcb_levels
            .iter()
            .filter(|l| l.tcb_status == TcbStatus::UpToDate)
            .filter_map(|l| {
                let short = l
                    .shortfalls(&pck.cpu_svn, pck.pce_svn, tee_tcb_svn.as_ref())
                    .ok()?;
                Some((short, l.tcb_date.clone()))
            })
            .min_by_key(|(short, _)| short.len());
        if let Some((short, date)) = nearest {
            if !short.is_empty() {
                d.up_to_date_tcb_date = Some(date);
            }
            d.behind.extend(short.into_iter().map(|s| SvnBehind {
                component: component_name(s.component),
                have: s.have,
                need: s.needs,
            }));
        }
        let module = tee_tcb_svn.and_then(|svn| Some((info.tdx_module_identity(&svn).ok()??, svn)));
        if let Some((identity, svn)) = module {
            let up = identity
                .tcb_levels
                .iter()
                .find(|l| l.tcb_status == TcbStatus::UpToDate);
            if let Some(s) = up.and_then(|l| l.shortfall(&svn)) {
                d.up_to_date_tcb_date
                    .get_or_insert_with(|| up.map(|l| l.tcb_date.clone()).unwrap_or_default());
                d.behind.push(SvnBehind {
                    component: component_name(s.component),
                    have: s.have,
                    need: s.needs,
                });
            }
        }
    }
    if let Ok(qe) = serde_json::from_str::<QeIdentity>(qe_identity) {
        let have = claims.qe.report.isv_svn;
        let up = qe
            .tcb_levels
            .iter()
            .filter(|l| l.tcb_status == TcbStatus::UpToDate)
            .min_by_key(|l| l.tcb.isvsvn);
        if let Some(l) = up.filter(|l| have < l.tcb.isvsvn) {
            d.up_to_date_tcb_date
                .get_or_insert_with(|| l.tcb_date.clone());
            d.behind.push(SvnBehind {
                component: "QE ISVSVN".into(),
                have,
                need: l.tcb.isvsvn,
            });
        }
    }
    d
}

fn component_name(c: SvnComponent) -> String {
    match c {
        SvnComponent::Sgx(i) => format!("SGX component {i} (CPUSVN[{i}])"),
        SvnComponent::Tdx(i) => format!("TDX component {i} (TEE_TCB_SVN[{i}])"),
        SvnComponent::PceSvn => "PCESVN".into(),
        SvnComponent::TdxModuleIsvSvn => "TDX module ISVSVN (TEE_TCB_SVN[0])".into(),
    }
}

/// `Ok` when `v`'s converged TCB status is in `accept`; otherwise
/// [`TdxError::TcbStatusNotAccepted`] naming the components behind, since which `tcbDate`, and
/// the advisories. A quote verified without collateral has no status and is not accepted.
pub fn check_tcb(v: &TdxVerified, accept: &[TcbStatus]) -> Result<(), TdxError> {
    let status = parse_tcb_status(&v.tcb_status).ok();
    if status.is_some_and(|s| accept.contains(&s)) {
        return Ok(());
    }
    let d = v.tcb_detail.clone().unwrap_or_default();
    Err(TdxError::TcbStatusNotAccepted {
        status: v.tcb_status.clone(),
        accepted: accept.iter().map(ToString::to_string).collect(),
        behind: d.behind,
        since: d.up_to_date_tcb_date.or(d.matched_tcb_date),
        advisory_ids: v.advisory_ids.clone(),
    })
}

/// `have 3, need 4` lists for the error message.
pub(crate) fn behind_text(behind: &[SvnBehind]) -> String {
    if behind.is_empty() {
        return "no component below an up-to-date level of the collateral".into();
    }
    behind
        .iter()
        .map(|b| format!("{} have {} need {}", b.component, b.have, b.need))
        .collect::<Vec<_>>()
        .join(", ")
}
