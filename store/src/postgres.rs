//! The PostgreSQL backend, for the production global control plane.
//!
//! Invariants (see `migrations/0001_resources.sql`):
//! - every write transaction first locks the single `store_state` row, so revisions are
//!   handed out and committed in order;
//! - a committing transaction that changed anything sends `NOTIFY meridian_revision`
//!   with the new revision; every process sharing the database (every global replica)
//!   LISTENs and wakes its [`Store::watch`] subscribers, and catches up by reading
//!   `store_state` whenever its LISTEN connection had to be re-established;
//! - writes go through [`crate::engine`]: a batch reads every row it touches in one
//!   query (no per-row `SELECT … FOR UPDATE`: the `store_state` lock already orders
//!   writers), the engine decides in memory, and upserts, deletes and change-log rows
//!   are written in one statement each over `unnest` arrays; a batch that grows the
//!   table by a fifth analyzes it (see `outgrows_statistics`);
//! - owned rows are deleted before their owner, each with its own tombstone.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use meridian_model::{ResourceKind, SpecBody};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::types::Json;
use sqlx::{Postgres, Transaction};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::engine::{self, Buffered, LogOp, Owned, Reads, Writes};
use crate::{
    Change, ChangeBatch, ListQuery, Page, PutOutcome, ResourceKey, Revision, Snapshot, Store,
    StoreError, StoredResource, WriteOp, WriteOutcome,
};

/// The channel commits are announced on; the payload is the committed revision.
pub const NOTIFY_CHANNEL: &str = "meridian_revision";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Marks SQL assembled from this module's constants (never from input) as safe.
fn trusted(sql: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql)
}

const COLUMNS: &str =
    "kind, mesh, name, zone, labels, spec, version, revision, created_at, modified_at";

/// A [`Store`] on PostgreSQL. Cheap to clone; clones share the pool and the listener.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    revision_tx: Arc<watch::Sender<Revision>>,
    listener: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl PostgresStore {
    /// Connects to `url`, applies pending migrations and starts listening for commits.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Backend(format!("invalid database URL: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .db()?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend(format!("applying migrations: {e}")))?;
        let revision = read_revision(&pool).await.db()?;
        let revision_tx = Arc::new(watch::channel(revision).0);
        let listener = tokio::spawn(listen_for_commits(pool.clone(), revision_tx.clone()));
        tracing::info!(revision, "connected to PostgreSQL; migrations applied");
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                pool,
                revision_tx,
                listener,
            }),
        })
    }

    /// The connection pool, for callers that need their own queries (e.g. tests).
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }
}

/// Keeps a LISTEN connection up for as long as the store lives, reconnecting with
/// backoff when PostgreSQL goes away. The backoff stays short (at most 1 s): while
/// LISTEN is down this process's KDS sessions miss other replicas' commits, and an
/// attempt already waits for the pool's acquire timeout while PostgreSQL is down.
async fn listen_for_commits(pool: PgPool, revision_tx: Arc<watch::Sender<Revision>>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        // listen_once only returns on error; the task is aborted when the store drops.
        let Err(error) = listen_once(&pool, &revision_tx, &mut backoff).await;
        tracing::warn!(%error, retry_in = ?backoff, "LISTEN connection to PostgreSQL lost");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

async fn listen_once(
    pool: &PgPool,
    revision_tx: &watch::Sender<Revision>,
    backoff: &mut Duration,
) -> Result<std::convert::Infallible, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(NOTIFY_CHANNEL).await?;
    // Notifications sent while nobody listened are gone: catch up from the table.
    publish(revision_tx, read_revision(pool).await?);
    *backoff = Duration::from_millis(100);
    loop {
        match listener.try_recv().await? {
            Some(notification) => match notification.payload().parse::<Revision>() {
                Ok(revision) => publish(revision_tx, revision),
                Err(_) => tracing::warn!(
                    payload = notification.payload(),
                    "ignoring a {NOTIFY_CHANNEL} notification that is not a revision"
                ),
            },
            // The connection dropped; the next try_recv reconnects. Catch up meanwhile.
            None => publish(revision_tx, read_revision(pool).await?),
        }
    }
}

/// Moves the watched revision forward, never back.
fn publish(revision_tx: &watch::Sender<Revision>, revision: Revision) {
    revision_tx.send_if_modified(|current| {
        let newer = revision > *current;
        if newer {
            *current = revision;
        }
        newer
    });
}

async fn read_revision(pool: &PgPool) -> Result<Revision, sqlx::Error> {
    sqlx::query_scalar("SELECT revision FROM store_state WHERE singleton")
        .fetch_one(pool)
        .await
}

/// Maps sqlx errors to store errors, telling connection trouble (retryable) apart.
trait DbResult<T> {
    fn db(self) -> Result<T, StoreError>;
}

impl<T> DbResult<T> for Result<T, sqlx::Error> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(|error| {
            let unavailable = match &error {
                // A connection dropped mid-handshake surfaces as a protocol error.
                sqlx::Error::Io(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                // Class 08: connection exceptions; 57P0x: the server is shutting down
                // or starting up.
                sqlx::Error::Database(db) => db
                    .code()
                    .is_some_and(|c| c.starts_with("08") || c.starts_with("57P0")),
                _ => false,
            };
            if unavailable {
                StoreError::Unavailable(format!("PostgreSQL: {error}"))
            } else {
                StoreError::Backend(format!("PostgreSQL: {error}"))
            }
        })
    }
}

#[derive(sqlx::FromRow)]
struct ResourceRow {
    kind: String,
    mesh: String,
    name: String,
    zone: Option<String>,
    labels: Json<BTreeMap<String, String>>,
    spec: Json<serde_json::Value>,
    version: i64,
    revision: i64,
    created_at: DateTime<Utc>,
    modified_at: DateTime<Utc>,
}

fn parse_kind(kind: &str) -> Result<ResourceKind, StoreError> {
    ResourceKind::from_type_name(kind).ok_or_else(|| {
        StoreError::Backend(format!("unknown resource kind {kind:?} in the database"))
    })
}

/// The spec of `key` as a row holds it, typed: the one parse a PostgreSQL read does.
fn parse_spec(key: &ResourceKey, spec: serde_json::Value) -> Result<SpecBody, StoreError> {
    SpecBody::parse_stored(key.kind, spec).map_err(|e| StoreError::Unreadable {
        key: key.clone(),
        reason: e.to_string(),
    })
}

impl TryFrom<ResourceRow> for StoredResource {
    type Error = StoreError;

    fn try_from(row: ResourceRow) -> Result<Self, StoreError> {
        let key = ResourceKey {
            kind: parse_kind(&row.kind)?,
            mesh: row.mesh,
            name: row.name,
        };
        Ok(StoredResource {
            spec: parse_spec(&key, row.spec.0)?,
            key,
            labels: row.labels.0,
            zone: row.zone,
            version: row.version,
            revision: row.revision,
            created_at: row.created_at,
            modified_at: row.modified_at,
        })
    }
}

/// Reads, in one query (two when the batch deletes a Mesh or Zone), every row the
/// engine may look at for this batch. No row locks: every writer holds the
/// `store_state` lock, and under READ COMMITTED each statement after taking it sees
/// every commit made before.
async fn read_ahead(
    tx: &mut Transaction<'_, Postgres>,
    reads: &Reads,
) -> Result<Buffered, StoreError> {
    let mut rows = Vec::new();
    if !reads.keys.is_empty() {
        let kinds: Vec<&str> = reads.keys.iter().map(|k| k.kind.type_name()).collect();
        let meshes: Vec<&str> = reads.keys.iter().map(|k| k.mesh.as_str()).collect();
        let names: Vec<&str> = reads.keys.iter().map(|k| k.name.as_str()).collect();
        let found: Vec<ResourceRow> = sqlx::query_as(trusted(format!(
            "SELECT {COLUMNS} FROM resources
             WHERE (kind, mesh, name) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))"
        )))
        .bind(kinds)
        .bind(meshes)
        .bind(names)
        .fetch_all(&mut **tx)
        .await
        .db()?;
        rows = found
            .into_iter()
            .map(StoredResource::try_from)
            .collect::<Result<_, _>>()?;
    }
    let mut owned: BTreeMap<ResourceKey, Vec<Owned>> = BTreeMap::new();
    if !reads.owners.is_empty() {
        let of = |kind: ResourceKind| -> Vec<&str> {
            reads
                .owners
                .iter()
                .filter(|o| o.kind == kind)
                .map(|o| o.name.as_str())
                .collect()
        };
        let found: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
            "SELECT kind, mesh, name, zone FROM resources
             WHERE mesh = ANY($1::text[]) OR zone = ANY($2::text[])",
        )
        .bind(of(ResourceKind::Mesh))
        .bind(of(ResourceKind::Zone))
        .fetch_all(&mut **tx)
        .await
        .db()?;
        for (kind, mesh, name, zone) in found {
            let key = ResourceKey {
                kind: parse_kind(&kind)?,
                mesh,
                name,
            };
            if let Some(mesh) = key.mesh() {
                owned
                    .entry(ResourceKey::global(ResourceKind::Mesh, mesh))
                    .or_default()
                    .push(Owned {
                        key: key.clone(),
                        zone: zone.clone(),
                    });
            }
            if let Some(zone) = &zone {
                owned
                    .entry(ResourceKey::global(ResourceKind::Zone, zone.as_str()))
                    .or_default()
                    .push(Owned {
                        key,
                        zone: Some(zone.clone()),
                    });
            }
        }
        owned.retain(|owner, _| reads.owners.contains(owner));
    }
    Ok(Buffered::new(reads, rows, owned))
}

/// Writes what the engine decided in at most five statements: every upsert, then
/// every delete (upserts first: an upsert may move a resource away from an owner the
/// batch deletes, and the final rows never reference a missing owner), the change
/// log, settings and zone insights.
async fn flush(tx: &mut Transaction<'_, Postgres>, writes: Writes) -> Result<(), StoreError> {
    let Writes {
        upserts,
        deletes,
        log,
        settings,
        deleted_zone_insights,
    } = writes;
    if !upserts.is_empty() {
        sqlx::query(
            "INSERT INTO resources (kind, mesh, name, zone, labels, spec, version, revision, created_at, modified_at)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[],
                                  $6::text[]::jsonb[], $7::int8[], $8::int8[], $9::timestamptz[], $10::timestamptz[])
             ON CONFLICT (kind, mesh, name) DO UPDATE SET
               zone = EXCLUDED.zone, labels = EXCLUDED.labels, spec = EXCLUDED.spec,
               version = EXCLUDED.version, revision = EXCLUDED.revision, modified_at = EXCLUDED.modified_at",
        )
        .bind(upserts.iter().map(|r| r.key.kind.type_name()).collect::<Vec<_>>())
        .bind(upserts.iter().map(|r| r.key.mesh.as_str()).collect::<Vec<_>>())
        .bind(upserts.iter().map(|r| r.key.name.as_str()).collect::<Vec<_>>())
        .bind(upserts.iter().map(|r| r.zone.as_deref()).collect::<Vec<_>>())
        .bind(upserts.iter().map(|r| Json(&r.labels)).collect::<Vec<_>>())
        .bind(upserts.iter().map(|r| r.spec.canonical_json()).collect::<Vec<_>>())
        .bind(upserts.iter().map(|r| r.version).collect::<Vec<_>>())
        .bind(upserts.iter().map(|r| r.revision).collect::<Vec<_>>())
        .bind(upserts.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .bind(upserts.iter().map(|r| r.modified_at).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await
        .db()?;
    }
    if !deletes.is_empty() {
        sqlx::query(
            "DELETE FROM resources
             WHERE (kind, mesh, name) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))",
        )
        .bind(deletes.iter().map(|k| k.kind.type_name()).collect::<Vec<_>>())
        .bind(deletes.iter().map(|k| k.mesh.as_str()).collect::<Vec<_>>())
        .bind(deletes.iter().map(|k| k.name.as_str()).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await
        .db()?;
    }
    if !log.is_empty() {
        sqlx::query(
            "INSERT INTO change_log (revision, kind, mesh, name, zone, op)
             SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])",
        )
        .bind(log.iter().map(|e| e.revision).collect::<Vec<_>>())
        .bind(log.iter().map(|e| e.key.kind.type_name()).collect::<Vec<_>>())
        .bind(log.iter().map(|e| e.key.mesh.as_str()).collect::<Vec<_>>())
        .bind(log.iter().map(|e| e.key.name.as_str()).collect::<Vec<_>>())
        .bind(log.iter().map(|e| e.zone.as_deref()).collect::<Vec<_>>())
        .bind(log.iter().map(|e| log_op(e.op)).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await
        .db()?;
    }
    if !settings.is_empty() {
        // One row per key (ON CONFLICT cannot touch a row twice): the last value wins.
        let settings: BTreeMap<String, String> = settings.into_iter().collect();
        sqlx::query(
            "INSERT INTO settings (key, value) SELECT * FROM unnest($1::text[], $2::text[])
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        )
        .bind(settings.keys().map(String::as_str).collect::<Vec<_>>())
        .bind(settings.values().map(String::as_str).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await
        .db()?;
    }
    if !deleted_zone_insights.is_empty() {
        sqlx::query("DELETE FROM zone_insights WHERE zone = ANY($1::text[])")
            .bind(deleted_zone_insights)
            .execute(&mut **tx)
            .await
            .db()?;
    }
    Ok(())
}

/// Whether a batch that created `created` rows makes the planner's statistics of
/// `resources` (`analyzed_rows` rows at the last ANALYZE, negative if never) too far
/// off to keep. Autovacuum analyzes a table at most about once a minute; until then
/// a bulk load into a fresh or small table would run every foreign-key check of the
/// ownership constraints on plans made for a table of a few rows (a sequential scan
/// per inserted or deleted row: 10,000 policies took 37 s instead of 2). So the
/// writer analyzes after a batch that grew the table by 100 rows and a fifth; that
/// stops after a handful of batches of a load.
fn outgrows_statistics(created: usize, analyzed_rows: f32) -> bool {
    let created = created as f64;
    created >= 100.0 && created > f64::from(analyzed_rows.max(0.0)) * 0.2
}

/// The `change_log.op` value of a log entry.
fn log_op(op: LogOp) -> &'static str {
    match op {
        LogOp::Upsert => "upsert",
        LogOp::Delete => "delete",
    }
}

async fn begin_snapshot(pool: &PgPool) -> Result<Transaction<'static, Postgres>, StoreError> {
    let mut tx = pool.begin().await.db()?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .db()?;
    Ok(tx)
}

#[derive(sqlx::FromRow)]
struct ChangeRow {
    log_revision: i64,
    kind: String,
    mesh: String,
    name: String,
    log_zone: Option<String>,
    op: String,
    labels: Option<Json<BTreeMap<String, String>>>,
    spec: Option<Json<serde_json::Value>>,
    version: Option<i64>,
    created_at: Option<DateTime<Utc>>,
    modified_at: Option<DateTime<Utc>>,
}

impl TryFrom<ChangeRow> for Change {
    type Error = StoreError;

    fn try_from(row: ChangeRow) -> Result<Self, StoreError> {
        let key = ResourceKey {
            kind: parse_kind(&row.kind)?,
            mesh: row.mesh,
            name: row.name,
        };
        if row.op == "delete" {
            return Ok(Change::Delete {
                key,
                zone: row.log_zone,
                revision: row.log_revision,
            });
        }
        match (
            row.labels,
            row.spec,
            row.version,
            row.created_at,
            row.modified_at,
        ) {
            (Some(labels), Some(spec), Some(version), Some(created_at), Some(modified_at)) => {
                Ok(Change::Upsert(StoredResource {
                    spec: parse_spec(&key, spec.0)?,
                    key,
                    labels: labels.0,
                    zone: row.log_zone,
                    version,
                    revision: row.log_revision,
                    created_at,
                    modified_at,
                }))
            }
            _ => Err(StoreError::Backend(format!(
                "change log upsert of {key} at revision {} has no resource row",
                row.log_revision
            ))),
        }
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn get(&self, key: &ResourceKey) -> Result<Option<StoredResource>, StoreError> {
        let row: Option<ResourceRow> = sqlx::query_as(trusted(format!(
            "SELECT {COLUMNS} FROM resources WHERE kind = $1 AND mesh = $2 AND name = $3"
        )))
        .bind(key.kind.type_name())
        .bind(&key.mesh)
        .bind(&key.name)
        .fetch_optional(&self.inner.pool)
        .await
        .db()?;
        row.map(StoredResource::try_from).transpose()
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        const FILTER: &str = "kind = $1 AND ($2::text IS NULL OR mesh = $2) \
             AND ($3::text IS NULL OR zone = $3) AND labels @> $4";
        let mut tx = begin_snapshot(&self.inner.pool).await?;
        let total: i64 = sqlx::query_scalar(trusted(format!(
            "SELECT count(*) FROM resources WHERE {FILTER}"
        )))
        .bind(query.kind.type_name())
        .bind(&query.mesh)
        .bind(&query.zone)
        .bind(Json(&query.labels))
        .fetch_one(&mut *tx)
        .await
        .db()?;
        let rows: Vec<ResourceRow> = sqlx::query_as(trusted(format!(
            "SELECT {COLUMNS} FROM resources WHERE {FILTER} ORDER BY mesh, name OFFSET $5 LIMIT $6"
        )))
        .bind(query.kind.type_name())
        .bind(&query.mesh)
        .bind(&query.zone)
        .bind(Json(&query.labels))
        .bind(i64::try_from(query.offset).unwrap_or(i64::MAX))
        .bind(i64::try_from(query.limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()?;
        Ok(Page {
            total: u64::try_from(total).unwrap_or_default(),
            items: rows
                .into_iter()
                .map(StoredResource::try_from)
                .collect::<Result<_, _>>()?,
        })
    }

    async fn apply(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteOutcome>, StoreError> {
        let mut tx = self.inner.pool.begin().await.db()?;
        let (start, analyzed_rows): (Revision, f32) = sqlx::query_as(
            "SELECT s.revision, c.reltuples FROM store_state s, pg_class c
             WHERE s.singleton AND c.oid = 'resources'::regclass FOR UPDATE OF s",
        )
        .fetch_one(&mut *tx)
        .await
        .db()?;
        let reads = engine::reads(&ops);
        let mut batch = read_ahead(&mut tx, &reads).await?;
        // PostgreSQL keeps microseconds: round here so a write returns what a read will.
        let now = Utc::now().trunc_subsecs(6);
        // A refusal returns here; dropping `tx` rolls back (nothing was written).
        let applied = engine::apply(&mut batch, ops, start, now)?;
        flush(&mut tx, batch.into_writes()).await?;
        let created = applied
            .outcomes
            .iter()
            .filter(|o| matches!(o, WriteOutcome::Put(PutOutcome::Created, _)))
            .count();
        if outgrows_statistics(created, analyzed_rows) {
            // Committed with the batch: other sessions re-plan on the new statistics.
            sqlx::query("ANALYZE resources")
                .execute(&mut *tx)
                .await
                .db()?;
        }
        let revision = applied.revision;
        if revision != start {
            sqlx::query("UPDATE store_state SET revision = $1 WHERE singleton")
                .bind(revision)
                .execute(&mut *tx)
                .await
                .db()?;
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(NOTIFY_CHANNEL)
                .bind(revision.to_string())
                .execute(&mut *tx)
                .await
                .db()?;
        }
        tx.commit().await.db()?;
        publish(&self.inner.revision_tx, revision);
        Ok(applied.outcomes)
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        read_revision(&self.inner.pool).await.db()
    }

    async fn changes_since(
        &self,
        since: Revision,
        limit: usize,
    ) -> Result<ChangeBatch, StoreError> {
        let mut tx = begin_snapshot(&self.inner.pool).await?;
        let (current, horizon): (Revision, Revision) =
            sqlx::query_as("SELECT revision, compacted_through FROM store_state WHERE singleton")
                .fetch_one(&mut *tx)
                .await
                .db()?;
        if since < horizon {
            return Err(StoreError::Compacted { since, horizon });
        }
        let rows: Vec<ChangeRow> = sqlx::query_as(
            "WITH latest AS (
               SELECT DISTINCT ON (kind, mesh, name) revision, kind, mesh, name, zone, op
               FROM change_log WHERE revision > $1
               ORDER BY kind, mesh, name, revision DESC)
             SELECT l.revision AS log_revision, l.kind, l.mesh, l.name, l.zone AS log_zone, l.op,
                    r.labels, r.spec, r.version, r.created_at, r.modified_at
             FROM latest l
             LEFT JOIN resources r
               ON l.op = 'upsert' AND r.kind = l.kind AND r.mesh = l.mesh AND r.name = l.name
             ORDER BY l.revision
             LIMIT $2",
        )
        .bind(since)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()?;
        let changes: Vec<Change> = rows
            .into_iter()
            .map(Change::try_from)
            .collect::<Result<_, _>>()?;
        let through = match changes.last() {
            Some(last) if changes.len() >= limit => last.revision(),
            _ => current.max(since),
        };
        Ok(ChangeBatch { changes, through })
    }

    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let mut tx = begin_snapshot(&self.inner.pool).await?;
        let revision: Revision =
            sqlx::query_scalar("SELECT revision FROM store_state WHERE singleton")
                .fetch_one(&mut *tx)
                .await
                .db()?;
        let rows: Vec<ResourceRow> = sqlx::query_as(trusted(format!(
            "SELECT {COLUMNS} FROM resources ORDER BY kind, mesh, name"
        )))
        .fetch_all(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()?;
        Ok(Snapshot {
            resources: rows
                .into_iter()
                .map(StoredResource::try_from)
                .collect::<Result<_, _>>()?,
            revision,
        })
    }

    async fn list_after(
        &self,
        kind: ResourceKind,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<StoredResource>, StoreError> {
        // Row comparison on the (kind, mesh, name) unique index: each page is an
        // index range scan, however deep into the kind it starts.
        let (mesh, name) = after.unwrap_or(("", ""));
        let rows: Vec<ResourceRow> = sqlx::query_as(trusted(format!(
            "SELECT {COLUMNS} FROM resources
             WHERE kind = $1 AND ($2 OR (mesh, name) > ($3, $4))
             ORDER BY mesh, name LIMIT $5"
        )))
        .bind(kind.type_name())
        .bind(after.is_none())
        .bind(mesh)
        .bind(name)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.inner.pool)
        .await
        .db()?;
        rows.into_iter().map(StoredResource::try_from).collect()
    }

    async fn compact(&self, through: Revision) -> Result<Revision, StoreError> {
        let mut tx = self.inner.pool.begin().await.db()?;
        let (current, horizon): (Revision, Revision) = sqlx::query_as(
            "SELECT revision, compacted_through FROM store_state WHERE singleton FOR UPDATE",
        )
        .fetch_one(&mut *tx)
        .await
        .db()?;
        let through = through.min(current);
        if through <= horizon {
            return Ok(horizon);
        }
        let removed = sqlx::query("DELETE FROM change_log WHERE revision <= $1")
            .bind(through)
            .execute(&mut *tx)
            .await
            .db()?
            .rows_affected();
        sqlx::query("UPDATE store_state SET compacted_through = $1 WHERE singleton")
            .bind(through)
            .execute(&mut *tx)
            .await
            .db()?;
        tx.commit().await.db()?;
        tracing::debug!(through, removed, "change log compacted");
        Ok(through)
    }

    async fn compaction_horizon(&self) -> Result<Revision, StoreError> {
        sqlx::query_scalar("SELECT compacted_through FROM store_state WHERE singleton")
            .fetch_one(&self.inner.pool)
            .await
            .db()
    }

    fn watch(&self) -> watch::Receiver<Revision> {
        self.inner.revision_tx.subscribe()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.inner.pool)
            .await
            .db()
            .map(drop)
    }

    async fn put_zone_insight(
        &self,
        zone: &str,
        insight: serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO zone_insights (zone, insight, updated_at) VALUES ($1, $2, now())
             ON CONFLICT (zone) DO UPDATE SET insight = EXCLUDED.insight, updated_at = now()",
        )
        .bind(zone)
        .bind(Json(insight))
        .execute(&self.inner.pool)
        .await
        .db()
        .map(drop)
    }

    async fn get_zone_insight(&self, zone: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let row: Option<Json<serde_json::Value>> =
            sqlx::query_scalar("SELECT insight FROM zone_insights WHERE zone = $1")
                .bind(zone)
                .fetch_optional(&self.inner.pool)
                .await
                .db()?;
        Ok(row.map(|json| json.0))
    }

    async fn replace_zone_insight(
        &self,
        zone: &str,
        expected: &serde_json::Value,
        insight: serde_json::Value,
    ) -> Result<bool, StoreError> {
        // One statement: the row lock makes the comparison and the write atomic, and a
        // concurrent writer's newer insight no longer equals `expected`.
        let replaced = sqlx::query(
            "UPDATE zone_insights SET insight = $3, updated_at = now()
             WHERE zone = $1 AND insight = $2",
        )
        .bind(zone)
        .bind(Json(expected))
        .bind(Json(insight))
        .execute(&self.inner.pool)
        .await
        .db()?
        .rows_affected();
        Ok(replaced == 1)
    }

    async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.inner.pool)
            .await
            .db()
    }

    async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        sqlx::query_scalar(
            "WITH inserted AS (
               INSERT INTO settings (key, value) VALUES ($1, $2)
               ON CONFLICT (key) DO NOTHING RETURNING value)
             SELECT value FROM inserted UNION ALL SELECT value FROM settings WHERE key = $1
             LIMIT 1",
        )
        .bind(key)
        .bind(value)
        .fetch_one(&self.inner.pool)
        .await
        .db()
    }
}

#[cfg(test)]
mod tests {
    use super::outgrows_statistics;

    #[test]
    fn a_bulk_load_analyzes_only_while_the_table_is_small() {
        assert!(outgrows_statistics(500, -1.0), "never analyzed");
        assert!(outgrows_statistics(500, 2000.0));
        assert!(!outgrows_statistics(500, 2500.0));
        assert!(
            !outgrows_statistics(99, -1.0),
            "small batches never analyze"
        );
        assert!(!outgrows_statistics(0, 0.0));
    }
}
