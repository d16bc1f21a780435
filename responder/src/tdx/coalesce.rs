//! Coalescing: concurrent evidence requests share one TDX quote.
//!
//! Quote generation is slow and serialized on real hardware (~39 ms on a cloud TD). While one
//! quote is in flight, new requests wait; when it returns, one of them quotes for all of them
//! at once: REPORTDATA = Merkle root of their 64-byte binding values, and each requester gets
//! the quote with its inclusion proof. Verifiers recompute the root with
//! `locus_analysis::verify::tdx::coalesced_report_data`. A lone request is quoted with its own value
//! as REPORTDATA (empty proof), exactly as without coalescing.
//!
//! Tree: [`locus_proto::merkle`] (RFC 9162 §2.1 shape, SHA-512, domain-separated leaves and nodes).
//! The echo path never touches this: only evidence requests wait here.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use locus_proto::merkle::batch_root;

use super::{QuoteError, TdxQuoter};

/// A quote shared by a batch, with one requester's place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoalescedQuote {
    pub quote: Vec<u8>,
    /// Index of this requester's value in the batch.
    pub index: u64,
    /// Number of values in the batch.
    pub size: u64,
    /// Sibling hashes from the leaf up (empty for a batch of one).
    pub path: Vec<[u8; 64]>,
}

struct State {
    waiting: Vec<(u64, [u8; 64])>,
    next_ticket: u64,
    in_flight: bool,
    done: HashMap<u64, Result<CoalescedQuote, String>>,
}

/// Serializes quote requests and coalesces those that arrive while a quote is in flight.
pub struct CoalescingQuoter {
    inner: Arc<dyn TdxQuoter>,
    state: Mutex<State>,
    cv: Condvar,
    max_batch: usize,
}

impl std::fmt::Debug for CoalescingQuoter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoalescingQuoter")
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

/// Resets the in-flight flag and fails the batch if the inner quoter panics.
struct Flight<'a> {
    q: &'a CoalescingQuoter,
    tickets: Option<Vec<u64>>,
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        if let Some(tickets) = self.tickets.take() {
            let mut st = self.q.lock();
            st.in_flight = false;
            for t in tickets {
                st.done.insert(t, Err("the TDX quoter panicked".into()));
            }
            self.q.cv.notify_all();
        }
    }
}

impl CoalescingQuoter {
    /// Coalesce up to `max_batch` (at least 1) requests per quote.
    pub fn new(inner: Arc<dyn TdxQuoter>, max_batch: usize) -> Self {
        Self {
            inner,
            state: Mutex::new(State {
                waiting: Vec::new(),
                next_ticket: 0,
                in_flight: false,
                done: HashMap::new(),
            }),
            cv: Condvar::new(),
            max_batch: max_batch.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // State stays consistent across a panic (see `Flight`), so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    /// The quoter this one shares (for quotes that must not be batched).
    pub fn inner(&self) -> &dyn TdxQuoter {
        self.inner.as_ref()
    }

    /// A quote whose REPORTDATA includes `value`, with the proof of inclusion. Blocks while
    /// another quote is in flight, then shares the next quote with everyone who waited.
    pub fn quote_coalesced(&self, value: [u8; 64]) -> Result<CoalescedQuote, QuoteError> {
        let mut st = self.lock();
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.waiting.push((ticket, value));
        loop {
            if let Some(r) = st.done.remove(&ticket) {
                return r.map_err(|reason| QuoteError::Coalesced { reason });
            }
            if st.in_flight {
                st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // Lead the next batch (it holds our value unless more than max_batch wait ahead).
            let take = st.waiting.len().min(self.max_batch);
            let batch: Vec<_> = st.waiting.drain(..take).collect();
            st.in_flight = true;
            drop(st);

            let tickets: Vec<u64> = batch.iter().map(|(t, _)| *t).collect();
            let mut flight = Flight {
                q: self,
                tickets: Some(tickets.clone()),
            };
            let values: Vec<[u8; 64]> = batch.iter().map(|(_, v)| *v).collect();
            // Never empty (the leader's own value is waiting); if it were, `flight` resets.
            let (root, paths) = batch_root(&values).ok_or_else(|| QuoteError::Coalesced {
                reason: "an empty batch".into(),
            })?;
            let result = self.inner.quote(root);
            flight.tickets = None;

            st = self.lock();
            st.in_flight = false;
            let size = tickets.len() as u64;
            let mut own_error = None;
            for ((index, t), path) in tickets.iter().enumerate().zip(paths) {
                let r = match &result {
                    Ok(q) => Ok(CoalescedQuote {
                        quote: q.clone(),
                        index: index as u64,
                        size,
                        path,
                    }),
                    Err(e) => Err(e.to_string()),
                };
                st.done.insert(*t, r);
            }
            if let Err(e) = result {
                // The leader gets the typed error; followers its text.
                if st.done.remove(&ticket).is_some() {
                    own_error = Some(e);
                }
            }
            self.cv.notify_all();
            if let Some(e) = own_error {
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::mpsc;

    /// Holds its first quote until released, so the test controls who arrives meanwhile.
    struct Gate {
        calls: AtomicU32,
        started: Mutex<mpsc::Sender<()>>,
        release: Mutex<mpsc::Receiver<()>>,
    }

    impl TdxQuoter for Gate {
        fn quote(&self, report_data: [u8; 64]) -> Result<Vec<u8>, QuoteError> {
            if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
                self.started.lock().unwrap().send(()).unwrap();
                self.release.lock().unwrap().recv().unwrap();
            }
            Ok(report_data.to_vec())
        }
    }

    #[test]
    fn requests_arriving_during_a_quote_share_the_next_one() {
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        let gate = Arc::new(Gate {
            calls: AtomicU32::new(0),
            started: Mutex::new(started_tx),
            release: Mutex::new(release_rx),
        });
        let q = Arc::new(CoalescingQuoter::new(gate.clone(), 64));

        let first = {
            let q = Arc::clone(&q);
            std::thread::spawn(move || q.quote_coalesced([0xAA; 64]).unwrap())
        };
        started_rx.recv().unwrap();
        let others: Vec<_> = (1u8..=4)
            .map(|i| {
                let q = Arc::clone(&q);
                std::thread::spawn(move || ([i; 64], q.quote_coalesced([i; 64]).unwrap()))
            })
            .collect();
        while q.waiting() < 4 {
            std::thread::yield_now();
        }
        release_tx.send(()).unwrap();

        let first = first.join().unwrap();
        assert_eq!((first.size, first.quote.as_slice()), (1, &[0xAA; 64][..]));
        let results: Vec<_> = others.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(
            gate.calls.load(Ordering::SeqCst),
            2,
            "one quote for the four waiters"
        );
        let shared = results[0].1.quote.clone();
        let mut indices: Vec<u64> = results.iter().map(|(_, r)| r.index).collect();
        indices.sort_unstable();
        assert_eq!(indices, [0, 1, 2, 3]);
        for (v, r) in results {
            assert_eq!((r.size, &r.quote), (4, &shared));
            let proof = locus_analysis::verify::tdx::InclusionProof {
                index: r.index,
                size: r.size,
                path: r.path,
            };
            let root = locus_analysis::verify::tdx::coalesced_report_data(&v, &proof).unwrap();
            assert_eq!(
                root.to_vec(),
                shared,
                "the verifier recomputes the quoted root"
            );
        }
    }

    #[test]
    fn a_lone_request_quotes_its_own_value() {
        let gate_free = Arc::new(
            crate::tdx::lab::LabTdx::generate_with(&crate::tdx::lab::LabOptions::at(1_780_000_000))
                .unwrap(),
        );
        let q = CoalescingQuoter::new(gate_free.quoter(), 8);
        let r = q.quote_coalesced([3; 64]).unwrap();
        assert_eq!((r.size, r.path.len()), (1, 0));
        assert_eq!(&r.quote[568..632], &[3; 64]);
    }
}
