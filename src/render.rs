//! What the operator commands print: the API's answers as tables and lines.
//! The answer types read leniently (unknown fields ignored, optional ones
//! defaulted), as every reader of picket's public JSON does, so this CLI
//! keeps working against a newer handler.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use protocol::Status;
use serde::Deserialize;
use serde_json::Value;

/// A silence as the API answers it.
#[derive(Debug, Deserialize)]
pub struct SilenceView {
    pub id: String,
    pub state: String,
    #[serde(rename = "match", default)]
    pub matcher: BTreeMap<String, Value>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub expired: Option<ExpiryView>,
}

#[derive(Debug, Deserialize)]
pub struct ExpiryView {
    pub at: DateTime<Utc>,
    pub by: String,
    #[serde(default)]
    pub reason: String,
}

/// One (check, subscription) row of `/api/v1/checks` or of a preview.
#[derive(Debug, Deserialize)]
pub struct CheckView {
    pub check: String,
    pub subscription: String,
    /// `None` before the first result.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    #[serde(default)]
    pub silenced_by: Vec<Value>,
    #[serde(default)]
    pub last_result: Option<LastResultView>,
}

#[derive(Debug, Deserialize)]
pub struct LastResultView {
    #[serde(default)]
    pub output: String,
}

/// The answer of `POST /api/v1/silences/preview`.
#[derive(Debug, Deserialize)]
pub struct PreviewView {
    pub matches: Vec<CheckView>,
}

/// `picket silence list`: one row per silence, newest first as the API sends them.
pub fn silences_table(silences: &[SilenceView]) -> String {
    if silences.is_empty() {
        return "no silences".to_owned();
    }
    let rows = silences
        .iter()
        .map(|s| {
            let ends = match &s.expired {
                Some(expiry) => expiry_text(expiry),
                None => time(s.ends_at),
            };
            vec![
                s.id.clone(),
                s.state.clone(),
                match_text(&s.matcher),
                time(s.starts_at),
                ends,
                s.created_by.clone(),
                one_line(&s.comment),
            ]
        })
        .collect();
    table(&["ID", "STATE", "MATCH", "STARTS", "ENDS", "CREATED_BY", "COMMENT"], rows)
}

/// `picket silence expire`: what the silence is now.
pub fn expired_line(silence: &SilenceView) -> String {
    match &silence.expired {
        Some(expiry) => format!("{}: {}", silence.id, expiry_text(expiry)),
        None => format!("{}: {}, ends {}", silence.id, silence.state, time(silence.ends_at)),
    }
}

/// `picket silence preview`: what the silence would match now.
pub fn preview_report(preview: PreviewView, now: DateTime<Utc>) -> String {
    let count = preview.matches.len();
    let mut lines = check_lines(preview.matches, now);
    lines.push(format!("{count} (check, subscription) pair(s) would be silenced"));
    lines.join("\n")
}

/// `picket status`: problems first, one line each, then a summary line.
pub fn status_report(rows: Vec<CheckView>, now: DateTime<Utc>) -> String {
    let mut counts: BTreeMap<(Reverse<u8>, String), usize> = BTreeMap::new();
    let mut silenced = 0;
    for row in &rows {
        let status = parse_status(row.status.as_deref());
        let name = status.map_or("NO RESULT", Status::name).to_owned();
        *counts.entry((Reverse(status.map_or(0, Status::severity)), name)).or_default() += 1;
        silenced += usize::from(!row.silenced_by.is_empty());
    }
    let total = rows.len();
    let mut lines = check_lines(rows, now);
    let counts: Vec<String> = counts.into_iter().map(|((_, name), n)| format!("{n} {name}")).collect();
    let mut summary = format!("{total} check(s)");
    if !counts.is_empty() {
        summary.push_str(&format!(": {}", counts.join(", ")));
    }
    if silenced > 0 {
        summary.push_str(&format!("; {silenced} silenced"));
    }
    lines.push(summary);
    lines.join("\n")
}

/// Sorted rows as aligned lines: not OK before OK, worse before milder, the
/// longest-standing first.
fn check_lines(mut rows: Vec<CheckView>, now: DateTime<Utc>) -> Vec<String> {
    rows.sort_by_cached_key(|row| {
        let rank = match parse_status(row.status.as_deref()) {
            Some(Status::Ok) => (2, Reverse(0)),
            None => (1, Reverse(0)),
            Some(status) => (0, Reverse(status.severity())),
        };
        (rank, row.since.unwrap_or(now), row.check.clone(), row.subscription.clone())
    });
    let rows = rows
        .into_iter()
        .map(|row| {
            let status = parse_status(row.status.as_deref()).map_or("NO RESULT", Status::name).to_owned();
            let since = row.since.map_or_else(String::new, |since| format!("for {}", span(now - since)));
            let silenced = if row.silenced_by.is_empty() {
                String::new()
            } else {
                let ids: Vec<String> = row.silenced_by.iter().map(silence_ref).collect();
                format!("silenced by {}", ids.join(", "))
            };
            let output = row.last_result.map_or_else(String::new, |r| one_line(&r.output));
            vec![status, row.check, row.subscription, since, silenced, output]
        })
        .collect();
    let text = table(&[], rows);
    text.lines().map(str::to_owned).collect()
}

fn parse_status(name: Option<&str>) -> Option<Status> {
    Status::ALL.into_iter().find(|s| name.is_some_and(|n| s.name().eq_ignore_ascii_case(n)))
}

/// A `silenced_by` entry: a silence id, or an object carrying one.
fn silence_ref(entry: &Value) -> String {
    match entry {
        Value::String(id) => id.clone(),
        Value::Object(object) => object.get("id").and_then(Value::as_str).unwrap_or("?").to_owned(),
        other => other.to_string(),
    }
}

/// `check=api-* subscription=aws label:team=payments`, in the CLI's own words.
fn match_text(matcher: &BTreeMap<String, Value>) -> String {
    let mut parts = Vec::new();
    for key in ["check", "subscription"] {
        if let Some(Value::String(glob)) = matcher.get(key) {
            parts.push(format!("{key}={glob}"));
        }
    }
    if let Some(Value::Object(labels)) = matcher.get("labels") {
        for (name, glob) in labels {
            parts.push(format!("label:{name}={}", glob.as_str().unwrap_or_default()));
        }
    }
    if parts.is_empty() { "everything".to_owned() } else { parts.join(" ") }
}

fn expiry_text(expiry: &ExpiryView) -> String {
    let reason = if expiry.reason.is_empty() { String::new() } else { format!(" ({})", expiry.reason) };
    format!("expired {} by {}{reason}", time(expiry.at), expiry.by)
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A comment or check output on one table line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `45s`, `12m`, `3h05m`, `2d04h`: two units at most, enough to compare.
fn span(delta: TimeDelta) -> String {
    let secs = delta.num_seconds().max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Left-aligned columns two spaces apart; the last column is not padded,
/// and a column empty on every line (and without a header) is left out.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut all: Vec<Vec<String>> = Vec::with_capacity(rows.len() + 1);
    if !header.is_empty() {
        all.push(header.iter().map(|h| (*h).to_owned()).collect());
    }
    all.extend(rows);
    let columns = all.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| all.iter().filter_map(|r| r.get(c)).map(|v| v.chars().count()).max().unwrap_or(0))
        .collect();
    all.iter()
        .map(|row| {
            let mut line = String::new();
            for (c, value) in row.iter().enumerate().filter(|(c, _)| widths[*c] > 0) {
                if c + 1 == row.len() {
                    line.push_str(value);
                } else {
                    line.push_str(&format!("{value:<width$}  ", width = widths[c]));
                }
            }
            line.trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-12-03T10:00:00Z".parse().unwrap()
    }

    fn row(check: &str, status: Option<&str>, since: &str) -> CheckView {
        serde_json::from_value(serde_json::json!({
            "check": check, "subscription": "default", "status": status,
            "since": since, "last_result": {"output": "HTTP 500\nin 3ms"}, "newer_field": 1
        }))
        .unwrap()
    }

    #[test]
    fn status_puts_problems_first_by_severity_then_duration() {
        let rows = vec![
            row("ok-old", Some("OK"), "2026-12-01T00:00:00Z"),
            row("warn", Some("WARNING"), "2026-12-03T08:00:00Z"),
            row("crit-new", Some("CRITICAL"), "2026-12-03T09:59:30Z"),
            row("crit-old", Some("CRITICAL"), "2026-12-03T09:48:00Z"),
            row("unknown", Some("UNKNOWN"), "2026-12-03T09:00:00Z"),
            row("fresh", None, "2026-12-03T10:00:00Z"),
        ];
        let text = status_report(rows, now());
        let firsts: Vec<&str> = text.lines().map(|l| l.split_whitespace().nth(1).unwrap_or_default()).collect();
        assert_eq!(firsts[..6], ["crit-old", "crit-new", "unknown", "warn", "RESULT", "ok-old"], "{text}");
        assert!(text.lines().next().unwrap().contains("for 12m"), "{text}");
        assert!(text.lines().next().unwrap().ends_with("HTTP 500 in 3ms"), "{text}");
        assert_eq!(
            text.lines().last().unwrap(),
            "6 check(s): 2 CRITICAL, 1 UNKNOWN, 1 WARNING, 1 NO RESULT, 1 OK",
            "{text}"
        );
    }

    #[test]
    fn status_names_the_silences_and_counts_them() {
        let mut silenced = row("api", Some("CRITICAL"), "2026-12-03T09:00:00Z");
        silenced.silenced_by = vec![Value::String("ab12".into()), serde_json::json!({"id": "maintenance:db"})];
        let text = status_report(vec![silenced], now());
        assert!(text.lines().next().unwrap().contains("silenced by ab12, maintenance:db"), "{text}");
        assert!(text.ends_with("1 check(s): 1 CRITICAL; 1 silenced"), "{text}");
    }

    #[test]
    fn silences_show_their_match_and_who_expired_them() {
        let silences: Vec<SilenceView> = serde_json::from_value(serde_json::json!([
            {"id": "a1", "state": "active", "match": {"check": "api-*", "labels": {"team": "payments"}},
             "starts_at": "2026-12-03T09:00:00Z", "ends_at": "2026-12-03T11:00:00Z",
             "created_by": "alice", "comment": "deploy\nof 4.2", "ends_on_resolve": false},
            {"id": "b2", "state": "expired", "match": {"subscription": "eu"},
             "starts_at": "2026-12-03T08:00:00Z", "ends_at": "2026-12-03T12:00:00Z", "created_by": "bob",
             "comment": "db", "expired": {"at": "2026-12-03T09:30:00Z", "by": "carol", "reason": "expired by hand"}}
        ]))
        .unwrap();
        let text = silences_table(&silences);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ID  STATE    MATCH"), "{text}");
        assert!(lines[1].contains("check=api-* label:team=payments"), "{text}");
        assert!(lines[1].ends_with("alice       deploy of 4.2"), "{text}");
        assert!(lines[2].contains("expired 2026-12-03T09:30:00Z by carol (expired by hand)"), "{text}");
        assert_eq!(expired_line(&silences[1]), "b2: expired 2026-12-03T09:30:00Z by carol (expired by hand)");
        assert_eq!(silences_table(&[]), "no silences");
    }

    #[test]
    fn preview_lists_the_matches_and_counts_them() {
        let preview = PreviewView { matches: vec![row("api", Some("OK"), "2026-12-03T09:00:00Z")] };
        let text = preview_report(preview, now());
        assert!(text.starts_with("OK  api  default  for 1h00m  HTTP 500 in 3ms"), "{text}");
        assert!(text.ends_with("1 (check, subscription) pair(s) would be silenced"), "{text}");
    }

    #[test]
    fn spans_keep_two_units() {
        assert_eq!(span(TimeDelta::seconds(45)), "45s");
        assert_eq!(span(TimeDelta::seconds(12 * 60 + 5)), "12m");
        assert_eq!(span(TimeDelta::seconds(3 * 3600 + 5 * 60)), "3h05m");
        assert_eq!(span(TimeDelta::seconds(2 * 86_400 + 4 * 3600)), "2d04h");
        assert_eq!(span(TimeDelta::seconds(-3)), "0s");
    }
}
