//! The vocabulary both layers share: a named check and its outcome, as verification
//! (POE) and judgement report them.

use serde::{Deserialize, Serialize};

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckStatus {
    Pass,
    Fail,
    /// Not evaluated (data missing or an earlier finding decided).
    Skip,
}

/// One named check with its outcome and numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub status: CheckStatus,
    pub detail: String,
}
