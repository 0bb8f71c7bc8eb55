//! `/checks/{check}/{subscription}`: one check on one subscription. Latency
//! over 1 h, 24 h and 7 d with uptime, the events, the last results, its
//! badges, and a form to silence it.
//!
//! The form is plain HTML (it works without the script) and posts to
//! `…/silence` with a write token typed in: the token is checked by the
//! API's [`ApiAuth`] and the silence made by the API's own
//! [`api::silences::add`], so the page can do nothing the API would refuse.

use std::fmt::Write;

use api::checks::CheckRow;
use api::errors::ApiError;
use api::history::{Window, uptime};
use api::silences::ActiveSilences;
use api::silences::request::SilenceRequest;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{TimeDelta, Utc};
use handlers::store::{EventQuery, StoreError};
use protocol::silence::{Glob, SilenceMatch};
use serde::Deserialize;

use crate::Web;
use crate::html::{Esc, check_href, days_left, page, span, status, status_named, time};
use crate::session::Zone;

/// Events and results listed on the page.
const LISTED: u32 = 20;

/// The plots: window, step, and the heading.
const PLOTS: [(TimeDelta, TimeDelta, &str); 3] = [
    (TimeDelta::hours(1), TimeDelta::minutes(1), "Last hour"),
    (TimeDelta::hours(24), TimeDelta::minutes(10), "Last 24 hours"),
    (TimeDelta::days(7), TimeDelta::hours(1), "Last 7 days"),
];

pub(crate) async fn show(
    State(web): State<Web>,
    Zone(zone): Zone,
    headers: HeaderMap,
    Path((check, subscription)): Path<(String, String)>,
    Query(query): Query<Shown>,
) -> Response {
    let notice = query.silenced.map(|id| {
        (
            StatusCode::OK,
            Notice {
                ok: true,
                text: format!("Silenced ({id}): notifications are held; see the list on the overview."),
            },
        )
    });
    render(&web, zone, &headers, &check, &subscription, notice).await
}

/// `?silenced=<id>`: where the form sends the browser after a silence.
#[derive(Deserialize)]
pub(crate) struct Shown {
    silenced: Option<String>,
}

/// A message above the form: what the last submission did.
struct Notice {
    ok: bool,
    text: String,
}

async fn render(
    web: &Web,
    zone: chrono_tz::Tz,
    headers: &HeaderMap,
    check: &str,
    subscription: &str,
    notice: Option<(StatusCode, Notice)>,
) -> Response {
    let row = match api::checks::state_row(&web.store, check, subscription).await {
        Ok(row) => row,
        Err(ApiError::Store(e)) => return unavailable(&e),
        Err(_) => {
            let live = format!(
                r#"<section class="card"><h1>Not found</h1><p>No check {} has run on subscription {}.</p><p><a href="/">Back to the overview</a></p></section>"#,
                Esc(check),
                Esc(subscription)
            );
            return (StatusCode::NOT_FOUND, Html(page("Not found", &live, ""))).into_response();
        }
    };
    let live = match live(web, zone, row, headers).await {
        Ok(live) => live,
        Err(e) => return unavailable(&e),
    };
    let (code, notice) = notice.map_or((StatusCode::OK, None), |(code, notice)| (code, Some(notice)));
    let form = form(web, check, subscription, notice.as_ref());
    (code, Html(page(&format!("{check} on {subscription}"), &live, &form))).into_response()
}

fn unavailable(error: &StoreError) -> Response {
    tracing::warn!(error = %error, "status page: the state store failed");
    let live = format!(
        r#"<div class="banner" role="alert">✕ The state store does not answer ({}).</div>"#,
        Esc(&error.to_string())
    );
    (StatusCode::SERVICE_UNAVAILABLE, Html(page("Status", &live, ""))).into_response()
}

async fn live(
    web: &Web,
    zone: chrono_tz::Tz,
    row: handlers::store::StateRow,
    headers: &HeaderMap,
) -> Result<String, StoreError> {
    let now = Utc::now();
    let active = ActiveSilences::load(&web.store, &web.windows).await?;
    let row = CheckRow::new(row, &active);
    let (check, subscription) = (row.check.as_str(), row.subscription.as_str());
    let mut out = String::with_capacity(64 * 1024);
    let st = status_named(row.status);
    let _ = write!(
        out,
        r#"<nav class="crumbs"><a href="/">← all checks</a></nav><section class="card head"><h1>{} <span class="name">{}</span> <span class="on">on {}</span></h1><p class="output">{}</p><p class="facts">"#,
        status(st),
        Esc(check),
        Esc(subscription),
        Esc(row.last_result.as_ref().map_or("", |r| r.output.as_str()))
    );
    if let Some(since) = row.since {
        let _ = write!(out, "<span>since {} ({})</span>", time(since), span(now - since));
    }
    if let Some(days) = row.tls_days_left {
        let _ = write!(out, "<span>TLS certificate: {}</span>", days_left(days));
    }
    for (name, value) in &row.labels {
        let _ = write!(out, r#"<span class="label">{}={}</span>"#, Esc(name), Esc(value));
    }
    if !row.silenced_by.is_empty() {
        let _ = write!(out, r#"<span class="silenced">⊘ silenced by {}</span>"#, Esc(&row.silenced_by.join(", ")));
    }
    out.push_str("</p></section>");

    for (span_of, step, heading) in PLOTS {
        let Ok(window) = Window::new(now - span_of, step, now) else { continue };
        let steps = window.steps(&web.store, check, subscription).await?;
        let up = uptime(&steps).map_or("no runs".to_owned(), |u| format!("uptime {:.2}%", u * 100.0));
        let step_text = if step < TimeDelta::hours(1) {
            format!("{} min steps", step.num_minutes())
        } else {
            format!("{} h steps", step.num_hours())
        };
        let _ = write!(
            out,
            r#"<section class="card"><h2>{heading} <span class="up">{up}</span></h2><div class="plotbox">{}</div><p class="legend"><span class="k p50">p50</span> <span class="k p95">p95</span> <span class="k max">max</span> <span class="k fail">failed runs</span> · {step_text} · times in {zone}</p></section>"#,
            crate::plot::plot(&steps, window.step(), zone, &format!("Latency, {heading}: p50, p95 and max in ms")),
        );
    }

    let events =
        EventQuery { check: Some(check), subscription: Some(subscription), limit: LISTED, ..EventQuery::default() };
    let events = web.store.events(&events).await?;
    out.push_str(r#"<section class="card"><h2>Events</h2>"#);
    if events.is_empty() {
        out.push_str("<p>None yet.</p>");
    } else {
        out.push_str("<table><tbody>");
        for logged in events {
            let event = logged.event;
            let held = if event.silenced_by.is_empty() {
                String::new()
            } else {
                format!(" · ⊘ held by {}", Esc(&event.silenced_by.join(", ")))
            };
            let _ = write!(
                out,
                r#"<tr><td>{}</td><td>{}</td><td>{}</td><td class="out">{}{held}</td></tr>"#,
                time(event.occurred_at),
                Esc(event.kind.as_str()),
                status(Some(event.status)),
                Esc(&event.output)
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</section>");

    let results = web.store.recent_results(check, subscription, LISTED).await?;
    out.push_str(r#"<section class="card"><h2>Last results</h2><table><tbody>"#);
    for result in results {
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td>{}</td><td class="num">{} ms</td><td>{}</td><td class="out">{}</td></tr>"#,
            time(result.started_at),
            status(Some(result.status)),
            result.duration_ms,
            Esc(&result.runner),
            Esc(&result.output)
        );
    }
    out.push_str("</tbody></table></section>");

    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost:9750");
    let markdown = crate::badge::markdown(&format!("http://{host}"), check, subscription);
    let badges = format!("/badge/{}/{}", crate::html::Segment(check), crate::html::Segment(subscription));
    let _ = write!(
        out,
        r#"<section class="card"><h2>Badges</h2><p class="badges"><img alt="status" src="{badges}/status.svg"> <img alt="uptime 24h" src="{badges}/uptime/24h.svg"> <img alt="latency 24h" src="{badges}/latency/24h.svg"></p><pre>{}</pre></section>"#,
        Esc(&markdown)
    );
    Ok(out)
}

/// The silence form, outside the refreshed part of the page.
fn form(web: &Web, check: &str, subscription: &str, notice: Option<&Notice>) -> String {
    let mut out = String::from(r#"<section class="card still" id="silence"><h2>Silence this check</h2>"#);
    if let Some(notice) = notice {
        let (class, mark) = if notice.ok { ("ok", "✓") } else { ("critical", "✕") };
        let _ = write!(out, r#"<p class="notice {class}" role="status">{mark} {}</p>"#, Esc(&notice.text));
    }
    if !web.auth.writes_enabled() {
        out.push_str(
            "<p>Writes are disabled: no write tokens are configured (<code>PICKET_API_TOKENS</code>).</p></section>",
        );
        return out;
    }
    let _ = write!(
        out,
        r#"<p>Silencing holds back notifications only; results and events go on. It needs a write token (one of <code>PICKET_API_TOKENS</code>).</p>
<form method="post" action="{}/silence" class="silence">
<label>For <select name="duration"><option>30m</option><option selected>1h</option><option>2h</option><option>4h</option><option>8h</option><option>1d</option><option>3d</option></select></label>
<label><input type="checkbox" name="every_subscription" value="1"> on every subscription, not only {}</label>
<label class="wide">Why <input type="text" name="comment" required placeholder="deploying v2.3, see INC-42"></label>
<label class="wide">Write token <input type="password" name="token" required autocomplete="off"></label>
<button type="submit">Silence</button>
</form></section>"#,
        check_href(check, subscription),
        Esc(subscription)
    );
    out
}

#[derive(Deserialize)]
pub(crate) struct SilenceForm {
    token: String,
    duration: String,
    comment: String,
    #[serde(default)]
    every_subscription: Option<String>,
}

impl SilenceForm {
    /// The API's request for this form: the check, on this subscription or all.
    fn request(&self, check: &str, subscription: &str) -> Result<SilenceRequest, ApiError> {
        let glob = |field: &str, text: &str| Glob::new(text).map_err(|e| ApiError::BadRequest(format!("{field}: {e}")));
        let subscription =
            if self.every_subscription.is_some() { None } else { Some(glob("subscription", subscription)?) };
        let duration = self
            .duration
            .parse()
            .map_err(|_| ApiError::BadRequest(format!("duration: {:?} is not a duration like 1h", self.duration)))?;
        Ok(SilenceRequest {
            matcher: SilenceMatch { check: Some(glob("check", check)?), subscription, ..SilenceMatch::default() },
            duration: Some(duration),
            comment: self.comment.clone(),
            ..SilenceRequest::default()
        })
    }
}

pub(crate) async fn silence(
    State(web): State<Web>,
    Zone(zone): Zone,
    headers: HeaderMap,
    Path((check, subscription)): Path<(String, String)>,
    Form(form): Form<SilenceForm>,
) -> Response {
    let made = async {
        let writer = web.auth.writer(Some(form.token.trim().as_bytes()), "a write token in the form")?;
        api::checks::state_row(&web.store, &check, &subscription).await?;
        api::silences::add(&web.store, writer, form.request(&check, &subscription)?, Utc::now()).await
    };
    match made.await {
        Ok(silence) => {
            let to =
                format!("{}?silenced={}#silence", check_href(&check, &subscription), crate::html::Segment(&silence.id));
            Redirect::to(&to).into_response()
        }
        Err(e) => {
            let (code, text) = refusal(e);
            render(&web, zone, &headers, &check, &subscription, Some((code, Notice { ok: false, text }))).await
        }
    }
}

/// The status and sentence of an API refusal, for the page.
fn refusal(error: ApiError) -> (StatusCode, String) {
    match error {
        ApiError::BadRequest(text) => (StatusCode::BAD_REQUEST, text),
        ApiError::Unauthorized(text) => (StatusCode::UNAUTHORIZED, text),
        ApiError::Forbidden(text) => (StatusCode::FORBIDDEN, text),
        ApiError::Missing(text) => (StatusCode::NOT_FOUND, text),
        ApiError::Conflict(text) => (StatusCode::CONFLICT, text),
        ApiError::NotFound => (StatusCode::NOT_FOUND, "no such page".to_owned()),
        ApiError::Store(e) => {
            tracing::error!(error = %e, "status page: the state store failed");
            (StatusCode::SERVICE_UNAVAILABLE, "the state store is unavailable".to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::to_bytes;
    use protocol::Status;

    use super::*;
    use crate::index::tests::{seed, web};

    const WRITE: &str = "write-token-0123456789";

    async fn text(response: Response) -> (StatusCode, String) {
        let code = response.status();
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (code, String::from_utf8(body.to_vec()).unwrap())
    }

    async fn page(web: &Web, check: &str) -> (StatusCode, String) {
        let path = Path((check.to_owned(), "eu".to_owned()));
        text(
            show(State(web.clone()), Zone(chrono_tz::Tz::UTC), HeaderMap::new(), path, Query(Shown { silenced: None }))
                .await,
        )
        .await
    }

    fn form(token: &str) -> Form<SilenceForm> {
        Form(SilenceForm {
            token: token.into(),
            duration: "1h".into(),
            comment: "deploy".into(),
            every_subscription: None,
        })
    }

    async fn post(web: &Web, token: &str) -> Response {
        let path = Path(("db".to_owned(), "eu".to_owned()));
        silence(State(web.clone()), Zone(chrono_tz::Tz::UTC), HeaderMap::new(), path, form(token)).await
    }

    #[tokio::test]
    async fn the_check_page_plots_three_windows_and_says_what_the_form_needs() {
        let dir = tempfile::tempdir().unwrap();
        let mut web = web(&dir).await;
        seed(&web.store, "db", "eu", Status::Critical, "refused <b>", 3).await;
        let (code, html) = page(&web, "db").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(html.matches(r#"<svg class="plot""#).count(), 3);
        assert!(html.contains("refused &lt;b&gt;") && !html.contains("refused <b>"));
        assert!(html.contains("Writes are disabled: no write tokens are configured"), "{html}");
        assert!(!html.contains("<form method=\"post\""), "no form without write tokens");
        assert_eq!(page(&web, "nope").await.0, StatusCode::NOT_FOUND);

        web.auth = Arc::new(api::ApiAuth { write: format!("alice:{WRITE}").parse().unwrap(), read: None });
        let (_, html) = page(&web, "db").await;
        assert!(
            html.contains("It needs a write token") && html.contains(r#"action="/checks/db/eu/silence""#),
            "{html}"
        );
        web.store.close().await;
    }

    #[tokio::test]
    async fn the_form_makes_a_silence_only_with_a_write_token_and_never_shows_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut web = web(&dir).await;
        web.auth = Arc::new(api::ApiAuth { write: format!("alice:{WRITE}").parse().unwrap(), read: None });
        seed(&web.store, "db", "eu", Status::Critical, "down", 3).await;
        let (code, html) = text(post(&web, "wrong-token-0123456789").await).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
        assert!(html.contains("not a known token") && !html.contains("wrong-token"), "{html}");
        let made = post(&web, WRITE).await;
        assert_eq!(made.status(), StatusCode::SEE_OTHER);
        let to = made.headers()[header::LOCATION].to_str().unwrap().to_owned();
        assert!(to.starts_with("/checks/db/eu?silenced="), "{to}");
        let silences = web.store.silences(Utc::now(), None).await.unwrap();
        assert_eq!(silences.len(), 1);
        assert_eq!((silences[0].created_by.as_str(), silences[0].comment.as_str()), ("alice", "deploy"));
        assert_eq!(
            serde_json::to_value(&silences[0].matcher).unwrap(),
            serde_json::json!({"check": "db", "subscription": "eu"})
        );
        web.store.close().await;
    }
}
