//! Versioned schema migrations, one list per backend, embedded in the binary
//! and applied at open by sqlx's migrator (which records them in
//! `_sqlx_migrations`, checks their checksums and, on PostgreSQL, holds an
//! advisory lock so handlers starting together migrate once).
//!
//! To change the schema, add a file to both directories and a line to both
//! lists with the next version; never edit an applied migration.

use std::borrow::Cow;

use sqlx::AnyPool;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Row, SqlSafeStr};

use super::{Backend, StoreError};

/// (version, description, SQL)
type Step = (i64, &'static str, &'static str);

const SQLITE: &[Step] = &[
    (1, "state", include_str!("../../migrations/sqlite/0001_state.sql")),
    (2, "events by time", include_str!("../../migrations/sqlite/0002_events_by_time.sql")),
    (3, "runners, results by request", include_str!("../../migrations/sqlite/0003_runners.sql")),
    (4, "silences, notified, held", include_str!("../../migrations/sqlite/0004_silences.sql")),
    (6, "latency steps", include_str!("../../migrations/sqlite/0006_latency_steps.sql")),
    (7, "storms", include_str!("../../migrations/sqlite/0007_storms.sql")),
    (8, "open latency steps", include_str!("../../migrations/sqlite/0008_open_steps.sql")),
];
const POSTGRES: &[Step] = &[
    (1, "state", include_str!("../../migrations/postgres/0001_state.sql")),
    (2, "events by time", include_str!("../../migrations/postgres/0002_events_by_time.sql")),
    (3, "runners, results by request", include_str!("../../migrations/postgres/0003_runners.sql")),
    (4, "silences, notified, held", include_str!("../../migrations/postgres/0004_silences.sql")),
    (6, "latency steps", include_str!("../../migrations/postgres/0006_latency_steps.sql")),
    (7, "storms", include_str!("../../migrations/postgres/0007_storms.sql")),
    (8, "open latency steps", include_str!("../../migrations/postgres/0008_open_steps.sql")),
];

/// Applies pending migrations; on PostgreSQL creates `schema` first when it
/// does not exist (only then: creating needs a privilege an installation
/// given a ready-made schema may not have).
pub(super) async fn run(pool: &AnyPool, backend: Backend, schema: Option<&str>) -> Result<(), StoreError> {
    let steps = match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    };
    let mut migrator = Migrator::with_migrations(
        steps
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(version, Cow::Borrowed(description), MigrationType::Simple, sql.into_sql_str(), false)
            })
            .collect(),
    );
    if let Some(schema) = schema {
        let exists = sqlx::query("SELECT count(*) FROM pg_namespace WHERE nspname = $1")
            .bind(schema)
            .fetch_one(pool)
            .await?
            .try_get::<i64, _>(0)?
            > 0;
        if !exists {
            tracing::info!(schema, "creating the state schema");
            migrator.create_schema(schema.to_owned());
        }
    }
    migrator.run(pool).await?;
    Ok(())
}
