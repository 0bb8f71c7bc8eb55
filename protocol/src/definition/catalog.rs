//! Loading a checks directory: every `*.json` file under it, each holding one
//! object or an array of them. Errors are collected, not stopped at, so
//! `picket validate` shows every problem in one run.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::handler::{HANDLER_TYPES, HandlerDefinition, parse_handler};
use super::locate::{Position, locate, top_level_items};
use super::window::{MaintenanceWindow, parse_window};
use super::{CheckDefinition, FieldError, parse_check};

/// One problem, located: `checks/api.json:12:5: expect.status[1]: "2xz" is not …`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DefinitionError {
    pub file: PathBuf,
    pub position: Position,
    /// The field path inside the object (empty for the object or file itself).
    pub path: String,
    pub message: String,
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.position.line, self.position.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{} problem(s) in the definitions:\n{}", .0.len(), render(.0))]
    Invalid(Vec<DefinitionError>),
}

fn render(errors: &[DefinitionError]) -> String {
    errors.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n")
}

/// Where a definition came from, for messages that point at it later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub position: Position,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.position.line, self.position.column)
    }
}

/// A validated set of checks, handlers and maintenance windows.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    pub checks: Vec<CheckDefinition>,
    pub handlers: Vec<HandlerDefinition>,
    pub windows: Vec<MaintenanceWindow>,
}

/// One parsed file: what it defines and what is wrong in it.
struct ParsedFile {
    path: PathBuf,
    text: String,
    checks: Vec<(usize, CheckDefinition)>,
    handlers: Vec<(usize, HandlerDefinition)>,
    windows: Vec<(usize, MaintenanceWindow)>,
}

impl Catalog {
    /// Loads every `*.json` file under `dir` (recursively, in name order) and
    /// cross-checks them: unique names, known handlers.
    pub fn load_dir(dir: &Path) -> Result<Self, CatalogError> {
        let mut files = Vec::new();
        collect_json_files(dir, &mut files)?;
        files.sort();
        Self::load_files(&files, true)
    }

    /// Loads the given files; `strict_handlers` also requires every handler a
    /// check names to be defined among them.
    pub fn load_files(files: &[PathBuf], strict_handlers: bool) -> Result<Self, CatalogError> {
        let mut errors = Vec::new();
        let mut parsed = Vec::new();
        for path in files {
            let text =
                std::fs::read_to_string(path).map_err(|source| CatalogError::Io { path: path.clone(), source })?;
            parsed.push(parse_file(path, text, &mut errors));
        }
        let catalog = cross_check(parsed, strict_handlers, &mut errors);
        if errors.is_empty() {
            Ok(catalog)
        } else {
            errors.sort();
            Err(CatalogError::Invalid(errors))
        }
    }
}

fn collect_json_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CatalogError> {
    let io = |source| CatalogError::Io { path: dir.to_owned(), source };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let hidden = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            collect_json_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}

fn error_at(file: &ParsedFile, item: usize, err: FieldError, at_key: bool) -> DefinitionError {
    let offset = locate(&file.text, item, &err.path, at_key);
    DefinitionError {
        file: file.path.clone(),
        position: Position::of_offset(&file.text, offset),
        path: err.path,
        message: err.message,
    }
}

fn parse_file(path: &Path, text: String, errors: &mut Vec<DefinitionError>) -> ParsedFile {
    let mut file =
        ParsedFile { path: path.to_owned(), text, checks: Vec::new(), handlers: Vec::new(), windows: Vec::new() };
    let value: Value = match serde_json::from_str(&file.text) {
        Ok(v) => v,
        Err(e) => {
            let message = e.to_string();
            let message = message.rsplit_once(" at line ").map_or(message.as_str(), |(m, _)| m);
            errors.push(DefinitionError {
                file: file.path.clone(),
                position: Position { line: e.line(), column: e.column() },
                path: String::new(),
                message: format!("invalid JSON: {message}"),
            });
            return file;
        }
    };
    let items = match value {
        Value::Array(items) => items,
        single => vec![single],
    };
    for (item, offset) in items.into_iter().zip(top_level_items(&file.text)) {
        let is_handler = item.get("kind").is_some_and(|k| k == "handler")
            || item.get("type").and_then(Value::as_str).is_some_and(|t| HANDLER_TYPES.contains(&t));
        let result = if is_handler {
            parse_handler(item).map(|h| file.handlers.push((offset, h)))
        } else if item.get("kind").is_some_and(|k| k == "maintenance") {
            parse_window(item).map(|w| file.windows.push((offset, w)))
        } else {
            parse_check(item).map(|c| file.checks.push((offset, c)))
        };
        if let Err(err) = result {
            let at_key = err.message.starts_with("unknown field");
            errors.push(error_at(&file, offset, err, at_key));
        }
    }
    file
}

fn cross_check(files: Vec<ParsedFile>, strict_handlers: bool, errors: &mut Vec<DefinitionError>) -> Catalog {
    let mut catalog = Catalog::default();
    let mut check_names = Names::new("check");
    let mut handler_names = Names::new("handler");
    let mut window_names = Names::new("maintenance window");
    for file in &files {
        for (offset, handler) in &file.handlers {
            if handler_names.first(handler.name(), file, *offset, errors) {
                catalog.handlers.push(handler.clone());
            }
        }
        for (offset, window) in &file.windows {
            if window_names.first(&window.name, file, *offset, errors) {
                catalog.windows.push(window.clone());
            }
        }
    }
    for file in &files {
        for (offset, check) in &file.checks {
            if !check_names.first(check.name(), file, *offset, errors) {
                continue;
            }
            if strict_handlers {
                for (i, name) in check.common.handlers.iter().enumerate() {
                    if !handler_names.seen.contains_key(name.as_str()) {
                        let known: Vec<&str> = handler_names.seen.keys().copied().collect();
                        let message = format!("no handler is named {name:?} (defined: {})", list(known));
                        errors.push(error_at(file, *offset, FieldError::new(format!("handlers[{i}]"), message), false));
                    }
                }
            }
            catalog.checks.push(check.clone());
        }
    }
    for file in &files {
        for (offset, check) in &file.checks {
            for (i, name) in check.common.depends_on.iter().enumerate() {
                if !check_names.seen.contains_key(name.as_str()) {
                    let message = format!("no check is named {name:?}");
                    errors.push(error_at(file, *offset, FieldError::new(format!("depends_on[{i}]"), message), false));
                }
            }
        }
    }
    catalog
}

/// The names of one kind of definition, with where each was first defined
/// as (file, offset): turned into a line and column only for a message,
/// since that scans the file up to the offset (done for every definition,
/// it made loading quadratic).
struct Names<'a> {
    kind: &'static str,
    seen: HashMap<&'a str, (&'a ParsedFile, usize)>,
}

impl<'a> Names<'a> {
    fn new(kind: &'static str) -> Self {
        Self { kind, seen: HashMap::new() }
    }

    /// Records `name`; when it is taken, reports the duplicate and returns false.
    fn first(&mut self, name: &'a str, file: &'a ParsedFile, offset: usize, errors: &mut Vec<DefinitionError>) -> bool {
        if let Some(&(first_file, first_offset)) = self.seen.get(name) {
            let first = origin_of(first_file, first_offset, "name");
            let message = format!("{} {name:?} is already defined at {first}", self.kind);
            errors.push(error_at(file, offset, FieldError::new("name", message), false));
            return false;
        }
        self.seen.insert(name, (file, offset));
        true
    }
}

fn origin_of(file: &ParsedFile, offset: usize, path: &str) -> Origin {
    Origin {
        file: file.path.clone(),
        position: Position::of_offset(&file.text, locate(&file.text, offset, path, false)),
    }
}

fn list(mut names: Vec<&str>) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    names.sort_unstable();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `files` into a fresh directory and loads it.
    fn load(files: &[(&str, &str)]) -> (tempfile::TempDir, Result<Catalog, CatalogError>) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let result = Catalog::load_dir(dir.path());
        (dir, result)
    }

    /// The problems of a directory, as `file:line:col: path: message` with the
    /// directory prefix removed.
    fn problems(files: &[(&str, &str)]) -> Vec<String> {
        let (dir, result) = load(files);
        match result {
            Err(CatalogError::Invalid(errors)) => {
                errors.iter().map(|e| e.to_string().replace(&format!("{}/", dir.path().display()), "")).collect()
            }
            other => panic!("expected problems, got {other:?}"),
        }
    }

    fn one(file: &str, text: &str) -> String {
        let mut all = problems(&[(file, text)]);
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    const HTTP: &str = r#"{
  "name": "api",
  "type": "http",
  "url": "http://127.0.0.1/",
  "interval": "10s""#;

    #[test]
    fn invalid_json_points_at_the_syntax_error() {
        assert_eq!(
            one("a.json", "{\n  \"name\": \"x\",\n  \"type\" \"http\"\n}"),
            "a.json:3:10: invalid JSON: expected `:`"
        );
    }

    #[test]
    fn an_unknown_field_points_at_its_key() {
        let text = format!("{HTTP},\n  \"urll\": \"x\"\n}}");
        let problem = one("api.json", &text);
        assert!(
            problem.starts_with("api.json:6:3: urll: unknown field for this http check; expected one of `url`"),
            "{problem}"
        );
    }

    #[test]
    fn a_wrong_type_points_at_the_value() {
        let text = HTTP.replace("\"10s\"", "10") + "\n}";
        let problem = one("api.json", &text);
        assert!(problem.starts_with("api.json:5:15: interval: invalid type: integer `10`"), "{problem}");
    }

    #[test]
    fn a_bad_status_class_points_into_the_array() {
        let text = format!("{HTTP},\n  \"expect\": {{\n    \"status\": [200, \"2xz\"]\n  }}\n}}");
        assert_eq!(one("api.json", &text), r#"api.json:7:21: expect.status[1]: "2xz" is not a status code or class"#);
    }

    #[test]
    fn a_bad_duration_says_how_to_write_one() {
        let text = HTTP.replace("\"10s\"", "\"10 sec\"") + "\n}";
        assert_eq!(
            one("api.json", &text),
            r#"api.json:5:15: interval: "10 sec" is not a duration (write e.g. "500ms", "10s", "2m", "1h30m")"#
        );
    }

    #[test]
    fn a_quorum_larger_than_the_subscriptions_points_at_the_quorum() {
        let text = format!("{HTTP},\n  \"subscriptions\": [\"eu\", \"us\"],\n  \"quorum\": 3\n}}");
        assert_eq!(
            one("api.json", &text),
            "api.json:7:13: quorum: quorum 3 is more than the check's 2 subscription(s)"
        );
        let text = format!("{HTTP},\n  \"quorum\": \"0%\"\n}}");
        assert!(one("api.json", &text).starts_with("api.json:6:13: quorum: \"0%\" is not a quorum"));
        let text = format!("{HTTP},\n  \"subscriptions\": [\"eu\", \"us\", \"ap\"],\n  \"quorum\": \"50%\"\n}}");
        let check = super::super::parse_check(serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(check.common.quorum, Some(super::super::Quorum::Percent(50)));
    }

    #[test]
    fn a_dependency_must_name_another_check() {
        let text = format!("{HTTP},\n  \"depends_on\": [\"canary\"]\n}}");
        assert_eq!(one("api.json", &text), r#"api.json:6:18: depends_on[0]: no check is named "canary""#);
        let text = format!("{HTTP},\n  \"depends_on\": [\"api\"]\n}}");
        assert_eq!(one("api.json", &text), "api.json:6:18: depends_on[0]: a check cannot depend on itself");
    }

    #[test]
    fn a_timeout_not_below_the_interval_points_at_the_timeout() {
        let text = format!("{HTTP},\n  \"timeout\": \"10s\"\n}}");
        assert_eq!(one("api.json", &text), "api.json:6:14: timeout: timeout 10s must be below the interval 10s");
    }

    #[test]
    fn a_missing_field_points_at_the_object() {
        let text = "[\n  {\"name\": \"a\", \"type\": \"http\", \"url\": \"http://x/\", \"interval\": \"1m\"},\n  {\"name\": \"b\", \"type\": \"http\", \"interval\": \"1m\"}\n]";
        assert_eq!(one("list.json", text), "list.json:3:3: missing field `url`");
    }

    #[test]
    fn an_invalid_url_points_at_the_url() {
        let text = HTTP.replace("http://127.0.0.1/", "ftp://127.0.0.1/") + "\n}";
        assert_eq!(one("api.json", &text), "api.json:4:10: url: ftp://127.0.0.1/ is not an http:// or https:// URL");
        let text = HTTP.replace("http://127.0.0.1/", "not a url") + "\n}";
        assert!(one("api.json", &text).starts_with("api.json:4:10: url: "));
    }

    #[test]
    fn an_unknown_record_type_lists_the_known_ones() {
        let text = "{\"name\": \"d\", \"type\": \"dns\", \"query\": \"example.com\", \"record\": \"AXFR\", \"interval\": \"30s\"}";
        let problem = one("dns.json", text);
        assert!(
            problem.starts_with("dns.json:1:64: record: unknown variant `AXFR`, expected one of `A`, `AAAA`"),
            "{problem}"
        );
    }

    #[test]
    fn an_unknown_check_type_points_at_the_type() {
        let text = "{\"name\": \"p\", \"type\": \"ping\", \"interval\": \"30s\"}";
        assert_eq!(one("p.json", text), "p.json:1:23: type: \"ping\" is not a known type (one of http, dns, tls)");
    }

    #[test]
    fn an_invalid_name_points_at_the_name() {
        let text = HTTP.replace("\"api\"", "\"My API\"") + "\n}";
        assert_eq!(
            one("api.json", &text),
            "api.json:2:11: name: \"My API\" is not a valid name (1-128 of a-z 0-9 _ . -)"
        );
    }

    #[test]
    fn a_bad_cron_line_points_at_the_cron() {
        let text = "{\"name\": \"c\", \"type\": \"tls\", \"host\": \"example.com\", \"cron\": \"* * *\"}";
        assert_eq!(
            one("c.json", text),
            "c.json:1:61: cron: \"* * *\" has 3 fields; a cron line has 5 (minute first) or 6 (second first)"
        );
    }

    #[test]
    fn a_secret_written_inline_is_refused_without_echoing_it() {
        let text = "[{\"name\": \"ops\", \"type\": \"slack\",\n  \"webhook_url\": \"https://hooks.slack.com/services/T0/B0/XYZ\"}]";
        let problem = one("handlers.json", text);
        assert!(
            problem.starts_with("handlers.json:2:18: webhook_url: secrets are never written in definition files"),
            "{problem}"
        );
        assert!(!problem.contains("XYZ"));
    }

    #[test]
    fn duplicate_names_across_files_point_at_both() {
        let text = format!("{HTTP}\n}}");
        let all = problems(&[("a.json", &text), ("b.json", &text)]);
        assert_eq!(all.len(), 1);
        assert!(all[0].starts_with("b.json:2:11: name: check \"api\" is already defined at "), "{all:?}");
        assert!(all[0].ends_with("a.json:2:11"), "{all:?}");
    }

    #[test]
    fn an_unknown_handler_points_at_the_reference() {
        let text = format!("{HTTP},\n  \"handlers\": [\"ops\", \"pager\"]\n}}");
        let handlers = "[{\"name\": \"ops\", \"type\": \"log\"}]";
        let all = problems(&[("api.json", &text), ("handlers.json", handlers)]);
        assert_eq!(all, vec!["api.json:6:23: handlers[1]: no handler is named \"pager\" (defined: ops)"]);
    }

    #[test]
    fn every_problem_is_reported_not_only_the_first() {
        let bad_http = HTTP.replace("\"10s\"", "\"0s\"") + "\n}";
        let two_bad = "[{\"name\": \"x\", \"type\": \"dns\"}, {\"name\": \"Y\", \"type\": \"tls\", \"host\": \"h\", \"interval\": \"1m\"}]";
        let all = problems(&[("a.json", &bad_http), ("b.json", two_bad)]);
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(all[0].starts_with("a.json:5:15: interval: interval 0s is below the 1s minimum"), "{all:?}");
        assert!(all[1].starts_with("b.json:1:2: missing field `query`"), "{all:?}");
        assert!(all[2].starts_with("b.json:1:41: name: \"Y\""), "{all:?}");
    }

    const WINDOW: &str = r#"{
  "kind": "maintenance",
  "name": "db-vacuum",
  "match": {"check": "db-*"},
  "weekdays": ["sun"],
  "at": "02:00",
  "duration": "1h",
  "timezone": "Europe/Berlin",
  "comment": "weekly vacuum""#;

    /// The window with `from` replaced by `to`, closed.
    fn window_with(from: &str, to: &str) -> String {
        assert!(WINDOW.contains(from), "{from}");
        WINDOW.replacen(from, to, 1) + "\n}"
    }

    fn window_problem(text: &str) -> String {
        one("windows.json", text)
    }

    #[test]
    fn a_window_with_an_unknown_field_points_at_its_key() {
        let problem = window_problem(&format!("{WINDOW},\n  \"comentt\": \"x\"\n}}"));
        assert!(
            problem
                .starts_with("windows.json:10:3: comentt: unknown field for this maintenance window; expected one of"),
            "{problem}"
        );
    }

    #[test]
    fn a_window_with_cron_and_weekdays_points_at_the_cron() {
        let problem = window_problem(&format!("{WINDOW},\n  \"cron\": \"0 2 * * SUN\"\n}}"));
        assert_eq!(problem, "windows.json:10:11: cron: give either `cron` or `weekdays` with `at`, not both");
    }

    #[test]
    fn a_window_with_neither_cron_nor_weekdays_points_at_the_object() {
        let text = window_with("  \"weekdays\": [\"sun\"],\n  \"at\": \"02:00\",\n", "");
        assert_eq!(window_problem(&text), "windows.json:1:1: missing field `cron` (or `weekdays` and `at`)");
    }

    #[test]
    fn a_window_with_weekdays_but_no_time_points_at_the_weekdays() {
        let text = window_with("  \"at\": \"02:00\",\n", "");
        assert_eq!(
            window_problem(&text),
            "windows.json:5:15: weekdays: `weekdays` needs `at`, the local time it opens (\"HH:MM\")"
        );
    }

    #[test]
    fn a_window_with_a_bad_cron_points_at_the_cron() {
        let text = window_with("\"weekdays\": [\"sun\"],\n  \"at\": \"02:00\"", "\"cron\": \"0 2 * *\"");
        assert_eq!(
            window_problem(&text),
            "windows.json:5:11: cron: \"0 2 * *\" has 4 fields; a cron line has 5 (minute first) or 6 (second first)"
        );
    }

    #[test]
    fn a_window_with_a_bad_weekday_points_into_the_list() {
        let problem = window_problem(&window_with("[\"sun\"]", "[\"sat\", \"sunday\"]"));
        assert!(
            problem.starts_with("windows.json:5:23: weekdays[1]: unknown variant `sunday`, expected one of `mon`"),
            "{problem}"
        );
        let twice = window_problem(&window_with("[\"sun\"]", "[\"sun\", \"sun\"]"));
        assert_eq!(twice, "windows.json:5:23: weekdays[1]: \"sun\" is listed twice");
    }

    #[test]
    fn a_window_with_a_bad_time_points_at_the_time() {
        assert_eq!(
            window_problem(&window_with("\"02:00\"", "\"2:00\"")),
            "windows.json:6:9: at: \"2:00\" is not a time of day (write \"HH:MM\" on the 24-hour clock, e.g. \"02:00\")"
        );
        assert!(window_problem(&window_with("\"02:00\"", "\"24:00\"")).starts_with("windows.json:6:9: at: "));
    }

    #[test]
    fn a_window_with_a_bad_time_zone_points_at_the_zone() {
        assert_eq!(
            window_problem(&window_with("Europe/Berlin", "Europe/Berln")),
            "windows.json:8:15: timezone: \"Europe/Berln\" is not an IANA time zone name (e.g. \"Europe/Berlin\", \"UTC\")"
        );
    }

    #[test]
    fn a_window_of_zero_or_over_a_week_points_at_the_duration() {
        assert_eq!(
            window_problem(&window_with("\"1h\"", "\"0s\"")),
            "windows.json:7:15: duration: duration must be above 0"
        );
        assert_eq!(
            window_problem(&window_with("\"1h\"", "\"7d1m\"")),
            "windows.json:7:15: duration: duration 10081m is longer than a week, the most a window may last"
        );
        let (_dir, week) = load(&[("w.json", &window_with("\"1h\"", "\"7d\""))]);
        assert!(week.is_ok(), "exactly a week is allowed: {week:?}");
    }

    #[test]
    fn a_window_without_a_comment_is_refused() {
        let missing = window_with(",\n  \"comment\": \"weekly vacuum\"", "");
        assert_eq!(window_problem(&missing), "windows.json:1:1: missing field `comment`");
        let empty = window_with("\"weekly vacuum\"", "\" \"");
        assert_eq!(window_problem(&empty), "windows.json:9:14: comment: say why the window exists (comment is empty)");
    }

    #[test]
    fn duplicate_window_names_point_at_both() {
        let text = window_with("", "");
        let all = problems(&[("a.json", &text), ("b.json", &text)]);
        assert_eq!(all.len(), 1, "{all:?}");
        assert!(all[0].starts_with("b.json:3:11: name: maintenance window \"db-vacuum\" is already defined at "));
        assert!(all[0].ends_with("a.json:3:11"), "{all:?}");
    }

    #[test]
    fn a_window_matching_neither_check_nor_subscription_needs_force() {
        let fleet = window_with("{\"check\": \"db-*\"}", "{\"labels\": {\"team\": \"db\"}}");
        let problem = window_problem(&fleet);
        assert!(problem.starts_with("windows.json:4:12: match: names neither `check` nor `subscription`"), "{problem}");
        let forced = fleet.replacen("\"kind\"", "\"force\": true,\n  \"kind\"", 1);
        let (_dir, result) = load(&[("windows.json", &forced)]);
        assert_eq!(result.unwrap().windows.len(), 1);
        let bad_glob = window_problem(&window_with("\"db-*\"", "\"\""));
        assert!(bad_glob.starts_with("windows.json:4:22: match.check: a glob must not be empty"), "{bad_glob}");
    }

    #[test]
    fn a_valid_directory_loads_checks_and_handlers() {
        let text = format!("{HTTP},\n  \"handlers\": [\"ops\"]\n}}");
        let handlers = "[{\"name\": \"ops\", \"type\": \"slack\", \"webhook_url\": {\"env\": \"SLACK_WEBHOOK_OPS\"}}]";
        let window = window_with("", "");
        let (_dir, result) = load(&[
            ("api.json", &text),
            ("handlers.json", handlers),
            ("windows.json", &window),
            ("notes.txt", "ignored"),
        ]);
        let catalog = result.unwrap();
        assert_eq!(catalog.checks.len(), 1);
        assert_eq!(catalog.handlers.len(), 1);
        assert_eq!(catalog.windows.len(), 1);
        assert_eq!(catalog.windows[0].name, "db-vacuum");
    }
}
