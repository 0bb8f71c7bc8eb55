//! PagerDuty storm summaries: which incidents an open summary incident of a
//! handler covers. A storm is recorded in the transaction that settles its
//! trigger's rows, and each covered incident leaves it in the transaction
//! that settles its resolve's row. The last one to leave (a counter updated
//! in place, so concurrent senders on PostgreSQL take turns on it) queues
//! the summary's resolve as an ordinary event: it reaches PagerDuty through
//! the outbox like any other, and survives a restart.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::outbox::settle_query;
use super::{Settlement, Store, StoreError};
use crate::event::Event;

/// What settling a storm's rows changes besides the rows.
pub enum StormChange<'a> {
    /// The summary `storm` covering `incidents` was triggered.
    Open { storm: &'a str, incidents: &'a [String] },
    /// `incident`'s resolve: it leaves `storm`, and when it is the last,
    /// `summary_resolve` is logged and queued.
    Leave { storm: &'a str, incident: &'a str, summary_resolve: &'a Event },
}

impl Store {
    /// The storm covering each incident of `handler` that one covers.
    pub async fn storm_members(&self, handler: &str) -> Result<HashMap<String, String>, StoreError> {
        let rows = sqlx::query("SELECT incident_key, storm_key FROM storm_members WHERE handler = $1")
            .bind(handler)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }

    /// Settles `seqs` and applies `change`, in one transaction; a retry
    /// changes no storm.
    pub async fn settle_storm(
        &self,
        handler: &str,
        seqs: &[i64],
        settlement: &Settlement,
        change: StormChange<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut batch = self.begin().await?;
        let retry = matches!(settlement, Settlement::Retry { .. });
        match change {
            StormChange::Open { storm, incidents } if *settlement == Settlement::Sent => {
                sqlx::query("INSERT INTO storms (handler, storm_key, open) VALUES ($1, $2, $3)")
                    .bind(handler)
                    .bind(storm)
                    .bind(i64::try_from(incidents.len()).unwrap_or(i64::MAX))
                    .execute(&mut *batch.tx)
                    .await?;
                for incident in incidents {
                    sqlx::query("INSERT INTO storm_members (handler, incident_key, storm_key) VALUES ($1, $2, $3)")
                        .bind(handler)
                        .bind(incident)
                        .bind(storm)
                        .execute(&mut *batch.tx)
                        .await?;
                }
            }
            StormChange::Open { .. } => {}
            StormChange::Leave { storm, incident, summary_resolve } if !retry => {
                let left = sqlx::query("DELETE FROM storm_members WHERE handler = $1 AND incident_key = $2")
                    .bind(handler)
                    .bind(incident)
                    .execute(&mut *batch.tx)
                    .await?;
                if left.rows_affected() == 1 {
                    let open: i64 = sqlx::query(
                        "UPDATE storms SET open = open - 1 WHERE handler = $1 AND storm_key = $2 RETURNING open",
                    )
                    .bind(handler)
                    .bind(storm)
                    .fetch_one(&mut *batch.tx)
                    .await?
                    .try_get(0)?;
                    if open <= 0 {
                        sqlx::query("DELETE FROM storms WHERE handler = $1 AND storm_key = $2")
                            .bind(handler)
                            .bind(storm)
                            .execute(&mut *batch.tx)
                            .await?;
                        batch.add_event(summary_resolve).await?;
                    }
                }
            }
            StormChange::Leave { .. } => {}
        }
        for &seq in seqs {
            settle_query(seq, settlement, now).execute(&mut *batch.tx).await?;
        }
        batch.commit().await
    }
}
