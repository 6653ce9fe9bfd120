//! Whether a record of an ingestion topic matches its data model, and the key and
//! canonical bytes of one that does. A record that does not match is refused with the
//! reason, which the runtime writes to the dead letters.
//!
//! The rules, decided here once:
//! - A record is a JSON object (UTF-8 JSON text whose top level is an object).
//! - `null` counts as absent, for every field type. A required field (the key field is
//!   always required) must be present and not `null`.
//! - Fields the model does not declare are refused, not kept or dropped: the model is the
//!   contract of the topic, and a new field is a new model version reached by a
//!   migration flow. Dropping them silently would lose data; keeping them would let
//!   undeclared data reach tables.
//! - Types: `STRING` a JSON string; `INT` a JSON integer in the signed 64-bit range (not
//!   `3.0`, not `"3"`); `FLOAT` any JSON number; `BOOL` `true` or `false`; `JSON` any
//!   value; `TIMESTAMP` either RFC 3339 text with a UTC offset
//!   (`2024-05-01T12:00:00.5Z`, `…+02:00`) or an integer number of milliseconds since the
//!   Unix epoch. A timestamp is kept as sent: both forms name an instant exactly, and a
//!   conversion could lose the sub-millisecond part of the text form.
//! - The key is the key field's value as text: a string's UTF-8 bytes (no quotes), an
//!   integer in decimal. Manifest validation allows only `STRING` and `INT` key fields,
//!   since other types have several texts for one value (`1.0` and `1`, two timestamp
//!   forms).
//! - The canonical bytes are the record as compact JSON with object keys sorted at every
//!   level and `null` fields left out, so equal records give equal bytes whatever the
//!   producer's key order or spacing.

use std::fmt;

use serde_json::{Map, Value};
use weir_proto::DataModel;
use weir_proto::data_model_field::FieldType;

/// A record that matches its model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidRecord {
    /// The key field's value as text: the record's Kafka key and table key.
    pub key: Vec<u8>,
    /// The record as canonical JSON.
    pub value: Vec<u8>,
}

/// Why a record does not match its model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The bytes are not JSON text.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// The JSON is not an object.
    #[error("not a JSON object but {0}")]
    NotAnObject(&'static str),
    /// The key field is absent or `null`.
    #[error("key field {0:?} is missing")]
    MissingKey(String),
    /// A required field is absent or `null`.
    #[error("required field {0:?} is missing")]
    MissingField(String),
    /// A field's value is not of the field's type.
    #[error("field {field:?} must be {expected}, not {found}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: String,
    },
    /// A field the model does not declare.
    #[error("field {0:?} is not declared by the model")]
    UnknownField(String),
    /// The model itself is unusable (it did not pass manifest validation).
    #[error("the model is invalid: {0}")]
    BadModel(String),
}

/// Checks the bytes of one record against `model` and returns its key and canonical
/// bytes, or why it does not match.
pub fn validate(model: &DataModel, bytes: &[u8]) -> Result<ValidRecord, RecordError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| RecordError::NotJson(e.to_string()))?;
    validate_value(model, &value)
}

/// Checks an already parsed record against `model` (what a transform returns is checked
/// against the target model this way).
pub fn validate_value(model: &DataModel, value: &Value) -> Result<ValidRecord, RecordError> {
    let Value::Object(object) = value else {
        return Err(RecordError::NotAnObject(kind(value)));
    };
    if let Some(unknown) = object
        .keys()
        .find(|name| !model.fields.iter().any(|f| &f.name == *name))
    {
        return Err(RecordError::UnknownField(unknown.clone()));
    }
    let mut key = None;
    for field in &model.fields {
        let field_type = FieldType::try_from(field.field_type).map_err(|_| {
            RecordError::BadModel(format!(
                "field {:?} has unknown type {}",
                field.name, field.field_type
            ))
        })?;
        let is_key = field.name == model.key_field;
        match object.get(&field.name) {
            None | Some(Value::Null) if is_key => {
                return Err(RecordError::MissingKey(field.name.clone()));
            }
            None | Some(Value::Null) if field.required => {
                return Err(RecordError::MissingField(field.name.clone()));
            }
            None | Some(Value::Null) => {}
            Some(value) => {
                check_type(&field.name, field_type, value)?;
                if is_key {
                    key = Some(key_text(&field.name, field_type, value)?);
                }
            }
        }
    }
    let key = key.ok_or_else(|| {
        RecordError::BadModel(format!("key field {:?} is not declared", model.key_field))
    })?;
    let mut canonical = Vec::new();
    write_canonical(&mut canonical, value);
    Ok(ValidRecord {
        key,
        value: canonical,
    })
}

fn check_type(field: &str, field_type: FieldType, value: &Value) -> Result<(), RecordError> {
    let ok = match field_type {
        FieldType::String => value.is_string(),
        FieldType::Int => value.is_i64(),
        FieldType::Float => value.is_number(),
        FieldType::Bool => value.is_boolean(),
        FieldType::Json => true,
        FieldType::Timestamp => match value {
            Value::String(text) => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
            other => other.is_i64(),
        },
    };
    if ok {
        return Ok(());
    }
    let expected = match field_type {
        FieldType::String => "a string",
        FieldType::Int => "an integer in the signed 64-bit range",
        FieldType::Float => "a number",
        FieldType::Bool => "true or false",
        FieldType::Json => "any JSON value",
        FieldType::Timestamp => "an RFC 3339 timestamp or integer epoch milliseconds",
    };
    let found = match value {
        Value::String(text) => format!("the string {text:?}"),
        Value::Number(n) => format!("the number {n}"),
        other => kind(other).to_owned(),
    };
    Err(RecordError::WrongType {
        field: field.to_owned(),
        expected,
        found,
    })
}

fn key_text(field: &str, field_type: FieldType, value: &Value) -> Result<Vec<u8>, RecordError> {
    match (field_type, value) {
        (FieldType::String, Value::String(text)) => Ok(text.as_bytes().to_vec()),
        (FieldType::Int, Value::Number(n)) if n.is_i64() => Ok(n.to_string().into_bytes()),
        _ => Err(RecordError::BadModel(format!(
            "key field {field:?} must be a STRING or INT field"
        ))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Writes `value` as compact JSON with object keys in byte order at every level,
/// whichever map order `serde_json` was built with; `null` members of the top-level
/// object are left out (they count as absent).
fn write_canonical(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Object(object) => write_object(out, object, true),
        other => write_nested(out, other),
    }
}

fn write_nested(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Object(object) => write_object(out, object, false),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_nested(out, item);
            }
            out.push(b']');
        }
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

fn write_object(out: &mut Vec<u8>, object: &Map<String, Value>, skip_null: bool) {
    let mut members: Vec<(&String, &Value)> = object
        .iter()
        .filter(|(_, v)| !(skip_null && v.is_null()))
        .collect();
    members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    out.push(b'{');
    for (i, (name, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(Value::String(name.clone()).to_string().as_bytes());
        out.push(b':');
        write_nested(out, value);
    }
    out.push(b'}');
}

impl fmt::Display for ValidRecord {
    /// `key => value`, both as (lossy) text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} => {}",
            String::from_utf8_lossy(&self.key),
            String::from_utf8_lossy(&self.value)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_proto::{DataModelField, DataModelVersion};

    fn field(name: &str, field_type: FieldType, required: bool) -> DataModelField {
        DataModelField {
            name: name.into(),
            field_type: field_type as i32,
            required,
        }
    }

    fn model(key: &str, key_type: FieldType) -> DataModel {
        DataModel {
            name: "UserActivity".into(),
            version: Some(DataModelVersion { major: 0, minor: 1 }),
            fields: vec![
                field(key, key_type, true),
                field("event", FieldType::String, true),
                field("count", FieldType::Int, false),
                field("score", FieldType::Float, false),
                field("active", FieldType::Bool, false),
                field("at", FieldType::Timestamp, false),
                field("extra", FieldType::Json, false),
            ],
            key_field: key.into(),
        }
    }

    fn ok(model: &DataModel, json: &str) -> ValidRecord {
        validate(model, json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn err(model: &DataModel, json: &str) -> RecordError {
        match validate(model, json.as_bytes()) {
            Ok(r) => panic!("{json} was accepted as {r}"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_matching_record_gives_its_key_and_canonical_bytes() {
        let m = model("user", FieldType::String);
        let record = ok(
            &m,
            r#"{ "event": "click", "user": "u-1", "extra": {"z": 1, "a": [null, {"y": 2, "b": 3}]},
                 "count": null, "at": "2024-05-01T12:00:00.5+02:00" }"#,
        );
        assert_eq!(record.key, b"u-1");
        assert_eq!(
            String::from_utf8(record.value).expect("JSON is UTF-8"),
            r#"{"at":"2024-05-01T12:00:00.5+02:00","event":"click","extra":{"a":[null,{"b":3,"y":2}],"z":1},"user":"u-1"}"#
        );
        let int_keyed = model("id", FieldType::Int);
        let record = ok(&int_keyed, r#"{"id": -42, "event": "e"}"#);
        assert_eq!(record.key, b"-42");
        assert_eq!(record.to_string(), r#"-42 => {"event":"e","id":-42}"#);
        // Equal records in another order give the same bytes.
        assert_eq!(
            ok(&int_keyed, r#"{"event":"e","id":-42}"#).value,
            ok(&int_keyed, r#"{ "id" : -42 , "event" : "e" }"#).value
        );
    }

    #[test]
    fn not_json_or_not_an_object_is_refused() {
        let m = model("user", FieldType::String);
        assert!(matches!(err(&m, "{\"user\": "), RecordError::NotJson(_)));
        assert!(matches!(err(&m, "\u{0}"), RecordError::NotJson(_)));
        assert!(matches!(
            validate(&m, b"\xff\xfe"),
            Err(RecordError::NotJson(_))
        ));
        assert_eq!(err(&m, "[1]"), RecordError::NotAnObject("an array"));
        assert_eq!(err(&m, "\"u-1\""), RecordError::NotAnObject("a string"));
        assert_eq!(err(&m, "null"), RecordError::NotAnObject("null"));
    }

    #[test]
    fn missing_key_and_required_fields_are_refused() {
        let m = model("user", FieldType::String);
        assert_eq!(
            err(&m, r#"{"event": "click"}"#),
            RecordError::MissingKey("user".into())
        );
        assert_eq!(
            err(&m, r#"{"user": null, "event": "click"}"#),
            RecordError::MissingKey("user".into())
        );
        assert_eq!(
            err(&m, r#"{"user": "u"}"#),
            RecordError::MissingField("event".into())
        );
        assert_eq!(
            err(&m, r#"{"user": "u", "event": null}"#),
            RecordError::MissingField("event".into())
        );
        // Optional fields may be absent or null.
        ok(&m, r#"{"user": "u", "event": "e", "score": null}"#);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let m = model("user", FieldType::String);
        let e = err(&m, r#"{"user": "u", "event": "e", "colour": "red"}"#);
        assert_eq!(e, RecordError::UnknownField("colour".into()));
        assert_eq!(
            e.to_string(),
            "field \"colour\" is not declared by the model"
        );
    }

    #[test]
    fn each_type_accepts_its_values_and_refuses_others() {
        let m = model("user", FieldType::String);
        let with =
            |name: &str, value: &str| format!(r#"{{"user":"u","event":"e","{name}":{value}}}"#);
        let cases: [(&str, &[&str], &[&str]); 6] = [
            ("event", &["\"\"", "\"x\""], &["1", "true", "[]", "{}"]),
            (
                "count",
                &["0", "-9223372036854775808", "9223372036854775807"],
                &["1.5", "3.0", "\"3\"", "9223372036854775808", "true"],
            ),
            (
                "score",
                &["1", "-1.5", "1e300"],
                &["\"1.5\"", "false", "[]"],
            ),
            ("active", &["true", "false"], &["0", "\"true\""]),
            (
                "at",
                &[
                    "\"2024-05-01T12:00:00Z\"",
                    "\"2024-05-01T12:00:00.123456789-07:30\"",
                    "1714564800000",
                    "-1",
                ],
                &[
                    "\"2024-05-01\"",
                    "\"2024-05-01T12:00:00\"",
                    "\"yesterday\"",
                    "1714564800000.5",
                    "true",
                ],
            ),
            ("extra", &["1", "\"s\"", "[1,{}]", "{\"a\":null}"], &[]),
        ];
        for (name, good, bad) in cases {
            for value in good {
                ok(&m, &with(name, value));
            }
            for value in bad {
                match err(&m, &with(name, value)) {
                    RecordError::WrongType { field, .. } => assert_eq!(field, name, "{value}"),
                    other => panic!("{name}={value}: {other}"),
                }
            }
        }
        let e = err(&m, &with("count", "\"3\""));
        assert_eq!(
            e.to_string(),
            "field \"count\" must be an integer in the signed 64-bit range, not the string \"3\""
        );
        // The key's own type is checked too.
        assert!(matches!(
            err(&m, r#"{"user": 7, "event": "e"}"#),
            RecordError::WrongType { .. }
        ));
    }

    #[test]
    fn an_unusable_model_is_reported_not_panicked_on() {
        let mut m = model("user", FieldType::Float);
        assert!(matches!(
            err(&m, r#"{"user": 1.5, "event": "e"}"#),
            RecordError::BadModel(_)
        ));
        m.key_field = "nobody".into();
        assert!(matches!(
            err(&m, r#"{"user": 1.5, "event": "e"}"#),
            RecordError::BadModel(_)
        ));
        m.fields[1].field_type = 99;
        assert!(matches!(
            err(&m, r#"{"user": 1.5, "event": "e"}"#),
            RecordError::BadModel(_)
        ));
    }
}
