//! [`ConnectionLimiter`]: `MeshCircuitBreaker` `connectionLimits.maxConnections`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use metrics::counter;

use crate::telemetry::REFUSED_BY_LIMITER;

/// Caps the connections open at once to one destination. Cloning shares the count.
///
/// A proxy acquires a permit before connecting upstream and keeps it for the life of
/// the relayed connection; dropping the permit frees the slot.
#[derive(Debug, Clone)]
pub struct ConnectionLimiter {
    max: Option<usize>,
    in_use: Arc<AtomicUsize>,
}

/// One slot of a [`ConnectionLimiter`], released when dropped.
#[derive(Debug)]
#[must_use = "the slot is released as soon as the permit is dropped"]
pub struct ConnectionPermit {
    in_use: Arc<AtomicUsize>,
}

impl ConnectionLimiter {
    /// A limiter admitting at most `max` connections at once; `None` admits any number
    /// (and still counts them).
    pub fn new(max: Option<usize>) -> Self {
        Self {
            max,
            in_use: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A permit if a slot is free; `None` (counted in
    /// [`REFUSED_BY_LIMITER`](crate::telemetry::REFUSED_BY_LIMITER)) when the limit is reached.
    pub fn try_acquire(&self) -> Option<ConnectionPermit> {
        let admitted = self
            .in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| match self.max {
                Some(max) if n >= max => None,
                _ => n.checked_add(1),
            })
            .is_ok();
        if admitted {
            Some(ConnectionPermit {
                in_use: Arc::clone(&self.in_use),
            })
        } else {
            counter!(REFUSED_BY_LIMITER).increment(1);
            None
        }
    }

    /// Connections currently holding a permit.
    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Acquire)
    }

    /// The configured limit.
    pub fn max(&self) -> Option<usize> {
        self.max
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.in_use.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_two_refuses_the_third_and_a_drop_frees_a_slot() {
        let limiter = ConnectionLimiter::new(Some(2));
        let a = limiter.try_acquire();
        let b = limiter.try_acquire();
        assert!(a.is_some() && b.is_some());
        assert_eq!(limiter.in_use(), 2);
        assert!(limiter.try_acquire().is_none());
        assert_eq!(limiter.in_use(), 2);
        drop(a);
        assert_eq!(limiter.in_use(), 1);
        let c = limiter.try_acquire();
        assert!(c.is_some());
        assert!(limiter.try_acquire().is_none());
        drop(b);
        drop(c);
        assert_eq!(limiter.in_use(), 0);
    }

    #[test]
    fn clones_share_the_count() {
        let limiter = ConnectionLimiter::new(Some(1));
        let other = limiter.clone();
        let permit = limiter.try_acquire();
        assert!(permit.is_some());
        assert!(other.try_acquire().is_none());
        drop(permit);
        assert!(other.try_acquire().is_some());
    }

    #[test]
    fn zero_admits_nothing_and_none_admits_everything() {
        assert!(ConnectionLimiter::new(Some(0)).try_acquire().is_none());
        let unlimited = ConnectionLimiter::new(None);
        let permits: Vec<_> = (0..100).filter_map(|_| unlimited.try_acquire()).collect();
        assert_eq!(permits.len(), 100);
        assert_eq!(unlimited.in_use(), 100);
        drop(permits);
        assert_eq!(unlimited.in_use(), 0);
    }

    #[test]
    fn refusals_are_counted() {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let limiter = ConnectionLimiter::new(Some(1));
            let _held = limiter.try_acquire();
            assert!(limiter.try_acquire().is_none());
            assert!(limiter.try_acquire().is_none());
        });
        let refused: u64 = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| key.key().name() == REFUSED_BY_LIMITER)
            .map(|(.., value)| match value {
                metrics_util::debugging::DebugValue::Counter(n) => n,
                _ => 0,
            })
            .sum();
        assert_eq!(refused, 2);
    }
}
