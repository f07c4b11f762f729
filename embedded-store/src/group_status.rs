//! What a replica knows about its Raft group, for the rest of the zone CP:
//!
//! - **leadership with a quorum**: `Some(term)` while this replica leads *and* a
//!   majority confirmed it within the last check. A leader cut off from the others
//!   keeps believing it leads until it hears of a newer term, so duties that must run
//!   once per zone (KDS to global) follow this signal, not openraft's `state`;
//! - Prometheus metrics: term, leader, state, log/applied/snapshot indexes,
//!   replication lag per peer, time since the quorum last acknowledged the leader;
//! - [`GroupStatus`], the REST view of members and who leads.

use std::time::Duration;

use openraft::{RaftMetrics, ServerState};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::types::{NodeId, Raft};

/// One member of the group as this replica sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// Its node id.
    pub id: NodeId,
    /// The address recorded in the membership.
    pub addr: String,
    /// `voter` or `learner`.
    pub role: &'static str,
    /// The last log index the leader knows it holds (on the leader only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched_index: Option<u64>,
    /// Entries it is behind the leader's log (on the leader only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
}

/// The group as this replica sees it (`GET /raft` on a zone CP).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GroupStatus {
    /// This replica's id.
    pub id: NodeId,
    /// `Leader`, `Follower`, `Candidate`, `Learner` or `Shutdown`.
    pub state: String,
    /// The current term.
    pub term: u64,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Whether this replica leads with a majority's recent confirmation.
    pub leads_with_quorum: bool,
    /// The last index in its log.
    pub last_log_index: Option<u64>,
    /// The last index its state machine applied.
    pub applied_index: Option<u64>,
    /// The last index its newest snapshot covers.
    pub snapshot_index: Option<u64>,
    /// The last index purged from its log (a replica behind it needs a snapshot).
    pub purged_index: Option<u64>,
    /// Every voter and learner.
    pub members: Vec<MemberStatus>,
}

/// Builds the status from openraft's metrics.
pub fn status(metrics: &RaftMetrics<NodeId, openraft::BasicNode>, leads: bool) -> GroupStatus {
    let membership = metrics.membership_config.membership();
    let voters: Vec<NodeId> = membership.voter_ids().collect();
    let last = metrics.last_log_index.unwrap_or(0);
    let members = membership
        .nodes()
        .map(|(id, node)| {
            let matched = metrics
                .replication
                .as_ref()
                .and_then(|r| r.get(id))
                .map(|m| m.map_or(0, |l| l.index));
            MemberStatus {
                id: *id,
                addr: node.addr.clone(),
                role: if voters.contains(id) {
                    "voter"
                } else {
                    "learner"
                },
                matched_index: matched,
                lag: matched.map(|m| last.saturating_sub(m)),
            }
        })
        .collect();
    GroupStatus {
        id: metrics.id,
        state: format!("{:?}", metrics.state),
        term: metrics.current_term,
        leader: metrics.current_leader,
        leads_with_quorum: leads,
        last_log_index: metrics.last_log_index,
        applied_index: metrics.last_applied.map(|l| l.index),
        snapshot_index: metrics.snapshot.map(|l| l.index),
        purged_index: metrics.purged.map(|l| l.index),
        members,
    }
}

fn export(metrics: &RaftMetrics<NodeId, openraft::BasicNode>, leads: bool) {
    let index = |i: Option<u64>| i.map_or(0.0, |i| i as f64);
    metrics::gauge!("meridian_raft_node_id").set(metrics.id as f64);
    metrics::gauge!("meridian_raft_term").set(metrics.current_term as f64);
    metrics::gauge!("meridian_raft_leader_id")
        .set(metrics.current_leader.map_or(0.0, |l| l as f64));
    metrics::gauge!("meridian_raft_is_leader").set(if leads { 1.0 } else { 0.0 });
    for state in ["Leader", "Follower", "Candidate", "Learner", "Shutdown"] {
        let current = format!("{:?}", metrics.state) == state;
        metrics::gauge!("meridian_raft_state", "state" => state).set(if current {
            1.0
        } else {
            0.0
        });
    }
    metrics::gauge!("meridian_raft_last_log_index").set(index(metrics.last_log_index));
    metrics::gauge!("meridian_raft_applied_index")
        .set(index(metrics.last_applied.map(|l| l.index)));
    metrics::gauge!("meridian_raft_snapshot_index").set(index(metrics.snapshot.map(|l| l.index)));
    metrics::gauge!("meridian_raft_purged_index").set(index(metrics.purged.map(|l| l.index)));
    metrics::gauge!("meridian_raft_voters")
        .set(metrics.membership_config.membership().voter_ids().count() as f64);
    if let Some(ms) = metrics.millis_since_quorum_ack {
        metrics::gauge!("meridian_raft_millis_since_quorum_ack").set(ms as f64);
    }
    if let Some(replication) = &metrics.replication {
        let last = metrics.last_log_index.unwrap_or(0);
        for (peer, matched) in replication {
            let matched = matched.map_or(0, |l| l.index);
            metrics::gauge!("meridian_raft_replication_lag", "peer" => peer.to_string())
                .set(last.saturating_sub(matched) as f64);
        }
    }
}

/// Whether `metrics` show a leader whose quorum acknowledged it within `lease`
/// (always, for a single voter).
fn leads_with_quorum(metrics: &RaftMetrics<NodeId, openraft::BasicNode>, lease: Duration) -> bool {
    if metrics.state != ServerState::Leader || metrics.current_leader != Some(metrics.id) {
        return false;
    }
    let voters = metrics.membership_config.membership().voter_ids().count();
    let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
    voters <= 1
        || metrics
            .millis_since_quorum_ack
            .is_some_and(|ms| ms < lease_ms)
}

/// Watches `raft` until it shuts down: publishes whether this replica leads with a
/// majority's acknowledgement within `lease` (openraft's own heartbeats, re-read
/// every `check_every` so a silent majority is noticed), and exports metrics.
pub fn watch_group(
    raft: Raft,
    check_every: Duration,
    lease: Duration,
) -> (watch::Receiver<Option<u64>>, JoinHandle<()>) {
    let (leads_tx, leads_rx) = watch::channel(None);
    let task = tokio::spawn(async move {
        let mut metrics = raft.metrics();
        let mut ticker = tokio::time::interval(check_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let tick = tokio::select! {
                _ = ticker.tick() => true,
                changed = metrics.changed() => if changed.is_err() { break } else { false },
            };
            // Metrics change on every write: read them in place, without a copy.
            let (id, term, state, stopped, leads) = {
                let m = metrics.borrow_and_update();
                let leads = leads_with_quorum(&m, lease).then_some(m.current_term);
                (
                    m.id,
                    m.current_term,
                    m.state,
                    m.running_state.is_err(),
                    leads,
                )
            };
            if stopped || state == ServerState::Shutdown {
                leads_tx.send_replace(None);
                break;
            }
            let moved = leads_tx.send_if_modified(|current| {
                if *current == leads {
                    return false;
                }
                match leads {
                    Some(term) => {
                        tracing::info!(id, term, "this replica leads the zone's Raft group")
                    }
                    None if current.is_some() => tracing::warn!(
                        id,
                        term,
                        state = ?state,
                        "this replica no longer leads with a quorum"
                    ),
                    None => {}
                }
                *current = leads;
                true
            });
            // Export at the ticker's pace, or when leadership moved.
            if tick || moved {
                export(&metrics.borrow(), leads.is_some());
            }
        }
        metrics::gauge!("meridian_raft_is_leader").set(0.0);
    });
    (leads_rx, task)
}
