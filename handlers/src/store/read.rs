//! Read queries for the operator API: what the store holds, outside any
//! batch, so every handler on one PostgreSQL answers the same.
//!
//! Each answer is one query (or a fixed few), never one per row: a fleet of
//! thousands of checks is listed with one round trip.

use chrono::{DateTime, Utc};
use protocol::CheckResult;
use sqlx::any::AnyArguments;
use sqlx::{Any, AssertSqlSafe, Row};

use super::{Store, StoreError, from_millis, json_column, millis};
use crate::event::{Event, EventKind};
use crate::state::CheckState;

/// The alerting state of one (check, subscription) as stored, with its
/// newest result.
#[derive(Clone, Debug, PartialEq)]
pub struct StateRow {
    pub check: String,
    pub subscription: String,
    pub state: CheckState,
    pub updated_at: DateTime<Utc>,
    pub last_result: Option<CheckResult>,
    /// The first `problem` logged since the last `resolved`: when the open
    /// incident began. `None` when none is logged (never failed, or pruned).
    pub problem_since: Option<DateTime<Utc>>,
}

/// Which states [`Store::states`] reads; `None` matches all.
#[derive(Clone, Copy, Debug, Default)]
pub struct StateQuery<'a> {
    pub check: Option<&'a str>,
    pub subscription: Option<&'a str>,
}

/// Which events [`Store::events`] reads, newest first.
#[derive(Clone, Debug, Default)]
pub struct EventQuery<'a> {
    pub check: Option<&'a str>,
    pub subscription: Option<&'a str>,
    pub kinds: &'a [EventKind],
    /// Events that occurred at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Events logged before this sequence number: the paging cursor.
    pub before: Option<i64>,
    pub limit: u32,
}

/// An event with its place in the log.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedEvent {
    /// Increases with every event logged, across handlers sharing the store.
    pub seq: i64,
    pub event: Event,
}

/// One outbox row: the delivery of one event to one handler.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    pub event_id: String,
    pub handler: String,
    pub incident_key: String,
    /// `pending`, `sent` or `dropped`.
    pub state: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When it is tried next (pending rows).
    pub next_attempt_at: DateTime<Utc>,
    /// When it was sent or dropped.
    pub done_at: Option<DateTime<Utc>>,
}

/// A SQL filter built from optional parts, with `$n` placeholders numbered
/// in bind order. Column names are constants of this module; values are
/// always bound, never spliced.
#[derive(Default)]
struct Conditions {
    clauses: Vec<String>,
    binds: Vec<Bind>,
}

enum Bind {
    Text(String),
    Int(i64),
}

impl Conditions {
    /// Adds `clause`, whose `?` stands for the placeholder of `value`.
    fn and(&mut self, clause: &str, value: Bind) -> &mut Self {
        self.binds.push(value);
        self.clauses.push(clause.replace('?', &format!("${}", self.binds.len())));
        self
    }

    /// `column IN (…)` over `values`; nothing when `values` is empty.
    fn any_of(&mut self, column: &str, values: impl IntoIterator<Item = String>) -> &mut Self {
        let placeholders: Vec<String> = values
            .into_iter()
            .map(|value| {
                self.binds.push(Bind::Text(value));
                format!("${}", self.binds.len())
            })
            .collect();
        if !placeholders.is_empty() {
            self.clauses.push(format!("{column} IN ({})", placeholders.join(", ")));
        }
        self
    }

    /// A placeholder for a value bound outside the WHERE clause.
    fn next(&mut self, value: Bind) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }

    fn where_clause(&self) -> String {
        if self.clauses.is_empty() { String::new() } else { format!(" WHERE {}", self.clauses.join(" AND ")) }
    }

    fn query(self, sql: String) -> sqlx::query::Query<'static, Any, AnyArguments> {
        self.binds.into_iter().fold(sqlx::query(AssertSqlSafe(sql)), |query, bind| match bind {
            Bind::Text(text) => query.bind(text),
            Bind::Int(int) => query.bind(int),
        })
    }
}

impl Store {
    /// The (check, subscription) states `query` matches, ordered by check then
    /// subscription, each with its newest result and open problem's start.
    pub async fn states(&self, query: StateQuery<'_>) -> Result<Vec<StateRow>, StoreError> {
        // Placeholders in the order they appear in the text, for SQLite.
        let mut conditions = Conditions::default();
        let problem = conditions.next(Bind::Text(EventKind::Problem.as_str().to_owned()));
        let resolved = conditions.next(Bind::Text(EventKind::Resolved.as_str().to_owned()));
        if let Some(check) = query.check {
            conditions.and("s.check_name = ?", Bind::Text(check.to_owned()));
        }
        if let Some(subscription) = query.subscription {
            conditions.and("s.subscription = ?", Bind::Text(subscription.to_owned()));
        }
        let sql = format!(
            "SELECT s.state, s.check_name, s.subscription, s.updated_at, r.body, \
               (SELECT min(p.occurred_at) FROM events p \
                 WHERE p.check_name = s.check_name AND p.subscription = s.subscription AND p.kind = {problem} \
                 AND p.seq > COALESCE((SELECT max(z.seq) FROM events z WHERE z.check_name = s.check_name \
                   AND z.subscription = s.subscription AND z.kind = {resolved}), 0)) \
             FROM check_state s \
             LEFT JOIN results r ON r.seq = (SELECT max(l.seq) FROM results l \
               WHERE l.check_name = s.check_name AND l.subscription = s.subscription){} \
             ORDER BY s.check_name, s.subscription",
            conditions.where_clause()
        );
        let rows = conditions.query(sql).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let last_result: Option<String> = row.try_get(4)?;
                Ok(StateRow {
                    state: json_column(row, "check state")?,
                    check: row.try_get(1)?,
                    subscription: row.try_get(2)?,
                    updated_at: from_millis(row.try_get(3)?),
                    last_result: last_result.map(|body| parse(&body, "result")).transpose()?,
                    problem_since: row.try_get::<Option<i64>, _>(5)?.map(from_millis),
                })
            })
            .collect()
    }

    /// Events `query` matches, newest first.
    pub async fn events(&self, query: &EventQuery<'_>) -> Result<Vec<LoggedEvent>, StoreError> {
        let mut conditions = Conditions::default();
        if let Some(check) = query.check {
            conditions.and("check_name = ?", Bind::Text(check.to_owned()));
        }
        if let Some(subscription) = query.subscription {
            conditions.and("subscription = ?", Bind::Text(subscription.to_owned()));
        }
        conditions.any_of("kind", query.kinds.iter().map(|kind| kind.as_str().to_owned()));
        if let Some(since) = query.since {
            conditions.and("occurred_at >= ?", Bind::Int(millis(since)));
        }
        if let Some(before) = query.before {
            conditions.and("seq < ?", Bind::Int(before));
        }
        let limit = conditions.next(Bind::Int(i64::from(query.limit)));
        let sql = format!("SELECT body, seq FROM events{} ORDER BY seq DESC LIMIT {limit}", conditions.where_clause());
        let rows = conditions.query(sql).fetch_all(&self.pool).await?;
        rows.iter().map(|row| Ok(LoggedEvent { event: json_column(row, "event")?, seq: row.try_get(1)? })).collect()
    }

    /// Every outbox row of the given incidents, oldest first.
    pub async fn notifications(&self, incident_keys: &[String]) -> Result<Vec<Notification>, StoreError> {
        if incident_keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut conditions = Conditions::default();
        conditions.any_of("incident_key", incident_keys.iter().cloned());
        let sql = format!(
            "SELECT event_id, handler, incident_key, state, attempts, last_error, created_at, next_attempt_at, \
             done_at FROM outbox{} ORDER BY seq",
            conditions.where_clause()
        );
        let rows = conditions.query(sql).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(Notification {
                    event_id: row.try_get(0)?,
                    handler: row.try_get(1)?,
                    incident_key: row.try_get(2)?,
                    state: row.try_get(3)?,
                    attempts: u32::try_from(row.try_get::<i64, _>(4)?).unwrap_or(u32::MAX),
                    last_error: row.try_get(5)?,
                    created_at: from_millis(row.try_get(6)?),
                    next_attempt_at: from_millis(row.try_get(7)?),
                    done_at: row.try_get::<Option<i64>, _>(8)?.map(from_millis),
                })
            })
            .collect()
    }

    /// When the oldest notification still to deliver was decided.
    pub async fn oldest_pending_notification(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row =
            sqlx::query("SELECT min(created_at) FROM outbox WHERE state = 'pending'").fetch_one(&self.pool).await?;
        Ok(row.try_get::<Option<i64>, _>(0)?.map(from_millis))
    }

    /// A round trip to the database: whether it answers now.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").fetch_one(&self.pool).await?;
        Ok(())
    }
}

fn parse<T: serde::de::DeserializeOwned>(text: &str, what: &'static str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|source| StoreError::Corrupt { what, source })
}
