//! [`EmbeddedStore`]: the [`Store`] trait on an openraft group (one replica, or
//! several with [`EmbeddedStoreOptions::cluster`]) whose log and state machine live in
//! redb files in one directory.
//!
//! Writes (`apply`, `compact`, `put_zone_insight`, `setting_or_insert`) are proposed
//! as [`Command`]s and answered by the state machine once applied. On a follower they
//! are forwarded to the leader ([`crate::forward`]) and answered once this replica has
//! applied them too, so a client reads its own writes on the replica it wrote to. A
//! write that does not commit within [`EmbeddedStoreOptions::write_timeout`] (a
//! replica cut off from the majority) fails `Unavailable` and is not acknowledged.
//!
//! Reads go straight to this replica's state machine in a redb read transaction (one
//! consistent cut per call): linearizable on a single replica; on several, a follower
//! serves what it has applied, at most a heartbeat or so behind the leader. Zone CPs
//! accept that: every consumer (proxies, REST readers) converges on the next change.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::cluster::RaftCluster;
use crate::forward::{self, ForwardError, ForwardRequest, ForwardResponse};
use crate::group_status::{self, GroupStatus};
use crate::network::Peers;
use crate::raft_service::{self, RaftServerHandle};

use async_trait::async_trait;
use chrono::{SubsecRound, Utc};
use meridian_store::{
    Change, ChangeBatch, ListQuery, Page, ResourceKey, Revision, Snapshot, Store, StoreError,
    StoredResource, WriteOp, WriteOutcome,
};
use openraft::{BasicNode, Config, ServerState, SnapshotPolicy};
use redb::{Database, ReadableDatabase};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::EmbeddedStoreError;
use crate::log_store::LogStore;
use crate::state_machine::StateMachine;
use crate::tables::{
    CHANGE_LOG, ChangeOp, ChangeRow, InsightRow, LATEST_CHANGE, RESOURCES, ResourceRow, SETTINGS,
    SM_META, ZONE_INSIGHTS, all_resources, decode, read_counters, read_resource, resources_of_kind,
    revision_key, stored_key,
};
use crate::types::{Command, CommandResponse, NodeId, Raft, SINGLE_NODE_ID};

/// The Raft log's file in the data directory.
pub const LOG_FILE: &str = "raft-log.redb";
/// The state machine's file in the data directory.
pub const STATE_FILE: &str = "state.redb";

/// How long `open` keeps retrying a database file still held by a store of this
/// process that is shutting down.
const REOPEN_GRACE: Duration = Duration::from_secs(5);

/// Tunables of [`EmbeddedStore::open_with`]. [`Default`] suits production.
#[derive(Debug, Clone)]
pub struct EmbeddedStoreOptions {
    /// Build a Raft snapshot after this many log entries since the last one
    /// (`SnapshotPolicy::LogsSinceLast`). Default 5000.
    pub snapshot_logs_since_last: u64,
    /// Log entries already covered by a snapshot to keep after purging (lets a
    /// lagging follower catch up from the log instead of a snapshot once the group has
    /// followers). Default 1000, so the log holds at most about 6000 entries.
    pub max_in_snapshot_log_to_keep: u64,
    /// How long `open` waits for the node to become leader (single replica) or to
    /// learn of a leader (several). Default 10 s.
    pub leader_timeout: Duration,
    /// Several replicas: this one's id, address, peers and TLS. `None` runs one.
    pub cluster: Option<RaftCluster>,
    /// How long a write may wait to commit before failing `Unavailable`. Default 5 s.
    pub write_timeout: Duration,
}

impl Default for EmbeddedStoreOptions {
    fn default() -> Self {
        EmbeddedStoreOptions {
            snapshot_logs_since_last: 5000,
            max_in_snapshot_log_to_keep: 1000,
            leader_timeout: Duration::from_secs(10),
            cluster: None,
            write_timeout: Duration::from_secs(5),
        }
    }
}

/// A [`Store`] on an openraft state machine persisted in redb. Cheap to clone; clones
/// share the Raft node.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    raft: Raft,
    node_id: NodeId,
    /// Peers of a multi-replica group (`None` on a single replica).
    peers: Option<Peers>,
    server: Option<RaftServerHandle>,
    leads: watch::Receiver<Option<u64>>,
    watcher: JoinHandle<()>,
    write_timeout: Duration,
    state: Arc<Database>,
    /// The log database, held only to know when openraft has let go of it.
    log: Arc<Database>,
    revision_tx: Arc<watch::Sender<Revision>>,
    dir: PathBuf,
    shut_down: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.watcher.abort();
        if let Some(server) = &self.server {
            server.stop();
        }
        if self.shut_down.load(Ordering::SeqCst) {
            return;
        }
        // Stop the Raft node (and release the database files) in the background;
        // outside a runtime the node's tasks end with their runtime anyway.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let raft = self.raft.clone();
            handle.spawn(async move {
                if let Err(error) = raft.shutdown().await {
                    tracing::warn!(%error, "embedded store: Raft shutdown failed");
                }
            });
        }
    }
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

/// Opens or creates one redb file.
pub(crate) fn open_database(path: &Path) -> Result<Database, EmbeddedStoreError> {
    Database::create(path).map_err(|source| EmbeddedStoreError::Open {
        path: path.to_owned(),
        source,
    })
}

fn already_open(error: &EmbeddedStoreError) -> bool {
    matches!(
        error,
        EmbeddedStoreError::Open {
            source: redb::DatabaseError::DatabaseAlreadyOpen,
            ..
        }
    )
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir` with default options. See
    /// [`EmbeddedStore::open_with`].
    pub async fn open(dir: &Path) -> Result<EmbeddedStore, EmbeddedStoreError> {
        Self::open_with(dir, EmbeddedStoreOptions::default()).await
    }

    /// Opens (or creates) the store in `dir`: the Raft log in [`LOG_FILE`], the state
    /// machine in [`STATE_FILE`].
    ///
    /// With one replica: starts Raft node 1, initialises the membership `{1}` on first
    /// start only, and waits until the node is leader and has applied its whole log,
    /// so reads see every write acknowledged before.
    ///
    /// With [`EmbeddedStoreOptions::cluster`]: serves Raft to peers, lets the lowest
    /// id of the peer list initialise the group on its first start, and waits until a
    /// leader is known.
    pub async fn open_with(
        dir: &Path,
        options: EmbeddedStoreOptions,
    ) -> Result<EmbeddedStore, EmbeddedStoreError> {
        std::fs::create_dir_all(dir).map_err(|source| EmbeddedStoreError::Directory {
            path: dir.to_owned(),
            source,
        })?;
        let revision_tx = Arc::new(watch::channel(0).0);
        let (log_store, state_machine) = Self::open_files(dir, &revision_tx).await?;
        let state = state_machine.database();
        let log = log_store.database();

        if let Some(cluster) = &options.cluster {
            cluster.validate()?;
        }
        let timing = options.cluster.as_ref().map(|c| c.timing);
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let (heartbeat, election_min, election_max) = match timing {
            Some(t) => (
                millis(t.heartbeat),
                millis(t.election_min),
                millis(t.election_max),
            ),
            None => (50, 150, 300),
        };
        let config = Config {
            cluster_name: "meridian-embedded".to_owned(),
            heartbeat_interval: heartbeat,
            election_timeout_min: election_min,
            election_timeout_max: election_max,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(options.snapshot_logs_since_last),
            max_in_snapshot_log_to_keep: options.max_in_snapshot_log_to_keep,
            purge_batch_size: 1,
            ..Config::default()
        }
        .validate()
        .map_err(|e| EmbeddedStoreError::Config(e.to_string()))?;

        let node_id = options.cluster.as_ref().map_or(SINGLE_NODE_ID, |c| c.id);
        let peers = Peers::new(
            options
                .cluster
                .as_ref()
                .map(|c| c.peers.clone())
                .unwrap_or_default(),
            options.cluster.as_ref().and_then(|c| c.tls.clone()),
        );
        let raft = Raft::new(
            node_id,
            Arc::new(config),
            peers.clone(),
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| EmbeddedStoreError::Raft(format!("starting the node: {e}")))?;
        let server = match &options.cluster {
            Some(cluster) => {
                Some(raft_service::serve(cluster.listen, raft.clone(), cluster.tls.as_ref()).await?)
            }
            None => None,
        };
        // A leader unacknowledged for an election timeout may already be deposed.
        let (leads, watcher) = group_status::watch_group(
            raft.clone(),
            Duration::from_millis(heartbeat),
            Duration::from_millis(election_max),
        );

        let store = EmbeddedStore {
            inner: Arc::new(Inner {
                raft,
                node_id,
                peers: options.cluster.is_some().then_some(peers),
                server,
                leads,
                watcher,
                write_timeout: options.write_timeout,
                state,
                log,
                revision_tx,
                dir: dir.to_owned(),
                shut_down: AtomicBool::new(false),
            }),
        };
        if let Err(error) = store.start(&options).await {
            store.shutdown().await;
            return Err(error);
        }
        tracing::info!(dir = %dir.display(), revision = *store.inner.revision_tx.borrow(), "embedded store open");
        Ok(store)
    }

    /// Opens both database files, retrying while a store of this process that was
    /// just dropped still holds them.
    async fn open_files(
        dir: &Path,
        revision_tx: &Arc<watch::Sender<Revision>>,
    ) -> Result<(LogStore, StateMachine), EmbeddedStoreError> {
        let deadline = tokio::time::Instant::now() + REOPEN_GRACE;
        loop {
            let opened = LogStore::open(&dir.join(LOG_FILE)).and_then(|log| {
                StateMachine::open(&dir.join(STATE_FILE), revision_tx.clone()).map(|sm| (log, sm))
            });
            match opened {
                Err(error) if already_open(&error) && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }

    async fn start(&self, options: &EmbeddedStoreOptions) -> Result<(), EmbeddedStoreError> {
        let raft = &self.inner.raft;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| EmbeddedStoreError::Raft(e.to_string()))?;
        let id = self.inner.node_id;
        match (&options.cluster, initialized) {
            (None, false) => {
                let members = BTreeMap::from([(SINGLE_NODE_ID, BasicNode::default())]);
                raft.initialize(members).await.map_err(|e| {
                    EmbeddedStoreError::Raft(format!("initializing membership: {e}"))
                })?;
                tracing::info!("embedded store: initialized a single-node Raft group");
            }
            (Some(cluster), false) if cluster.bootstraps() => {
                let mut members: BTreeMap<NodeId, BasicNode> = cluster
                    .peers
                    .iter()
                    .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
                    .collect();
                members.insert(
                    id,
                    BasicNode {
                        addr: cluster.advertised(),
                    },
                );
                raft.initialize(members).await.map_err(|e| {
                    EmbeddedStoreError::Raft(format!("initializing membership: {e}"))
                })?;
                tracing::info!(
                    id,
                    peers = ?cluster.peers,
                    "embedded store: initialized the Raft group from --raft-peers"
                );
            }
            (Some(cluster), false) => {
                tracing::info!(
                    id,
                    bootstrap = ?cluster.peers.keys().next(),
                    "embedded store: waiting to be contacted by the group"
                );
            }
            (_, true) => {}
        }
        let mut metrics = raft.metrics();
        let single = options.cluster.is_none();
        let ready = tokio::time::timeout(
            options.leader_timeout,
            metrics.wait_for(|m| {
                m.running_state.is_err()
                    || (single
                        && m.state == ServerState::Leader
                        && m.current_leader == Some(SINGLE_NODE_ID)
                        && m.last_applied.map(|l| l.index) == m.last_log_index)
                    || (!single && m.current_leader.is_some())
            }),
        )
        .await;
        // `wait_for` hands back a read guard on Raft's metrics: look at it and drop
        // it before awaiting anything, or Raft's next metrics update blocks on it.
        let started = match ready {
            Err(_) => Err(EmbeddedStoreError::LeaderTimeout(options.leader_timeout)),
            Ok(Err(_)) => Err(EmbeddedStoreError::Raft(
                "the Raft node stopped while starting".to_owned(),
            )),
            Ok(Ok(m)) => match &m.running_state {
                Err(fatal) => Err(EmbeddedStoreError::Raft(format!(
                    "the Raft node stopped while starting: {fatal}"
                ))),
                Ok(()) => Ok(()),
            },
        };
        started?;
        if single {
            // The group watcher publishes leadership from the same metrics on its own
            // task; wait for it too, so `ping` and the duties see the leader the
            // moment `open` returns.
            let mut leads = self.inner.leads.clone();
            match tokio::time::timeout(options.leader_timeout, leads.wait_for(Option::is_some))
                .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => {
                    return Err(EmbeddedStoreError::Raft(
                        "the Raft node stopped while starting".to_owned(),
                    ));
                }
                Err(_) => return Err(EmbeddedStoreError::LeaderTimeout(options.leader_timeout)),
            }
        }
        Ok(())
    }

    /// Stops the Raft node and waits (up to a few seconds) until its tasks have
    /// released the log and the state machine. The store answers `Unavailable`
    /// afterwards; once every clone is dropped the database files are closed and the
    /// directory can be opened again.
    pub async fn shutdown(&self) {
        if self.inner.shut_down.swap(true, Ordering::SeqCst) {
            return;
        }
        self.inner.watcher.abort();
        if let Some(server) = &self.inner.server {
            server.stop();
        }
        if let Err(error) = self.inner.raft.shutdown().await {
            tracing::warn!(%error, "embedded store: Raft shutdown failed");
        }
        // Applies commit without fsync between durable points: persist the last ones,
        // so the next start has nothing to replay.
        let state = self.inner.state.clone();
        if let Err(error) =
            crate::blocking::blocking(move || crate::state_machine::flush(&state)).await
        {
            tracing::warn!(%error, "embedded store: flushing the state failed");
        }
        // openraft's state-machine worker and snapshot tasks end shortly after the
        // core; they hold the only other references to the databases.
        let deadline = tokio::time::Instant::now() + REOPEN_GRACE;
        while (Arc::strong_count(&self.inner.state) > 1 || Arc::strong_count(&self.inner.log) > 1)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The Raft handle (metrics, snapshots).
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// This replica's node id.
    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    /// The address peers reach this replica's Raft server at, when it serves one.
    pub fn raft_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner.server.as_ref().map(RaftServerHandle::local_addr)
    }

    /// `Some(term)` while this replica leads with a majority's recent confirmation:
    /// what duties that must run once per group (KDS) follow.
    pub fn leadership(&self) -> watch::Receiver<Option<u64>> {
        self.inner.leads.clone()
    }

    /// The group as this replica sees it: members, leader, indexes.
    pub fn group_status(&self) -> GroupStatus {
        let leads = self.inner.leads.borrow().is_some();
        group_status::status(&self.inner.raft.metrics().borrow(), leads)
    }

    /// Adds `id`, reachable at `addr`, as a learner and waits until it has caught
    /// up with the log. Answers the log index of the change.
    pub async fn add_learner(&self, id: NodeId, addr: String) -> Result<u64, StoreError> {
        let request = ForwardRequest::AddLearner { id, addr };
        // Catching up may take a snapshot transfer: allow longer than a write.
        self.submit(request, self.inner.write_timeout * 6)
            .await
            .map(|r| r.index)
    }

    /// Makes the learner `id` a voter.
    pub async fn promote(&self, id: NodeId) -> Result<u64, StoreError> {
        self.submit(ForwardRequest::Promote { id }, self.inner.write_timeout)
            .await
            .map(|r| r.index)
    }

    /// Removes the voter or learner `id` from the group.
    pub async fn remove_member(&self, id: NodeId) -> Result<u64, StoreError> {
        self.submit(ForwardRequest::Remove { id }, self.inner.write_timeout)
            .await
            .map(|r| r.index)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Proposes `command` and waits until it is applied on this replica.
    async fn write(&self, command: Command) -> Result<CommandResponse, StoreError> {
        self.submit(ForwardRequest::Write(command), self.inner.write_timeout)
            .await
            .map(|r| r.response)
    }

    /// Carries `request` out here if this replica leads, else on the leader, within
    /// `timeout`. A request that reached no leader, or whose forwarding failed in
    /// transit, fails `Unavailable`; clients retry (every write is idempotent or
    /// guarded by a precondition).
    async fn submit(
        &self,
        request: ForwardRequest,
        timeout: Duration,
    ) -> Result<ForwardResponse, StoreError> {
        let raft = &self.inner.raft;
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = || {
            StoreError::Unavailable(format!(
                "embedded store: not committed within {timeout:?}; this replica may be cut off from the Raft majority"
            ))
        };
        loop {
            let local = tokio::time::timeout_at(deadline, forward::execute(raft, request.clone()))
                .await
                .map_err(|_| timed_out())?;
            let (leader, node) = match local {
                Ok(done) => return Ok(done),
                Err(ForwardError::NotLeader { leader, node }) => (leader, node),
                Err(ForwardError::Failed(reason)) => {
                    return Err(StoreError::Backend(format!("embedded store: {reason}")));
                }
                Err(ForwardError::Stopped(reason)) => {
                    return Err(StoreError::Unavailable(format!(
                        "embedded store: the Raft node stopped: {reason}"
                    )));
                }
            };
            let (Some(peers), Some(leader), Some(node)) = (&self.inner.peers, leader, node) else {
                // No leader yet (an election is running): wait for one.
                let mut metrics = raft.metrics();
                tokio::time::timeout_at(
                    deadline,
                    metrics.wait_for(|m| m.current_leader.is_some() || m.running_state.is_err()),
                )
                .await
                .map_err(|_| timed_out())?
                .map_err(|_| {
                    StoreError::Unavailable("embedded store: the Raft node stopped".to_owned())
                })?;
                if self.inner.peers.is_none() {
                    return Err(StoreError::Unavailable(
                        "embedded store: this node is not the Raft leader".to_owned(),
                    ));
                }
                continue;
            };
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            match peers.forward(leader, &node, &request, remaining).await {
                Ok(Ok(done)) => {
                    // Read-your-writes: answer once this replica has applied it too.
                    let applied = raft
                        .wait(Some(
                            deadline.saturating_duration_since(tokio::time::Instant::now()),
                        ))
                        .applied_index_at_least(Some(done.index), "a forwarded write")
                        .await;
                    if applied.is_err() {
                        tracing::warn!(
                            index = done.index,
                            "a forwarded write committed but this replica has not applied it yet"
                        );
                    }
                    return Ok(done);
                }
                // Leadership moved between our look and the leader's: look again.
                Ok(Err(ForwardError::NotLeader { .. })) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(Err(ForwardError::Failed(reason))) => {
                    return Err(StoreError::Backend(format!(
                        "embedded store (leader {leader}): {reason}"
                    )));
                }
                Ok(Err(ForwardError::Stopped(reason))) => {
                    return Err(StoreError::Unavailable(format!(
                        "embedded store: leader {leader} stopped: {reason}"
                    )));
                }
                Err(error) => {
                    return Err(StoreError::Unavailable(format!(
                        "embedded store: forwarding to leader {leader}: {error}"
                    )));
                }
            }
        }
    }

    fn read_txn(&self) -> Result<redb::ReadTransaction, StoreError> {
        self.inner
            .state
            .begin_read()
            .map_err(|e| StoreError::from(EmbeddedStoreError::from(e)))
    }
}

fn unexpected(response: &CommandResponse, what: &str) -> StoreError {
    StoreError::Backend(format!(
        "embedded store: the state machine answered {response:?} to {what}"
    ))
}

/// Maps internal failures on the read path to store errors.
trait Internal<T> {
    fn internal(self) -> Result<T, StoreError>;
}

impl<T, E: Into<EmbeddedStoreError>> Internal<T> for Result<T, E> {
    fn internal(self) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::from(e.into()))
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &ResourceKey) -> Result<Option<StoredResource>, StoreError> {
        let txn = self.read_txn()?;
        let resources = txn.open_table(RESOURCES).internal()?;
        read_resource(&resources, key).internal()
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let txn = self.read_txn()?;
        let resources = txn.open_table(RESOURCES).internal()?;
        let matching: Vec<StoredResource> =
            resources_of_kind(&resources, query.kind, query.mesh.as_deref())
                .internal()?
                .into_iter()
                .filter(|r| query.zone.is_none() || r.zone == query.zone)
                .filter(|r| query.labels.iter().all(|(k, v)| r.labels.get(k) == Some(v)))
                .collect();
        let total = u64::try_from(matching.len()).unwrap_or(u64::MAX);
        let items = matching
            .into_iter()
            .skip(usize::try_from(query.offset).unwrap_or(usize::MAX))
            .take(usize::try_from(query.limit).unwrap_or(usize::MAX))
            .collect();
        Ok(Page { total, items })
    }

    async fn apply(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteOutcome>, StoreError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        // The leader stamps the time so every replica applies the same one.
        let command = Command::Apply {
            ops,
            now: Utc::now().trunc_subsecs(6),
        };
        match self.write(command).await? {
            CommandResponse::Applied(result) => result,
            other => Err(unexpected(&other, "a write batch")),
        }
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        let txn = self.read_txn()?;
        let meta = txn.open_table(SM_META).internal()?;
        Ok(read_counters(&meta).internal()?.revision)
    }

    async fn changes_since(
        &self,
        since: Revision,
        limit: usize,
    ) -> Result<ChangeBatch, StoreError> {
        let txn = self.read_txn()?;
        let counters = read_counters(&txn.open_table(SM_META).internal()?).internal()?;
        if since < counters.horizon {
            return Err(StoreError::Compacted {
                since,
                horizon: counters.horizon,
            });
        }
        let log = txn.open_table(CHANGE_LOG).internal()?;
        let latest = txn.open_table(LATEST_CHANGE).internal()?;
        let resources = txn.open_table(RESOURCES).internal()?;
        let start = revision_key(since).internal()?.saturating_add(1);
        let mut changes = Vec::new();
        for item in log.range(start..).internal()? {
            if changes.len() >= limit {
                break;
            }
            let (at, value) = item.internal()?;
            let at = at.value();
            let row: ChangeRow = decode("change", value.value()).internal()?;
            let table_key = (row.kind.as_str(), row.mesh.as_str(), row.name.as_str());
            // Only each key's newest entry counts.
            if latest.get(table_key).internal()?.map(|v| v.value()) != Some(at) {
                continue;
            }
            let key = stored_key(&row.kind, &row.mesh, &row.name).internal()?;
            let revision = crate::tables::key_revision(at).internal()?;
            changes.push(match row.op {
                ChangeOp::Delete => Change::Delete {
                    key,
                    zone: row.zone,
                    revision,
                },
                ChangeOp::Upsert => {
                    let Some(bytes) = resources.get(table_key).internal()? else {
                        return Err(StoreError::Backend(format!(
                            "embedded store: change log upsert of {key} at revision {revision} has no resource row"
                        )));
                    };
                    let stored: ResourceRow = decode("resource", bytes.value()).internal()?;
                    let mut stored = stored.into_stored(key).internal()?;
                    stored.revision = revision;
                    Change::Upsert(stored)
                }
            });
        }
        let through = match changes.last() {
            Some(last) if changes.len() >= limit => last.revision(),
            _ => counters.revision.max(since),
        };
        Ok(ChangeBatch { changes, through })
    }

    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let txn = self.read_txn()?;
        let revision = read_counters(&txn.open_table(SM_META).internal()?)
            .internal()?
            .revision;
        let resources = all_resources(&txn.open_table(RESOURCES).internal()?).internal()?;
        Ok(Snapshot {
            resources,
            revision,
        })
    }

    async fn list_after(
        &self,
        kind: meridian_model::ResourceKind,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<StoredResource>, StoreError> {
        use std::ops::Bound;
        let txn = self.read_txn()?;
        let resources = txn.open_table(RESOURCES).internal()?;
        let type_name = kind.type_name();
        let start = match after {
            Some((mesh, name)) => Bound::Excluded((type_name, mesh, name)),
            None => Bound::Included((type_name, "", "")),
        };
        let mut out = Vec::with_capacity(limit.min(1024));
        for item in resources
            .range::<(&str, &str, &str)>((start, Bound::Unbounded))
            .internal()?
        {
            if out.len() >= limit {
                break;
            }
            let (key, value) = item.internal()?;
            let (k, mesh, name) = key.value();
            if k != type_name {
                break;
            }
            let row: ResourceRow = decode("resource", value.value()).internal()?;
            out.push(
                row.into_stored(ResourceKey {
                    kind,
                    mesh: mesh.to_owned(),
                    name: name.to_owned(),
                })
                .internal()?,
            );
        }
        Ok(out)
    }

    async fn compact(&self, through: Revision) -> Result<Revision, StoreError> {
        match self.write(Command::Compact { through }).await? {
            CommandResponse::Compacted(horizon) => Ok(horizon),
            other => Err(unexpected(&other, "a compaction")),
        }
    }

    async fn compaction_horizon(&self) -> Result<Revision, StoreError> {
        let txn = self.read_txn()?;
        let meta = txn.open_table(SM_META).internal()?;
        Ok(read_counters(&meta).internal()?.horizon)
    }

    fn watch(&self) -> watch::Receiver<Revision> {
        self.inner.revision_tx.subscribe()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        {
            let metrics = self.inner.raft.metrics();
            let metrics = metrics.borrow();
            if let Err(fatal) = &metrics.running_state {
                return Err(StoreError::Unavailable(format!(
                    "embedded store: the Raft node stopped: {fatal}"
                )));
            }
            if metrics.current_leader.is_none() {
                return Err(StoreError::Unavailable(format!(
                    "embedded store: this replica ({:?}, term {}) knows no Raft leader",
                    metrics.state, metrics.current_term
                )));
            }
            if metrics.current_leader == Some(metrics.id) && self.inner.leads.borrow().is_none() {
                return Err(StoreError::Unavailable(
                    "embedded store: this replica leads but a majority has not confirmed it recently"
                        .to_owned(),
                ));
            }
        }
        if self.inner.shut_down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "embedded store: shut down".to_owned(),
            ));
        }
        let txn = self.read_txn()?;
        txn.open_table(SM_META).internal()?;
        Ok(())
    }

    async fn put_zone_insight(
        &self,
        zone: &str,
        insight: serde_json::Value,
    ) -> Result<(), StoreError> {
        let command = Command::PutZoneInsight {
            zone: zone.to_owned(),
            insight,
            now: Utc::now().trunc_subsecs(6),
        };
        match self.write(command).await? {
            CommandResponse::InsightStored => Ok(()),
            other => Err(unexpected(&other, "a zone insight")),
        }
    }

    async fn get_zone_insight(&self, zone: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let txn = self.read_txn()?;
        let insights = txn.open_table(ZONE_INSIGHTS).internal()?;
        let Some(bytes) = insights.get(zone).internal()? else {
            return Ok(None);
        };
        let row: InsightRow = decode("insight", bytes.value()).internal()?;
        Ok(Some(row.insight))
    }

    async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let txn = self.read_txn()?;
        let settings = txn.open_table(SETTINGS).internal()?;
        Ok(settings.get(key).internal()?.map(|v| v.value().to_owned()))
    }

    async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        // A stored value never changes through this call: answer it without a write.
        if let Some(existing) = self.setting(key).await? {
            return Ok(existing);
        }
        let command = Command::SettingOrInsert {
            key: key.to_owned(),
            value: value.to_owned(),
        };
        match self.write(command).await? {
            CommandResponse::Setting(value) => Ok(value),
            other => Err(unexpected(&other, "a setting")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_shareable<T: Clone + Send + Sync + 'static>() {}

    #[test]
    fn the_store_is_shareable() {
        assert_shareable::<EmbeddedStore>();
    }
}
