//! The spinning reads of the tokio drivers: a vCPU woken from sleep costs 20-45 µs on our VMs,
//! more than an echo itself, so a reader that expects the next datagram soon yields to the
//! runtime for a while before it lets its thread sleep.

use std::future::Future;
use std::time::{Duration, Instant};

/// Awaits `fut`, first yielding to the runtime (which polls its sockets without sleeping)
/// between polls for up to `spin`, then awaiting as usual. Zero never spins. The benchmarks
/// spin their raw UDP baselines with this too, so that both sides of a pair poll alike.
pub async fn spinning<F: Future>(fut: F, spin: Duration) -> F::Output {
    tokio::pin!(fut);
    if !spin.is_zero() {
        let until = Instant::now() + spin;
        while Instant::now() < until {
            tokio::select! {
                biased;
                r = &mut fut => return r,
                _ = tokio::task::yield_now() => {}
            }
        }
    }
    fut.await
}

/// Awaits the next datagram on `conn`, spinning for up to `spin` first (see [`spinning`]).
pub async fn read_datagram_spinning(
    conn: &quinn::Connection,
    spin: Duration,
) -> Result<bytes::Bytes, quinn::ConnectionError> {
    spinning(conn.read_datagram(), spin).await
}
