//! Who was told what (migration 0004): the `notified` rows say, per
//! (handler, incident), which problem status was last queued for that
//! handler, so a resolve goes exactly where its problem went; the `held`
//! rows keep the open problems a silence held back, so they can be told
//! when the silence ends. Both are written in the batch that decides the
//! event, so handlers sharing a store, and a restarted one, agree.

use std::collections::BTreeMap;

use protocol::Status;
use sqlx::Row;

use super::{Batch, Store, StoreError, json_column, millis, to_json};
use crate::event::Event;

impl Batch {
    /// The handlers told of an open problem of `incident_key`, with the status
    /// each was last told.
    pub async fn told(&mut self, incident_key: &str) -> Result<BTreeMap<String, Status>, StoreError> {
        load_told(&mut self.tx, incident_key).await
    }

    /// Records that `event` (a problem) is queued for each of its handlers.
    pub async fn record_told(&mut self, event: &Event) -> Result<(), StoreError> {
        let incident = event.incident_key();
        for handler in &event.handlers {
            sqlx::query(
                "INSERT INTO notified (handler, incident_key, status, event_id, at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (handler, incident_key) DO UPDATE SET status = excluded.status, \
                 event_id = excluded.event_id, at = excluded.at",
            )
            .bind(handler)
            .bind(incident.as_str())
            .bind(i64::from(event.status.code()))
            .bind(&event.id)
            .bind(millis(event.occurred_at))
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }

    /// Forgets who was told of `incident_key`: its problem is resolved.
    pub async fn forget_told(&mut self, incident_key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM notified WHERE incident_key = $1").bind(incident_key).execute(&mut *self.tx).await?;
        Ok(())
    }

    /// Keeps `event`, silenced, as its incident's open held-back problem
    /// (replacing an older one); `event.handlers` are those it was routed to.
    pub async fn hold(&mut self, event: &Event) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO held (incident_key, event_id, body, held_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (incident_key) DO UPDATE SET event_id = excluded.event_id, body = excluded.body, \
             held_at = excluded.held_at",
        )
        .bind(event.incident_key())
        .bind(&event.id)
        .bind(to_json(event)?)
        .bind(millis(event.occurred_at))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Drops the held-back problem of `incident_key`, if any: it was resolved,
    /// or told to its handlers after all.
    pub async fn drop_held(&mut self, incident_key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM held WHERE incident_key = $1").bind(incident_key).execute(&mut *self.tx).await?;
        Ok(())
    }

    /// Takes the held-back event `event_id` of `incident_key` to tell it now;
    /// `false` when it is gone or was replaced (another handler sharing the
    /// store took it, or a newer event decided), so it is told once.
    pub async fn take_held(&mut self, incident_key: &str, event_id: &str) -> Result<bool, StoreError> {
        let taken = sqlx::query("DELETE FROM held WHERE incident_key = $1 AND event_id = $2")
            .bind(incident_key)
            .bind(event_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(taken.rows_affected() == 1)
    }
}

impl Store {
    /// Every held-back open problem, oldest first.
    pub async fn held(&self) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query("SELECT body FROM held ORDER BY held_at, incident_key").fetch_all(&self.pool).await?;
        rows.iter().map(|row| json_column(row, "held event")).collect()
    }

    /// Who was told of an open problem of `incident_key` (outside any batch).
    pub async fn notified(&self, incident_key: &str) -> Result<BTreeMap<String, Status>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        load_told(&mut conn, incident_key).await
    }
}

async fn load_told(conn: &mut sqlx::AnyConnection, incident_key: &str) -> Result<BTreeMap<String, Status>, StoreError> {
    let rows = sqlx::query("SELECT handler, status FROM notified WHERE incident_key = $1")
        .bind(incident_key)
        .fetch_all(conn)
        .await?;
    let mut told = BTreeMap::new();
    for row in &rows {
        let code: i64 = row.try_get(1)?;
        // A status code this build does not know is still "told something".
        let status = Status::ALL.into_iter().find(|s| i64::from(s.code()) == code).unwrap_or(Status::Unknown);
        told.insert(row.try_get(0)?, status);
    }
    Ok(told)
}
