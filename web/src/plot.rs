//! Latency plots as server-drawn SVG, from the steps the history API merges
//! ([`api::history::Window`]): p50, p95 and max per step, failures marked on
//! the time axis, a millisecond axis with round ticks and a time axis in the
//! viewer's zone. One `rect.step` per step of the window carries its
//! figures as a tooltip, so every step can be pointed at, runs or not.

use std::fmt::Write;

use chrono::{DateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use handlers::store::Step;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 30.0;
/// The time axis holds at most this many labelled ticks.
const MAX_TIME_TICKS: i64 = 7;

/// A round top for a millisecond axis whose highest value is `max`, and the
/// step between its ticks (1, 2 or 5 times a power of ten; at most 5 ticks).
pub fn ms_axis(max: u64) -> (u64, u64) {
    let max = max.max(1);
    let rough = max.div_ceil(5);
    let mut magnitude = 1;
    while magnitude * 10 <= rough {
        magnitude *= 10;
    }
    let tick = [1, 2, 5, 10].into_iter().map(|m| m * magnitude).find(|t| *t >= rough).unwrap_or(10 * magnitude);
    (max.div_ceil(tick) * tick, tick)
}

/// Tick spacings for a time axis, in seconds, shortest first.
const TIME_TICKS: [i64; 12] = [60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172_800];

/// Labelled ticks over `[from, to)`: the shortest round spacing giving at
/// most [`MAX_TIME_TICKS`], placed on round local times of `zone` (whole
/// hours, local midnight), each with its label.
pub fn time_ticks(from: DateTime<Utc>, to: DateTime<Utc>, zone: Tz) -> Vec<(DateTime<Utc>, String)> {
    let span = (to - from).num_seconds().max(1);
    let every = TIME_TICKS.into_iter().find(|t| span / t <= MAX_TIME_TICKS).unwrap_or(172_800);
    let offset = |at: i64| {
        let at = DateTime::from_timestamp(at, 0).unwrap_or(from);
        i64::from(zone.offset_from_utc_datetime(&at.naive_utc()).fix().local_minus_utc())
    };
    // A local time on the clock, placed with the offset in force there.
    let instant = |local: i64| DateTime::from_timestamp(local - offset(local - offset(from.timestamp())), 0);
    let mut local = (from.timestamp() + offset(from.timestamp())).div_euclid(every) * every;
    let mut ticks = Vec::new();
    while let Some(at) = instant(local + every).filter(|at| *at < to) {
        local += every;
        if at <= from {
            continue;
        }
        let shown = at.with_timezone(&zone);
        let midnight = shown.format("%H:%M").to_string() == "00:00";
        let label = if every >= 86400 || (span > 86400 && midnight) { "%a %d" } else { "%H:%M" };
        ticks.push((at, shown.format(label).to_string()));
    }
    ticks
}

/// A series over the steps: `None` where a step had no runs.
fn series(steps: &[Step], value: impl Fn(&Step) -> Option<u64>) -> Vec<Option<u64>> {
    steps.iter().map(|step| if step.runs == 0 { None } else { value(step) }).collect()
}

/// Where things go in one drawing: `x` of a step's middle, `y` of a value.
struct Frame {
    left: f64,
    width: f64,
    top: f64,
    height: f64,
    count: usize,
    top_ms: u64,
}

impl Frame {
    fn step_width(&self) -> f64 {
        self.width / self.count.max(1) as f64
    }

    fn x(&self, index: usize) -> f64 {
        self.left + (index as f64 + 0.5) * self.step_width()
    }

    fn y(&self, ms: u64) -> f64 {
        self.top + self.height * (1.0 - ms as f64 / self.top_ms.max(1) as f64)
    }

    /// The series as polylines, broken where a step had no runs.
    fn lines(&self, out: &mut String, class: &str, values: &[Option<u64>]) {
        let mut points = String::new();
        // A lone point is a polyline too (so every step with runs counts),
        // with a dot, as a one-point line draws nothing.
        let mut flush = |points: &mut String| {
            let trimmed = points.trim_end();
            if !trimmed.is_empty() {
                let _ = write!(out, r#"<polyline class="{class}" points="{trimmed}"/>"#);
                if let Some((x, y)) = trimmed.split_once(',').filter(|_| !trimmed.contains(' ')) {
                    let _ = write!(out, r#"<circle class="{class}" cx="{x}" cy="{y}" r="2.5"/>"#);
                }
            }
            points.clear();
        };
        for (index, value) in values.iter().enumerate() {
            match value {
                Some(ms) => {
                    let _ = write!(points, "{:.1},{:.1} ", self.x(index), self.y(*ms));
                }
                None => flush(&mut points),
            }
        }
        flush(&mut points);
    }

    /// A mark under each step with a failed run.
    fn failures(&self, out: &mut String, steps: &[Step], y: f64, mark: f64) {
        for (index, step) in steps.iter().enumerate() {
            let failed = step.runs - step.ok();
            if failed > 0 {
                let _ = write!(
                    out,
                    r#"<rect class="failure" x="{:.1}" y="{y:.1}" width="{:.1}" height="{mark:.1}"><title>{failed} of {} runs failed</title></rect>"#,
                    self.x(index) - self.step_width() / 2.0,
                    self.step_width().max(1.0),
                    step.runs
                );
            }
        }
    }
}

fn highest(steps: &[Step]) -> u64 {
    steps.iter().filter_map(|step| step.total.max()).max().unwrap_or(0)
}

/// The full plot of one window: axes, p50 / p95 / max, failures, and a
/// tooltip per step.
pub fn plot(steps: &[Step], step: TimeDelta, zone: Tz, title: &str) -> String {
    let (top_ms, tick_ms) = ms_axis(highest(steps));
    let frame = Frame {
        left: LEFT,
        width: WIDTH - LEFT - RIGHT,
        top: TOP,
        height: HEIGHT - TOP - BOTTOM,
        count: steps.len(),
        top_ms,
    };
    let bottom = TOP + frame.height;
    let mut out = String::with_capacity(8192 + steps.len() * 200);
    let _ = write!(
        out,
        r#"<svg class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg"><title>{}</title>"#,
        crate::html::Esc(title)
    );
    out.push_str(r#"<g class="axis y">"#);
    for ms in (0..=top_ms).step_by(usize::try_from(tick_ms).unwrap_or(1)) {
        let y = frame.y(ms);
        let _ = write!(
            out,
            r#"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{ms} ms</text>"#,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0
        );
    }
    out.push_str(r#"</g><g class="axis x">"#);
    if let (Some(first), Some(last)) = (steps.first(), steps.last()) {
        let (from, to) = (first.start, last.start + step);
        let span = (to - from).num_milliseconds().max(1) as f64;
        for (at, label) in time_ticks(from, to, zone) {
            let x = LEFT + frame.width * (at - from).num_milliseconds() as f64 / span;
            let _ = write!(
                out,
                r#"<line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{:.1}"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
                bottom + 4.0,
                bottom + 18.0
            );
        }
    }
    out.push_str("</g>");
    frame.failures(&mut out, steps, bottom - 5.0, 5.0);
    frame.lines(&mut out, "max", &series(steps, |s| s.total.max()));
    frame.lines(&mut out, "p95", &series(steps, |s| s.total.quantile(0.95)));
    frame.lines(&mut out, "p50", &series(steps, |s| s.total.quantile(0.5)));
    out.push_str(r#"<g class="steps">"#);
    for (index, s) in steps.iter().enumerate() {
        let shown = s.start.with_timezone(&zone).format("%Y-%m-%d %H:%M");
        let figures = match (s.total.quantile(0.5), s.total.quantile(0.95), s.total.max()) {
            (Some(p50), Some(p95), Some(max)) if s.runs > 0 => {
                format!("{} runs, {} failed · p50 {p50} ms · p95 {p95} ms · max {max} ms", s.runs, s.runs - s.ok())
            }
            _ => "no runs".to_owned(),
        };
        let _ = write!(
            out,
            r#"<rect class="step" x="{:.1}" y="{TOP}" width="{:.2}" height="{:.1}"><title>{shown} {zone}: {figures}</title></rect>"#,
            frame.x(index) - frame.step_width() / 2.0,
            frame.step_width(),
            frame.height
        );
    }
    out.push_str("</g></svg>");
    out
}

/// A small p95 line over recent steps, failures marked red beneath: the
/// problem list's sparkline. No axes; its title gives the range.
pub fn sparkline(steps: &[Step]) -> String {
    let (width, height) = (120.0, 28.0);
    let frame = Frame { left: 0.0, width, top: 2.0, height: height - 6.0, count: steps.len(), top_ms: highest(steps) };
    let p95 = series(steps, |s| s.total.quantile(0.95));
    let low = p95.iter().flatten().min();
    let title = match (low, p95.iter().flatten().max()) {
        (Some(low), Some(high)) => format!("p95 latency, last hour: {low} to {high} ms"),
        _ => "no runs in the last hour".to_owned(),
    };
    let mut out = format!(
        r#"<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" xmlns="http://www.w3.org/2000/svg"><title>{title}</title>"#
    );
    frame.failures(&mut out, steps, height - 3.0, 3.0);
    frame.lines(&mut out, "p95", &p95);
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn step(start: DateTime<Utc>, ms: &[u64], critical: u64) -> Step {
        let mut step = Step::empty(start);
        for ms in ms {
            step.total.add(*ms);
        }
        Step { runs: ms.len() as u64, critical, ..step }
    }

    #[test]
    fn the_ms_axis_is_round_and_covers_the_highest_value() {
        assert_eq!(ms_axis(0), (1, 1));
        assert_eq!(ms_axis(7), (8, 2));
        assert_eq!(ms_axis(42), (50, 10));
        assert_eq!(ms_axis(180), (200, 50));
        assert_eq!(ms_axis(1234), (1500, 500));
        assert_eq!(ms_axis(10_000), (10_000, 2000));
        for max in [1, 3, 99, 101, 999, 5001, 73_456] {
            let (top, tick) = ms_axis(max);
            assert!(top >= max && top / tick <= 5 && top % tick == 0, "{max}: {top} {tick}");
        }
    }

    #[test]
    fn time_ticks_fall_on_round_local_times() {
        let from = time("2026-12-03T11:03:00Z");
        let hour = time_ticks(from, from + TimeDelta::hours(1), Tz::UTC);
        let labels: Vec<&str> = hour.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(labels, ["11:10", "11:20", "11:30", "11:40", "11:50", "12:00"]);
        // India is UTC+5:30: local round hours are half past in UTC.
        let day = time_ticks(from, from + TimeDelta::hours(24), chrono_tz::Asia::Kolkata);
        assert_eq!(day[0], (time("2026-12-03T12:30:00Z"), "18:00".to_owned()));
        assert!(day.len() <= MAX_TIME_TICKS as usize, "{day:?}");
        let week = time_ticks(from, from + TimeDelta::days(7), chrono_tz::Europe::Paris);
        assert_eq!(week[0], (time("2026-12-03T23:00:00Z"), "Fri 04".to_owned()), "local midnight");
    }

    #[test]
    fn a_plot_has_one_step_per_step_and_breaks_lines_over_empty_steps() {
        let first = time("2026-12-03T11:00:00Z");
        let at = |minute: i64| first + TimeDelta::minutes(minute);
        let steps =
            vec![step(at(0), &[10, 20, 30], 0), step(at(1), &[40], 1), Step::empty(at(2)), step(at(3), &[50], 0)];
        let svg = plot(&steps, TimeDelta::minutes(1), Tz::UTC, "latency <1h>");
        let doc = roxmltree::Document::parse(&svg).expect("valid SVG");
        let of_class = |class: &str| doc.descendants().filter(|n| n.attribute("class") == Some(class)).count();
        assert_eq!(of_class("step"), 4, "one per step, runs or not");
        assert_eq!(of_class("failure"), 1);
        let p50: Vec<usize> = doc
            .descendants()
            .filter(|n| n.has_tag_name("polyline") && n.attribute("class") == Some("p50"))
            .map(|n| n.attribute("points").unwrap().split(' ').count())
            .collect();
        assert_eq!(p50, [2, 1], "broken at the empty step");
        let dots = doc.descendants().filter(|n| n.has_tag_name("circle") && n.attribute("class") == Some("p50"));
        assert_eq!(dots.count(), 1, "the lone point is drawn as a dot");
        let labels: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .filter(|t| t.ends_with(" ms"))
            .collect();
        assert_eq!(labels, ["0 ms", "10 ms", "20 ms", "30 ms", "40 ms", "50 ms"]);
        assert!(svg.contains("<title>latency &lt;1h&gt;</title>"), "titles are escaped");
    }

    #[test]
    fn a_sparkline_is_valid_svg_with_its_range() {
        let first = time("2026-12-03T11:00:00Z");
        let steps = vec![step(first, &[12], 1), step(first + TimeDelta::minutes(1), &[40], 0)];
        let svg = sparkline(&steps);
        let doc = roxmltree::Document::parse(&svg).unwrap();
        assert_eq!(
            doc.descendants().find(|n| n.has_tag_name("title")).unwrap().text(),
            Some("p95 latency, last hour: 12 to 40 ms")
        );
        assert!(roxmltree::Document::parse(&sparkline(&[])).is_ok());
    }
}
