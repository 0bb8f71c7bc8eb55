//! `GET /api/v1/status`: the fleet at a glance. It answers 200 even when
//! the store does not: `store.ok` is then false and says why, and the parts
//! read from the store are null.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use handlers::store::{StateQuery, Store, StoreError};
use protocol::Status;
use serde::Serialize;

use crate::runners::Pool;
use crate::silences::Windows;

#[derive(Serialize)]
pub(crate) struct StatusView {
    checks: Option<CheckCounts>,
    pools: Option<Vec<Pool>>,
    open_incidents: Option<u32>,
    /// Silences active now (maintenance windows not counted yet).
    active_silences: Option<u32>,
    oldest_undelivered: Option<Undelivered>,
    store: StoreHealth,
}

#[derive(Serialize)]
struct CheckCounts {
    /// (check, subscription) pairs with a state.
    total: u32,
    /// By the status of the newest result; every status is listed.
    by_status: BTreeMap<&'static str, u32>,
    flapping: u32,
}

/// The oldest notification still to deliver: a stuck outbox shows here.
#[derive(Serialize)]
struct Undelivered {
    queued_at: DateTime<Utc>,
    age_secs: i64,
}

#[derive(Serialize)]
struct StoreHealth {
    ok: bool,
    backend: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Everything read from the store, or the first failure.
struct Gathered {
    checks: CheckCounts,
    pools: Vec<Pool>,
    open_incidents: u32,
    active_silences: u32,
    oldest_undelivered: Option<Undelivered>,
}

async fn gather(store: &Store, windows: &Windows, now: DateTime<Utc>) -> Result<Gathered, StoreError> {
    store.ping().await?;
    let mut checks =
        CheckCounts { total: 0, by_status: Status::ALL.into_iter().map(|s| (s.name(), 0)).collect(), flapping: 0 };
    for row in store.states(StateQuery::default()).await? {
        checks.total += 1;
        checks.flapping += u32::from(row.state.flapping);
        if let Some(status) = row.state.history.back() {
            *checks.by_status.entry(status.name()).or_default() += 1;
        }
    }
    let pools = crate::runners::load(store).await?.pools().to_vec();
    let episodes = crate::incidents::episodes(store).await?;
    let open_incidents = u32::try_from(episodes.iter().filter(|e| e.is_open()).count()).unwrap_or(u32::MAX);
    let oldest_undelivered = store
        .oldest_pending_notification()
        .await?
        .map(|queued_at| Undelivered { queued_at, age_secs: (now - queued_at).num_seconds().max(0) });
    let active_silences =
        u32::try_from(crate::silences::ActiveSilences::load(store, windows).await?.len()).unwrap_or(u32::MAX);
    Ok(Gathered { checks, pools, open_incidents, active_silences, oldest_undelivered })
}

pub(crate) async fn show(State(store): State<Store>, State(windows): State<Windows>) -> Json<StatusView> {
    let backend = store.backend().name();
    let view = match gather(&store, &windows, Utc::now()).await {
        Ok(g) => StatusView {
            checks: Some(g.checks),
            pools: Some(g.pools),
            open_incidents: Some(g.open_incidents),
            active_silences: Some(g.active_silences),
            oldest_undelivered: g.oldest_undelivered,
            store: StoreHealth { ok: true, backend, error: None },
        },
        Err(e) => {
            tracing::warn!(error = %e, "API status: the state store failed");
            StatusView {
                checks: None,
                pools: None,
                open_incidents: None,
                active_silences: None,
                oldest_undelivered: None,
                store: StoreHealth { ok: false, backend, error: Some(e.to_string()) },
            }
        }
    };
    Json(view)
}

#[cfg(test)]
mod tests {
    use handlers::EventKind;

    use super::*;
    use crate::incidents::tests::store_with;

    /// No maintenance windows.
    fn no_windows() -> State<Windows> {
        State(tokio::sync::watch::channel(std::sync::Arc::from([])).1)
    }

    #[tokio::test]
    async fn status_counts_open_incidents_the_oldest_undelivered_and_open_windows() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(&dir, &[(EventKind::Problem, "web", "r1"), (EventKind::Missed, "", "")]).await;
        let always = protocol::definition::window::parse_window(serde_json::json!({"kind": "maintenance",
            "name": "always", "match": {"check": "web"}, "cron": "* * * * * *", "duration": "1h", "comment": "x"}))
        .unwrap();
        let (_keep, windows) = tokio::sync::watch::channel(std::sync::Arc::from([always]));
        let Json(view) = show(State(store.clone()), State(windows)).await;
        let view = serde_json::to_value(view).unwrap();
        assert_eq!(view["open_incidents"], 2);
        assert_eq!(view["oldest_undelivered"]["queued_at"], "1970-01-01T00:00:00Z");
        assert_eq!(view["store"], serde_json::json!({"ok": true, "backend": "sqlite"}));
        assert_eq!(view["active_silences"], 1, "the open window");
        store.close().await;
    }

    #[tokio::test]
    async fn a_failing_store_is_reported_not_a_503() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(&dir, &[]).await;
        store.close().await;
        let Json(view) = show(State(store), no_windows()).await;
        let view = serde_json::to_value(view).unwrap();
        assert_eq!(view["store"]["ok"], false);
        assert!(view["store"]["error"].as_str().is_some_and(|e| !e.is_empty()), "{view}");
        assert_eq!(view["checks"], serde_json::Value::Null);
    }
}
