//! `/metrics` in the format the scraper asks for. prometheus-client writes
//! OpenMetrics only; Prometheus asks for it first, but `curl`, `promtool
//! check metrics` and many agents read the older Prometheus text format
//! (0.0.4), in which a counter's HELP and TYPE name its `_total` sample and
//! there is no `# EOF`. Read as that format, OpenMetrics looks like counters
//! without help, so each reader gets its own.

use axum::http::HeaderMap;
use axum::http::header::ACCEPT;

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether the request accepts OpenMetrics (any `application/openmetrics-text`
/// range with a q above 0); everything else gets the Prometheus text format.
pub fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers.get_all(ACCEPT).iter().filter_map(|value| value.to_str().ok()).flat_map(|value| value.split(',')).any(
        |range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let q =
                parts.filter_map(|param| param.strip_prefix("q=")).find_map(|q| q.parse::<f32>().ok()).unwrap_or(1.0);
            media.eq_ignore_ascii_case("application/openmetrics-text") && q > 0.0
        },
    )
}

/// Rewrites an OpenMetrics exposition as Prometheus text format 0.0.4.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    // Families whose samples carry a suffix the text format names them by.
    let suffixed: std::collections::HashMap<&str, &str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .filter_map(|(name, kind)| match kind {
            "counter" => Some((name, "_total")),
            "info" => Some((name, "_info")),
            _ => None,
        })
        .collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let kind = match kind {
                "counter" => "counter",
                "gauge" | "info" | "stateset" => "gauge",
                "histogram" | "gaugehistogram" => "histogram",
                "summary" => "summary",
                _ => "untyped",
            };
            text.push_str(&format!("# TYPE {name}{} {kind}\n", suffixed.get(name).unwrap_or(&"")));
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            // OpenMetrics escapes `"` in help; the text format does not.
            let help = help.replace("\\\"", "\"");
            text.push_str(&format!("# HELP {name}{} {help}\n", suffixed.get(name).unwrap_or(&"")));
        } else if line.starts_with('#') {
            continue;
        } else {
            let sample = line.split_once(" # ").map_or(line, |(sample, _exemplar)| sample);
            let name = sample.split(['{', ' ']).next().unwrap_or_default();
            // `_created` samples have no place in the text format.
            if name.strip_suffix("_created").is_some_and(|family| suffixed.contains_key(family)) {
                continue;
            }
            text.push_str(sample);
            text.push('\n');
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_is_served_openmetrics_and_everyone_else_text() {
        let accept = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPT, value.parse().unwrap());
            wants_openmetrics(&headers)
        };
        // What Prometheus 2.x sends.
        assert!(accept(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
             text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ));
        assert!(!accept("*/*"));
        assert!(!accept("text/plain;version=0.0.4"));
        assert!(!accept("application/openmetrics-text;q=0, text/plain"));
        assert!(!wants_openmetrics(&HeaderMap::new()));
    }

    #[test]
    fn counters_are_named_by_their_total_sample_and_the_eof_goes() {
        let openmetrics = "# HELP picket_results Check results received, by \\\"status\\\".\n\
                           # TYPE picket_results counter\n\
                           picket_results_total{status=\"ok\"} 3\n\
                           picket_results_created{status=\"ok\"} 1700000000.0\n\
                           # HELP picket_checks_in_flight Checks running now.\n\
                           # TYPE picket_checks_in_flight gauge\n\
                           # UNIT picket_checks_in_flight checks\n\
                           picket_checks_in_flight 2\n\
                           # HELP picket_check_duration_seconds Time one check run took.\n\
                           # TYPE picket_check_duration_seconds histogram\n\
                           picket_check_duration_seconds_bucket{le=\"+Inf\"} 1 # {trace=\"x\"} 0.5\n\
                           picket_check_duration_seconds_count 1\n\
                           # EOF\n";
        assert_eq!(
            to_prometheus_text(openmetrics),
            "# HELP picket_results_total Check results received, by \"status\".\n\
             # TYPE picket_results_total counter\n\
             picket_results_total{status=\"ok\"} 3\n\
             # HELP picket_checks_in_flight Checks running now.\n\
             # TYPE picket_checks_in_flight gauge\n\
             picket_checks_in_flight 2\n\
             # HELP picket_check_duration_seconds Time one check run took.\n\
             # TYPE picket_check_duration_seconds histogram\n\
             picket_check_duration_seconds_bucket{le=\"+Inf\"} 1\n\
             picket_check_duration_seconds_count 1\n"
        );
    }
}
