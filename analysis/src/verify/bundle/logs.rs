//! Event logs: the TCG log replays to the quoted PCRs (`tcg_event_log`), the CCEL to the
//! quote's RTMRs (`ccel_event_log`), and both record the same events (`pcr_rtmr_cross_check`).

use locus_proto::evidence::EvidenceBundle;

use super::quote::TdxPart;
use super::{result, CheckId, EvidenceError, Outcome, Run};
use crate::verify::eventlog::{self, EventLog, EventLogError};
use crate::verify::tpm;

/// PCRs of a TPM 2.0 PC client (PCR 0-23).
const PCR_COUNT: usize = 24;

/// Runs the three event-log checks; `pcrs_trusted`: the vTPM signature and PCR digest passed.
pub(super) fn check(run: &mut Run<'_>, b: &EvidenceBundle, td: &TdxPart, pcrs_trusted: bool) {
    let tcg = (b.tpm.as_ref())
        .and_then(|t| t.event_log.as_ref())
        .map(|l| eventlog::parse(l));
    run.record(CheckId::TcgEventLog, || {
        tcg_log(b, tcg.as_ref(), pcrs_trusted)
    });
    let ccel = (b.tdx.as_ref())
        .and_then(|t| t.ccel.as_ref())
        .map(|c| eventlog::parse(&c.data));
    run.record(CheckId::CcelEventLog, || ccel_log(ccel.as_ref(), td));
    run.record(CheckId::PcrRtmrCrossCheck, || {
        let (Some(Ok(t)), Some(Ok(c))) = (&tcg, &ccel) else {
            return Outcome::Skipped("needs both a TCG event log and a CCEL".into());
        };
        result(eventlog::cross_check(t, c).map_err(Into::into))
    });
}

/// `tcg_event_log`: the log's SHA-256 bank replays to every carried PCR.
fn tcg_log(
    b: &EvidenceBundle,
    log: Option<&Result<EventLog, EventLogError>>,
    pcrs_trusted: bool,
) -> Outcome {
    let Some(log) = log else {
        return Outcome::Skipped("the bundle has no TCG event log".into());
    };
    let log = match log {
        Ok(l) => l,
        Err(e) => return Outcome::Fail(e.clone().into()),
    };
    let Some(t) = &b.tpm else {
        return Outcome::Skipped("no vTPM quote".into());
    };
    let Some(replayed) = log.replay(eventlog::ALG_SHA256, PCR_COUNT) else {
        return Outcome::Fail(EvidenceError::Missing("a SHA-256 bank in the log"));
    };
    for p in t.pcrs.iter().filter(|p| p.alg == tpm::ALG_SHA256) {
        let Some(r) = replayed.get(usize::from(p.index)) else {
            return Outcome::Fail(EvidenceError::PcrIndexOutOfRange {
                index: p.index,
                max: (PCR_COUNT - 1) as u8,
            });
        };
        if *r != p.digest {
            return Outcome::Fail(EvidenceError::ReplayMismatch {
                register: format!("PCR{}", p.index),
                replayed: hex::encode(r),
                quoted: hex::encode(&p.digest),
            });
        }
    }
    if pcrs_trusted {
        Outcome::Pass
    } else {
        Outcome::Fail(EvidenceError::Dependency(CheckId::PcrDigest))
    }
}

/// `ccel_event_log`: the CCEL replays to the quote's RTMRs.
fn ccel_log(log: Option<&Result<EventLog, EventLogError>>, td: &TdxPart) -> Outcome {
    let Some(log) = log else {
        return Outcome::Skipped("the bundle has no CCEL".into());
    };
    let log = match log {
        Ok(l) => l,
        Err(e) => return Outcome::Fail(e.clone().into()),
    };
    let Some(f) = &td.fields else {
        return Outcome::Fail(EvidenceError::Missing("a TDX quote"));
    };
    for (i, (r, q)) in log.replay_rtmrs().iter().zip(&f.rtmrs).enumerate() {
        if r != q {
            return Outcome::Fail(EvidenceError::ReplayMismatch {
                register: format!("RTMR{i}"),
                replayed: hex::encode(r),
                quoted: hex::encode(q),
            });
        }
    }
    if td.checked {
        Outcome::Pass
    } else {
        Outcome::Skipped(format!("CCEL replays to the RTMRs{}", td.unverified_note()))
    }
}
