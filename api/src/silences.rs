//! Silences: `GET /api/v1/silences?state=`, `POST /api/v1/silences`,
//! `POST /api/v1/silences/preview`, `POST /api/v1/silences/{id}/expire`.
//!
//! There is no way to edit or delete one: a changed silence is a new one, and
//! expiring records who and when, so "who silenced this, and why?" always
//! has an answer.

pub mod request;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use handlers::silence::{is_window, open_windows};
use handlers::store::{StateQuery, Store, StoreError};
use handlers::{Silence, SilenceState, Silencers};
use protocol::Status;
use protocol::definition::MaintenanceWindow;
use protocol::silence::SilenceTarget;
use serde::Serialize;
use tokio::sync::watch;

use crate::auth::Writer;
use crate::errors::ApiError;
use request::SilenceRequest;

/// The `reason` recorded when someone expires a silence through the API.
const EXPIRED_BY_HAND: &str = "expired by hand";

/// The maintenance windows in force, which a reload of the definitions
/// replaces. An open one is listed, and applies, as the active silence
/// `maintenance:<name>` made by `git`.
pub type Windows = watch::Receiver<Arc<[MaintenanceWindow]>>;

/// A silence with its state now, as every silence endpoint answers.
#[derive(Serialize)]
pub(crate) struct SilenceView {
    #[serde(flatten)]
    silence: Silence,
    state: SilenceState,
}

impl SilenceView {
    fn at(silence: Silence, now: DateTime<Utc>) -> Self {
        Self { state: silence.state_at(now), silence }
    }
}

/// The store's silences in `state` (all when not given), and the windows
/// open now when active ones are asked for.
pub(crate) async fn list(
    State(store): State<Store>,
    State(windows): State<Windows>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Vec<SilenceView>>, ApiError> {
    let state = query
        .get("state")
        .map(|s| s.parse::<SilenceState>().map_err(|e| ApiError::BadRequest(format!("state: {e}"))))
        .transpose()?;
    let now = Utc::now();
    let mut silences = store.silences(now, state).await?;
    if state.is_none_or(|s| s == SilenceState::Active) {
        silences.extend(open_windows(&windows.borrow(), now));
    }
    Ok(Json(silences.into_iter().map(|s| SilenceView::at(s, now)).collect()))
}

pub(crate) async fn create(
    State(store): State<Store>,
    writer: Writer,
    body: Bytes,
) -> Result<(StatusCode, Json<SilenceView>), ApiError> {
    let now = Utc::now();
    let silence = add(&store, writer, SilenceRequest::parse(&body)?, now).await?;
    Ok((StatusCode::CREATED, Json(SilenceView::at(silence, now))))
}

/// Validates `request` at `now` and stores it as `writer`'s silence: what
/// the API's create and the status page's form both do.
pub async fn add(
    store: &Store,
    writer: Writer,
    request: SilenceRequest,
    now: DateTime<Utc>,
) -> Result<Silence, ApiError> {
    let spec = request.validate(now)?;
    let silence = Silence {
        id: Silence::new_id(),
        matcher: spec.matcher,
        starts_at: spec.starts_at,
        ends_at: spec.ends_at,
        ends_on_resolve: spec.ends_on_resolve,
        comment: spec.comment,
        created_by: writer.name,
        created_at: now,
        expired: None,
    };
    store.add_silence(&silence).await?;
    tracing::info!(id = %silence.id, created_by = %silence.created_by, ends_at = %silence.ends_at, "silence added");
    Ok(silence)
}

/// What gates notifications now, to say which silences apply to a check:
/// the gate's own judgement ([`Silencers`]), over the store's active
/// silences and the open maintenance windows.
pub struct ActiveSilences {
    silencers: Silencers,
    count: usize,
    now: DateTime<Utc>,
}

impl ActiveSilences {
    pub async fn load(store: &Store, windows: &Windows) -> Result<Self, StoreError> {
        let now = Utc::now();
        let windows = windows.borrow().clone();
        Ok(Self::new(store.silences(now, Some(SilenceState::Active)).await?, windows, now))
    }

    /// `active`: the silences active at `now`; `windows`: all of them, open
    /// at `now` or not.
    pub(crate) fn new(active: Vec<Silence>, windows: Arc<[MaintenanceWindow]>, now: DateTime<Utc>) -> Self {
        let count = active.len() + open_windows(&windows, now).len();
        Self { count, silencers: Silencers::new(active, windows), now }
    }

    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Ids of the silences that apply to this check.
    pub fn matching(&self, check: &str, subscription: &str, labels: &BTreeMap<String, String>) -> Vec<String> {
        self.silencers.silencing([SilenceTarget { check: Some(check), subscription, labels }], self.now)
    }
}

/// One (check, subscription) a silence would match now.
#[derive(Serialize)]
pub(crate) struct PreviewRow {
    check: String,
    subscription: String,
    status: Option<&'static str>,
}

#[derive(Serialize)]
pub(crate) struct Preview {
    matches: Vec<PreviewRow>,
}

/// What the silence in the body would match right now; validated as a
/// create would be, so a preview that passes is a create that passes.
/// Nothing is written, so a read is enough.
pub(crate) async fn preview(State(store): State<Store>, body: Bytes) -> Result<Json<Preview>, ApiError> {
    let spec = SilenceRequest::parse(&body)?.validate(Utc::now())?;
    let mut matches = Vec::new();
    for row in store.states(StateQuery::default()).await? {
        // A check's labels travel in its results' policy: the newest one says
        // what the check carries now.
        let labels = row.last_result.map(|r| r.policy.labels).unwrap_or_default();
        let target = SilenceTarget { check: Some(&row.check), subscription: &row.subscription, labels: &labels };
        if spec.matcher.matches(target) {
            matches.push(PreviewRow {
                status: row.state.history.back().copied().map(Status::name),
                check: row.check,
                subscription: row.subscription,
            });
        }
    }
    Ok(Json(Preview { matches }))
}

pub(crate) async fn expire(
    State(store): State<Store>,
    writer: Writer,
    Path(id): Path<String>,
) -> Result<Json<SilenceView>, ApiError> {
    if is_window(&id) {
        return Err(ApiError::Conflict(format!(
            "{id} is a maintenance window: it lives in git with the checks; change or remove its definition there"
        )));
    }
    let now = Utc::now();
    let silence = store
        .expire_silence(&id, &writer.name, EXPIRED_BY_HAND, now)
        .await?
        .ok_or_else(|| ApiError::Missing(format!("no silence has the id {id:?}")))?;
    if let Some(expiry) = &silence.expired {
        tracing::info!(id = %silence.id, by = %expiry.by, at = %expiry.at, "API: silence expired");
    }
    Ok(Json(SilenceView::at(silence, now)))
}
