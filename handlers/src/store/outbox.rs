//! The notification outbox: one row per (event, handler), written in the same
//! transaction as the state change that decided the event, delivered later by
//! the sender task and marked done. A crash between "decided" and "sent"
//! therefore re-sends rather than loses.
//!
//! Rows of one incident (same handler and incident key) are delivered in the
//! order they were decided: a row is due only when no earlier row of its
//! incident is still pending, so a `resolved` never overtakes the `problem`
//! it resolves while that problem waits for a retry.
//!
//! Several handlers may share a PostgreSQL outbox. A sender claims a row
//! before delivering it by moving its `next_attempt_at` forward (a lease),
//! conditional on the value it read; only one sender wins that update. The
//! lease is taken per claim, from the time of the claim, so it covers that
//! row's delivery however long the rows before it took.

use chrono::{DateTime, Utc};
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, Row};

use super::{Store, StoreError, from_millis, millis};
use crate::event::Event;

/// A pending delivery of one event to one handler.
#[derive(Clone, Debug)]
pub struct OutboxItem {
    pub seq: i64,
    pub handler: String,
    /// Delivery attempts made so far.
    pub attempts: u32,
    pub due_at: DateTime<Utc>,
    /// When the event was decided: a grouped handler's group waits from its
    /// oldest row's.
    pub created_at: DateTime<Utc>,
    payload: String,
    /// `next_attempt_at` exactly as read: the claim's condition.
    due_ms: i64,
}

impl OutboxItem {
    pub fn event(&self) -> Result<Event, StoreError> {
        serde_json::from_str(&self.payload).map_err(|source| StoreError::Corrupt { what: "outbox payload", source })
    }
}

/// How one delivery attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Settlement {
    Sent,
    /// Refused for good, or given up on: never retried.
    Dropped(String),
    /// Try again at `at`.
    Retry {
        error: String,
        at: DateTime<Utc>,
    },
}

impl Store {
    /// Rows due at `now`, oldest first, at most one per (handler, incident).
    pub async fn due_outbox(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<OutboxItem>, StoreError> {
        self.due_rows("", now, limit).await
    }

    /// `handler`'s rows due at `now`: a grouped handler's groups whole,
    /// however many rows of other handlers share the round.
    pub async fn due_outbox_of(
        &self,
        handler: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        self.due_rows(handler, now, limit).await
    }

    /// Due rows of `handler`, or of every handler when it is empty (no
    /// handler's name is).
    async fn due_rows(&self, handler: &str, now: DateTime<Utc>, limit: u32) -> Result<Vec<OutboxItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT o.seq, o.handler, o.payload, o.attempts, o.next_attempt_at, o.created_at FROM outbox o \
             WHERE o.state = 'pending' AND o.next_attempt_at <= $1 AND ($3 = '' OR o.handler = $3) AND NOT EXISTS ( \
                SELECT 1 FROM outbox e WHERE e.handler = o.handler AND e.incident_key = o.incident_key \
                AND e.state = 'pending' AND e.seq < o.seq) \
             ORDER BY o.seq LIMIT $2",
        )
        .bind(millis(now))
        .bind(i64::from(limit))
        .bind(handler)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let due_ms: i64 = row.try_get(4)?;
                Ok(OutboxItem {
                    seq: row.try_get(0)?,
                    handler: row.try_get(1)?,
                    payload: row.try_get(2)?,
                    attempts: u32::try_from(row.try_get::<i64, _>(3)?).unwrap_or(u32::MAX),
                    due_at: from_millis(due_ms),
                    created_at: from_millis(row.try_get(5)?),
                    due_ms,
                })
            })
            .collect()
    }

    /// Leases `item` to this sender until `until`; `false` when another
    /// sender claimed or settled it first.
    pub async fn claim(&self, item: &OutboxItem, until: DateTime<Utc>) -> Result<bool, StoreError> {
        let claimed = claim_query(item, until).execute(&self.pool).await?;
        Ok(claimed.rows_affected() == 1)
    }

    /// Leases the rows of one grouped message together, in one transaction,
    /// and says which this sender won. Nothing when the first row is taken:
    /// whoever took it is sending the group. A sender that read the group
    /// later therefore waits on the first one's transaction and then finds
    /// its rows taken, so concurrent senders do not split a group.
    pub async fn claim_group(&self, items: &[&OutboxItem], until: DateTime<Utc>) -> Result<Vec<bool>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut won = Vec::with_capacity(items.len());
        for item in items {
            let claimed = claim_query(item, until).execute(&mut *tx).await?.rows_affected() == 1;
            if won.is_empty() && !claimed {
                tx.rollback().await?;
                return Ok(vec![false; items.len()]);
            }
            won.push(claimed);
        }
        tx.commit().await?;
        Ok(won)
    }

    pub async fn settle(&self, seq: i64, settlement: &Settlement, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.settle_all(&[seq], settlement, now).await
    }

    /// Settles the rows of one grouped message together, in one transaction:
    /// a crash leaves all of them pending (sent again as the same group) or
    /// none.
    pub async fn settle_all(
        &self,
        seqs: &[i64],
        settlement: &Settlement,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for &seq in seqs {
            settle_query(seq, settlement, now).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Rows still to deliver: the outbox depth, for `/metrics`.
    pub async fn outbox_pending(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT count(*) FROM outbox WHERE state = 'pending'").fetch_one(&self.pool).await?;
        Ok(u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0))
    }

    /// Forgets delivered and dropped rows settled before `before`.
    pub async fn prune_outbox(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let pruned = sqlx::query("DELETE FROM outbox WHERE state <> 'pending' AND done_at < $1")
            .bind(millis(before))
            .execute(&self.pool)
            .await?;
        Ok(pruned.rows_affected())
    }
}

/// The conditional update that leases `item` until `until`.
fn claim_query(item: &OutboxItem, until: DateTime<Utc>) -> Query<'static, Any, AnyArguments> {
    sqlx::query("UPDATE outbox SET next_attempt_at = $1 WHERE seq = $2 AND state = 'pending' AND next_attempt_at = $3")
        .bind(millis(until))
        .bind(item.seq)
        .bind(item.due_ms)
}

/// The update that records how one row's delivery ended.
pub(super) fn settle_query(seq: i64, settlement: &Settlement, now: DateTime<Utc>) -> Query<'static, Any, AnyArguments> {
    match settlement {
        Settlement::Sent => sqlx::query(
            "UPDATE outbox SET state = 'sent', attempts = attempts + 1, last_error = NULL, done_at = $1 \
                 WHERE seq = $2",
        )
        .bind(millis(now))
        .bind(seq),
        Settlement::Dropped(reason) => sqlx::query(
            "UPDATE outbox SET state = 'dropped', attempts = attempts + 1, last_error = $1, done_at = $2 \
                 WHERE seq = $3",
        )
        .bind(reason.clone())
        .bind(millis(now))
        .bind(seq),
        Settlement::Retry { error, at } => sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2 WHERE seq = $3",
        )
        .bind(error.clone())
        .bind(millis(*at))
        .bind(seq),
    }
}
