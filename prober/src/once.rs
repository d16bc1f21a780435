//! One-shot probing (`locus prober --target`): connect, one round, and the responder's signed
//! transcript checked against the answers measured.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use crate::requests::request_transcript;
use crate::{connect, run_round, RoundConfig, RoundReport, SpkiPolicy};

/// One target probed once: its round, whether its signed transcript covers exactly the
/// answers measured, or why it could not be probed.
#[derive(Debug, Serialize)]
pub struct TargetResult {
    pub target: SocketAddr,
    /// `pinned` or `learned-on-first-use`.
    pub key: &'static str,
    pub spki: String,
    #[serde(flatten)]
    pub round: Option<RoundReport>,
    /// The responder's signed transcript covers exactly the answers measured.
    pub transcript_verified: Option<bool>,
    pub error: Option<String>,
}

/// Connects to `addr` (from `bind`, the key checked by `policy`), runs one round and checks
/// the responder's transcript of it; failures are recorded in the result, not returned.
pub async fn probe_once(
    addr: SocketAddr,
    bind: SocketAddr,
    policy: SpkiPolicy,
    connect_timeout: Duration,
    cfg: &RoundConfig,
) -> TargetResult {
    let key = match policy {
        SpkiPolicy::Pinned(_) => "pinned",
        SpkiPolicy::TrustOnFirstUse => "learned-on-first-use",
    };
    let mut result = TargetResult {
        target: addr,
        key,
        spki: String::new(),
        round: None,
        transcript_verified: None,
        error: None,
    };
    let target = match connect(addr, bind, policy, connect_timeout).await {
        Ok(t) => t,
        Err(e) => {
            result.error = Some(e.to_string());
            return result;
        }
    };
    result.spki = hex::encode(&target.spki);
    let round = run_round(&target, cfg).await;
    match request_transcript(&target).await {
        Ok(t) => {
            let entries = round.samples.iter().map(|s| (s.seq, s.nonce, s.arrival));
            // Lost answers may have been answered: only an exact match counts as verified.
            result.transcript_verified = Some(
                t.session_spki == target.spki
                    && t.transcript.verify_entries(&target.spki, entries).is_ok(),
            );
        }
        Err(e) => result.error = Some(format!("transcript request failed: {e}")),
    }
    target.conn.close(0u32.into(), b"done");
    result.round = Some(round);
    result
}
