//! A zone CP run as several replicas of one Raft group (`--raft-id`, `--raft-peers`).
//!
//! Every replica serves REST reads and the data-plane stream from its own copy of the
//! state, and forwards writes to the leader (the embedded store does that). What must
//! happen once per zone — the KDS session with global — runs only on the replica that
//! leads with a majority's recent confirmation ([`run_kds_while_leading`]): on a
//! leader change the old leader's session ends and the new one's resumes from the
//! revisions recorded in the replicated store, with its Raft term as a fencing token
//! global uses to close a stale stream.

use async_trait::async_trait;
use meridian_api::raft::RaftAdmin;
use meridian_embedded_store::EmbeddedStore;
use meridian_store::{Store, StoreError};
use std::sync::Arc;
use tokio::sync::watch;

use crate::kds::{self, KdsClientConfig};

/// [`RaftAdmin`] over the embedded store's group.
#[derive(Debug, Clone)]
pub struct EmbeddedRaftAdmin(pub EmbeddedStore);

#[async_trait]
impl RaftAdmin for EmbeddedRaftAdmin {
    fn status(&self) -> serde_json::Value {
        serde_json::to_value(self.0.group_status()).unwrap_or_default()
    }

    async fn add_learner(&self, id: u64, addr: String) -> Result<u64, StoreError> {
        self.0.add_learner(id, addr).await
    }

    async fn promote(&self, id: u64) -> Result<u64, StoreError> {
        self.0.promote(id).await
    }

    async fn remove(&self, id: u64) -> Result<u64, StoreError> {
        self.0.remove_member(id).await
    }
}

/// Runs KDS (see [`kds::run`]) whenever `leadership` says this replica leads, with
/// its term, and stops it as soon as it does not; until `shutdown` turns true.
pub async fn run_kds_while_leading(
    config: KdsClientConfig,
    store: Arc<dyn Store>,
    mut leadership: watch::Receiver<Option<u64>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        metrics::gauge!("meridian_kds_running").set(0.0);
        let term = tokio::select! {
            leads = leadership.wait_for(Option::is_some) => match leads {
                Ok(leads) => (*leads).unwrap_or_default(),
                Err(_) => return,
            },
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        tracing::info!(term, "leading the zone's replicas: starting KDS to global");
        metrics::gauge!("meridian_kds_running").set(1.0);
        let (stop_tx, stop_rx) = watch::channel(false);
        let session = tokio::spawn(kds::run(
            KdsClientConfig {
                leader_term: term,
                ..config.clone()
            },
            store.clone(),
            stop_rx,
        ));
        let shutting_down = tokio::select! {
            _ = leadership.wait_for(|leads| *leads != Some(term)) => false,
            _ = shutdown.wait_for(|stop| *stop) => true,
        };
        let _ = stop_tx.send(true);
        let _ = session.await;
        metrics::gauge!("meridian_kds_connected").set(0.0);
        if shutting_down {
            return;
        }
        tracing::warn!(term, "no longer leading with a quorum: stopped KDS");
    }
}
