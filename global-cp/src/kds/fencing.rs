//! Leader-term fencing of each zone's KDS streams on this global replica.
//!
//! An HA zone runs KDS on its Raft leader, which sends its term in
//! [`LEADER_TERM`](meridian_proto::metadata::LEADER_TERM) (absent = 0). After a zone
//! leader change the old leader may still hold streams, or try to reopen them. Per
//! zone this replica remembers the highest term it has seen, in memory:
//!
//! ```text
//!  open(zone, term)  term <  highest ──▶ refused (FAILED_PRECONDITION)
//!                    term == highest ──▶ admitted (reconnects, the second stream)
//!                    term >  highest ──▶ admitted; every live stream of that zone with a
//!                                        lower term is told it was superseded, and ends
//! ```
//!
//! Invariants:
//! - Once a stream of term N is admitted, no stream of a lower term is admitted on
//!   this replica until the zone has had no live stream here for [`FORGET_AFTER`]
//!   (so a zone cluster rebuilt from scratch, whose terms start again at 1, is not
//!   refused for ever). Replicas do not share what they have seen.
//! - `meridian_kds_live_streams{zone}` counts the zone's live global→zone streams on
//!   this replica; it is updated on every open and close.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// How long a zone must have had no live stream on this replica before its highest
/// term is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(300);

/// Which KDS stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `GlobalToZone`: global sends, the zone ACKs.
    GlobalToZone,
    /// `ZoneToGlobal`: the zone sends, global ACKs.
    ZoneToGlobal,
}

/// A stream refused because its zone already has a newer leader.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "leader term {term} of zone {zone} is older than term {highest}, already seen on this global replica"
)]
pub struct StaleTerm {
    /// The zone.
    pub zone: String,
    /// The term the stream carried.
    pub term: u64,
    /// The highest term seen for the zone.
    pub highest: u64,
}

/// Every zone's highest term and live streams on this replica. Cheap to clone.
#[derive(Clone, Default)]
pub struct ZoneStreams {
    inner: Arc<Mutex<Zones>>,
}

#[derive(Default)]
struct Zones {
    zones: HashMap<String, ZoneEntry>,
    next_id: u64,
}

#[derive(Default)]
struct ZoneEntry {
    highest: u64,
    live: HashMap<u64, Live>,
    /// When the last live stream closed (`None` while one is live).
    idle_since: Option<Instant>,
}

struct Live {
    term: u64,
    direction: Direction,
    superseded: watch::Sender<Option<u64>>,
}

impl ZoneEntry {
    fn export(&self, zone: &str) {
        let streams = self
            .live
            .values()
            .filter(|l| l.direction == Direction::GlobalToZone)
            .count();
        metrics::gauge!("meridian_kds_live_streams", "zone" => zone.to_owned()).set(streams as f64);
    }
}

impl ZoneStreams {
    /// Admits a stream of `zone` with leader `term`, or refuses it as stale. Live
    /// streams of the zone with a lower term are superseded.
    pub fn open(&self, zone: &str, term: u64, direction: Direction) -> Result<Stream, StaleTerm> {
        self.open_at(zone, term, direction, Instant::now())
    }

    fn open_at(
        &self,
        zone: &str,
        term: u64,
        direction: Direction,
        now: Instant,
    ) -> Result<Stream, StaleTerm> {
        let mut state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        state.next_id += 1;
        let id = state.next_id;
        let entry = state.zones.entry(zone.to_owned()).or_default();
        if entry
            .idle_since
            .is_some_and(|idle| now.saturating_duration_since(idle) >= FORGET_AFTER)
        {
            entry.highest = 0;
        }
        if term < entry.highest {
            return Err(StaleTerm {
                zone: zone.to_owned(),
                term,
                highest: entry.highest,
            });
        }
        if term > entry.highest {
            entry.highest = term;
            let mut superseded = 0;
            for live in entry.live.values().filter(|l| l.term < term) {
                live.superseded.send_replace(Some(term));
                superseded += 1;
            }
            if superseded > 0 {
                tracing::info!(%zone, term, superseded, "a stream with a higher leader term opened; ending the older ones");
            }
        }
        let (superseded, watch_superseded) = watch::channel(None);
        entry.live.insert(
            id,
            Live {
                term,
                direction,
                superseded,
            },
        );
        entry.idle_since = None;
        entry.export(zone);
        Ok(Stream {
            registry: self.clone(),
            zone: zone.to_owned(),
            id,
            superseded: watch_superseded,
        })
    }

    fn close(&self, zone: &str, id: u64) {
        let mut state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = state.zones.get_mut(zone) {
            entry.live.remove(&id);
            if entry.live.is_empty() {
                entry.idle_since = Some(Instant::now());
            }
            entry.export(zone);
        }
    }

    /// The highest leader term seen for `zone` (0 if none).
    pub fn highest_term(&self, zone: &str) -> u64 {
        let state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        state.zones.get(zone).map_or(0, |e| e.highest)
    }
}

/// One admitted stream; it leaves the registry when dropped.
pub struct Stream {
    registry: ZoneStreams,
    zone: String,
    id: u64,
    superseded: watch::Receiver<Option<u64>>,
}

impl Stream {
    /// Resolves with the newer term once a stream of the zone with a higher leader
    /// term has opened on this replica.
    pub async fn superseded(&mut self) -> u64 {
        let term = match self.superseded.wait_for(Option::is_some).await {
            Ok(term) => *term,
            // The registry keeps the sender while this stream is registered.
            Err(_) => None,
        };
        match term {
            Some(term) => term,
            None => std::future::pending().await,
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.registry.close(&self.zone, self.id);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn superseded_by(stream: &Stream) -> Option<u64> {
        *stream.superseded.borrow()
    }

    #[test]
    fn equal_terms_coexist_and_a_higher_term_supersedes_lower_ones() {
        let streams = ZoneStreams::default();
        let down = streams.open("z", 1, Direction::GlobalToZone).unwrap();
        let up = streams.open("z", 1, Direction::ZoneToGlobal).unwrap();
        let other_zone = streams.open("y", 0, Direction::GlobalToZone).unwrap();
        assert_eq!((superseded_by(&down), superseded_by(&up)), (None, None));

        let newer = streams.open("z", 2, Direction::GlobalToZone).unwrap();
        assert_eq!(superseded_by(&down), Some(2));
        assert_eq!(superseded_by(&up), Some(2));
        assert_eq!(superseded_by(&newer), None);
        assert_eq!(superseded_by(&other_zone), None, "zones are independent");
        assert_eq!(streams.highest_term("z"), 2);
    }

    #[test]
    fn a_lower_term_is_refused_even_after_the_newer_streams_closed() {
        let streams = ZoneStreams::default();
        drop(streams.open("z", 5, Direction::GlobalToZone).unwrap());
        let refused = streams.open("z", 4, Direction::GlobalToZone).err().unwrap();
        assert_eq!(
            refused,
            StaleTerm {
                zone: "z".into(),
                term: 4,
                highest: 5
            }
        );
        assert!(streams.open("z", 5, Direction::ZoneToGlobal).is_ok());
        // A zone without a term (0) is refused too once a term was seen.
        assert!(streams.open("z", 0, Direction::GlobalToZone).is_err());
    }

    #[test]
    fn the_highest_term_is_forgotten_after_the_zone_stayed_away() {
        let streams = ZoneStreams::default();
        drop(streams.open("z", 7, Direction::GlobalToZone).unwrap());
        let later = Instant::now() + FORGET_AFTER;
        assert!(
            streams
                .open_at("z", 1, Direction::GlobalToZone, later)
                .is_ok()
        );
        assert_eq!(streams.highest_term("z"), 1);
    }

    #[test]
    fn a_live_zone_is_never_forgotten() {
        let streams = ZoneStreams::default();
        let _live = streams.open("z", 7, Direction::GlobalToZone).unwrap();
        let later = Instant::now() + FORGET_AFTER * 2;
        assert!(
            streams
                .open_at("z", 1, Direction::GlobalToZone, later)
                .is_err()
        );
    }

    #[tokio::test]
    async fn superseded_resolves_with_the_newer_term() {
        let streams = ZoneStreams::default();
        let mut old = streams.open("z", 1, Direction::GlobalToZone).unwrap();
        let _new = streams.open("z", 3, Direction::GlobalToZone).unwrap();
        assert_eq!(old.superseded().await, 3);
    }
}
