//! A throw-away PostgreSQL database per test.

use std::time::Duration;

use meridian_store::Store;
use meridian_store::postgres::PostgresStore;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The server tests use, overridable with `MERIDIAN_TEST_DATABASE_URL`.
pub fn server_url() -> String {
    std::env::var("MERIDIAN_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Replaces the database name in a PostgreSQL URL.
pub fn with_database(url: &str, database: &str) -> String {
    let (without_query, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    // postgres://user@host:port/db — the database is after the third slash.
    let base = match without_query.match_indices('/').nth(2) {
        Some((index, _)) => &without_query[..index],
        None => without_query,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// A database created for one test and dropped (with its connections) on drop.
pub struct TestDatabase {
    name: String,
    server: String,
    /// The URL of this database.
    pub url: String,
}

impl TestDatabase {
    /// Creates a fresh, empty database.
    pub async fn create() -> Self {
        let server = server_url();
        let name = format!("meridian_test_{:016x}", rand::random::<u64>());
        let mut admin = PgConnection::connect(&server).await.unwrap_or_else(|e| {
            panic!("tests need PostgreSQL at {server} (set MERIDIAN_TEST_DATABASE_URL): {e}")
        });
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
        let _ = admin.close().await;
        let url = with_database(&server, &name);
        TestDatabase { name, server, url }
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A store on this database (migrations applied).
    pub async fn store(&self) -> PostgresStore {
        PostgresStore::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connecting the store to {}: {e}", self.url))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop runs inside the test's runtime; do the async cleanup on a thread of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async move {
                let mut admin = PgConnection::connect(&server).await.ok()?;
                // The name is generated above, never taken from input.
                let drop = AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
                tokio::time::timeout(
                    Duration::from_secs(30),
                    sqlx::raw_sql(drop).execute(&mut admin),
                )
                .await
                .ok()?
                .ok()
            })
        });
        let _ = cleanup.join();
    }
}

/// A store on its own database, for the conformance suite.
pub struct PostgresFixture {
    store: PostgresStore,
    _database: TestDatabase,
}

impl PostgresFixture {
    /// A fresh database and a store on it.
    pub async fn new() -> Self {
        crate::init();
        let database = TestDatabase::create().await;
        PostgresFixture {
            store: database.store().await,
            _database: database,
        }
    }
}

impl meridian_store::conformance::Fixture for PostgresFixture {
    fn store(&self) -> &dyn Store {
        &self.store
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/postgres?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
