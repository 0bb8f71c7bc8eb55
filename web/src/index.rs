//! `/`: what needs a person first. A banner when runner pools are lost, the
//! store does not answer or notifications are stuck; the problems
//! (unsilenced before silenced, worst first, longest first) with a sparkline
//! each; the silences in force; certificates near their end; the runner
//! pools; and every check, grouped by subscription or by the label
//! `?group=` names, the all-green groups collapsed.
//!
//! One query reads every row; the sparklines are one more, for at most
//! [`SPARKLINES`] problems, so the page costs the same two round trips for
//! ten checks or ten thousand.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;

use api::checks::CheckRow;
use api::history::Window;
use api::silences::ActiveSilences;
use axum::extract::{Query, State};
use axum::response::Html;
use chrono::{DateTime, TimeDelta, Utc};
use handlers::silence::open_windows;
use handlers::store::{StateQuery, Step, StoreError};
use handlers::{Silence, SilenceState};
use protocol::Status;
use serde::Deserialize;

use crate::Web;
use crate::html::{Esc, check_href, class, cut, days_left, span, status, status_named, time};

/// Problems drawn with a sparkline; the rest are listed without one.
pub const SPARKLINES: usize = 20;
/// A notification pending longer than this means the outbox is stuck.
pub const STUCK_AFTER: TimeDelta = TimeDelta::minutes(5);
/// Certificates with fewer days left than this are listed.
const CERT_DAYS: f64 = 30.0;

#[derive(Deserialize)]
pub(crate) struct IndexQuery {
    group: Option<String>,
}

/// Everything the page shows, read from the store.
struct Fleet {
    rows: Vec<CheckRow>,
    pools: Vec<api::runners::Pool>,
    silences: Vec<Silence>,
    oldest_pending: Option<DateTime<Utc>>,
}

async fn gather(web: &Web, now: DateTime<Utc>) -> Result<Fleet, StoreError> {
    let active = ActiveSilences::load(&web.store, &web.windows).await?;
    let rows = web.store.states(StateQuery::default()).await?.into_iter().map(|row| CheckRow::new(row, &active));
    let mut silences = web.store.silences(now, Some(SilenceState::Active)).await?;
    silences.extend(open_windows(&web.windows.borrow(), now));
    Ok(Fleet {
        rows: rows.collect(),
        pools: api::runners::load(&web.store).await?.pools().to_vec(),
        silences,
        oldest_pending: web.store.oldest_pending_notification().await?,
    })
}

/// A check with at least one failing subscription.
struct Problem<'a> {
    /// The worst failing row (then the longest failing): its output is shown.
    worst: &'a CheckRow,
    failing: Vec<&'a CheckRow>,
    of: usize,
    silenced: bool,
    since: Option<DateTime<Utc>>,
}

fn row_status(row: &CheckRow) -> Option<Status> {
    status_named(row.status)
}

fn failing(row: &CheckRow) -> bool {
    row_status(row).is_some_and(|s| s != Status::Ok)
}

/// Problems in the order they need attention: unsilenced first, then by
/// severity, then the longest failing first. `rows` are sorted by check.
fn problems(rows: &[CheckRow]) -> Vec<Problem<'_>> {
    let mut problems: Vec<Problem<'_>> = rows
        .chunk_by(|a, b| a.check == b.check)
        .filter_map(|subscriptions| {
            let failing: Vec<&CheckRow> = subscriptions.iter().filter(|r| failing(r)).collect();
            let worst = *failing.iter().max_by_key(|r| {
                (row_status(r).map(Status::severity), std::cmp::Reverse(r.since.unwrap_or(DateTime::<Utc>::MAX_UTC)))
            })?;
            Some(Problem {
                worst,
                silenced: failing.iter().all(|r| !r.silenced_by.is_empty()),
                since: failing.iter().filter_map(|r| r.since).min(),
                of: subscriptions.len(),
                failing,
            })
        })
        .collect();
    problems.sort_by_key(|p| {
        (
            p.silenced,
            std::cmp::Reverse(row_status(p.worst).map(Status::severity)),
            p.since.unwrap_or(DateTime::<Utc>::MAX_UTC),
        )
    });
    problems
}

pub(crate) async fn show(State(web): State<Web>, Query(query): Query<IndexQuery>) -> Html<String> {
    let now = Utc::now();
    let fleet = match gather(&web, now).await {
        Ok(fleet) => fleet,
        Err(e) => {
            tracing::warn!(error = %e, "status page: the state store failed");
            let live = format!(
                r#"<div class="banner" role="alert">✕ The state store does not answer ({}): what follows cannot be read.</div>"#,
                Esc(&e.to_string())
            );
            return Html(crate::html::page("Status", &live, ""));
        }
    };
    let problems = problems(&fleet.rows);
    let pairs: Vec<(String, String)> =
        problems.iter().take(SPARKLINES).map(|p| (p.worst.check.clone(), p.worst.subscription.clone())).collect();
    // A page without sparklines beats no page: a failed read is logged.
    let sparks = match Window::new(now - TimeDelta::hours(1), TimeDelta::minutes(1), now) {
        Ok(window) => window.steps_of(&web.store, &pairs).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "status page: the sparklines could not be read");
            HashMap::new()
        }),
        Err(_) => HashMap::new(),
    };
    let mut live = String::with_capacity(4096 + fleet.rows.len() * 320);
    banners(&mut live, &fleet, now);
    summary(&mut live, &fleet.rows, &problems);
    problem_list(&mut live, &problems, &sparks, now);
    silence_list(&mut live, &fleet.silences, now);
    certificates(&mut live, &fleet.rows);
    pools(&mut live, &fleet.pools);
    groups(&mut live, &fleet.rows, query.group.as_deref().filter(|g| !g.is_empty()));
    Html(crate::html::page("Status", &live, ""))
}

fn banners(out: &mut String, fleet: &Fleet, now: DateTime<Utc>) {
    for pool in fleet.pools.iter().filter(|p| p.lost > 0) {
        let _ = write!(
            out,
            r#"<div class="banner" role="alert">✕ Runner pool <b>{}</b>: {} of {} runners lost.</div>"#,
            Esc(&pool.subscription),
            pool.lost,
            pool.runners
        );
    }
    if let Some(queued) = fleet.oldest_pending.filter(|queued| now - *queued > STUCK_AFTER) {
        let _ = write!(
            out,
            r#"<div class="banner" role="alert">✕ Notifications are stuck: the oldest undelivered one was queued {} ago ({}).</div>"#,
            span(now - queued),
            time(queued)
        );
    }
}

fn summary(out: &mut String, rows: &[CheckRow], problems: &[Problem<'_>]) {
    let ok = rows.iter().filter(|r| row_status(r) == Some(Status::Ok)).count();
    let open = problems.iter().filter(|p| !p.silenced).count();
    let headline = match open {
        0 if problems.is_empty() => "✓ All checks are OK".to_owned(),
        0 => "✓ No unsilenced problems".to_owned(),
        1 => "✕ 1 check is failing".to_owned(),
        n => format!("✕ {n} checks are failing"),
    };
    let state = if open == 0 { "ok" } else { "critical" };
    let _ = write!(
        out,
        r#"<section class="summary {state}"><h1>{headline}</h1><p>{ok} of {} checks OK · {} with problems ({} silenced)</p></section>"#,
        rows.len(),
        problems.len(),
        problems.len() - open
    );
}

fn problem_list(
    out: &mut String,
    problems: &[Problem<'_>],
    sparks: &HashMap<(String, String), Vec<Step>>,
    now: DateTime<Utc>,
) {
    if problems.is_empty() {
        return;
    }
    out.push_str(r#"<section class="problems"><h2>Problems</h2>"#);
    for problem in problems {
        let row = problem.worst;
        let st = row_status(row);
        let muted = if problem.silenced { " silenced" } else { "" };
        let _ = write!(
            out,
            r#"<article class="problem sev-{}{muted}"><div class="head">{} <a class="name" href="{}">{}</a> <span class="count">{} of {} subscriptions failing</span>"#,
            class(st),
            status(st),
            check_href(&row.check, &row.subscription),
            Esc(&row.check),
            problem.failing.len(),
            problem.of
        );
        if let Some(since) = problem.since {
            let _ = write!(out, r#" <span class="since">for {} · since {}</span>"#, span(now - since), time(since));
        }
        out.push_str("</div>");
        let output = row.last_result.as_ref().map_or("", |r| r.output.as_str());
        let _ = write!(out, r#"<p class="output">{}</p><div class="meta">"#, Esc(output));
        if let Some(steps) = sparks.get(&(row.check.clone(), row.subscription.clone())) {
            out.push_str(&crate::plot::sparkline(steps));
        }
        let subs: Vec<String> = problem
            .failing
            .iter()
            .map(|r| format!(r#"<a href="{}">{}</a>"#, check_href(&r.check, &r.subscription), Esc(&r.subscription)))
            .collect();
        let _ = write!(out, r#"<span>on {}</span>"#, subs.join(", "));
        if let Some(days) = row.tls_days_left {
            let _ = write!(out, r#"<span>TLS certificate: {}</span>"#, days_left(days));
        }
        if problem.silenced {
            let _ = write!(out, r#"<span>⊘ silenced by {}</span>"#, Esc(&row.silenced_by.join(", ")));
        }
        out.push_str("</div></article>");
    }
    out.push_str("</section>");
}

fn silence_list(out: &mut String, silences: &[Silence], now: DateTime<Utc>) {
    if silences.is_empty() {
        return;
    }
    out.push_str(r#"<section><h2>Silenced</h2><table><thead><tr><th>What</th><th>Who</th><th>Why</th><th>Until</th></tr></thead><tbody>"#);
    for silence in silences {
        let what = matched(silence);
        let _ = write!(
            out,
            r#"<tr><td>⊘ {}</td><td>{}</td><td>{}</td><td>{} (in {})</td></tr>"#,
            Esc(&what),
            Esc(&silence.created_by),
            Esc(&silence.comment),
            time(silence.ends_at),
            span(silence.ends_at - now)
        );
    }
    out.push_str("</tbody></table></section>");
}

/// What a silence matches, in words: `check web-* on edge, team=payments`.
fn matched(silence: &Silence) -> String {
    let matcher = &silence.matcher;
    let mut parts = Vec::new();
    if let Some(check) = &matcher.check {
        parts.push(format!("check {}", check.as_str()));
    }
    if let Some(subscription) = &matcher.subscription {
        parts.push(format!("on {}", subscription.as_str()));
    }
    parts.extend(matcher.labels.iter().map(|(name, glob)| format!("{name}={}", glob.as_str())));
    if parts.is_empty() { "everything".to_owned() } else { parts.join(", ") }
}

fn certificates(out: &mut String, rows: &[CheckRow]) {
    let mut soon: Vec<&CheckRow> = rows.iter().filter(|r| r.tls_days_left.is_some_and(|d| d < CERT_DAYS)).collect();
    if soon.is_empty() {
        return;
    }
    soon.sort_by(|a, b| a.tls_days_left.partial_cmp(&b.tls_days_left).unwrap_or(std::cmp::Ordering::Equal));
    out.push_str(r#"<section><h2>Certificates expiring within 30 days</h2><table><tbody>"#);
    for row in soon {
        let _ = write!(
            out,
            r#"<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td></tr>"#,
            check_href(&row.check, &row.subscription),
            Esc(&row.check),
            Esc(&row.subscription),
            days_left(row.tls_days_left.unwrap_or_default())
        );
    }
    out.push_str("</tbody></table></section>");
}

fn pools(out: &mut String, pools: &[api::runners::Pool]) {
    if pools.is_empty() {
        return;
    }
    out.push_str(r#"<section><h2>Runner pools</h2><div class="pools">"#);
    for pool in pools {
        let (mark, state) = if pool.lost > 0 { ("✕", "critical") } else { ("✓", "ok") };
        let lost = if pool.lost > 0 { format!(", {} lost", pool.lost) } else { String::new() };
        let _ = write!(
            out,
            r#"<div class="pool {state}"><b>{mark} {}</b> {} runners{lost}</div>"#,
            Esc(&pool.subscription),
            pool.runners
        );
    }
    out.push_str("</div></section>");
}

fn groups(out: &mut String, rows: &[CheckRow], label: Option<&str>) {
    let key = |row: &CheckRow| match label {
        None => row.subscription.clone(),
        Some(label) => row.labels.get(label).cloned().unwrap_or_else(|| format!("(no {label})")),
    };
    let mut grouped: BTreeMap<String, Vec<&CheckRow>> = BTreeMap::new();
    let mut names: BTreeSet<&str> = BTreeSet::new();
    for row in rows {
        grouped.entry(key(row)).or_default().push(row);
        names.extend(row.labels.keys().map(String::as_str));
    }
    let _ = write!(out, r#"<section><h2>All checks</h2><nav class="group-by">group by: "#);
    let choice = |out: &mut String, href: &str, text: &str, chosen: bool| {
        let _ = if chosen {
            write!(out, r#"<b>{}</b> "#, Esc(text))
        } else {
            write!(out, r#"<a href="{}">{}</a> "#, Esc(href), Esc(text))
        };
    };
    choice(out, "/", "subscription", label.is_none());
    for name in names {
        choice(out, &format!("/?group={}", crate::html::Segment(name)), &format!("label {name}"), label == Some(name));
    }
    out.push_str("</nav>");
    for (name, members) in &grouped {
        let bad = members.iter().filter(|r| failing(r)).count();
        let (mark, word, open) = if bad == 0 {
            ("✓", format!("{} checks, all OK", members.len()), "")
        } else {
            ("✕", format!("{bad} of {} failing", members.len()), " open")
        };
        let _ = write!(
            out,
            r#"<details id="group-{}"{open}><summary><span class="mark {}">{mark}</span> <b>{}</b> · {word}</summary><table class="checks"><tbody>"#,
            crate::html::Segment(name),
            if bad == 0 { "ok" } else { "critical" },
            Esc(name)
        );
        for row in members {
            let result = row.last_result.as_ref();
            let _ = write!(
                out,
                r#"<tr><td>{}</td><td><a href="{}">{}</a></td><td>{}</td><td class="num">{}</td><td class="out">{}</td></tr>"#,
                status(row_status(row)),
                check_href(&row.check, &row.subscription),
                Esc(&row.check),
                Esc(&row.subscription),
                result.map(|r| format!("{} ms", r.duration_ms)).unwrap_or_default(),
                Esc(&cut(result.map_or("", |r| r.output.as_str()), 120)),
            );
        }
        out.push_str("</tbody></table></details>");
    }
    out.push_str("</section>");
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use handlers::state::CheckState;
    use handlers::store::{Store, StoreConfig};
    use protocol::CheckResult;
    use protocol::message::AlertPolicy;

    use super::*;

    /// One (check, subscription) in `store` with one result of `status`
    /// that changed `minutes` ago, counted in the history.
    pub(crate) async fn seed(
        store: &Store,
        check: &str,
        subscription: &str,
        status: Status,
        output: &str,
        minutes: i64,
    ) {
        let now = Utc::now();
        let labels: BTreeMap<String, String> = [("team".to_owned(), format!("{check}-team"))].into();
        let result = CheckResult {
            request_id: format!("{check}/{subscription}"),
            check: check.into(),
            subscription: subscription.into(),
            runner: "host-1".into(),
            status,
            output: output.into(),
            scheduled_at: now,
            started_at: now,
            duration_ms: 42,
            lateness_ms: 0,
            metrics: BTreeMap::new(),
            details: serde_json::Value::Null,
            policy: AlertPolicy { labels, ..AlertPolicy::default() },
        };
        let state = CheckState {
            history: [status].into(),
            last_change: Some(now - TimeDelta::minutes(minutes)),
            ..CheckState::default()
        };
        let mut batch = store.begin().await.unwrap();
        batch.put_state(check, subscription, &state, now).await.unwrap();
        batch.add_result(&result, now).await.unwrap();
        batch.count_run(&result).await.unwrap();
        batch.commit().await.unwrap();
    }

    pub(crate) async fn web(dir: &tempfile::TempDir) -> Web {
        let store =
            Store::open(&StoreConfig::new(format!("sqlite://{}/state.db", dir.path().display()))).await.unwrap();
        let (_, windows) = tokio::sync::watch::channel(Arc::from([]));
        Web { store, auth: Arc::new(api::ApiAuth::default()), windows }
    }

    async fn page(web: &Web, group: Option<&str>) -> String {
        let Html(text) = show(State(web.clone()), Query(IndexQuery { group: group.map(str::to_owned) })).await;
        text
    }

    #[tokio::test]
    async fn problems_come_first_worst_then_longest_and_nothing_from_a_check_is_markup() {
        let dir = tempfile::tempdir().unwrap();
        let web = web(&dir).await;
        seed(&web.store, "api", "eu", Status::Ok, "fine", 60).await;
        seed(&web.store, "api", "us", Status::Warning, "slow: 900 ms", 5).await;
        seed(&web.store, "db", "eu", Status::Critical, "<script>alert(1)</script>", 3).await;
        seed(&web.store, "dns", "eu", Status::Critical, "no answer", 30).await;
        seed(&web.store, "web", "eu", Status::Ok, "200 OK", 90).await;
        let text = page(&web, None).await;
        let at = |needle: &str| text.find(needle).unwrap_or_else(|| panic!("{needle} not in {text}"));
        assert!(
            at(r#"href="/checks/dns/eu">dns</a>"#) < at(r#"href="/checks/db/eu">db</a>"#),
            "the longer CRITICAL first"
        );
        assert!(
            at(r#"href="/checks/db/eu">db</a>"#) < at(r#"href="/checks/api/us">api</a>"#),
            "CRITICAL before WARNING"
        );
        assert!(text.contains("1 of 2 subscriptions failing"), "{text}");
        assert!(!text.contains("<script>alert"), "output is escaped");
        assert!(text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert_eq!(text.matches(r#"<svg class="spark""#).count(), 3, "a sparkline per problem");
        assert!(text.contains("✕ 3 checks are failing"));
        // The all-OK group (none here: every subscription has a problem) and the failing ones open.
        assert!(text.contains(r#"<details id="group-eu" open>"#), "{text}");
        let by_team = page(&web, Some("team")).await;
        assert!(by_team.contains(r#"<details id="group-web-team"><summary>"#), "green groups collapsed: {by_team}");
        assert!(by_team.contains("<b>label team</b>"));
        // Silenced, the longest CRITICAL goes after every unsilenced problem.
        let silence = Silence {
            id: "s1".into(),
            matcher: serde_json::from_str(r#"{"check": "dns"}"#).unwrap(),
            starts_at: Utc::now() - TimeDelta::minutes(1),
            ends_at: Utc::now() + TimeDelta::hours(1),
            ends_on_resolve: false,
            comment: "resolver swap".into(),
            created_by: "alice".into(),
            created_at: Utc::now(),
            expired: None,
        };
        web.store.add_silence(&silence).await.unwrap();
        let text = page(&web, None).await;
        let at = |needle: &str| text.find(needle).unwrap_or_else(|| panic!("{needle} not in {text}"));
        assert!(at(r#"href="/checks/api/us">api</a>"#) < at(r#"href="/checks/dns/eu">dns</a>"#), "silenced last");
        assert!(text.contains("<td>alice</td><td>resolver swap</td>"), "who and why: {text}");
        assert!(text.contains("✕ 2 checks are failing"));
        // A name or label from the wire is text too, in links, ids and headings.
        seed(&web.store, "<i>odd\"</i>", "eu", Status::Ok, "ok", 1).await;
        for text in [page(&web, None).await, page(&web, Some("team")).await] {
            assert!(!text.contains("<i>odd"), "{text}");
            assert!(
                text.contains("&lt;i&gt;odd&quot;&lt;/i&gt;") && text.contains("/checks/%3Ci%3Eodd%22%3C%2Fi%3E/eu")
            );
        }
        web.store.close().await;
    }

    #[tokio::test]
    async fn banners_say_when_runners_are_lost_and_notifications_are_stuck() {
        let dir = tempfile::tempdir().unwrap();
        let web = web(&dir).await;
        seed(&web.store, "web", "eu", Status::Ok, "200 OK", 5).await;
        assert!(!page(&web, None).await.contains(r#"class="banner""#), "a healthy fleet has no banner");
        let long_ago = Utc::now() - TimeDelta::hours(1);
        let mut batch = web.store.begin().await.unwrap();
        let seen = |runner: &str| handlers::store::SeenRunner {
            runner: runner.into(),
            subscriptions: "eu".into(),
            interval_secs: 10,
            last_seen: long_ago,
        };
        batch.runner_seen(&seen("r1")).await.unwrap();
        batch.runner_seen(&seen("r2")).await.unwrap();
        let lost = handlers::store::LostRunner {
            runner: "r1".into(),
            subscriptions: "eu".into(),
            interval_secs: 10,
            since: long_ago,
        };
        batch.mark_runner_lost(&lost).await.unwrap();
        let event = handlers::Event {
            id: "e1".into(),
            kind: handlers::EventKind::RunnerLost,
            check: String::new(),
            subscription: "eu".into(),
            runner: "r1".into(),
            status: Status::Critical,
            previous: None,
            output: "runner r1 lost".into(),
            metrics: BTreeMap::new(),
            labels: BTreeMap::new(),
            occurred_at: long_ago,
            handlers: vec!["ops".into()],
            silenced_by: Vec::new(),
        };
        batch.add_event(&event).await.unwrap();
        batch.commit().await.unwrap();
        let text = page(&web, None).await;
        assert!(text.contains("✕ Runner pool <b>eu</b>: 1 of 2 runners lost."), "{text}");
        assert!(
            text.contains("✕ Notifications are stuck: the oldest undelivered one was queued 1 h 0 min ago"),
            "{text}"
        );
        assert!(text.contains(r#"<div class="pool critical"><b>✕ eu</b> 2 runners, 1 lost</div>"#), "{text}");
        web.store.close().await;
    }
}
