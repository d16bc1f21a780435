//! The spinning datagram read of the tokio drivers: a vCPU woken from sleep costs 20-45 µs on
//! our VMs, more than an echo itself, so a reader that expects the next datagram soon yields
//! to the runtime for a while before it lets its thread sleep.

use std::time::{Duration, Instant};

/// Awaits the next datagram on `conn`, first yielding to the runtime (which polls the socket
/// without sleeping) for up to `spin`, then awaiting as usual. Zero never spins.
pub async fn read_datagram_spinning(
    conn: &quinn::Connection,
    spin: Duration,
) -> Result<bytes::Bytes, quinn::ConnectionError> {
    let until = Instant::now() + spin;
    let read = conn.read_datagram();
    tokio::pin!(read);
    while Instant::now() < until {
        tokio::select! {
            biased;
            r = &mut read => return r,
            _ = tokio::task::yield_now() => {}
        }
    }
    read.await
}
