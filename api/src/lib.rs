//! The operator HTTP API under `/api/v1`, JSON, answered from the state store
//! so every handler on one PostgreSQL gives the same answer.
//!
//! One module per resource; [`errors`] is the one error shape. Reads tolerate
//! unknown query parameters (as readers of wire JSON tolerate unknown fields),
//! so an older handler answers a newer client.
#![forbid(unsafe_code)]

mod checks;
pub mod errors;
pub mod silences;

use axum::Router;
use axum::routing::get;
use handlers::store::Store;

/// The API's routes, to merge beside a role's probes.
pub fn router(store: Store) -> Router {
    let v1 = Router::new().route("/checks", get(checks::list)).fallback(errors::not_found).with_state(store);
    Router::new().nest("/api/v1", v1)
}
