//! HTML building blocks: escaping, statuses shown by symbol and word as well
//! as colour, times the script shows in the viewer's zone, and the page frame.
//!
//! Everything from the store (outputs, labels, names) goes through [`Esc`]
//! or [`Segment`]: a check's output is whatever its target answered.

use std::fmt::{self, Display, Write};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use protocol::Status;

/// Text escaped for an HTML element or a quoted attribute.
pub struct Esc<'a>(pub &'a str);

impl Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..at])?;
            f.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

/// One URL path segment, percent-encoded (a check name inside a link).
pub struct Segment<'a>(pub &'a str);

impl Display for Segment<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0.bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
                f.write_char(char::from(byte))?;
            } else {
                write!(f, "%{byte:02X}")?;
            }
        }
        Ok(())
    }
}

/// The check page of a (check, subscription).
pub fn check_href(check: &str, subscription: &str) -> String {
    format!("/checks/{}/{}", Segment(check), Segment(subscription))
}

/// The status named `name`, as the API's rows carry it.
pub fn status_named(name: Option<&str>) -> Option<Status> {
    Status::ALL.into_iter().find(|s| Some(s.name()) == name)
}

/// The symbol that goes with a status, so it never rests on colour alone.
pub fn symbol(status: Option<Status>) -> &'static str {
    match status {
        Some(Status::Ok) => "✓",
        Some(Status::Warning) => "▲",
        Some(Status::Critical) => "✕",
        Some(Status::Unknown) | None => "?",
    }
}

/// The CSS class of a status: `ok`, `warning`, `critical`, `unknown`.
pub fn class(status: Option<Status>) -> &'static str {
    match status {
        Some(Status::Ok) => "ok",
        Some(Status::Warning) => "warning",
        Some(Status::Critical) => "critical",
        Some(Status::Unknown) | None => "unknown",
    }
}

/// A status pill: colour, symbol and word.
pub fn status(status: Option<Status>) -> String {
    let word = status.map_or("NO RESULT", Status::name);
    format!(r#"<span class="st st-{}">{} {word}</span>"#, class(status), symbol(status))
}

/// A time the script rewrites in the viewer's zone; UTC until it does.
pub fn time(at: DateTime<Utc>) -> String {
    format!(
        r#"<time datetime="{}">{}</time>"#,
        at.to_rfc3339_opts(SecondsFormat::Secs, true),
        at.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

/// A duration for people: "45 s", "12 min", "3 h 5 min", "4 d 2 h".
pub fn span(delta: TimeDelta) -> String {
    let secs = delta.num_seconds().max(0);
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86400 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d {} h", secs / 86400, secs % 86400 / 3600),
    }
}

/// Days a certificate has left, or how long ago it expired.
pub fn days_left(days: f64) -> String {
    if days < 0.0 { format!("expired {:.0} days ago", -days) } else { format!("{days:.0} days left") }
}

/// `text` cut to `max` characters, with an ellipsis when cut.
pub fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// A whole page. `live` is what the script swaps on each refresh; `still`
/// (forms) is left alone, so typing is never lost.
pub fn page(title: &str, live: &str, still: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · picket</title>
<link rel="stylesheet" href="/assets/page.css">
<script src="/assets/page.js" defer></script>
</head>
<body>
<header class="top"><a class="brand" href="/">picket</a><span class="zone">times in <span id="zone">UTC</span></span></header>
<main id="live">
{live}
</main>
{still}
<footer>picket · refreshes every few seconds · <a href="/api/v1/status">API</a></footer>
</body>
</html>
"#,
        title = Esc(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_text_is_escaped() {
        let text = r#"<script>alert("x")</script> & 'y' <img src=x onerror=alert(1)>"#;
        let escaped = Esc(text).to_string();
        assert_eq!(
            escaped,
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39; &lt;img src=x onerror=alert(1)&gt;"
        );
        assert_eq!(Esc("plain ünïcode").to_string(), "plain ünïcode");
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(check_href("web/api", "eu west?"), "/checks/web%2Fapi/eu%20west%3F");
        assert_eq!(check_href("a\"><b", "x"), "/checks/a%22%3E%3Cb/x");
    }

    #[test]
    fn statuses_carry_a_symbol_and_a_word() {
        assert_eq!(status(Some(Status::Critical)), r#"<span class="st st-critical">✕ CRITICAL</span>"#);
        assert_eq!(status(None), r#"<span class="st st-unknown">? NO RESULT</span>"#);
    }

    #[test]
    fn spans_and_cuts_read_well() {
        assert_eq!(span(TimeDelta::seconds(45)), "45 s");
        assert_eq!(span(TimeDelta::seconds(3 * 3600 + 301)), "3 h 5 min");
        assert_eq!(span(TimeDelta::days(4) + TimeDelta::hours(2)), "4 d 2 h");
        assert_eq!(cut("abcdef", 3), "abc…");
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(days_left(-2.4), "expired 2 days ago");
    }
}
