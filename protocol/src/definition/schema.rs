//! The JSON Schema of definition files (`picket schema`), derived from the
//! same types the loader deserializes into.

use schemars::Schema;
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use super::handler::{HandlerCommon, LogSpec, PagerDutySpec, SlackSpec};
use super::window::WindowFields;
use super::{CheckCommon, DnsSpec, HttpSpec, TlsSpec};

/// Parts of a flat definition object are combined with `allOf`, so each part
/// must leave other keys alone; the combined object closes them instead
/// (`unevaluatedProperties: false`).
pub fn open_object(schema: &mut Schema) {
    schema.remove("additionalProperties");
}

/// The schema of one definition file: an object or an array of objects, each a
/// check (`type` http, dns, tls), a handler (`type` slack, pagerduty, log) or
/// a maintenance window (`kind` maintenance).
pub fn definition_file_schema() -> Value {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let common = generator.subschema_for::<CheckCommon>();
    let handler_common = generator.subschema_for::<HandlerCommon>();
    let mut variants = Vec::new();
    for (type_name, spec) in [
        ("http", generator.subschema_for::<HttpSpec>()),
        ("dns", generator.subschema_for::<DnsSpec>()),
        ("tls", generator.subschema_for::<TlsSpec>()),
    ] {
        variants.push(json!({
            "title": format!("{type_name} check"),
            "allOf": [common, spec],
            "properties": { "type": { "const": type_name }, "kind": { "const": "check" } },
            "required": ["type"],
            "oneOf": [ { "required": ["interval"] }, { "required": ["cron"] } ],
            "unevaluatedProperties": false
        }));
    }
    for (type_name, spec) in [
        ("slack", generator.subschema_for::<SlackSpec>()),
        ("pagerduty", generator.subschema_for::<PagerDutySpec>()),
        ("log", generator.subschema_for::<LogSpec>()),
    ] {
        variants.push(json!({
            "title": format!("{type_name} handler"),
            "allOf": [handler_common, spec],
            "properties": { "type": { "const": type_name }, "kind": { "const": "handler" } },
            "required": ["type"],
            "unevaluatedProperties": false
        }));
    }
    variants.push(json!({
        "title": "maintenance window",
        "allOf": [generator.subschema_for::<WindowFields>()],
        "properties": { "kind": { "const": "maintenance" } },
        "required": ["kind"],
        "oneOf": [
            { "required": ["cron"], "not": { "anyOf": [ { "required": ["weekdays"] }, { "required": ["at"] } ] } },
            { "required": ["weekdays", "at"], "not": { "required": ["cron"] } }
        ],
        "anyOf": [
            { "required": ["force"], "properties": { "force": { "const": true } } },
            { "properties": { "match": { "anyOf": [ { "required": ["check"] }, { "required": ["subscription"] } ] } } }
        ],
        "unevaluatedProperties": false
    }));
    let definitions = generator.take_definitions(true);
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "picket definition file",
        "oneOf": [
            { "$ref": "#/$defs/Definition" },
            { "type": "array", "items": { "$ref": "#/$defs/Definition" } }
        ],
        "$defs": with_definition(definitions, variants)
    })
}

fn with_definition(mut definitions: serde_json::Map<String, Value>, variants: Vec<Value>) -> Value {
    definitions.insert("Definition".to_owned(), json!({ "oneOf": variants }));
    Value::Object(definitions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::catalog::Catalog;
    use std::path::PathBuf;

    fn validator() -> jsonschema::Validator {
        jsonschema::draft202012::new(&definition_file_schema()).expect("the schema compiles")
    }

    /// What `validate` says of one object written to its own file.
    fn loader_accepts(object: &Value) -> bool {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("one.json");
        std::fs::write(&path, object.to_string()).unwrap();
        Catalog::load_files(&[path], false).is_ok()
    }

    fn repo_files(dir: &str) -> Vec<PathBuf> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
        let mut files: Vec<PathBuf> = std::fs::read_dir(root).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        files
    }

    #[test]
    fn the_shipped_definitions_pass_the_schema() {
        let validator = validator();
        for file in repo_files("checks").into_iter().chain(repo_files("examples")) {
            let value: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            let errors: Vec<String> = validator.iter_errors(&value).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{}: {errors:?}", file.display());
        }
    }

    #[test]
    fn schema_and_loader_agree_on_each_object() {
        let http = json!({"name": "a", "type": "http", "url": "http://x/", "interval": "10s"});
        let window = json!({"kind": "maintenance", "name": "db", "match": {"check": "db-*"}, "weekdays": ["sat", "sun"],
                            "at": "02:00", "duration": "1h", "timezone": "Europe/Berlin", "comment": "vacuum"});
        // `null` removes a key.
        let window_with = |patch: Value| {
            let mut v = window.clone();
            for (key, value) in patch.as_object().unwrap() {
                if value.is_null() {
                    v.as_object_mut().unwrap().remove(key);
                } else {
                    v[key] = value.clone();
                }
            }
            v
        };
        let with = |patch: Value| {
            let mut v = http.clone();
            v.as_object_mut().unwrap().extend(patch.as_object().unwrap().clone());
            v
        };
        let samples = vec![
            (http.clone(), true),
            (json!({"name": "a", "type": "http", "url": "http://x/", "cron": "*/5 * * * *"}), true),
            (
                json!({"name": "d", "type": "dns", "query": "example.com", "record": "MX", "interval": "30s",
                    "expect": {"rcode": "NXDOMAIN", "answers": {"contains": ["10 mx.example.com"]}}}),
                true,
            ),
            (json!({"name": "t", "type": "tls", "host": "example.com", "interval": "1h", "warn_days": 30}), true),
            (json!({"name": "s", "type": "slack", "webhook_url": {"env": "HOOK"}, "severities": ["critical"]}), true),
            (json!({"name": "p", "type": "pagerduty", "kind": "handler", "routing_key": {"file": "/run/k"}}), true),
            (with(json!({"urll": "x"})), false),
            (with(json!({"expect": {"stauts": [200]}})), false),
            (with(json!({"expect": {"status": ["2xz"]}})), false),
            (with(json!({"expect": {"status": [99]}})), false),
            (with(json!({"interval": "10 s"})), false),
            (with(json!({"name": "Bad Name"})), false),
            (with(json!({"url": "ftp://x/"})), false),
            (with(json!({"type": "ping"})), false),
            (with(json!({"kind": "handler"})), false),
            (with(json!({"cron": "*/5 * * * *"})), false),
            (json!({"name": "a", "type": "http", "url": "http://x/"}), false),
            (json!({"name": "d", "type": "dns", "query": "x", "record": "AXFR", "interval": "1m"}), false),
            (json!({"name": "s", "type": "slack", "webhook_url": "https://hooks.slack.com/x"}), false),
            (json!({"name": "s", "type": "slack", "webhook_url": {"env": "A"}, "channel": "#x"}), false),
            (window.clone(), true),
            (window_with(json!({"weekdays": null, "at": null, "cron": "0 2 * * SUN"})), true),
            (window_with(json!({"match": {"labels": {"team": "db"}}, "force": true})), true),
            (window_with(json!({"match": {"subscription": "aws-*"}, "timezone": null})), true),
            (window_with(json!({"comentt": "x"})), false),
            (window_with(json!({"cron": "0 2 * * SUN"})), false),
            (window_with(json!({"weekdays": null, "at": null})), false),
            (window_with(json!({"at": null})), false),
            (window_with(json!({"weekdays": ["sunday"]})), false),
            (window_with(json!({"weekdays": []})), false),
            (window_with(json!({"weekdays": ["sun", "sun"]})), false),
            (window_with(json!({"at": "2:00"})), false),
            (window_with(json!({"timezone": "Europe/Berln"})), false),
            (window_with(json!({"duration": "1 h"})), false),
            (window_with(json!({"comment": null})), false),
            (window_with(json!({"comment": ""})), false),
            (window_with(json!({"match": {"labels": {"team": "db"}}})), false),
            (window_with(json!({"match": {"chek": "db"}})), false),
            (window_with(json!({"name": "DB"})), false),
            (window_with(json!({"type": "http"})), false),
        ];
        let validator = validator();
        for (sample, valid) in samples {
            assert_eq!(loader_accepts(&sample), valid, "loader on {sample}");
            assert_eq!(validator.is_valid(&sample), valid, "schema on {sample}");
        }
    }

    /// Rules across fields or files that JSON Schema cannot express; the
    /// loader enforces them, the schema lets them through. Listed here so the
    /// gap is known and stays this small.
    #[test]
    fn only_cross_field_rules_are_left_to_the_loader() {
        let validator = validator();
        for sample in [
            json!({"name": "a", "type": "http", "url": "http://x/", "interval": "10s", "timeout": "10s"}),
            json!({"name": "a", "type": "http", "url": "http://x/", "interval": "10s",
                   "expect": {"latency_warn": "2s", "latency_crit": "1s"}}),
            json!({"name": "t", "type": "tls", "host": "x", "interval": "1h", "warn_days": 5, "crit_days": 7}),
            json!({"name": "a", "type": "http", "url": "http://x/", "interval": "10s", "expect": {"body_regex": "("}}),
            json!({"name": "c", "type": "tls", "host": "x", "cron": "61 * * * *"}),
            json!({"kind": "maintenance", "name": "w", "match": {"check": "*"}, "cron": "0 2 * * *",
                   "duration": "8d", "comment": "a duration's bounds"}),
            json!({"kind": "maintenance", "name": "w", "match": {"check": "*"}, "cron": "0 2 * * *",
                   "duration": "0s", "comment": "a duration's bounds"}),
            json!({"kind": "maintenance", "name": "w", "match": {"check": "*"}, "cron": "0 2 * * *",
                   "duration": "1h", "comment": "  "}),
        ] {
            assert!(validator.is_valid(&sample), "schema on {sample}");
            assert!(!loader_accepts(&sample), "loader on {sample}");
        }
    }
}
