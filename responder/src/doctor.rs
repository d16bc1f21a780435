//! `locus responder doctor`: what an operator runs first on a new machine. Tries each
//! configured backend once (a TDX quote over random REPORTDATA, the vTPM's AK source, a
//! TPM2_Quote, the vTPM's command time, EK certificates, each event log parsed, each anchor
//! timed), collects one whole bundle and verifies it under a policy; a row per check.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use locus_analysis::verify::bundle::{
    verify_bundle, EvidencePolicy, NonceRecord, Outcome, VerifyInputs,
};
use locus_analysis::verify::eventlog;
use locus_proto::messages::Include;
use locus_proto::transcript::Transcript;
use serde::Serialize;

use crate::config::{Backends, OpenedTdx, ResponderConfig};
use crate::session_key::SessionKey;
use crate::tpm::Vtpm;

#[derive(Debug, Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Fail,
    Skip,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub check: String,
    pub status: Status,
    pub detail: String,
}

/// The rows of one doctor run, in order.
#[derive(Debug, Default, Serialize)]
pub struct Rows(pub Vec<Row>);

impl Rows {
    fn push(&mut self, check: impl Into<String>, status: Status, detail: impl Into<String>) {
        self.0.push(Row {
            check: check.into(),
            status,
            detail: detail.into(),
        });
    }
    fn ok(&mut self, check: &str, detail: impl Into<String>) {
        self.push(check, Status::Ok, detail);
    }
    fn fail(&mut self, check: &str, detail: impl std::fmt::Display) {
        self.push(check, Status::Fail, detail.to_string());
    }
    fn skip(&mut self, check: &str, detail: impl Into<String>) {
        self.push(check, Status::Skip, detail);
    }
    /// The checks that failed: empty when a bundle can be produced (and, with a policy, is
    /// valid under it).
    pub fn failed(&self) -> Vec<&str> {
        self.0
            .iter()
            .filter(|r| r.status == Status::Fail)
            .map(|r| r.check.as_str())
            .collect()
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Tries each backend `cfg` configures once, collects one whole bundle and, with `policy`
/// (its name for the rows), verifies it as of `now_unix`. Blocking: runs its own runtime.
pub fn run(
    cfg: &ResponderConfig,
    policy: Option<(&EvidencePolicy, &str)>,
    now_unix: u64,
) -> std::io::Result<Rows> {
    let mut rows = Rows::default();
    let tdx = check_tdx(cfg, &mut rows);
    let vtpm = check_vtpm(cfg, &mut rows);
    let ek_ca_certs = match cfg.ek_ca_certs() {
        Ok(c) if c.is_empty() => {
            rows.skip("ek_ca_certs", "none configured");
            Some(c)
        }
        Ok(c) => {
            rows.ok("ek_ca_certs", format!("{} certificate(s)", c.len()));
            Some(c)
        }
        Err(e) => {
            rows.fail("ek_ca_certs", e);
            None
        }
    };
    let logs = match cfg.event_logs() {
        Ok(l) => {
            check_log(&mut rows, "event_log.tcg", &l.tcg);
            check_log(&mut rows, "event_log.ccel", &l.ccel_data);
            Some(l)
        }
        Err(e) => {
            rows.fail("event_logs", e);
            None
        }
    };
    let anchors = match cfg.anchors() {
        Ok(None) => {
            rows.skip("anchors", "no [anchors] table");
            Some(None)
        }
        Ok(Some(a)) => Some(Some(a)),
        Err(e) => {
            rows.fail("anchors", e);
            None
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if let Some(Some(a)) = &anchors {
        let report = rt.block_on(locus_anchors::measure_all(
            &a.anchors,
            &rand::random::<[u8; 32]>(),
            &a.options,
        ));
        for r in report.anchors {
            let check = format!("anchor.{}", r.name);
            match (&r.failure, r.min_rtt_ns) {
                (None, Some(ns)) => rows.ok(
                    &check,
                    format!(
                        "{}: min RTT {:.3} ms over {} round trips",
                        r.target,
                        ns as f64 / 1e6,
                        r.round_trips_ns.len()
                    ),
                ),
                (f, _) => rows.fail(&check, format!("{}: {f:?}", r.target)),
            }
        }
    }

    // One whole bundle, as a prober would ask for it, when every backend opened.
    if let (Some((tdx, lab)), Some(vtpm), Some(ek_ca_certs), Some(logs), Some(anchors)) =
        (tdx, vtpm, ek_ca_certs, logs, anchors)
    {
        let include = Include {
            tdx: tdx.is_some(),
            tpm: vtpm.is_some(),
            anchors: anchors
                .iter()
                .flat_map(|a| a.anchors.iter().map(|s| s.name.clone()))
                .collect(),
        };
        let vtpm_handle = vtpm.clone();
        let source = Backends {
            tdx,
            tdx_kind: cfg.tdx.backend,
            lab,
            coalesce_max_batch: 1,
            vtpm,
            ek_ca_certs,
            logs,
            anchors,
        }
        .into_source();
        let key = SessionKey::generate().map_err(std::io::Error::other)?;
        let nonce: [u8; 32] = rand::random();
        let transcript = Transcript::new().sign(key.signing_key());
        let t = Instant::now();
        // As a prober asks: the nonce sealed to the certified EK for the AK, recovered by
        // TPM2_ActivateCredential (what `ak_ek_binding` checks).
        let sealed = vtpm_handle.as_ref().and_then(|v| {
            let ak = v.ak_public().ok()?;
            let certs = v.ek_certs().ok()?;
            locus_proto::credential::seal_to_first_ek(&ak, &certs, &nonce)
        });
        match &sealed {
            None if vtpm_handle.is_some() => rows.skip(
                "ek_activate",
                "no EK certificate to seal a nonce to: ak_ek_binding needs a provider AK \
                 certificate",
            ),
            None => {}
            Some(s) => match rt.block_on(source.unseal(s)) {
                Ok(n) if n == nonce => rows.ok(
                    "ek_activate",
                    format!(
                        "TPM2_ActivateCredential recovered a nonce sealed to the EK at NV {:#010x} \
                         for the AK",
                        s.ek_nv_index
                    ),
                ),
                Ok(_) => rows.fail("ek_activate", "the recovered nonce is another"),
                Err(e) => rows.fail("ek_activate", e),
            },
        }
        match rt.block_on(source.collect(&nonce, key.spki_der(), transcript, &include)) {
            Err(e) => rows.fail("bundle", e),
            Ok(mut bundle) => {
                if let Some(t) = bundle.tpm.as_mut() {
                    t.sealed_nonce = sealed;
                }
                rows.ok(
                    "bundle",
                    format!(
                        "{} bytes in {:.1} ms (tdx: {}, vtpm: {}, anchors: {})",
                        bundle.to_cbor().len(),
                        ms(t),
                        bundle.tdx.is_some(),
                        bundle.tpm.is_some(),
                        include.anchors.len()
                    ),
                );
                if let Some((policy, policy_name)) = policy {
                    let now = now_unix;
                    let inputs = VerifyInputs {
                        now_unix: now,
                        nonce_record: Some(NonceRecord {
                            nonce: nonce.to_vec(),
                            issuer: policy.nonce_issuer.clone(),
                            issued_at: now,
                            used: false,
                        }),
                        peer_spki: Some(key.spki_der().to_vec()),
                    };
                    let report = verify_bundle(&bundle, policy, &inputs);
                    for c in report.checks.iter().filter(|c| c.invalidates()) {
                        let detail = match &c.outcome {
                            Outcome::Fail(e) => e.to_string(),
                            Outcome::Skipped(r) => {
                                format!("required but not produced: {r}")
                            }
                            Outcome::Pass => String::new(),
                        };
                        rows.fail(&format!("policy.{}", c.check), detail);
                    }
                    if report.valid() {
                        rows.ok("policy", format!("the bundle is valid under {policy_name}"));
                    }
                }
            }
        }
    } else {
        rows.skip("bundle", "not collected: a backend failed above");
        if policy.is_some() {
            rows.fail("policy", "no bundle to check against the policy");
        }
    }
    Ok(rows)
}

/// Opens the TDX backend and takes a quote over random REPORTDATA.
fn check_tdx(cfg: &ResponderConfig, rows: &mut Rows) -> Option<OpenedTdx> {
    let opened = match cfg.open_tdx(Arc::new(crate::tdx::configfs::StdFs)) {
        Ok(o) => o,
        Err(e) => {
            rows.fail("tdx", e);
            return None;
        }
    };
    let Some(q) = &opened.0 else {
        rows.skip("tdx", "tdx.backend = \"none\"");
        return Some(opened);
    };
    let report_data: [u8; 64] = std::array::from_fn(|_| rand::random());
    let t = Instant::now();
    match q.quote(report_data) {
        Err(e) => rows.fail("tdx", e),
        Ok(quote) => {
            let echoed = quote.get(568..632) == Some(&report_data[..]);
            let version = quote.get(..2).map(|v| u16::from_le_bytes([v[0], v[1]]));
            let detail = format!(
                "{:?} backend: quote v{} of {} bytes in {:.1} ms, REPORTDATA {}",
                cfg.tdx.backend,
                version.unwrap_or(0),
                quote.len(),
                ms(t),
                if echoed { "bound" } else { "NOT bound" }
            );
            if echoed {
                rows.ok("tdx", detail);
            } else {
                rows.fail("tdx", detail);
            }
        }
    }
    Some(opened)
}

/// Connects to the vTPM, says which AK it quotes with, quotes, times it, reads EK certificates.
fn check_vtpm(cfg: &ResponderConfig, rows: &mut Rows) -> Option<Option<Arc<Vtpm>>> {
    let vtpm = match cfg.open_vtpm() {
        Ok(Some(v)) => v,
        Ok(None) => {
            rows.skip("vtpm", "no [tpm] table");
            return Some(None);
        }
        Err(e) => {
            rows.fail("vtpm", e);
            return None;
        }
    };
    let provider = match (vtpm.ak_cert(), vtpm.hcl_report([0; 64])) {
        (_, Ok(Some(_))) => "Azure HCL AK (HCL report present)".to_string(),
        (Ok(Some(_)), _) => "GCE AK from the NV template, with its certificate".to_string(),
        (Ok(None), Ok(None)) => "the responder's own AK (no provider AK found)".to_string(),
        (Err(e), _) | (_, Err(e)) => format!("provider detection failed: {e}"),
    };
    rows.ok(
        "vtpm",
        format!(
            "{}: {provider}",
            cfg.tpm.as_ref().map(|t| t.tcti.as_str()).unwrap_or("")
        ),
    );
    match vtpm.quote(&rand::random::<[u8; 32]>()) {
        Ok(q) => {
            let idx: Vec<String> = q.pcrs.iter().map(|p| p.index.to_string()).collect();
            rows.ok(
                "tpm_quote",
                format!(
                    "TPM2_Quote over SHA-256 PCRs {} in {:.1} ms",
                    idx.join(","),
                    q.quote_ns as f64 / 1e6
                ),
            );
        }
        Err(e) => rows.fail("tpm_quote", e),
    }
    match vtpm.cheap_rtt() {
        Ok(r) => rows.ok(
            "vtpm_time",
            format!(
                "fastest in-TD vTPM command {:.1} µs of {} (the Frankenstein baseline `policy \
                 init` records)",
                r.min_ns as f64 / 1e3,
                r.samples
            ),
        ),
        Err(e) => rows.fail("vtpm_time", e),
    }
    match vtpm.ek_certs() {
        Ok(c) if c.is_empty() => rows.skip("ek_cert", "no EK certificate in NV"),
        Ok(c) => {
            let at: Vec<String> = c.iter().map(|e| format!("{:#010x}", e.nv_index)).collect();
            rows.ok(
                "ek_cert",
                format!("EK certificate(s) at NV {}", at.join(", ")),
            );
        }
        Err(e) => rows.fail("ek_cert", e),
    }
    Some(Some(vtpm))
}

fn check_log(rows: &mut Rows, check: &str, path: &Option<PathBuf>) {
    let Some(path) = path else {
        rows.skip(check, "not present");
        return;
    };
    match std::fs::read(path) {
        Err(e) => rows.fail(check, format!("{}: {e}", path.display())),
        Ok(bytes) => match eventlog::parse(&bytes) {
            Ok(log) => rows.ok(
                check,
                format!("{}: {} events", path.display(), log.events.len()),
            ),
            Err(e) => rows.fail(check, format!("{}: {e}", path.display())),
        },
    }
}
