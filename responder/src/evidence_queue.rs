//! The evidence worker: evidence and key requests run on their own thread and runtime, at most
//! `concurrency` at once with at most `capacity` waiting, so that neither their CPU work nor a
//! flood of them delays the echo path, which stays on the server's runtime. A request that
//! finds the queue full is answered `busy` at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};
use tracing::warn;

/// One queued piece of evidence work.
pub(crate) type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The sending side of the evidence worker; the worker thread ends when this is dropped.
#[derive(Debug)]
pub(crate) struct EvidenceQueue {
    tx: mpsc::Sender<Job>,
}

impl EvidenceQueue {
    /// Starts the worker thread.
    pub(crate) fn start(concurrency: usize, capacity: usize) -> std::io::Result<Self> {
        let (tx, mut rx) = mpsc::channel::<Job>(capacity.max(1));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("locus-evidence")
            .build()?;
        let slots = Arc::new(Semaphore::new(concurrency.max(1)));
        std::thread::Builder::new()
            .name("locus-evidence".into())
            .spawn(move || {
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
        Ok(Self { tx })
    }

    /// Queues `job`, or gives it back when the queue is full.
    pub(crate) fn try_submit(&self, job: Job) -> Result<(), Job> {
        self.tx.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(j) => j,
            mpsc::error::TrySendError::Closed(j) => {
                warn!("the evidence worker has stopped");
                j
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_full_queue_gives_the_job_back_and_queued_jobs_run() {
        let q = EvidenceQueue::start(1, 1).unwrap();
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
            match q.try_submit(job(n)) {
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
