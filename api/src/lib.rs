//! The operator HTTP API under `/api/v1`, JSON, answered from the state store
//! so every handler on one PostgreSQL gives the same answer.
//!
//! One module per resource; [`errors`] is the one error shape and [`auth`]
//! the bearer tokens. Reads tolerate unknown query parameters (as readers of
//! wire JSON tolerate unknown fields), so an older handler answers a newer
//! client.
#![forbid(unsafe_code)]

pub mod auth;
pub mod checks;
pub mod errors;
mod events;
pub mod history;
mod incidents;
mod params;
pub mod runners;
pub mod silences;
mod status;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::{get, post};
use handlers::store::Store;

pub use auth::{ApiAuth, Tokens, Writer};
pub use silences::Windows;

/// What every API handler may read: the store, who may write, and the
/// maintenance windows in force (they live in git, not in the store).
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub auth: Arc<ApiAuth>,
    pub windows: Windows,
}

impl FromRef<ApiState> for Store {
    fn from_ref(state: &ApiState) -> Self {
        state.store.clone()
    }
}

impl FromRef<ApiState> for Windows {
    fn from_ref(state: &ApiState) -> Self {
        state.windows.clone()
    }
}

impl FromRef<ApiState> for Arc<ApiAuth> {
    fn from_ref(state: &ApiState) -> Self {
        state.auth.clone()
    }
}

/// The API's routes, to merge beside a role's probes. Every route, the
/// unknown ones included, is behind the read gate of `auth`. `windows`
/// follows reloads, so an open window shows as a silence.
pub fn router(store: Store, auth: ApiAuth, windows: Windows) -> Router {
    let state = ApiState { store, auth: Arc::new(auth), windows };
    let v1 = Router::new()
        .route("/status", get(status::show))
        .route("/checks", get(checks::list))
        .route("/silences", get(silences::list).post(silences::create))
        .route("/silences/preview", post(silences::preview))
        .route("/silences/{id}/expire", post(silences::expire))
        .route("/checks/{check}/{subscription}", get(checks::detail))
        .route("/checks/{check}/{subscription}/history", get(history::show))
        .route("/events", get(events::list))
        .route("/incidents", get(incidents::list))
        .route("/runners", get(runners::list))
        .fallback(errors::not_found)
        .layer(axum::middleware::from_fn_with_state(state.auth.clone(), auth::require_reader))
        .with_state(state);
    Router::new().nest("/api/v1", v1)
}
