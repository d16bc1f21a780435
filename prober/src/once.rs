//! One-shot probing (`locus prober --target`): connect, one round, and the responder's signed
//! transcript checked against the answers measured; then, when asked (`--evidence-out`), one
//! evidence bundle bound to a fresh nonce.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use locus_proto::evidence::EvidenceBundle;
use locus_proto::messages::Include;
use locus_proto::Nonce;

use crate::requests::{
    prove_key, request_evidence_sealed, request_transcript, RequestError, RequestSigner,
};
use crate::{connect, run_round, RoundConfig, RoundReport, SpkiPolicy};

/// The bundle to ask for after the round.
#[derive(Debug, Clone)]
pub struct EvidenceAsk {
    pub include: Include,
    /// The verifier named in the request and in the nonce ledger.
    pub issuer: String,
    /// Signs the request (the prober's identity key), for responders with
    /// `[access] evidence = "pinned"`.
    pub signer: Option<Arc<dyn RequestSigner>>,
}

/// A bundle fetched after the round: bound to `nonce`, which this prober issued at `issued_at`
/// (unix seconds), for the ledger the verifier reads.
#[derive(Debug)]
pub struct FetchedEvidence {
    pub bundle: EvidenceBundle,
    pub nonce: Nonce,
    pub issued_at: u64,
}

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
    probe_once_then(addr, bind, policy, connect_timeout, cfg, None)
        .await
        .0
}

/// [`probe_once`], then, with `ask`, one bundle bound to a fresh nonce on the same
/// connection (`None` when unreachable or not asked).
pub async fn probe_once_then(
    addr: SocketAddr,
    bind: SocketAddr,
    policy: SpkiPolicy,
    connect_timeout: Duration,
    cfg: &RoundConfig,
    ask: Option<&EvidenceAsk>,
) -> (TargetResult, Option<Result<FetchedEvidence, RequestError>>) {
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
        Ok(t) => match ask.and_then(|a| a.signer.clone()) {
            Some(signer) => t.with_signer(signer),
            None => t,
        },
        Err(e) => {
            result.error = Some(e.to_string());
            return (result, None);
        }
    };
    result.spki = hex::encode(&target.spki);
    // A pinned responder at its connection cap keeps only connections that proved a key.
    if let Err(e) = prove_key(&target).await {
        tracing::debug!(%addr, "key not proved after the handshake: {e}");
    }
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
    let evidence = match ask {
        None => None,
        Some(ask) => {
            let nonce: Nonce = rand::random();
            // A clock before 1970 only makes the nonce look stale to the verifier.
            let issued_at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            // Sealed to the vTPM's certified EK for its AK, as the daemon asks (`ak_ek_binding`).
            let fetched = request_evidence_sealed(
                &target,
                &nonce,
                ask.include.clone(),
                Some(ask.issuer.clone()),
            )
            .await
            .map(|bundle| FetchedEvidence {
                bundle,
                nonce,
                issued_at,
            });
            Some(fetched)
        }
    };
    target.conn.close(0u32.into(), b"done");
    result.round = Some(round);
    (result, evidence)
}
