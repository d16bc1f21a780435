//! The report's JSON form (`locus verify evidence --json`).

use super::{EvidenceReport, Outcome};

impl EvidenceReport {
    /// JSON form for `--json`: `{valid, checks: [{check, requirement, status, detail}], tdx}`.
    pub fn to_json(&self) -> serde_json::Value {
        let checks: Vec<serde_json::Value> = self
            .checks
            .iter()
            .map(|c| {
                let (status, detail) = match &c.outcome {
                    Outcome::Pass => ("pass", None),
                    Outcome::Fail(e) => ("fail", Some(e.to_string())),
                    Outcome::Skipped(r) => ("skipped", Some(r.clone())),
                };
                serde_json::json!({
                    "check": c.check.name(),
                    "requirement": c.requirement,
                    "status": status,
                    "invalidates": c.invalidates(),
                    "detail": detail,
                })
            })
            .collect();
        serde_json::json!({
            "valid": self.valid(),
            "failed": self.failed().iter().map(|c| c.name()).collect::<Vec<_>>(),
            "checks": checks,
            "tdx": self.tdx,
            "unpinned_code": self.unpinned_code,
        })
    }
}
