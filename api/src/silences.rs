//! Silences: `GET /api/v1/silences?state=`, `POST /api/v1/silences`,
//! `POST /api/v1/silences/preview`, `POST /api/v1/silences/{id}/expire`.

pub mod request;
