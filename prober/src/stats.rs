//! Round-trip statistics from an HDR histogram (nanosecond resolution, 3 significant digits).

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Summary of the round trips of one round, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RttStats {
    pub count: u64,
    pub min_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

/// A new histogram for round trips from 1 ns to 60 s.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("static histogram bounds are valid")
}

impl RttStats {
    /// Exact statistics of a few values (nearest-rank quantiles), without a histogram.
    pub fn from_ns(mut ns: Vec<u64>) -> Self {
        if ns.is_empty() {
            return Self::default();
        }
        ns.sort_unstable();
        let us = |v: u64| v as f64 / 1_000.0;
        let at = |q: f64| us(ns[((q * ns.len() as f64).ceil() as usize).clamp(1, ns.len()) - 1]);
        Self {
            count: ns.len() as u64,
            min_us: us(ns[0]),
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            max_us: us(ns[ns.len() - 1]),
            mean_us: ns.iter().map(|&v| v as f64).sum::<f64>() / ns.len() as f64 / 1_000.0,
        }
    }

    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let us = |ns: u64| ns as f64 / 1_000.0;
        Self {
            count: h.len(),
            min_us: us(h.min()),
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            max_us: us(h.max()),
            mean_us: h.mean() / 1_000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_in_microseconds() {
        let mut h = new_histogram();
        for ns in [10_000u64, 20_000, 30_000, 40_000, 1_000_000] {
            h.record(ns).unwrap();
        }
        let s = RttStats::from_histogram(&h);
        assert_eq!(s.count, 5);
        assert!((s.min_us - 10.0).abs() < 0.1, "{s:?}");
        assert!((s.p50_us - 30.0).abs() < 0.1, "{s:?}");
        assert!((s.max_us - 1000.0).abs() < 1.0, "{s:?}");
        assert_eq!(
            RttStats::from_histogram(&new_histogram()),
            RttStats::default()
        );
    }

    #[test]
    fn exact_quantiles_agree_with_the_histogram() {
        let ns: Vec<u64> = (1..=200).map(|i| i * 1_000).collect();
        let mut h = new_histogram();
        for &v in &ns {
            h.record(v).unwrap();
        }
        let (exact, hist) = (RttStats::from_ns(ns), RttStats::from_histogram(&h));
        assert_eq!(exact.count, 200);
        assert_eq!(
            (exact.min_us, exact.p50_us, exact.p99_us),
            (1.0, 100.0, 198.0)
        );
        assert_eq!(exact.max_us, 200.0);
        assert!((exact.mean_us - 100.5).abs() < 1e-9);
        for (a, b) in [
            (exact.p50_us, hist.p50_us),
            (exact.p90_us, hist.p90_us),
            (exact.p99_us, hist.p99_us),
        ] {
            assert!((a - b).abs() <= b * 1e-3, "{a} vs {b}");
        }
        assert_eq!(RttStats::from_ns(Vec::new()), RttStats::default());
    }
}
