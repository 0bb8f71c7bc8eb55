//! Loading a checks directory: every `*.json` file under it, each holding one
//! object or an array of them. Errors are collected, not stopped at, so
//! `picket validate` shows every problem in one run.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::handler::{HANDLER_TYPES, HandlerDefinition, parse_handler};
use super::locate::{Position, locate, top_level_items};
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

/// A validated set of checks and handlers.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    pub checks: Vec<CheckDefinition>,
    pub handlers: Vec<HandlerDefinition>,
}

/// One parsed file: what it defines and what is wrong in it.
struct ParsedFile {
    path: PathBuf,
    text: String,
    checks: Vec<(usize, CheckDefinition)>,
    handlers: Vec<(usize, HandlerDefinition)>,
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
            let text = std::fs::read_to_string(path)
                .map_err(|source| CatalogError::Io { path: path.clone(), source })?;
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
    let mut file = ParsedFile { path: path.to_owned(), text, checks: Vec::new(), handlers: Vec::new() };
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
    let mut check_names: HashMap<String, Origin> = HashMap::new();
    let mut handler_names: HashMap<String, Origin> = HashMap::new();
    for file in &files {
        for (offset, handler) in &file.handlers {
            let origin = origin_of(file, *offset, "name");
            if let Some(first) = handler_names.get(handler.name()) {
                let message = format!("handler {:?} is already defined at {first}", handler.name());
                errors.push(error_at(file, *offset, FieldError::new("name", message), false));
            } else {
                handler_names.insert(handler.name().to_owned(), origin);
                catalog.handlers.push(handler.clone());
            }
        }
    }
    for file in &files {
        for (offset, check) in &file.checks {
            let origin = origin_of(file, *offset, "name");
            if let Some(first) = check_names.get(check.name()) {
                let message = format!("check {:?} is already defined at {first}", check.name());
                errors.push(error_at(file, *offset, FieldError::new("name", message), false));
                continue;
            }
            check_names.insert(check.name().to_owned(), origin);
            if strict_handlers {
                for (i, name) in check.common.handlers.iter().enumerate() {
                    if !handler_names.contains_key(name) {
                        let known: Vec<&str> = handler_names.keys().map(String::as_str).collect();
                        let message = format!("no handler is named {name:?} (defined: {})", list(known));
                        errors.push(error_at(file, *offset, FieldError::new(format!("handlers[{i}]"), message), false));
                    }
                }
            }
            catalog.checks.push(check.clone());
        }
    }
    catalog
}

fn origin_of(file: &ParsedFile, offset: usize, path: &str) -> Origin {
    Origin { file: file.path.clone(), position: Position::of_offset(&file.text, locate(&file.text, offset, path, false)) }
}

fn list(mut names: Vec<&str>) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    names.sort_unstable();
    names.join(", ")
}
