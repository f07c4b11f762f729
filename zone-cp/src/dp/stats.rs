//! [`DpStats`]: what the data-plane server has done, for tests and benchmarks
//! in the same process (the same figures go to Prometheus as
//! `meridian_dp_config_computations_total{reason}` and
//! `meridian_dp_config_pushes_total{part}`).
//!
//! - computations by [`Reason`], counted by the engine;
//! - pushes by part (a whole config, or an endpoint update), counted by the
//!   sessions as they send;
//! - the store revision the reconciler has applied, so a caller can wait for
//!   a change to be processed instead of sleeping.

use std::sync::atomic::{AtomicU64, Ordering};

use meridian_store::Revision;
use tokio::sync::watch;

use super::engine::Reason;

/// What a config push carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// A whole config.
    Config,
    /// Endpoint lists only.
    Endpoints,
}

impl Part {
    /// The metric label.
    pub const fn label(self) -> &'static str {
        match self {
            Part::Config => "config",
            Part::Endpoints => "endpoints",
        }
    }
}

const REASONS: [Reason; Reason::ALL.len()] = Reason::ALL;

/// The counters (see the module docs).
#[derive(Debug)]
pub struct DpStats {
    computations: [AtomicU64; REASONS.len()],
    pushes: [AtomicU64; 2],
    revision: watch::Sender<Revision>,
}

impl Default for DpStats {
    fn default() -> Self {
        DpStats {
            computations: Default::default(),
            pushes: Default::default(),
            revision: watch::channel(0).0,
        }
    }
}

impl DpStats {
    /// Counts one computation.
    pub fn computed(&self, reason: Reason) {
        if let Some(i) = REASONS.iter().position(|r| *r == reason) {
            self.computations[i].fetch_add(1, Ordering::Relaxed);
        }
        metrics::counter!("meridian_dp_config_computations_total", "reason" => reason.label())
            .increment(1);
    }

    /// Counts one push.
    pub fn pushed(&self, part: Part) {
        self.pushes[part as usize].fetch_add(1, Ordering::Relaxed);
        metrics::counter!("meridian_dp_config_pushes_total", "part" => part.label()).increment(1);
    }

    /// Computations so far for `reason`.
    pub fn computations(&self, reason: Reason) -> u64 {
        REASONS
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.computations[i].load(Ordering::Relaxed))
    }

    /// Computations so far, all reasons.
    pub fn total_computations(&self) -> u64 {
        self.computations
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Pushes so far of `part`.
    pub fn pushes(&self, part: Part) -> u64 {
        self.pushes[part as usize].load(Ordering::Relaxed)
    }

    /// Records the store revision the reconciler has applied.
    pub fn applied(&self, revision: Revision) {
        self.revision.send_if_modified(|r| {
            let moved = revision > *r;
            *r = (*r).max(revision);
            moved
        });
    }

    /// The store revision the reconciler has applied, and its changes.
    pub fn revision(&self) -> watch::Receiver<Revision> {
        self.revision.subscribe()
    }
}
