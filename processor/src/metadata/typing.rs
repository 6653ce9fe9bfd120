//! Types of values: which `VariableType` a value has, whether it fits a declaration,
//! how text given for a typed variable is read (`weir run --var count=3` sends text),
//! and how values travel as JSON (a user task's results, a field of a JSON output).

use std::collections::BTreeMap;

use weir_proto::variable_value::Value;
use weir_proto::{VariableType, VariableValue};

/// The type of a value; `None` for the empty value.
pub fn value_type(value: &VariableValue) -> Option<VariableType> {
    Some(match value.value.as_ref()? {
        Value::Str(_) => VariableType::Str,
        Value::Int(_) => VariableType::Int,
        Value::Double(_) => VariableType::Double,
        Value::Bool(_) => VariableType::Bool,
        Value::JsonObj(_) => VariableType::JsonObj,
        Value::JsonArr(_) => VariableType::JsonArr,
        Value::Bytes(_) => VariableType::Bytes,
    })
}

/// `value` as a value of `declared`: unchanged when it already has that type (or is
/// empty), read from its text when it is text and the text spells a value of the
/// type; otherwise an error saying what was expected.
pub fn coerce(value: VariableValue, declared: VariableType) -> Result<VariableValue, String> {
    let given = value_type(&value);
    if given.is_none() || given == Some(declared) {
        return Ok(value);
    }
    let mismatch = || {
        format!(
            "expects {}, got {}",
            declared.as_str_name(),
            given.map_or("an empty value", |t| t.as_str_name())
        )
    };
    let Some(Value::Str(text)) = &value.value else {
        return Err(mismatch());
    };
    let unreadable = |what: &str| {
        format!(
            "expects {}, and {text:?} is not {what}",
            declared.as_str_name()
        )
    };
    let parsed = match declared {
        VariableType::Int => Value::Int(text.trim().parse().map_err(|_| unreadable("an integer"))?),
        VariableType::Double => {
            Value::Double(text.trim().parse().map_err(|_| unreadable("a number"))?)
        }
        VariableType::Bool => match text.trim() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(unreadable("true or false")),
        },
        VariableType::JsonObj => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(_)) => Value::JsonObj(text.clone()),
            _ => return Err(unreadable("a JSON object")),
        },
        VariableType::JsonArr => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Array(_)) => Value::JsonArr(text.clone()),
            _ => return Err(unreadable("a JSON array")),
        },
        VariableType::Str | VariableType::Bytes => return Err(mismatch()),
    };
    Ok(VariableValue {
        value: Some(parsed),
    })
}

/// A value as JSON: text, numbers and booleans as themselves, JSON values parsed,
/// bytes as an array of numbers, the empty value as null.
pub fn to_json(value: &VariableValue) -> serde_json::Value {
    use serde_json::Value as Json;
    match &value.value {
        None => Json::Null,
        Some(Value::Str(s)) => Json::String(s.clone()),
        Some(Value::Int(i)) => Json::from(*i),
        Some(Value::Double(d)) => Json::from(*d),
        Some(Value::Bool(b)) => Json::Bool(*b),
        Some(Value::JsonObj(text) | Value::JsonArr(text)) => {
            serde_json::from_str(text).unwrap_or_else(|_| Json::String(text.clone()))
        }
        Some(Value::Bytes(bytes)) => Json::from(bytes.clone()),
    }
}

/// A JSON value as a typed value: objects and arrays keep their JSON text.
pub fn from_json(json: &serde_json::Value) -> VariableValue {
    use serde_json::Value as Json;
    let value = match json {
        Json::Null => None,
        Json::String(s) => Some(Value::Str(s.clone())),
        Json::Bool(b) => Some(Value::Bool(*b)),
        Json::Number(n) => Some(match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Double(n.as_f64().unwrap_or(f64::NAN)),
        }),
        Json::Object(_) => Some(Value::JsonObj(json.to_string())),
        Json::Array(_) => Some(Value::JsonArr(json.to_string())),
    };
    VariableValue { value }
}

/// Named values as one JSON object value (a user task's results as its node output).
pub fn object_of(values: &BTreeMap<String, VariableValue>) -> VariableValue {
    let object: serde_json::Map<String, serde_json::Value> = values
        .iter()
        .map(|(name, value)| (name.clone(), to_json(value)))
        .collect();
    VariableValue {
        value: Some(Value::JsonObj(
            serde_json::Value::Object(object).to_string(),
        )),
    }
}

/// The value of top-level key `field` of a JSON object value.
pub fn field_of(value: &VariableValue, field: &str) -> Result<VariableValue, String> {
    let Some(Value::JsonObj(text)) = &value.value else {
        return Err(format!(
            "field {field:?} is asked of {}, which is not a JSON object",
            value_type(value).map_or("an empty value", |t| t.as_str_name())
        ));
    };
    let object: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("output is not valid JSON: {e}"))?;
    Ok(object
        .get(field)
        .map(from_json)
        .unwrap_or(VariableValue { value: None }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> VariableValue {
        VariableValue {
            value: Some(Value::Str(s.to_owned())),
        }
    }

    #[test]
    fn text_is_read_as_the_declared_type() {
        assert_eq!(
            coerce(text(" 42"), VariableType::Int),
            Ok(VariableValue {
                value: Some(Value::Int(42))
            })
        );
        assert_eq!(
            coerce(text("true"), VariableType::Bool),
            Ok(VariableValue {
                value: Some(Value::Bool(true))
            })
        );
        assert_eq!(coerce(text("x"), VariableType::Str), Ok(text("x")));
        assert_eq!(
            coerce(text("forty"), VariableType::Int),
            Err("expects INT, and \"forty\" is not an integer".to_owned())
        );
        assert_eq!(
            coerce(
                VariableValue {
                    value: Some(Value::Int(1))
                },
                VariableType::Str
            ),
            Err("expects STR, got INT".to_owned())
        );
        assert!(coerce(text("[1]"), VariableType::JsonObj).is_err());
        assert!(coerce(text("{\"a\":1}"), VariableType::JsonObj).is_ok());
    }

    #[test]
    fn json_fields_and_objects_round_trip() {
        let mut results = BTreeMap::new();
        results.insert(
            "approved".to_owned(),
            VariableValue {
                value: Some(Value::Bool(true)),
            },
        );
        results.insert(
            "amount".to_owned(),
            VariableValue {
                value: Some(Value::Int(12)),
            },
        );
        let object = object_of(&results);
        assert_eq!(
            field_of(&object, "amount"),
            Ok(VariableValue {
                value: Some(Value::Int(12))
            })
        );
        assert_eq!(
            field_of(&object, "missing"),
            Ok(VariableValue { value: None })
        );
        assert!(field_of(&text("x"), "a").is_err());
    }
}
