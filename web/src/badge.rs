//! Badges for READMEs and wikis, like Gatus's: `status.svg`,
//! `uptime/{1h,24h,7d,30d}.svg` and `latency/{1h,24h,7d,30d}.svg` of one
//! (check, subscription). Uptime and latency come from the same merged
//! steps as the history API; latency is the median (p50) over the window.

use std::fmt::Write;

use api::history::{Window, uptime};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{TimeDelta, Utc};
use handlers::store::Durations;
use protocol::Status;

use crate::Web;
use crate::html::Esc;

/// The windows a badge may cover, with the step that reads them.
fn window_named(name: &str) -> Option<(TimeDelta, TimeDelta)> {
    match name {
        "1h" => Some((TimeDelta::hours(1), TimeDelta::minutes(1))),
        "24h" => Some((TimeDelta::hours(24), TimeDelta::hours(1))),
        "7d" => Some((TimeDelta::days(7), TimeDelta::hours(1))),
        "30d" => Some((TimeDelta::days(30), TimeDelta::hours(1))),
        _ => None,
    }
}

const GREEN: &str = "#2e9e5b";
const YELLOW: &str = "#c99a06";
const ORANGE: &str = "#dd7a1f";
const RED: &str = "#d6453d";
const GREY: &str = "#8a8f98";

/// A flat two-part badge: `label` on grey, `value` on `colour`. Widths are
/// estimated from the text (Verdana 11 px is about 7 px a character).
pub fn badge(label: &str, value: &str, colour: &str) -> String {
    let width = |text: &str| 10 + 7 * text.chars().count();
    let (left, right) = (width(label), width(value));
    let total = left + right;
    let mut svg = String::with_capacity(1024);
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" aria-label="{label}: {value}"><title>{label}: {value}</title><clipPath id="r"><rect width="{total}" height="20" rx="3" fill="#fff"/></clipPath><g clip-path="url(#r)"><rect width="{left}" height="20" fill="#555"/><rect x="{left}" width="{right}" height="20" fill="{colour}"/></g><g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11"><text x="{lx}" y="14">{label}</text><text x="{vx}" y="14">{value}</text></g></svg>"##,
        label = Esc(label),
        value = Esc(value),
        lx = left / 2,
        vx = left + right / 2,
    );
    svg
}

fn svg(body: String) -> Response {
    ([(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

fn missing(what: &str) -> Response {
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{what}\n")).into_response()
}

fn unavailable(error: &handlers::store::StoreError) -> Response {
    tracing::error!(error = %error, "badge: state store query failed");
    svg(badge("picket", "store unavailable", GREY))
}

/// `status.svg`: the status of the newest result.
pub(crate) async fn status(State(web): State<Web>, Path((check, subscription)): Path<(String, String)>) -> Response {
    match api::checks::state_row(&web.store, &check, &subscription).await {
        Ok(row) => {
            let status = row.state.history.back().copied();
            let colour = match status {
                Some(Status::Ok) => GREEN,
                Some(Status::Warning) => YELLOW,
                Some(Status::Critical) => RED,
                Some(Status::Unknown) | None => GREY,
            };
            svg(badge("status", status.map_or("no result", Status::name), colour))
        }
        Err(api::errors::ApiError::Store(e)) => unavailable(&e),
        Err(_) => missing("no such check on that subscription"),
    }
}

/// `uptime/{window}.svg` and `latency/{window}.svg`.
pub(crate) async fn figure(
    State(web): State<Web>,
    Path((check, subscription, kind, file)): Path<(String, String, String, String)>,
) -> Response {
    let Some((span, step)) = file.strip_suffix(".svg").and_then(window_named) else {
        return missing("no such badge: the windows are 1h, 24h, 7d and 30d");
    };
    let name = file.trim_end_matches(".svg");
    if kind != "uptime" && kind != "latency" {
        return missing("no such badge: status.svg, uptime/<window>.svg or latency/<window>.svg");
    }
    let steps = match api::checks::state_row(&web.store, &check, &subscription).await {
        Ok(_) => {
            let now = Utc::now();
            match Window::new(now - span, step, now) {
                Ok(window) => window.steps(&web.store, &check, &subscription).await,
                Err(_) => return missing("no such badge window"),
            }
        }
        Err(api::errors::ApiError::Store(e)) => Err(e),
        Err(_) => return missing("no such check on that subscription"),
    };
    let steps = match steps {
        Ok(steps) => steps,
        Err(e) => return unavailable(&e),
    };
    if kind == "uptime" {
        let (value, colour) = match uptime(&steps) {
            None => ("no runs".to_owned(), GREY),
            Some(share) => (format!("{:.2}%", share * 100.0), uptime_colour(share)),
        };
        svg(badge(&format!("uptime {name}"), &value, colour))
    } else {
        let mut all = Durations::default();
        steps.iter().for_each(|s| all.merge(&s.total));
        let (value, colour) = match all.quantile(0.5) {
            None => ("no runs".to_owned(), GREY),
            Some(ms) => (format!("{ms} ms"), latency_colour(ms)),
        };
        svg(badge(&format!("latency {name}"), &value, colour))
    }
}

fn uptime_colour(share: f64) -> &'static str {
    match share {
        s if s >= 0.999 => GREEN,
        s if s >= 0.99 => YELLOW,
        s if s >= 0.95 => ORANGE,
        _ => RED,
    }
}

fn latency_colour(ms: u64) -> &'static str {
    match ms {
        0..300 => GREEN,
        300..1000 => YELLOW,
        _ => RED,
    }
}

/// For the check page: the Markdown a README embeds.
pub fn markdown(base: &str, check: &str, subscription: &str) -> String {
    let path = format!("{base}/badge/{}/{}", crate::html::Segment(check), crate::html::Segment(subscription));
    format!("![status]({path}/status.svg) ![uptime 24h]({path}/uptime/24h.svg) ![latency 24h]({path}/latency/24h.svg)")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The label and value texts of a badge, parsed as XML.
    fn texts(svg: &str) -> Vec<String> {
        let doc = roxmltree::Document::parse(svg).expect("valid SVG");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).map(str::to_owned).collect()
    }

    #[test]
    fn badges_are_valid_svg_with_their_text() {
        assert_eq!(texts(&badge("status", "CRITICAL", RED)), ["status", "CRITICAL"]);
        assert_eq!(texts(&badge("uptime 24h", "99.95%", GREEN)), ["uptime 24h", "99.95%"]);
        assert_eq!(texts(&badge("a<b", "\"&'", GREY)), ["a<b", "\"&'"], "escaped, and read back as written");
    }

    #[test]
    fn windows_and_colours() {
        assert_eq!(window_named("7d"), Some((TimeDelta::days(7), TimeDelta::hours(1))));
        assert_eq!(window_named("2d"), None);
        assert_eq!(uptime_colour(1.0), GREEN);
        assert_eq!(uptime_colour(0.993), YELLOW);
        assert_eq!(uptime_colour(0.5), RED);
        assert_eq!(latency_colour(1500), RED);
    }
}
