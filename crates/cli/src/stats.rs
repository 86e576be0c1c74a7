//! Percentiles of latency samples.

use std::time::Duration;

/// A summary of samples in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub count: usize,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

/// The `p`-th percentile (nearest rank) of sorted samples.
fn percentile(sorted: &[u64], p: usize) -> u64 {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

impl Summary {
    /// Summarizes samples (sorts them); `None` for no samples.
    pub fn of(samples: &mut [u64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        Some(Summary {
            count: samples.len(),
            p50: percentile(samples, 50),
            p90: percentile(samples, 90),
            p99: percentile(samples, 99),
            max: *samples.last()?,
        })
    }
}

/// Nanoseconds of a duration, saturating.
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A latency for people: ns below 10 µs, µs below 10 ms, ms above.
pub fn human(ns: u64) -> String {
    if ns < 10_000 {
        format!("{ns} ns")
    } else if ns < 10_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{:.1} ms", ns as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        let s = Summary::of(&mut v).unwrap();
        assert_eq!((s.p50, s.p90, s.p99, s.max, s.count), (50, 90, 99, 100, 100));
        let s = Summary::of(&mut [7]).unwrap();
        assert_eq!((s.p50, s.p99), (7, 7));
        assert!(Summary::of(&mut []).is_none());
    }
}
