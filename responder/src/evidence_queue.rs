//! The evidence worker: evidence and key requests run on their own thread and runtime, at most
//! `concurrency` at once with at most `capacity` waiting, so that neither their CPU work nor a
//! flood of them delays the echo path, which stays on the server's runtime. A request that
//! finds the queue full is answered `busy` at once.
//!
//! Under `[access] evidence = "pinned"` only proven probers' requests reach it, and its
//! threads (the worker and the blocking threads that take quotes) run at a higher scheduling
//! priority than the rest of the responder ([`EVIDENCE_NICE`]): under a flood the server's
//! runtime is busy with hostile handshakes and datagrams, and honest evidence work should not
//! wait for a CPU behind it. Under `any` anyone's requests run here, so they keep the
//! responder's priority: an evidence flood must not take CPU from the echo path.
//!
//! Work of one pinned key holds at most half the collection slots (at least one) queued and
//! running together, so a hostile or stolen key on many connections cannot keep the raised
//! threads busy alone nor fill the queue, and other probers' work is still taken (REVIEW6 R9).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, Semaphore};
use tracing::warn;

/// One queued piece of evidence work.
pub(crate) type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Why a job was not queued; either way the request is answered `busy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The queue is full (or the worker stopped).
    Full,
    /// The job's key already holds its share of the queue and the running jobs.
    KeyShare,
}

/// Jobs of each pinned key queued or running.
type Held = Arc<Mutex<HashMap<[u8; 32], usize>>>;

/// The sending side of the evidence worker; the worker thread ends when this is dropped.
#[derive(Debug)]
pub(crate) struct EvidenceQueue {
    tx: mpsc::Sender<Job>,
    held: Held,
    /// Jobs one key may hold queued or running together.
    per_key: usize,
}

/// One job's place in its key's share, given back when the job ends or is dropped unrun.
struct Hold {
    held: Held,
    key: [u8; 32],
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

impl EvidenceQueue {
    /// Starts the worker thread; with `raised`, its threads run at [`EVIDENCE_NICE`].
    pub(crate) fn start(
        concurrency: usize,
        capacity: usize,
        raised: bool,
    ) -> std::io::Result<Self> {
        let raise = move || {
            if raised {
                raise_priority();
            }
        };
        let (tx, mut rx) = mpsc::channel::<Job>(capacity.max(1));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("locus-evidence")
            // The blocking threads that take quotes.
            .on_thread_start(raise)
            .build()?;
        let slots = Arc::new(Semaphore::new(concurrency.max(1)));
        std::thread::Builder::new()
            .name("locus-evidence".into())
            .spawn(move || {
                raise();
                runtime.block_on(async move {
                    while let Some(job) = rx.recv().await {
                        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                            break;
                        };
                        tokio::spawn(async move {
                            job.await;
                            drop(slot);
                        });
                    }
                });
            })?;
        Ok(Self {
            tx,
            held: Held::default(),
            per_key: (concurrency / 2).max(1),
        })
    }

    /// Queues `job` of the pinned `key` (`None`: not of a pinned key, under `any`), or says
    /// why not: the queue is full, or `key` holds its share already.
    pub(crate) fn try_submit(&self, key: Option<[u8; 32]>, job: Job) -> Result<(), Refused> {
        let job = match key {
            None => job,
            Some(key) => {
                {
                    let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
                    let n = held.entry(key).or_insert(0);
                    if *n >= self.per_key {
                        return Err(Refused::KeyShare);
                    }
                    *n += 1;
                }
                let hold = Hold {
                    held: Arc::clone(&self.held),
                    key,
                };
                Box::pin(async move {
                    let _hold = hold;
                    job.await;
                })
            }
        };
        // A job given back is dropped here, with its hold.
        self.tx.try_send(job).map_err(|e| {
            if matches!(e, mpsc::error::TrySendError::Closed(_)) {
                warn!("the evidence worker has stopped");
            }
            Refused::Full
        })
    }
}

/// Nice value of the evidence threads: evidence work is scheduled ahead of the server's
/// runtime (nice 0), where hostile handshakes and datagrams are handled. Lowering the nice
/// value needs `CAP_SYS_NICE` (or `RLIMIT_NICE`); without it the threads stay at the
/// process's priority and a warning says so (`deploy/systemd/locus-responder.service` grants
/// it).
pub(crate) const EVIDENCE_NICE: i32 = -10;

/// Moves the calling thread to [`EVIDENCE_NICE`], best effort.
fn raise_priority() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    #[cfg(target_os = "linux")]
    // With a thread id, PRIO_PROCESS sets that thread's nice value only (Linux).
    if let Err(e) =
        rustix::process::setpriority_process(Some(rustix::thread::gettid()), EVIDENCE_NICE)
    {
        WARNED.call_once(|| {
            warn!(
                "evidence threads keep the responder's priority (nice {EVIDENCE_NICE} refused: \
                 {e}); allow it (systemd LimitNICE=-10) so that floods cannot delay evidence"
            );
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The nice value of the calling thread.
    #[cfg(target_os = "linux")]
    fn thread_nice() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn evidence_work_runs_at_the_evidence_priority_where_allowed() {
        let q = EvidenceQueue::start(1, 1, true).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::pin(async move {
            let on_worker = thread_nice();
            let on_blocking = tokio::task::spawn_blocking(thread_nice).await.unwrap();
            let _ = tx.send((on_worker, on_blocking));
        });
        assert!(q.try_submit(None, job).is_ok());
        let (on_worker, on_blocking) = tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .unwrap()
            .unwrap();
        // Whether this process may raise a thread's priority, tried on a thread of its own.
        let allowed = std::thread::spawn(|| {
            rustix::process::setpriority_process(Some(rustix::thread::gettid()), EVIDENCE_NICE)
                .is_ok()
        })
        .join()
        .unwrap();
        let expected = if allowed {
            EVIDENCE_NICE
        } else {
            thread_nice()
        };
        assert_eq!((on_worker, on_blocking), (expected, expected));
        assert_ne!(
            thread_nice(),
            EVIDENCE_NICE,
            "only the evidence threads are raised"
        );

        // Not raised (`any` access): they keep the priority they were started with.
        let q = EvidenceQueue::start(1, 1, false).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::pin(async move {
            let _ = tx.send(thread_nice());
        });
        assert!(q.try_submit(None, job).is_ok());
        let nice = tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(nice, thread_nice());
    }

    /// REVIEW6 R9: a pinned key (a hostile prober, a stolen key) on many connections holds at
    /// most half the collection slots, queued and running together: its next job is refused
    /// (`KeyShare`, answered `busy`) while another key's and unkeyed work is still taken, and
    /// its place comes back once its job ends.
    #[tokio::test]
    async fn one_key_holds_at_most_its_share_of_the_evidence_work() {
        let q = EvidenceQueue::start(2, 16, false).unwrap();
        let (release, gate) = tokio::sync::watch::channel(false);
        let (done_tx, mut done) = mpsc::unbounded_channel();
        let job = || -> Job {
            let mut gate = gate.clone();
            let done_tx = done_tx.clone();
            Box::pin(async move {
                let _ = gate.wait_for(|open| *open).await;
                let _ = done_tx.send(());
            })
        };
        let (hostile, honest) = ([1; 32], [2; 32]);
        assert_eq!(q.try_submit(Some(hostile), job()), Ok(()));
        for _ in 0..8 {
            assert_eq!(q.try_submit(Some(hostile), job()), Err(Refused::KeyShare));
        }
        assert_eq!(q.try_submit(Some(honest), job()), Ok(()));
        assert_eq!(q.try_submit(None, job()), Ok(()));
        release.send(true).unwrap();
        for _ in 0..3 {
            tokio::time::timeout(Duration::from_secs(5), done.recv())
                .await
                .unwrap()
                .unwrap();
        }
        // The place is given back when the job ends (just after it reports done).
        let mut again = Err(Refused::KeyShare);
        for _ in 0..500 {
            again = q.try_submit(Some(hostile), job());
            if again.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(again, Ok(()));
        // With four slots a key holds two.
        let q = EvidenceQueue::start(4, 16, false).unwrap();
        let (_hold_closed, gate) = tokio::sync::watch::channel(false);
        let held = || -> Job {
            let mut gate = gate.clone();
            Box::pin(async move {
                let _ = gate.wait_for(|open| *open).await;
            })
        };
        assert_eq!(q.try_submit(Some(hostile), held()), Ok(()));
        assert_eq!(q.try_submit(Some(hostile), held()), Ok(()));
        assert_eq!(q.try_submit(Some(hostile), held()), Err(Refused::KeyShare));
    }

    #[tokio::test]
    async fn a_full_queue_gives_the_job_back_and_queued_jobs_run() {
        let q = EvidenceQueue::start(1, 1, false).unwrap();
        let (release, gate) = tokio::sync::watch::channel(false);
        let (done_tx, mut done) = mpsc::unbounded_channel();
        let job = |n: u32| -> Job {
            let mut gate = gate.clone();
            let done_tx = done_tx.clone();
            Box::pin(async move {
                let _ = gate.wait_for(|open| *open).await;
                let _ = done_tx.send(n);
            })
        };
        // At most one running (it holds the only slot), one taken off the queue waiting for
        // the slot and one in the queue, however the worker thread is scheduled.
        let mut accepted = 0;
        let mut refused = 0;
        for n in 0..6 {
            match q.try_submit(None, job(n)) {
                Ok(()) => accepted += 1,
                Err(_) => refused += 1,
            }
        }
        assert!((1..=3).contains(&accepted), "accepted {accepted}");
        assert_eq!(accepted + refused, 6);
        release.send(true).unwrap();
        for _ in 0..accepted {
            tokio::time::timeout(Duration::from_secs(5), done.recv())
                .await
                .unwrap()
                .unwrap();
        }
    }
}
