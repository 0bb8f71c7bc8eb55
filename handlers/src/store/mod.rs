//! Durable handler state in a real database (DESIGN.md §8): SQLite for one
//! handler, PostgreSQL for several sharing state.
//!
//! One interface over both: [`Store`] holds a sqlx `Any` pool, so every query
//! is written once. That works because the SQL keeps to what both dialects
//! share: `$n` placeholders (sqlx's SQLite driver reads them as positions),
//! `INSERT … ON CONFLICT`, 64-bit integers for times (Unix milliseconds) and
//! text for JSON. Only the DDL differs, hence one migration directory per
//! backend (`handlers/migrations/{sqlite,postgres}`), applied at open.
//!
//! Writes go through a [`Batch`]: one transaction holding the state changes,
//! results, events and outbox rows of many results, so a handler keeps up with
//! thousands of results per second and a crash leaves all of a batch or none.

mod history;
#[cfg(test)]
mod history_tests;
mod migrations;
mod notified;
mod outbox;
mod read;
mod rollup;
mod silences;
mod storms;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use protocol::CheckResult;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Row, Transaction};

use crate::event::{Event, EventKind};
use crate::state::CheckState;

pub use history::{Durations, HistoryRetention, PHASES, Step, StepSize};
pub use outbox::{OutboxItem, Settlement};
pub use read::{EventQuery, LoggedEvent, Notification, StateQuery, StateRow};
pub use silences::KEEP_EXPIRED_SILENCES;
pub use storms::StormChange;

/// Results kept per (check, subscription) unless configured otherwise.
pub const DEFAULT_KEEP_RESULTS: u32 = 50;

/// The PostgreSQL schema picket uses unless configured otherwise: its own, so
/// it can share a database (RDS) with anything.
pub const DEFAULT_SCHEMA: &str = "picket";

/// How long a query waits for a pooled connection before the store reports
/// the database as unavailable (the consumer then stops acking).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the state lives. No `Debug`: the URL may carry a password.
#[derive(Clone)]
pub struct StoreConfig {
    /// `sqlite://PATH` (the file and its directory are created when missing)
    /// or `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`.
    pub url: String,
    /// PostgreSQL only: the schema holding picket's tables, created when
    /// missing. Several installations may share a database with one schema
    /// each. Lowercase letters, digits and `_`.
    pub schema: Option<String>,
    /// Results kept per (check, subscription).
    pub keep_results: u32,
    /// Whether batches add their runs to the latency history. Always on in
    /// picket; the benchmark turns it off to measure what the history costs.
    pub history: bool,
}

impl StoreConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), schema: None, keep_results: DEFAULT_KEEP_RESULTS, history: true }
    }

    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn of(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::Config("the state URL must start with sqlite:// or postgres://".into()))
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store config: {0}")]
    Config(String),
    #[error("state store: {0}")]
    Database(#[from] sqlx::Error),
    #[error("state store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("state store: cannot create {path}: {source}")]
    Directory { path: String, source: std::io::Error },
    #[error("state store: unreadable {what}: {source}")]
    Corrupt { what: &'static str, source: serde_json::Error },
}

/// A runner declared lost whose `runner_back` is still owed.
#[derive(Clone, Debug, PartialEq)]
pub struct LostRunner {
    pub runner: String,
    /// The runner's subscriptions, comma-separated: part of its incident key.
    pub subscriptions: String,
    pub interval_secs: u64,
    pub since: DateTime<Utc>,
}

/// A runner as the store last heard of it (see migration 0003).
#[derive(Clone, Debug, PartialEq)]
pub struct SeenRunner {
    pub runner: String,
    /// Comma-separated, sorted: part of its incident key.
    pub subscriptions: String,
    pub interval_secs: u64,
    /// The last keepalive, on the clock of the handler that received it.
    pub last_seen: DateTime<Utc>,
}

/// The handler's database. Cheap to clone: clones share one pool.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    keep_results: i64,
    history: bool,
}

impl Store {
    /// Connects, creating the SQLite file or the PostgreSQL schema when
    /// missing, and applies pending migrations.
    pub async fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(&config.url)?;
        let (pool, schema) = match backend {
            Backend::Sqlite => (open_sqlite(&config.url).await?, None),
            Backend::Postgres => {
                let schema = config.schema.as_deref().unwrap_or(DEFAULT_SCHEMA);
                (open_postgres(&config.url, schema).await?, Some(schema))
            }
        };
        migrations::run(&pool, backend, schema).await?;
        tracing::info!(backend = backend.name(), schema, "state store ready");
        Ok(Self { pool, backend, keep_results: i64::from(config.keep_results.max(1)), history: config.history })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Waits for in-flight queries and closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a write batch: nothing is visible until [`Batch::commit`], and a
    /// batch dropped uncommitted is rolled back.
    pub async fn begin(&self) -> Result<Batch, StoreError> {
        Ok(Batch {
            tx: self.pool.begin().await?,
            touched: HashSet::new(),
            keep_results: self.keep_results,
            history: self.history.then(rollup::Rollup::default),
        })
    }

    /// The most recent results of a (check, subscription), newest first.
    pub async fn recent_results(
        &self,
        check: &str,
        subscription: &str,
        limit: u32,
    ) -> Result<Vec<CheckResult>, StoreError> {
        let rows = sqlx::query(
            "SELECT body FROM results WHERE check_name = $1 AND subscription = $2 ORDER BY seq DESC LIMIT $3",
        )
        .bind(check)
        .bind(subscription)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| json_column(row, "result")).collect()
    }

    /// The newest `per_check` results of every (check, subscription), newest
    /// first, one list per (check, subscription) in check order.
    pub async fn latest_results(&self, per_check: u32) -> Result<Vec<Vec<CheckResult>>, StoreError> {
        let rows = sqlx::query(
            "SELECT body, check_name, subscription FROM (SELECT body, check_name, subscription, seq, \
             ROW_NUMBER() OVER (PARTITION BY check_name, subscription ORDER BY seq DESC) AS n FROM results) AS ranked \
             WHERE n <= $1 ORDER BY check_name, subscription, seq DESC",
        )
        .bind(i64::from(per_check))
        .fetch_all(&self.pool)
        .await?;
        let mut lists: Vec<Vec<CheckResult>> = Vec::new();
        for row in &rows {
            let result: CheckResult = json_column(row, "result")?;
            match lists.last_mut() {
                Some(list) if list[0].check == result.check && list[0].subscription == result.subscription => {
                    list.push(result);
                }
                _ => lists.push(vec![result]),
            }
        }
        Ok(lists)
    }

    /// Deletes events that occurred before `before`; returns how many.
    pub async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let pruned =
            sqlx::query("DELETE FROM events WHERE occurred_at < $1").bind(millis(before)).execute(&self.pool).await?;
        Ok(pruned.rows_affected())
    }

    /// The most recent events, newest first.
    pub async fn recent_events(&self, limit: u32) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query("SELECT body FROM events ORDER BY seq DESC LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| json_column(row, "event")).collect()
    }

    /// The alerting state of a (check, subscription), outside any batch.
    pub async fn state(&self, check: &str, subscription: &str) -> Result<Option<CheckState>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        load_state(&mut conn, check, subscription).await
    }

    /// Subscriptions whose latest `missed` or `caught_up` event is `missed`,
    /// with when it was raised: episodes a restarted handler must still close.
    pub async fn open_missed(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let rows =
            sqlx::query("SELECT subscription, kind, occurred_at FROM events WHERE kind IN ($1, $2) ORDER BY seq")
                .bind(EventKind::Missed.as_str())
                .bind(EventKind::CaughtUp.as_str())
                .fetch_all(&self.pool)
                .await?;
        let mut open = HashMap::new();
        for row in &rows {
            let subscription: String = row.try_get(0)?;
            if row.try_get::<String, _>(1)? == EventKind::Missed.as_str() {
                open.insert(subscription, from_millis(row.try_get(2)?));
            } else {
                open.remove(&subscription);
            }
        }
        Ok(open.into_iter().collect())
    }

    /// Every runner heard and not stopped cleanly.
    pub async fn runners(&self) -> Result<Vec<SeenRunner>, StoreError> {
        let rows = sqlx::query("SELECT runner, subscriptions, interval_secs, last_seen FROM runners")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(SeenRunner {
                    runner: row.try_get(0)?,
                    subscriptions: row.try_get(1)?,
                    interval_secs: u64::try_from(row.try_get::<i64, _>(2)?).unwrap_or(0),
                    last_seen: from_millis(row.try_get(3)?),
                })
            })
            .collect()
    }

    /// When any handler sharing this store last heard `runner`.
    pub async fn runner_last_seen(&self, runner: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = sqlx::query("SELECT last_seen FROM runners WHERE runner = $1")
            .bind(runner)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.try_get(0)).transpose()?.map(from_millis))
    }

    pub async fn lost_runners(&self) -> Result<Vec<LostRunner>, StoreError> {
        let rows = sqlx::query("SELECT runner, subscriptions, interval_secs, since FROM lost_runners")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(LostRunner {
                    runner: row.try_get(0)?,
                    subscriptions: row.try_get(1)?,
                    interval_secs: u64::try_from(row.try_get::<i64, _>(2)?).unwrap_or(0),
                    since: from_millis(row.try_get(3)?),
                })
            })
            .collect()
    }
}

/// One write transaction: a batch of results and what they decided.
pub struct Batch {
    tx: Transaction<'static, Any>,
    /// (check, subscription) pairs whose results need pruning at commit.
    touched: HashSet<(String, String)>,
    keep_results: i64,
    /// What the batch's results add to the latency history, written with
    /// the states and at commit; None when the history is off
    /// ([`StoreConfig::history`]).
    history: Option<rollup::Rollup>,
}

impl Batch {
    /// The committed state of a (check, subscription), or `None` if it never
    /// had a result.
    pub async fn state(&mut self, check: &str, subscription: &str) -> Result<Option<CheckState>, StoreError> {
        let Some(rollup) = &mut self.history else { return load_state(&mut self.tx, check, subscription).await };
        // The open latency step rides along: the batch that reads a state
        // is about to count a run.
        let row = sqlx::query("SELECT state, open_step FROM check_state WHERE check_name = $1 AND subscription = $2")
            .bind(check)
            .bind(subscription)
            .fetch_optional(&mut *self.tx)
            .await?;
        let Some(row) = row else {
            rollup.loaded(check, subscription, None)?;
            return Ok(None);
        };
        rollup.loaded(check, subscription, row.try_get::<Option<String>, _>(1)?.as_deref())?;
        json_column(&row, "check state").map(Some)
    }

    pub async fn put_state(
        &mut self,
        check: &str,
        subscription: &str,
        state: &CheckState,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let open_step = match &mut self.history {
            Some(rollup) => rollup.take_changed(check, subscription)?,
            None => None,
        };
        sqlx::query(
            "INSERT INTO check_state (check_name, subscription, state, updated_at, open_step) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (check_name, subscription) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at, \
             open_step = COALESCE(excluded.open_step, check_state.open_step)",
        )
        .bind(check)
        .bind(subscription)
        .bind(to_json(state)?)
        .bind(millis(now))
        .bind(open_step)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Records a result in the recent history of its check, once per request.
    pub async fn add_result(&mut self, result: &CheckResult, received_at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO results (request_id, check_name, subscription, status, started_at, received_at, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (request_id) DO NOTHING",
        )
        .bind(&result.request_id)
        .bind(&result.check)
        .bind(&result.subscription)
        .bind(i64::from(result.status.code()))
        .bind(millis(result.started_at))
        .bind(millis(received_at))
        .bind(to_json(result)?)
        .execute(&mut *self.tx)
        .await?;
        self.touched.insert((result.check.clone(), result.subscription.clone()));
        Ok(())
    }

    /// Logs an event and queues one outbox row per handler in
    /// `event.handlers`. An event id already logged is left as it was, so
    /// replaying a decision never sends twice: then `false`.
    pub async fn add_event(&mut self, event: &Event) -> Result<bool, StoreError> {
        let body = to_json(event)?;
        let logged = sqlx::query(
            "INSERT INTO events (id, kind, check_name, subscription, runner, status, occurred_at, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&event.id)
        .bind(event.kind.as_str())
        .bind(&event.check)
        .bind(&event.subscription)
        .bind(&event.runner)
        .bind(i64::from(event.status.code()))
        .bind(millis(event.occurred_at))
        .bind(body.as_str())
        .execute(&mut *self.tx)
        .await?;
        if logged.rows_affected() == 0 {
            tracing::debug!(event = %event.id, kind = %event.kind, "event already logged");
            return Ok(false);
        }
        let incident = event.incident_key();
        for handler in &event.handlers {
            sqlx::query(
                "INSERT INTO outbox (event_id, handler, incident_key, payload, next_attempt_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (event_id, handler) DO NOTHING",
            )
            .bind(&event.id)
            .bind(handler)
            .bind(incident.as_str())
            .bind(body.as_str())
            .bind(millis(event.occurred_at))
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(true)
    }

    /// Records a keepalive of `runner` received at `seen.last_seen`; never
    /// moves its time backwards (two handlers may both write it).
    pub async fn runner_seen(&mut self, seen: &SeenRunner) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO runners (runner, subscriptions, interval_secs, last_seen) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (runner) DO UPDATE SET subscriptions = excluded.subscriptions, \
             interval_secs = excluded.interval_secs, last_seen = excluded.last_seen \
             WHERE runners.last_seen <= excluded.last_seen",
        )
        .bind(&seen.runner)
        .bind(&seen.subscriptions)
        .bind(i64::try_from(seen.interval_secs).unwrap_or(i64::MAX))
        .bind(millis(seen.last_seen))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Forgets a runner that stopped cleanly: no handler expects it any more.
    pub async fn forget_runner(&mut self, runner: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM runners WHERE runner = $1").bind(runner).execute(&mut *self.tx).await?;
        Ok(())
    }

    /// Marks a runner lost; `false` when it already was (another handler
    /// sharing the store reported it), so `runner_lost` is logged once.
    pub async fn mark_runner_lost(&mut self, lost: &LostRunner) -> Result<bool, StoreError> {
        let marked = sqlx::query(
            "INSERT INTO lost_runners (runner, subscriptions, interval_secs, since) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (runner) DO NOTHING",
        )
        .bind(&lost.runner)
        .bind(&lost.subscriptions)
        .bind(i64::try_from(lost.interval_secs).unwrap_or(i64::MAX))
        .bind(millis(lost.since))
        .execute(&mut *self.tx)
        .await?;
        Ok(marked.rows_affected() == 1)
    }

    /// Clears a lost mark; `false` when there was none (already cleared), so
    /// `runner_back` is logged once.
    pub async fn clear_runner_lost(&mut self, runner: &str) -> Result<bool, StoreError> {
        let cleared =
            sqlx::query("DELETE FROM lost_runners WHERE runner = $1").bind(runner).execute(&mut *self.tx).await?;
        Ok(cleared.rows_affected() == 1)
    }

    /// Writes the latency steps, prunes the result history of the checks
    /// this batch touched, then commits.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        self.write_history().await?;
        for (check, subscription) in std::mem::take(&mut self.touched) {
            sqlx::query(
                "DELETE FROM results WHERE check_name = $1 AND subscription = $2 AND seq <= \
                 (SELECT seq FROM results WHERE check_name = $1 AND subscription = $2 \
                  ORDER BY seq DESC LIMIT 1 OFFSET $3)",
            )
            .bind(check)
            .bind(subscription)
            .bind(self.keep_results)
            .execute(&mut *self.tx)
            .await?;
        }
        self.tx.commit().await?;
        Ok(())
    }
}

async fn load_state(
    conn: &mut sqlx::AnyConnection,
    check: &str,
    subscription: &str,
) -> Result<Option<CheckState>, StoreError> {
    let row = sqlx::query("SELECT state FROM check_state WHERE check_name = $1 AND subscription = $2")
        .bind(check)
        .bind(subscription)
        .fetch_optional(conn)
        .await?;
    row.map(|row| json_column(&row, "check state")).transpose()
}

/// SQLite: one connection. SQLite has a single writer anyway, and one
/// connection means the batcher and the outbox sender never meet
/// `SQLITE_BUSY`; the batcher already amortises each commit over many results.
async fn open_sqlite(url: &str) -> Result<AnyPool, StoreError> {
    let (location, query) = url.split_once('?').map_or((url, None), |(location, query)| (location, Some(query)));
    let file = location.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    if file.is_empty() || file.starts_with(":memory:") {
        return Err(StoreError::Config("sqlite state needs a file: an in-memory store forgets on restart".into()));
    }
    if let Some(dir) = Path::new(file).parent().filter(|dir| !dir.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|source| StoreError::Directory { path: dir.display().to_string(), source })?;
    }
    // `mode=rwc` creates the file when missing, unless the URL says otherwise.
    let url = match query {
        Some(query) if query.split('&').any(|pair| pair.starts_with("mode=")) => url.to_owned(),
        Some(query) => format!("{location}?{query}&mode=rwc"),
        None => format!("{location}?mode=rwc"),
    };
    let pool = AnyPoolOptions::new().max_connections(1).acquire_timeout(ACQUIRE_TIMEOUT).connect(&url).await?;
    // WAL lets readers (sqlite3, backups) look while the handler writes and
    // needs one fsync per commit; the setting persists in the file.
    sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
    Ok(pool)
}

/// PostgreSQL: every pooled connection starts with `search_path` set to the
/// configured schema, so all queries (and sqlx's migration table) stay in it.
async fn open_postgres(url: &str, schema: &str) -> Result<AnyPool, StoreError> {
    validate_schema(schema)?;
    let search_path: Arc<str> = Arc::from(schema);
    let pool = AnyPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(move |conn, _| {
            let search_path = search_path.clone();
            Box::pin(async move {
                sqlx::query("SELECT set_config('search_path', $1, false)")
                    .bind(search_path.to_string())
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .connect(url)
        .await?;
    Ok(pool)
}

/// Schema names are interpolated into `CREATE SCHEMA`, so only plain
/// lowercase identifiers are accepted (no quoting rules to get wrong).
fn validate_schema(schema: &str) -> Result<(), StoreError> {
    let mut chars = schema.chars();
    let plain = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && schema.len() <= 63;
    if plain {
        Ok(())
    } else {
        Err(StoreError::Config(format!(
            "schema {schema:?}: use at most 63 lowercase letters, digits and _, not starting with a digit"
        )))
    }
}

fn millis(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

/// Stored times were written by [`millis`], so they are always in range; the
/// epoch stands in for a value edited out of range by hand.
fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Corrupt { what: "value to store", source })
}

fn json_column<T: serde::de::DeserializeOwned>(row: &AnyRow, what: &'static str) -> Result<T, StoreError> {
    let text: String = row.try_get(0)?;
    serde_json::from_str(&text).map_err(|source| StoreError::Corrupt { what, source })
}
