//! The read gate and the viewer's preferences, carried in cookies because a
//! browser cannot send a bearer header.
//!
//! With `PICKET_API_READ_TOKENS` set, every page and badge needs a read (or
//! write) token: `/login` takes one in a form and sets it as the cookie
//! `picket_token` (HttpOnly, so no script reads it; SameSite=Strict, so no
//! other site's form or image sends it). The token is checked by the API's
//! own [`ApiAuth`] on every request, never logged or shown. `picket_tz` is
//! the viewer's IANA zone, set by the page's script, for the plots' axes.

use std::sync::Arc;

use api::ApiAuth;
use axum::Form;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono_tz::Tz;
use serde::Deserialize;

use crate::html::{Esc, Segment, page};

const TOKEN_COOKIE: &str = "picket_token";
const ZONE_COOKIE: &str = "picket_tz";
/// How long the login lasts: a month, or until the token is removed.
const LOGIN_SECONDS: u32 = 30 * 24 * 3600;

/// The value of cookie `name`, percent-decoded.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| decode(value))
}

/// Undoes [`Segment`]'s percent-encoding (and the script's `encodeURIComponent`).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The layer over every page and badge: with read tokens configured, the
/// `picket_token` cookie must hold a read or write token.
pub(crate) async fn require_reader(State(auth): State<Arc<ApiAuth>>, request: Request, next: Next) -> Response {
    let token = cookie(request.headers(), TOKEN_COOKIE);
    if auth.may_read(token.as_deref().map(str::as_bytes)) {
        return next.run(request).await;
    }
    login_page(StatusCode::UNAUTHORIZED, "This picket needs a read token (PICKET_API_READ_TOKENS is set).")
}

fn login_page(code: StatusCode, message: &str) -> Response {
    let body = format!(
        r#"<section class="card login"><h1>Sign in</h1><p>{}</p>
<form method="post" action="/login"><label>Token <input type="password" name="token" autocomplete="current-password" required></label>
<button type="submit">Sign in</button></form>
<p class="hint">The token is kept in an HttpOnly, SameSite=Strict cookie for 30 days.</p></section>"#,
        Esc(message)
    );
    (code, Html(page("Sign in", &body, ""))).into_response()
}

pub(crate) async fn login_form(State(auth): State<Arc<ApiAuth>>) -> Response {
    if auth.read.is_none() {
        return Redirect::to("/").into_response();
    }
    login_page(StatusCode::OK, "Give a read or write token to see this picket.")
}

#[derive(Deserialize)]
pub(crate) struct Login {
    token: String,
}

pub(crate) async fn login(State(auth): State<Arc<ApiAuth>>, Form(login): Form<Login>) -> Response {
    let token = login.token.trim();
    if auth.read.is_none() || !auth.may_read(Some(token.as_bytes())) {
        return login_page(StatusCode::UNAUTHORIZED, "That is not a known token.");
    }
    let cookie =
        format!("{TOKEN_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={LOGIN_SECONDS}", Segment(token));
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

/// The viewer's time zone, from the `picket_tz` cookie; UTC until the
/// script has set it (or when it names no known zone).
pub struct Zone(pub Tz);

impl<S: Send + Sync> FromRequestParts<S> for Zone {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(cookie(&parts.headers, ZONE_COOKIE).and_then(|zone| zone.parse().ok()).unwrap_or(Tz::UTC)))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn cookies_are_found_and_decoded() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; picket_tz=Europe%2FParis;picket_token=x%3By"));
        assert_eq!(cookie(&headers, ZONE_COOKIE).as_deref(), Some("Europe/Paris"));
        assert_eq!(cookie(&headers, TOKEN_COOKIE).as_deref(), Some("x;y"));
        assert_eq!(cookie(&headers, "b"), None);
        assert_eq!(decode(&Segment("tok:en;,=é").to_string()), "tok:en;,=é");
        assert_eq!(decode("100%"), "100%");
    }
}
