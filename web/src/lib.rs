//! picket's status page and badges: server-rendered HTML and SVG, answered
//! from the state store through the API's own queries (so every handler on
//! one PostgreSQL shows the same page), with the CSS and the small refresh
//! script embedded in the binary: no build step, no CDN, and it works from
//! the `scratch` image.
//!
//! One module per page: [`index`] is `/`, [`check`] a check's page and its
//! silence form; [`plot`] draws the SVG plots, [`badge`] the badges,
//! [`session`] holds the read gate and the viewer's cookies, [`html`] the
//! escaping every page goes through.
#![forbid(unsafe_code)]

pub mod badge;
mod check;
pub mod html;
mod index;
pub mod plot;
mod session;

use std::sync::Arc;

use api::{ApiAuth, Windows};
use axum::Router;
use axum::extract::FromRef;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use handlers::store::Store;

/// What every page may read: the store, who may write, and the maintenance
/// windows in force.
#[derive(Clone)]
pub struct Web {
    store: Store,
    auth: Arc<ApiAuth>,
    windows: Windows,
}

impl FromRef<Web> for Arc<ApiAuth> {
    fn from_ref(web: &Web) -> Self {
        web.auth.clone()
    }
}

const CSS: &str = include_str!("../assets/page.css");
const SCRIPT: &str = include_str!("../assets/page.js");

/// The page's routes, to merge beside the API's. Pages and badges are
/// behind the read gate; `/login` and `/assets` are not.
pub fn router(store: Store, auth: ApiAuth, windows: Windows) -> Router {
    let web = Web { store, auth: Arc::new(auth), windows };
    let gated = Router::new()
        .route("/", get(index::show))
        .route("/checks/{check}/{subscription}", get(check::show))
        .route("/checks/{check}/{subscription}/silence", post(check::silence))
        .route("/badge/{check}/{subscription}/status.svg", get(badge::status))
        .route("/badge/{check}/{subscription}/{kind}/{file}", get(badge::figure))
        .layer(axum::middleware::from_fn_with_state(web.auth.clone(), session::require_reader));
    Router::new()
        .merge(gated)
        .route("/login", get(session::login_form).post(session::login))
        .route("/assets/page.css", get(|| async { asset("text/css; charset=utf-8", CSS) }))
        .route("/assets/page.js", get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }))
        .with_state(web)
}

fn asset(kind: &'static str, body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "max-age=300")], body)
}
