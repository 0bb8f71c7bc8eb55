//! Read queries for the operator API: what the store holds, outside any
//! batch, so every handler on one PostgreSQL answers the same.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreError, from_millis};
use crate::state::CheckState;

/// The alerting state of one (check, subscription) as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StateRow {
    pub check: String,
    pub subscription: String,
    pub state: CheckState,
    pub updated_at: DateTime<Utc>,
}

impl Store {
    /// Every (check, subscription) state, ordered by check then subscription.
    pub async fn states(&self) -> Result<Vec<StateRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT state, check_name, subscription, updated_at FROM check_state ORDER BY check_name, subscription",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StateRow {
                    state: super::json_column(row, "check state")?,
                    check: row.try_get(1)?,
                    subscription: row.try_get(2)?,
                    updated_at: from_millis(row.try_get(3)?),
                })
            })
            .collect()
    }
}
