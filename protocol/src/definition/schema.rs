//! The JSON Schema of definition files (`picket schema`), derived from the
//! same types the loader deserializes into.

use schemars::generate::SchemaSettings;
use schemars::Schema;
use serde_json::{Value, json};

use super::handler::{HandlerCommon, LogSpec, PagerDutySpec, SlackSpec};
use super::{CheckCommon, DnsSpec, HttpSpec, TlsSpec};

/// Parts of a flat definition object are combined with `allOf`, so each part
/// must leave other keys alone; the combined object closes them instead
/// (`unevaluatedProperties: false`).
pub fn open_object(schema: &mut Schema) {
    schema.remove("additionalProperties");
}

/// The schema of one definition file: an object or an array of objects, each a
/// check (`type` http, dns, tls) or a handler (`type` slack, pagerduty, log).
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
