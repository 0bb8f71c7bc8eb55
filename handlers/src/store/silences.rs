//! Silences in the store (migration 0004): added once, expired once, never
//! edited, so every handler on one PostgreSQL gates by the same list.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Batch, Store, StoreError, from_millis, millis, to_json};
use crate::silence::{Expiry, Silence, SilenceState};

const COLUMNS: &str = "id, matcher, starts_at, ends_at, ends_on_resolve, comment, created_by, created_at, \
                       expired_at, expired_by, expired_reason";

/// Expired silences are kept at least this long (the API lists them).
pub const KEEP_EXPIRED_SILENCES: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

impl Store {
    /// Stores a new silence; an id already taken is an error.
    pub async fn add_silence(&self, silence: &Silence) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO silences (id, matcher, starts_at, ends_at, ends_on_resolve, comment, created_by, created_at, \
             expired_at, expired_by, expired_reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&silence.id)
        .bind(to_json(&silence.matcher)?)
        .bind(millis(silence.starts_at))
        .bind(millis(silence.ends_at))
        .bind(i64::from(silence.ends_on_resolve))
        .bind(&silence.comment)
        .bind(&silence.created_by)
        .bind(millis(silence.created_at))
        .bind(silence.expired.as_ref().map(|e| millis(e.at)))
        .bind(silence.expired.as_ref().map(|e| e.by.clone()))
        .bind(silence.expired.as_ref().map(|e| e.reason.clone()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends a silence at `at`, recording who and why. `None` when no silence
    /// has this id; one already expired (by hand or past its `ends_at`) is
    /// returned unchanged, so expiring twice records the first expiry.
    pub async fn expire_silence(
        &self,
        id: &str,
        by: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Silence>, StoreError> {
        sqlx::query(
            "UPDATE silences SET expired_at = $1, expired_by = $2, expired_reason = $3 \
             WHERE id = $4 AND expired_at IS NULL AND ends_at > $1",
        )
        .bind(millis(at))
        .bind(by)
        .bind(reason)
        .bind(id)
        .execute(&self.pool)
        .await?;
        self.silence(id).await
    }

    pub async fn silence(&self, id: &str) -> Result<Option<Silence>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM silences WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(silence_row).transpose()
    }

    /// Silences in `state` at `now` (all when `None`), newest first. Expired
    /// ones are kept at least [`KEEP_EXPIRED_SILENCES`].
    pub async fn silences(&self, now: DateTime<Utc>, state: Option<SilenceState>) -> Result<Vec<Silence>, StoreError> {
        let filter = match state {
            None => "$1 = $1",
            Some(SilenceState::Active) => "expired_at IS NULL AND starts_at <= $1 AND ends_at > $1",
            Some(SilenceState::Pending) => "expired_at IS NULL AND starts_at > $1 AND ends_at > $1",
            Some(SilenceState::Expired) => "(expired_at IS NOT NULL OR ends_at <= $1)",
        };
        let sql = format!("SELECT {COLUMNS} FROM silences WHERE {filter} ORDER BY created_at DESC, id DESC");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(millis(now)).fetch_all(&self.pool).await?;
        rows.iter().map(silence_row).collect()
    }

    /// Forgets silences that ended before `before`; returns how many.
    pub async fn prune_silences(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let pruned =
            sqlx::query("DELETE FROM silences WHERE ends_at < $1 OR (expired_at IS NOT NULL AND expired_at < $1)")
                .bind(millis(before))
                .execute(&self.pool)
                .await?;
        Ok(pruned.rows_affected())
    }
}

impl Batch {
    /// Silences not expired by hand that end after `from`: every silence that
    /// can be active at `from` or later, for the gate to judge per event.
    pub async fn silences_from(&mut self, from: DateTime<Utc>) -> Result<Vec<Silence>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM silences WHERE expired_at IS NULL AND ends_at > $1");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(millis(from)).fetch_all(&mut *self.tx).await?;
        rows.iter().map(silence_row).collect()
    }
}

fn silence_row(row: &AnyRow) -> Result<Silence, StoreError> {
    let matcher: String = row.try_get(1)?;
    let expired_at: Option<i64> = row.try_get(8)?;
    let expired = match expired_at {
        Some(at) => Some(Expiry {
            at: from_millis(at),
            by: row.try_get::<Option<String>, _>(9)?.unwrap_or_default(),
            reason: row.try_get::<Option<String>, _>(10)?.unwrap_or_default(),
        }),
        None => None,
    };
    Ok(Silence {
        id: row.try_get(0)?,
        matcher: serde_json::from_str(&matcher).map_err(|source| StoreError::Corrupt { what: "silence", source })?,
        starts_at: from_millis(row.try_get(2)?),
        ends_at: from_millis(row.try_get(3)?),
        ends_on_resolve: row.try_get::<i64, _>(4)? != 0,
        comment: row.try_get(5)?,
        created_by: row.try_get(6)?,
        created_at: from_millis(row.try_get(7)?),
        expired,
    })
}
