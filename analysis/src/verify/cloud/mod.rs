//! Cloud providers' own attestation evidence: GCE vTPM attestations (go-tpm-tools
//! `attest.Attestation`) and Azure TDX confidential-VM evidence (TD quote + HCL report + vTPM
//! quote). Pure: the evidence, the expected nonce, the trust roots and the time come in.
//!
//! Every check has its own typed error variant; a report lists each check that ran with its
//! outcome, so a caller can name every failed check, not only the first.

pub mod azure;
mod der;
pub mod gce;
pub mod roots;

use serde::Serialize;

/// Evidence files larger than this are rejected before parsing (real ones are < 64 KiB).
pub const MAX_EVIDENCE_LEN: usize = 1 << 20;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    /// Not run: an earlier check it depends on failed, or the input does not call for it.
    Skip,
}

/// One named check with its outcome; `error` holds the typed failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(bound = "")]
pub struct CheckOutcome<E: NamedCheck> {
    pub check: E::Id,
    pub status: Status,
    pub detail: String,
    #[serde(skip)]
    pub error: Option<E>,
}

/// The checks of one verification, in the order they ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent, bound = "")]
pub struct Checks<E: NamedCheck> {
    items: Vec<CheckOutcome<E>>,
}

/// A typed check failure that knows its check.
pub trait NamedCheck: std::fmt::Display {
    /// The family's check ids; they serialize to the names reports and JSON show.
    type Id: Copy + Eq + std::fmt::Debug + std::fmt::Display + Serialize;

    /// The check that failed.
    fn check(&self) -> Self::Id;
}

impl<E: NamedCheck> Checks<E> {
    fn new() -> Self {
        Self { items: Vec::new() }
    }

    fn pass(&mut self, check: E::Id, detail: impl Into<String>) {
        self.items.push(CheckOutcome {
            check,
            status: Status::Pass,
            detail: detail.into(),
            error: None,
        });
    }

    fn skip(&mut self, check: E::Id, detail: impl Into<String>) {
        self.items.push(CheckOutcome {
            check,
            status: Status::Skip,
            detail: detail.into(),
            error: None,
        });
    }

    fn fail(&mut self, error: E) {
        self.items.push(CheckOutcome {
            check: error.check(),
            status: Status::Fail,
            detail: error.to_string(),
            error: Some(error),
        });
    }

    /// Records `result` as a pass with `detail` or as its error.
    fn record<T>(&mut self, check: E::Id, result: Result<T, E>, detail: &str) -> Option<T> {
        match result {
            Ok(v) => {
                self.pass(check, detail);
                Some(v)
            }
            Err(e) => {
                self.fail(e);
                None
            }
        }
    }

    /// Every outcome, in order.
    pub fn all(&self) -> &[CheckOutcome<E>] {
        &self.items
    }

    /// The typed errors of the failed checks, in order.
    pub fn errors(&self) -> impl Iterator<Item = &E> {
        self.items.iter().filter_map(|c| c.error.as_ref())
    }

    /// The names of the failed checks, each once, in order.
    pub fn failed(&self) -> Vec<E::Id> {
        let mut out: Vec<E::Id> = Vec::new();
        for c in &self.items {
            if c.status == Status::Fail && !out.contains(&c.check) {
                out.push(c.check);
            }
        }
        out
    }

    /// True when no check failed and at least one passed.
    pub fn valid(&self) -> bool {
        self.items.iter().all(|c| c.status != Status::Fail)
            && self.items.iter().any(|c| c.status == Status::Pass)
    }
}
