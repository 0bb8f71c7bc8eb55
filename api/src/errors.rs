//! Every API error is `{"error": "..."}` with its status code.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub enum ApiError {
    /// Bad input; the message names the field.
    BadRequest(String),
    NotFound,
    /// The store failed; details go to the log, not the answer.
    Store(handlers::store::StoreError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, message) = match self {
            Self::BadRequest(message) => (StatusCode::BAD_REQUEST, message),
            Self::NotFound => (StatusCode::NOT_FOUND, "no such API path".to_owned()),
            Self::Store(e) => {
                tracing::error!(error = %e, "API: state store query failed");
                (StatusCode::SERVICE_UNAVAILABLE, "state store unavailable".to_owned())
            }
        };
        (code, Json(serde_json::json!({ "error": message }))).into_response()
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
