//! Batched anchor measurements: evidence requests that arrive together share one measurement
//! of their anchors, its ClientHello randoms derived from the Merkle root over their nonces
//! ([`locus_anchors::measure_batch`], `docs/binding.md`, "Batched anchor measurements").
//!
//! Like TDX coalescing: measurements of one anchor selection are serialized, and the requests
//! that arrive while one is in flight are measured together next. A lone request is measured
//! for its nonce alone, exactly as without batching. The measurement runs in its own task, so
//! a requester that gives up does not cancel the others' anchors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use locus_anchors::{AnchorReport, AnchorSpec, MeasureOptions};
use locus_proto::Nonce;
use tokio::sync::oneshot;
use tracing::debug;

/// The measurement was lost: its task panicked or the runtime shut down.
#[derive(Debug, thiserror::Error)]
#[error("the batched anchor measurement did not complete")]
pub struct BatchLost;

struct Waiter {
    nonce: Nonce,
    tx: oneshot::Sender<AnchorReport>,
}

#[derive(Default)]
struct Selection {
    waiting: Vec<Waiter>,
    in_flight: bool,
}

/// Shares anchor measurements between concurrent evidence requests of the same selection.
#[derive(Debug)]
pub(crate) struct AnchorBatcher {
    max_batch: usize,
    /// Keyed by the selected anchors' names, in request order: only requests asking for the
    /// same anchors in the same order can share a report.
    selections: Mutex<HashMap<Vec<String>, Selection>>,
}

impl std::fmt::Debug for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selection")
            .field("waiting", &self.waiting.len())
            .field("in_flight", &self.in_flight)
            .finish()
    }
}

/// Ends a selection's flight even when the measurement task panics, and starts the next.
struct Flight {
    batcher: Arc<AnchorBatcher>,
    key: Vec<String>,
    specs: Vec<AnchorSpec>,
    options: MeasureOptions,
}

impl Drop for Flight {
    fn drop(&mut self) {
        if let Some(s) = self.batcher.lock().get_mut(&self.key) {
            s.in_flight = false;
        }
        AnchorBatcher::kick(&self.batcher, &self.key, &self.specs, &self.options);
    }
}

impl AnchorBatcher {
    /// Up to `max_batch` (at least 1) requests share a measurement.
    pub(crate) fn new(max_batch: usize) -> Self {
        Self {
            max_batch: max_batch.max(1),
            selections: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Vec<String>, Selection>> {
        // Every update leaves the map consistent, so a poisoned lock is usable.
        self.selections.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The anchor report for `nonce`: measured with the requests waiting beside it once the
    /// measurement in flight for the same anchors (if any) is done.
    pub(crate) async fn measure(
        self: &Arc<Self>,
        specs: Vec<AnchorSpec>,
        nonce: Nonce,
        options: &MeasureOptions,
    ) -> Result<AnchorReport, BatchLost> {
        let key: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        let (tx, rx) = oneshot::channel();
        self.lock()
            .entry(key.clone())
            .or_default()
            .waiting
            .push(Waiter { nonce, tx });
        Self::kick(self, &key, &specs, options);
        rx.await.map_err(|_| BatchLost)
    }

    /// Starts the next measurement of `key` unless one is in flight or nobody waits. A request
    /// that arrives during a flight finds it in flight; the flight's end kicks again, and sees
    /// that request, since both touch `waiting` and `in_flight` under the one lock.
    fn kick(this: &Arc<Self>, key: &[String], specs: &[AnchorSpec], options: &MeasureOptions) {
        let batch: Vec<Waiter> = {
            let mut map = this.lock();
            let Some(s) = map.get_mut(key) else { return };
            if s.in_flight {
                return;
            }
            if s.waiting.is_empty() {
                map.remove(key);
                return;
            }
            s.in_flight = true;
            let take = s.waiting.len().min(this.max_batch);
            s.waiting.drain(..take).collect()
        };
        let flight = Flight {
            batcher: Arc::clone(this),
            key: key.to_vec(),
            specs: specs.to_vec(),
            options: options.clone(),
        };
        // Outside a runtime (or as it shuts down) nothing is measured: the dropped senders
        // tell each waiter its batch was lost.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let nonces: Vec<&[u8]> = batch.iter().map(|w| &w.nonce[..]).collect();
            let reports =
                locus_anchors::measure_batch(&flight.specs, &nonces, &flight.options).await;
            debug!(size = batch.len(), "anchor batch measured");
            for (w, r) in batch.into_iter().zip(reports) {
                // A requester that gave up dropped its receiver: nothing to deliver.
                let _ = w.tx.send(r);
            }
            drop(flight);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use locus_anchors::{AnchorServer, ClockOptions, LabCa};

    #[tokio::test]
    async fn concurrent_requests_share_one_measurement_and_a_lone_one_does_not() {
        let ca = LabCa::generate().unwrap();
        let sni = "fra.anchor.lab";
        let server = AnchorServer::start("127.79.0.1:0".parse().unwrap(), &ca, sni)
            .await
            .unwrap();
        let spec = AnchorSpec::lab("fra", server.local_addr(), sni, &ca).unwrap();
        let options = MeasureOptions {
            round_trips: 2,
            clock: ClockOptions::lab(),
            ..MeasureOptions::default()
        };
        let batcher = Arc::new(AnchorBatcher::new(64));

        let lone = batcher
            .measure(vec![spec.clone()], [1; 32], &options)
            .await
            .unwrap();
        assert_eq!((lone.version, lone.batch.is_none()), (2, true));

        let reports = futures_join(&batcher, &spec, &options, 6).await;
        // The first request may lead alone; everyone who arrived meanwhile shares the next.
        let batched: Vec<_> = reports.iter().filter(|r| r.batch.is_some()).collect();
        assert!(batched.len() >= 5, "{} of 6 batched", batched.len());
        let first = &batched[0];
        for r in &batched {
            assert_eq!(r.version, locus_proto::anchor::ANCHOR_REPORT_BATCHED);
            assert_eq!(r.anchors, first.anchors, "one measurement, shared");
            assert_eq!(
                r.batch.as_ref().unwrap().root,
                first.batch.as_ref().unwrap().root
            );
        }
        for (i, r) in reports.iter().enumerate() {
            assert_eq!(
                r.nonce,
                vec![10 + i as u8; 32],
                "each report keeps its own nonce"
            );
        }
        assert!(batcher.lock().is_empty(), "no selection left behind");
    }

    async fn futures_join(
        batcher: &Arc<AnchorBatcher>,
        spec: &AnchorSpec,
        options: &MeasureOptions,
        n: u8,
    ) -> Vec<AnchorReport> {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let (b, s, o) = (Arc::clone(batcher), spec.clone(), options.clone());
                tokio::spawn(async move { b.measure(vec![s], [10 + i; 32], &o).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap().unwrap());
        }
        out
    }
}
