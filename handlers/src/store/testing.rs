//! Test databases: a temporary SQLite file, or a fresh PostgreSQL schema on
//! the machine's server (`PICKET_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`). Each test gets its own, so
//! tests run in parallel; a server that is down fails the test loudly.

use std::future::Future;
use std::hash::BuildHasher;

use chrono::{DateTime, Utc};
use protocol::message::AlertPolicy;
use protocol::{CheckResult, Status};
use sqlx::any::AnyPoolOptions;
use sqlx::{AssertSqlSafe, Row};

use super::{Backend, Store, StoreConfig};

const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn postgres_url() -> String {
    std::env::var("PICKET_TEST_POSTGRES_URL").unwrap_or_else(|_| POSTGRES_URL.to_owned())
}

/// Runs `test` against a fresh database of `backend`, then removes it, also
/// when the test panics.
pub(crate) async fn with_db<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(StoreConfig) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    sqlx::any::install_default_drivers();
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let config = StoreConfig::new(format!("sqlite://{}/state/picket.db", dir.path().display()));
            let outcome = tokio::spawn(test(config)).await;
            drop(dir);
            outcome.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        }
        Backend::Postgres => {
            let nonce = std::collections::hash_map::RandomState::new().hash_one((
                std::process::id(),
                std::time::SystemTime::now(),
                std::thread::current().id(),
            ));
            let schema = format!("picket_test_{nonce:016x}");
            let config = StoreConfig::new(postgres_url()).with_schema(schema.clone());
            let outcome = tokio::spawn(test(config)).await;
            drop_schema(&schema).await;
            outcome.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        }
    }
}

async fn drop_schema(schema: &str) {
    let pool = AnyPoolOptions::new().max_connections(1).connect(&postgres_url()).await.unwrap();
    sqlx::query(AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))).execute(&pool).await.unwrap();
    pool.close().await;
}

/// Whether a PostgreSQL schema exists (for the isolation tests).
pub(crate) async fn schema_exists(schema: &str) -> bool {
    let pool = AnyPoolOptions::new().max_connections(1).connect(&postgres_url()).await.unwrap();
    let row = sqlx::query("SELECT count(*) FROM pg_namespace WHERE nspname = $1")
        .bind(schema)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    row.try_get::<i64, _>(0).unwrap() == 1
}

/// `secs` seconds after the tests' epoch (2023-11-14T22:13:20Z).
pub(crate) fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
}

/// A result of `check` on `default` for the slot at `slot` seconds, routed to `ops`.
pub(crate) fn result(check: &str, slot: i64, status: Status) -> CheckResult {
    CheckResult {
        request_id: format!("{check}-{slot}"),
        check: check.into(),
        subscription: "default".into(),
        runner: "r1".into(),
        status,
        output: format!("{status} at {slot}"),
        scheduled_at: at(slot),
        started_at: at(slot),
        duration_ms: 3,
        lateness_ms: 0,
        metrics: Default::default(),
        details: serde_json::json!({"http_status": 200}),
        policy: AlertPolicy { handlers: vec!["ops".into()], occurrences: 1, ..AlertPolicy::default() },
    }
}

/// One outbox row as the tests look at it.
#[derive(Debug, PartialEq)]
pub(crate) struct OutboxRow {
    pub event_id: String,
    pub handler: String,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
}

pub(crate) async fn outbox_rows(store: &Store) -> Vec<OutboxRow> {
    sqlx::query("SELECT event_id, handler, state, attempts, last_error FROM outbox ORDER BY seq")
        .fetch_all(&store.pool)
        .await
        .unwrap()
        .iter()
        .map(|row| OutboxRow {
            event_id: row.get(0),
            handler: row.get(1),
            state: row.get(2),
            attempts: row.get(3),
            last_error: row.get(4),
        })
        .collect()
}

pub(crate) async fn count(store: &Store, table: &str) -> i64 {
    sqlx::query(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&store.pool)
        .await
        .unwrap()
        .get::<i64, _>(0)
}

/// Declares `$name::sqlite` and `$name::postgres` tests running the async
/// function `$name(StoreConfig)` against each backend.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    $crate::store::testing::with_db($crate::store::Backend::Sqlite, super::$name).await;
                }

                #[tokio::test]
                async fn postgres() {
                    $crate::store::testing::with_db($crate::store::Backend::Postgres, super::$name).await;
                }
            }
        )*
    };
}
pub(crate) use on_both_backends;
