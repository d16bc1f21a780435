//! Quote latency at cloud speed for the lab: real TDX quotes go through the host's quoting
//! service, take tens of milliseconds (≈ 39 ms on GCP) and come one at a time per machine.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::tdx::{QuoteError, TdxQuoter};

/// Wraps a quoter so that each quote takes at least `delay` and only one is in progress at a
/// time, as on a cloud TD: what coalescing is measured against.
pub struct PacedQuoter {
    inner: Arc<dyn TdxQuoter>,
    delay: Duration,
    /// Held for the whole quote: the quoting service serializes requests.
    serial: Mutex<()>,
}

impl PacedQuoter {
    pub fn new(inner: Arc<dyn TdxQuoter>, delay: Duration) -> Self {
        Self {
            inner,
            delay,
            serial: Mutex::new(()),
        }
    }
}

impl TdxQuoter for PacedQuoter {
    fn quote(&self, report_data: [u8; 64]) -> Result<Vec<u8>, QuoteError> {
        // A panicking quote leaves nothing half-done behind the lock.
        let _one = self.serial.lock().unwrap_or_else(|p| p.into_inner());
        let start = std::time::Instant::now();
        let quote = self.inner.quote(report_data)?;
        if let Some(rest) = self.delay.checked_sub(start.elapsed()) {
            std::thread::sleep(rest);
        }
        Ok(quote)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::tdx::lab::{LabOptions, LabTdx};

    /// Four threads at once take four delays: quotes do not overlap.
    #[test]
    fn quotes_are_serialized_and_take_the_delay() {
        let lab = LabTdx::generate_with(&LabOptions::at(1_780_000_000)).unwrap();
        let paced = Arc::new(PacedQuoter::new(lab.quoter(), Duration::from_millis(30)));
        let start = Instant::now();
        let threads: Vec<_> = (0u8..4)
            .map(|t| {
                let q = Arc::clone(&paced);
                std::thread::spawn(move || q.quote([t; 64]).unwrap())
            })
            .collect();
        for (t, h) in threads.into_iter().enumerate() {
            let q = h.join().unwrap();
            assert_eq!(&q[568..632], &[t as u8; 64]);
        }
        assert!(
            start.elapsed() >= Duration::from_millis(120),
            "{:?}",
            start.elapsed()
        );
    }
}
