//! The verification report: every check with its requirement and outcome.

use super::{CheckId, EvidenceError, Requirement};
use crate::verify::tdx::TdxVerified;

/// The outcome of one check.
#[derive(Debug, Clone)]
pub enum Outcome {
    Pass,
    Fail(EvidenceError),
    Skipped(String),
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub check: CheckId,
    pub requirement: Requirement,
    pub outcome: Outcome,
}

impl CheckResult {
    /// Whether this line makes the bundle invalid: a failure, or a required check skipped.
    pub fn invalidates(&self) -> bool {
        match &self.outcome {
            Outcome::Pass => false,
            Outcome::Fail(_) => true,
            Outcome::Skipped(_) => self.requirement == Requirement::Required,
        }
    }
}

/// Every check with its outcome.
#[derive(Debug, Clone)]
pub struct EvidenceReport {
    pub checks: Vec<CheckResult>,
    /// The verified TDX quote's fields, when `tdx_quote` passed.
    pub tdx: Option<TdxVerified>,
    /// The policy did not pin the TD's code (`allow_unpinned_code`): a verdict fed by this
    /// report is at most `inconclusive`.
    pub unpinned_code: bool,
}

impl EvidenceReport {
    pub fn valid(&self) -> bool {
        !self.checks.iter().any(CheckResult::invalidates)
    }

    /// The checks that make the bundle invalid.
    pub fn failed(&self) -> Vec<CheckId> {
        self.checks
            .iter()
            .filter(|c| c.invalidates())
            .map(|c| c.check)
            .collect()
    }

    pub fn outcome(&self, check: CheckId) -> Option<&Outcome> {
        self.checks
            .iter()
            .find(|c| c.check == check)
            .map(|c| &c.outcome)
    }

    /// The error of a failed check.
    pub fn error(&self, check: CheckId) -> Option<&EvidenceError> {
        match self.outcome(check)? {
            Outcome::Fail(e) => Some(e),
            _ => None,
        }
    }
}
