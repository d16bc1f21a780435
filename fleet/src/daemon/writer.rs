//! Storing rounds: every target hands its finished rounds to one writer, which stores what
//! waits in one transaction at most every `linger` (one commit per batch, not per round: with
//! thousands of targets the commits, each rewriting the same index pages, would cost more than
//! the probing). While the database refuses writes (locked, disk full) rounds wait in memory,
//! in order, up to a bound, and the batch is retried.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, warn};

use crate::metrics::{ProberMetrics, TargetLabels};
use crate::store::{RoundRecord, SampleRecord, Store};
use locus_prober::identity::ProberIdentity;

/// A finished round and its samples.
pub(crate) type Round = (RoundRecord, Vec<SampleRecord>);

/// The session key a target showed on connecting (the `targets` table keeps the latest).
#[derive(Debug, Clone)]
pub(crate) struct KeySeen {
    pub(crate) prober: String,
    pub(crate) target: String,
    pub(crate) address: String,
    pub(crate) claim: String,
    pub(crate) spki: String,
    pub(crate) at_unix_ns: i64,
}

/// What targets hand to the writer.
#[expect(
    clippy::large_enum_variant,
    reason = "rounds are nearly every message; boxing each would add an allocation per round"
)]
pub(crate) enum Write {
    Round(Round),
    Key(KeySeen),
}

/// Most samples kept in all (a sample is 24 bytes): bounds memory when thousands of targets
/// wait at once (2 M samples are ~55 h of one target at 1 Hz, or 200 s of 10 000).
pub(crate) const MAX_PENDING_SAMPLES: usize = 2_000_000;

/// Most rounds per transaction.
const BATCH: usize = 2_000;

/// Wait before retrying a batch the database refused.
const RETRY_AFTER: Duration = Duration::from_millis(250);

/// Longest wait between a round's end and its commit.
const MAX_LINGER: Duration = Duration::from_secs(1);

/// How long rounds gather before a commit for rounds of `round` length: at most a second, and
/// at most half a round, so that a crash loses at most each target's last round.
pub(crate) fn linger_for(round: Duration) -> Duration {
    MAX_LINGER.min(round / 2)
}

/// The writer task; rounds go in through [`Writer::sender`].
pub(crate) struct Writer {
    tx: mpsc::UnboundedSender<Write>,
    linger_ns: Arc<AtomicU64>,
    finish: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Writer {
    /// `max_pending`: most rounds kept per target while the database refuses writes
    /// (`db_max_pending_rounds`); beyond it the target's oldest go.
    pub(crate) fn start(
        store: Arc<Mutex<Store>>,
        metrics: ProberMetrics,
        linger: Duration,
        max_pending: usize,
        identity: Option<Arc<ProberIdentity>>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (finish, finishing) = oneshot::channel();
        let linger_ns = Arc::new(AtomicU64::new(linger.as_nanos() as u64));
        let task = tokio::spawn(run(
            store,
            metrics,
            linger_ns.clone(),
            max_pending,
            identity,
            rx,
            finishing,
        ));
        Self {
            tx,
            linger_ns,
            finish,
            task,
        }
    }

    /// Changes the linger (after a reload changed the round length).
    pub(crate) fn set_linger(&self, linger: Duration) {
        self.linger_ns
            .store(linger.as_nanos() as u64, Ordering::Relaxed);
    }

    pub(crate) fn sender(&self) -> mpsc::UnboundedSender<Write> {
        self.tx.clone()
    }

    /// Stores what waits (once more; what the database still refuses is dropped and counted)
    /// and returns. Call once no target sends any more.
    pub(crate) async fn finish(self) {
        let _ = self.finish.send(());
        let _ = self.task.await;
    }
}

/// Rounds waiting to be stored, oldest first, with the counts that bound them.
struct Pending {
    max_per_target: usize,
    max_samples: usize,
    queue: VecDeque<Round>,
    /// The latest key of each target not stored yet.
    keys: HashMap<String, KeySeen>,
    per_target: HashMap<String, usize>,
    samples: usize,
    dropped: u64,
}

impl Pending {
    fn new(max_per_target: usize, max_samples: usize) -> Self {
        Self {
            max_per_target,
            max_samples,
            queue: VecDeque::new(),
            keys: HashMap::new(),
            per_target: HashMap::new(),
            samples: 0,
            dropped: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.keys.is_empty()
    }

    fn add(&mut self, w: Write, metrics: &ProberMetrics) {
        match w {
            Write::Round(r) => self.push(r, metrics),
            Write::Key(k) => {
                self.keys.insert(k.target.clone(), k);
            }
        }
    }

    fn push(&mut self, round: Round, metrics: &ProberMetrics) {
        let target = round.0.target.clone();
        if self.per_target.get(&target).copied().unwrap_or(0) >= self.max_per_target {
            if let Some(i) = self.queue.iter().position(|(r, _)| r.target == target) {
                self.drop_at(i, metrics);
            }
        }
        self.samples += round.1.len();
        *self.per_target.entry(target).or_default() += 1;
        self.queue.push_back(round);
        while self.samples > self.max_samples && self.queue.len() > 1 {
            self.drop_at(0, metrics);
        }
    }

    fn drop_at(&mut self, i: usize, metrics: &ProberMetrics) {
        let Some(round) = self.queue.remove(i) else {
            return;
        };
        self.forget(&round);
        self.dropped += 1;
        metrics.rounds_dropped.inc();
        // One line per thousand: a fleet's worth of drops must not flood the log.
        if self.dropped % 1000 == 1 {
            error!(
                target = %round.0.target,
                dropped = self.dropped,
                "the database refuses writes and the buffer is full ({} rounds per target, {} \
                 samples in all): dropped the oldest unstored round",
                self.max_per_target,
                self.max_samples
            );
        }
    }

    fn forget(&mut self, (r, samples): &Round) {
        self.samples -= samples.len();
        if let Some(n) = self.per_target.get_mut(&r.target) {
            *n -= 1;
            if *n == 0 {
                self.per_target.remove(&r.target);
            }
        }
    }

    fn take_batch(&mut self) -> (Vec<KeySeen>, Vec<Round>) {
        let n = self.queue.len().min(BATCH);
        let batch: Vec<Round> = self.queue.drain(..n).collect();
        for round in &batch {
            self.forget(round);
        }
        (self.keys.drain().map(|(_, k)| k).collect(), batch)
    }

    /// Returns refused keys (unless a newer one came) and rounds (to the front, in order).
    fn put_back(&mut self, keys: Vec<KeySeen>, batch: Vec<Round>) {
        for k in keys {
            self.keys.entry(k.target.clone()).or_insert(k);
        }
        for round in batch.into_iter().rev() {
            self.samples += round.1.len();
            *self.per_target.entry(round.0.target.clone()).or_default() += 1;
            self.queue.push_front(round);
        }
    }
}

async fn run(
    store: Arc<Mutex<Store>>,
    metrics: ProberMetrics,
    linger_ns: Arc<AtomicU64>,
    max_pending: usize,
    identity: Option<Arc<ProberIdentity>>,
    mut rx: mpsc::UnboundedReceiver<Write>,
    mut finish: oneshot::Receiver<()>,
) {
    let mut pending = Pending::new(max_pending, MAX_PENDING_SAMPLES);
    // The first round after a quiet spell is stored at once; later ones gather for `linger`.
    let mut next_attempt = Instant::now();
    loop {
        let due = (!pending.is_empty()).then_some(next_attempt);
        tokio::select! {
            r = rx.recv() => match r {
                Some(w) => pending.add(w, &metrics),
                None => break,
            },
            _ = &mut finish => break,
            _ = async {
                match due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                while let Ok(w) = rx.try_recv() {
                    pending.add(w, &metrics);
                }
                let linger = Duration::from_nanos(linger_ns.load(Ordering::Relaxed));
                next_attempt = if !store_batch(&store, &metrics, identity.as_ref(), &mut pending).await {
                    Instant::now() + RETRY_AFTER.max(linger)
                } else if pending.queue.len() >= BATCH {
                    Instant::now()
                } else {
                    Instant::now() + linger
                };
            }
        }
    }
    while let Ok(w) = rx.try_recv() {
        pending.add(w, &metrics);
    }
    while !pending.is_empty() {
        if !store_batch(&store, &metrics, identity.as_ref(), &mut pending).await {
            break;
        }
    }
    if !pending.queue.is_empty() {
        error!(
            "{} rounds could not be stored before stopping",
            pending.queue.len()
        );
        metrics.rounds_dropped.inc_by(pending.queue.len() as u64);
    }
}

/// Stores the waiting keys and the oldest rounds; on refusal puts them back and returns false.
async fn store_batch(
    store: &Arc<Mutex<Store>>,
    metrics: &ProberMetrics,
    identity: Option<&Arc<ProberIdentity>>,
    pending: &mut Pending,
) -> bool {
    let (keys, mut batch) = pending.take_batch();
    let s = store.clone();
    let identity = identity.cloned();
    let res = tokio::task::spawn_blocking(move || {
        // Signed off the probing thread; a round put back after a refusal keeps its seal.
        if let Some(id) = &identity {
            for (r, samples) in batch.iter_mut().filter(|(r, _)| r.seal.is_none()) {
                crate::integrity::seal_round(id, r, samples);
            }
        }
        let mut store = s.lock().unwrap_or_else(|p| p.into_inner());
        let r = keys
            .iter()
            .try_for_each(|k| {
                store.upsert_target(
                    &k.prober,
                    &k.target,
                    &k.address,
                    &k.claim,
                    Some(&k.spki),
                    k.at_unix_ns,
                )
            })
            .and_then(|()| store.insert_rounds(&batch));
        (keys, batch, r)
    })
    .await;
    match res {
        Ok((_, batch, Ok(()))) => {
            for (r, _) in &batch {
                // Counted once stored. A removed target's series stays removed.
                if let Some(c) = metrics.rounds.get(&labels_of(r)) {
                    c.inc();
                }
            }
            true
        }
        Ok((keys, batch, Err(e))) => {
            metrics.store_errors.inc();
            warn!(
                "the database refused {} rounds ({} wait in memory, at most {} per \
                 target); retrying: {e}",
                batch.len(),
                batch.len() + pending.queue.len(),
                pending.max_per_target
            );
            pending.put_back(keys, batch);
            false
        }
        // The blocking task panicked: the batch is gone with it.
        Err(e) => {
            metrics.store_errors.inc();
            error!("storing rounds failed: {e}");
            false
        }
    }
}

fn labels_of(r: &RoundRecord) -> TargetLabels {
    TargetLabels::new(&r.prober, &r.target, &r.address, &r.claim)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(target: &str, samples: usize) -> Round {
        let r = RoundRecord {
            prober: "p".into(),
            target: target.into(),
            claim: "c".into(),
            address: "127.0.0.1:1".into(),
            spki: None,
            started_unix_ns: 0,
            duration_ns: 0,
            sent: samples as u64,
            answered: samples as u64,
            lost: 0,
            late: 0,
            out_of_order: 0,
            violations: 0,
            min_rtt_ns: None,
            p50_rtt_ns: None,
            p99_rtt_ns: None,
            min_eff_rtt_ns: None,
            inside_p50_ns: None,
            error: None,
            seal: None,
        };
        let s = SampleRecord {
            sent_unix_ns: 0,
            rtt_ns: 1,
            inside_ns: 0,
        };
        (r, vec![s; samples])
    }

    #[test]
    fn linger_is_at_most_a_second_and_half_a_round() {
        assert_eq!(linger_for(Duration::from_secs(60)), Duration::from_secs(1));
        assert_eq!(
            linger_for(Duration::from_millis(100)),
            Duration::from_millis(50)
        );
    }

    #[test]
    fn the_bound_drops_a_targets_oldest_round_only() {
        let metrics = ProberMetrics::new(&mut Default::default());
        let mut p = Pending::new(10, 1_000);
        p.push(round("b", 1), &metrics);
        for k in 0..12 {
            let mut r = round("a", 1);
            r.0.started_unix_ns = k as i64;
            p.push(r, &metrics);
        }
        assert_eq!(p.dropped, 2);
        assert_eq!(metrics.rounds_dropped.get(), 2);
        assert_eq!(p.per_target["a"], 10);
        // b's round stayed; a's two oldest went.
        assert_eq!(p.queue[0].0.target, "b");
        assert_eq!(p.queue[1].0.started_unix_ns, 2);
        let (keys, batch) = p.take_batch();
        assert_eq!((keys.len(), batch.len()), (0, 11));
        assert!(p.queue.is_empty() && p.per_target.is_empty() && p.samples == 0);
        p.put_back(keys, batch);
        assert_eq!(p.queue[0].0.target, "b");
        assert_eq!((p.per_target["a"], p.samples), (10, 11));
    }

    #[test]
    fn the_sample_bound_drops_the_oldest_rounds() {
        let metrics = ProberMetrics::new(&mut Default::default());
        let mut p = Pending::new(10, 100);
        let big = 50;
        for t in ["x", "y", "z"] {
            p.push(round(t, big), &metrics);
        }
        assert_eq!(p.dropped, 1);
        assert_eq!(p.queue[0].0.target, "y");
        assert_eq!(p.samples, 2 * big);
    }
}
