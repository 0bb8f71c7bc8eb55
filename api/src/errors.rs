//! Every API error is `{"error": "..."}` with its status code.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub enum ApiError {
    /// Bad input; the message names the field.
    BadRequest(String),
    /// An unknown API path.
    NotFound,
    /// A path of the API naming something the store does not hold; the
    /// message says what.
    Missing(String),
    /// No bearer token, or an unknown one (401 with `WWW-Authenticate`).
    Unauthorized(String),
    /// A known token that may not do this, or writes not configured at all.
    Forbidden(String),
    /// A request the resource's nature refuses (expiring a maintenance
    /// window, which lives in git); the message says why.
    Conflict(String),
    /// The store failed; details go to the log, not the answer.
    Store(handlers::store::StoreError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, message) = match self {
            Self::BadRequest(message) => (StatusCode::BAD_REQUEST, message),
            Self::NotFound => (StatusCode::NOT_FOUND, "no such API path".to_owned()),
            Self::Missing(message) => (StatusCode::NOT_FOUND, message),
            Self::Unauthorized(message) => (StatusCode::UNAUTHORIZED, message),
            Self::Forbidden(message) => (StatusCode::FORBIDDEN, message),
            Self::Conflict(message) => (StatusCode::CONFLICT, message),
            Self::Store(e) => {
                tracing::error!(error = %e, "API: state store query failed");
                (StatusCode::SERVICE_UNAVAILABLE, "state store unavailable".to_owned())
            }
        };
        let mut response = (code, Json(serde_json::json!({ "error": message }))).into_response();
        if code == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<handlers::store::StoreError> for ApiError {
    fn from(e: handlers::store::StoreError) -> Self {
        Self::Store(e)
    }
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::NotFound
}
