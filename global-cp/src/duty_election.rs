//! Which global replica runs the background duties.
//!
//! Several `meridian global-cp` processes may share one PostgreSQL database. Every
//! replica serves the REST API and KDS, but the duties that must not run twice at
//! once — change-log compaction, mesh CA generation, insight expiry — run on exactly
//! one elected replica, and move when it dies.
//!
//! ```text
//!  replica 1 ──dedicated connection── pg_try_advisory_lock(DUTY_LOCK_KEY) ── true  ──▶ elected: duties run
//!  replica 2 ──dedicated connection── pg_try_advisory_lock(DUTY_LOCK_KEY) ── false ──▶ retry every second
//!  replica 1 dies / its connection drops ──▶ PostgreSQL releases the lock ──▶ replica 2 wins the next try
//! ```
//!
//! Invariants:
//! - The lock is session-level and lives on a connection of its own, outside the
//!   pool, so no other query ever runs on it and it is never handed to anyone else.
//!   PostgreSQL releases it when that session ends, whichever way it ends.
//! - The holder checks its connection every [`CHECK_INTERVAL`]. When a check fails
//!   (PostgreSQL restarted, network trouble) it steps down at once — duties are
//!   aborted — and contends again on a new connection. The connection asks the
//!   server for TCP keepalives, so a holder that vanished without closing its socket
//!   frees the lock within seconds rather than hours.
//! - Between a holder losing its session and noticing it (at most one check
//!   interval) another replica may already be elected. Every duty is safe to run
//!   twice: compaction and mesh CA generation are transactional and create-only,
//!   insight expiry is compare-and-set.
//! - A single replica on the embedded store ([`DutyElection::Sole`]) is always
//!   elected.
//!
//! Elections are logged, and `meridian_global_duty_leader` is 1 on the elected
//! replica, 0 elsewhere.

use std::future::Future;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The advisory lock every replica of one database contends for ("meridian" in
/// ASCII). Advisory locks are per database, so installations on other databases of
/// the same server never compete.
pub const DUTY_LOCK_KEY: i64 = 0x6d65_7269_6469_616e;

/// How often a replica that is not elected tries to take the lock.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// How often the elected replica checks that its lock connection is alive.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How long a connect, a lock attempt or a check may take before it counts as failed.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// How this replica decides whether it runs the background duties.
#[derive(Clone, Default)]
pub enum DutyElection {
    /// The only replica (the embedded store): always elected.
    #[default]
    Sole,
    /// Replicas sharing a PostgreSQL database: whoever holds the session-level
    /// advisory lock [`DUTY_LOCK_KEY`] on a dedicated connection is elected. The
    /// connection uses the pool's connect options (see `PostgresStore::pool`), and
    /// must reach PostgreSQL directly: a transaction-pooling proxy would hand the
    /// session, and the lock with it, to someone else.
    Postgres(PgPool),
}

impl std::fmt::Debug for DutyElection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DutyElection::Sole => f.write_str("Sole"),
            DutyElection::Postgres(_) => f.write_str("Postgres(advisory lock)"),
        }
    }
}

/// Whether this replica is elected right now, and a way to wait for that to change.
#[derive(Clone)]
pub struct Leadership(watch::Receiver<bool>);

impl Leadership {
    /// Whether this replica holds the duties now.
    pub fn is_elected(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until the state is `elected`; `false` if the election ended meanwhile.
    pub async fn wait_for(&mut self, elected: bool) -> bool {
        self.0.wait_for(|now| *now == elected).await.is_ok()
    }
}

/// Starts contending according to `election`. The returned future runs the election
/// for as long as it is polled (spawn it; abort it to leave, which releases the lock).
pub fn start(election: DutyElection) -> (Leadership, impl Future<Output = ()> + Send + 'static) {
    let (elected, leadership) = watch::channel(false);
    metrics::gauge!("meridian_global_duty_leader").set(0.0);
    let task = async move {
        match election {
            DutyElection::Sole => {
                set_elected(&elected, true, "the only replica");
                // Keep the sender alive: the duties run for the process's lifetime.
                std::future::pending::<()>().await;
            }
            DutyElection::Postgres(pool) => {
                let options = (*pool.connect_options())
                    .clone()
                    .application_name("meridian global duty election");
                drop(pool);
                contend(&options, &elected).await;
            }
        }
    };
    (Leadership(leadership), task)
}

fn set_elected(elected: &watch::Sender<bool>, now: bool, why: &str) {
    metrics::gauge!("meridian_global_duty_leader").set(if now { 1.0 } else { 0.0 });
    let changed = elected.send_if_modified(|was| std::mem::replace(was, now) != now);
    if changed && now {
        tracing::info!(reason = why, "elected to run the background duties");
    } else if changed {
        tracing::warn!(reason = why, "no longer elected; background duties stopped");
    }
}

/// Contends forever: connect, try the lock every [`RETRY_INTERVAL`], hold it while
/// the connection lives, and start over when it does not.
async fn contend(options: &PgConnectOptions, elected: &watch::Sender<bool>) {
    let mut unreachable_logged = false;
    loop {
        let mut connection = match timed(PgConnection::connect_with(options)).await {
            Ok(connection) => connection,
            Err(error) => {
                if !unreachable_logged {
                    tracing::warn!(%error, "duty election: PostgreSQL not reachable; retrying");
                    unreachable_logged = true;
                }
                tokio::time::sleep(RETRY_INTERVAL).await;
                continue;
            }
        };
        unreachable_logged = false;
        keep_alive(&mut connection).await;
        let lost = loop {
            let acquired: Result<bool, String> = timed(
                sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(DUTY_LOCK_KEY)
                    .fetch_one(&mut connection),
            )
            .await;
            match acquired {
                Ok(true) => {
                    set_elected(elected, true, "took the PostgreSQL advisory lock");
                    break hold(&mut connection).await;
                }
                Ok(false) => tokio::time::sleep(RETRY_INTERVAL).await,
                Err(error) => break error,
            }
        };
        set_elected(
            elected,
            false,
            &format!("the lock connection failed: {lost}"),
        );
        // Close politely if it still can; a dropped socket ends the session too.
        let _ = tokio::time::timeout(QUERY_TIMEOUT, connection.close()).await;
        tokio::time::sleep(RETRY_INTERVAL).await;
    }
}

/// Asks the server to probe this connection, so it notices a vanished holder fast.
/// Best effort: on a Unix socket these settings do nothing and are ignored.
async fn keep_alive(connection: &mut PgConnection) {
    let set = "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; \
               SET tcp_keepalives_count = 3";
    if let Err(error) = timed(sqlx::raw_sql(set).execute(&mut *connection)).await {
        tracing::debug!(%error, "could not set TCP keepalives on the lock connection");
    }
}

/// Holds the lock while the connection answers; returns why it stopped answering.
async fn hold(connection: &mut PgConnection) -> String {
    loop {
        tokio::time::sleep(CHECK_INTERVAL).await;
        // The lock is the session's until it ends, so a live session still holds it.
        if let Err(error) = timed(connection.ping()).await {
            return error;
        }
    }
}

async fn timed<T>(query: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, String> {
    match tokio::time::timeout(QUERY_TIMEOUT, query).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {QUERY_TIMEOUT:?}")),
    }
}

/// Runs the duties `start` spawns while this replica is elected, and aborts them the
/// moment it is not; forever.
pub async fn run_while_elected(mut leadership: Leadership, start: impl Fn(&mut JoinSet<()>)) {
    loop {
        if !leadership.wait_for(true).await {
            return;
        }
        let mut duties = JoinSet::new();
        start(&mut duties);
        let ended = !leadership.wait_for(false).await;
        duties.shutdown().await;
        if ended {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn the_sole_replica_is_elected_and_runs_its_duties() {
        let (leadership, election) = start(DutyElection::Sole);
        let election = tokio::spawn(election);
        let started = Arc::new(AtomicUsize::new(0));
        let (ran_tx, mut ran) = tokio::sync::mpsc::channel(1);
        let counter = started.clone();
        let duties = tokio::spawn(run_while_elected(leadership.clone(), move |set| {
            counter.fetch_add(1, Ordering::SeqCst);
            let ran_tx = ran_tx.clone();
            set.spawn(async move {
                let _ = ran_tx.send(()).await;
                std::future::pending::<()>().await;
            });
        }));
        ran.recv().await.unwrap();
        assert!(leadership.is_elected());
        assert_eq!(started.load(Ordering::SeqCst), 1);
        election.abort();
        duties.abort();
    }

    #[tokio::test]
    async fn duties_stop_when_leadership_is_lost_and_restart_when_regained() {
        let (elected, rx) = watch::channel(false);
        let leadership = Leadership(rx);
        let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let duties = tokio::spawn(run_while_elected(leadership, move |set| {
            let events_tx = events_tx.clone();
            set.spawn(async move {
                struct Stopped(tokio::sync::mpsc::UnboundedSender<&'static str>);
                impl Drop for Stopped {
                    fn drop(&mut self) {
                        let _ = self.0.send("stopped");
                    }
                }
                let _stopped = Stopped(events_tx.clone());
                let _ = events_tx.send("started");
                std::future::pending::<()>().await;
            });
        }));
        elected.send_replace(true);
        assert_eq!(events.recv().await, Some("started"));
        elected.send_replace(false);
        assert_eq!(events.recv().await, Some("stopped"));
        elected.send_replace(true);
        assert_eq!(events.recv().await, Some("started"));
        drop(elected);
        assert_eq!(events.recv().await, Some("stopped"));
        duties.await.unwrap();
    }
}
