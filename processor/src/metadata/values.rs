//! What the interpreter does with values on edges: compare them (edge conditions) and
//! change them (variable mutations). Pure and deterministic; an operation that does not
//! fit its operands is an error saying which and why, never a silent coercion.

use std::cmp::Ordering;

use weir_proto::variable_value::Value;
use weir_proto::{Comparator, VariableMutationType, VariableValue};

/// Why a comparison or mutation cannot be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("cannot {operation} {left} and {right}")]
    Incompatible {
        operation: &'static str,
        left: &'static str,
        right: &'static str,
    },
    #[error("division by zero")]
    DivisionByZero,
    #[error("integer overflow in {0}")]
    Overflow(&'static str),
    #[error("{0} is not supported yet")]
    Unsupported(&'static str),
}

/// Whether `lhs comparator rhs` holds. Numbers compare across int and double; text,
/// booleans and JSON compare for equality only; an empty value equals only itself.
pub fn compare(
    lhs: &VariableValue,
    comparator: Comparator,
    rhs: &VariableValue,
) -> Result<bool, ValueError> {
    let (left, right) = (lhs.value.as_ref(), rhs.value.as_ref());
    let ordering = match (left, right) {
        (Some(Value::Int(a)), Some(Value::Int(b))) => Some(a.cmp(b)),
        (
            Some(a @ (Value::Int(_) | Value::Double(_))),
            Some(b @ (Value::Int(_) | Value::Double(_))),
        ) => as_f64(a).partial_cmp(&as_f64(b)),
        (Some(Value::Str(a)), Some(Value::Str(b))) => Some(a.cmp(b)),
        _ => None,
    };
    let equal = match ordering {
        Some(ordering) => ordering == Ordering::Equal,
        None => left == right,
    };
    match comparator {
        Comparator::Equals => Ok(equal),
        Comparator::NotEquals => Ok(!equal),
        ordered => {
            let ordering = ordering.ok_or(ValueError::Incompatible {
                operation: "order",
                left: type_name(left),
                right: type_name(right),
            })?;
            Ok(match ordered {
                Comparator::LessThan => ordering == Ordering::Less,
                Comparator::GreaterThan => ordering == Ordering::Greater,
                Comparator::LessThanEq => ordering != Ordering::Greater,
                Comparator::GreaterThanEq => ordering != Ordering::Less,
                Comparator::Equals | Comparator::NotEquals => equal,
            })
        }
    }
}

/// The variable's new value after `operation` with `rhs`.
pub fn mutate(
    current: &VariableValue,
    operation: VariableMutationType,
    rhs: &VariableValue,
) -> Result<VariableValue, ValueError> {
    let (left, right) = (current.value.as_ref(), rhs.value.as_ref());
    let incompatible = |name: &'static str| ValueError::Incompatible {
        operation: name,
        left: type_name(left),
        right: type_name(right),
    };
    let value = match operation {
        VariableMutationType::Assign => return Ok(rhs.clone()),
        VariableMutationType::Add => match (left, right) {
            (Some(Value::Str(a)), Some(Value::Str(b))) => Value::Str(format!("{a}{b}")),
            _ => arithmetic("add", left, right, i64::checked_add, |a, b| a + b)
                .ok_or_else(|| incompatible("add"))??,
        },
        VariableMutationType::Subtract => {
            arithmetic("subtract", left, right, i64::checked_sub, |a, b| a - b)
                .ok_or_else(|| incompatible("subtract"))??
        }
        VariableMutationType::Multiply => {
            arithmetic("multiply", left, right, i64::checked_mul, |a, b| a * b)
                .ok_or_else(|| incompatible("multiply"))??
        }
        VariableMutationType::Divide => {
            if right
                .is_some_and(|r| matches!(r, Value::Int(_) | Value::Double(_)) && as_f64(r) == 0.0)
            {
                return Err(ValueError::DivisionByZero);
            }
            arithmetic("divide", left, right, i64::checked_div, |a, b| a / b)
                .ok_or_else(|| incompatible("divide"))??
        }
        VariableMutationType::Extend => match (left, right) {
            (Some(Value::Str(a)), Some(Value::Str(b))) => Value::Str(format!("{a}{b}")),
            (Some(Value::Bytes(a)), Some(Value::Bytes(b))) => {
                Value::Bytes([a.as_slice(), b.as_slice()].concat())
            }
            _ => return Err(incompatible("extend")),
        },
        VariableMutationType::Append
        | VariableMutationType::RemoveIfPresent
        | VariableMutationType::RemoveIndex
        | VariableMutationType::RemoveKey => {
            return Err(ValueError::Unsupported("a JSON list or object mutation"));
        }
    };
    Ok(VariableValue { value: Some(value) })
}

/// `left op right` for numbers: exact for two integers (overflow is an error), in
/// doubles when either side is one; `None` when a side is not a number.
fn arithmetic(
    name: &'static str,
    left: Option<&Value>,
    right: Option<&Value>,
    integers: fn(i64, i64) -> Option<i64>,
    doubles: fn(f64, f64) -> f64,
) -> Option<Result<Value, ValueError>> {
    match (left?, right?) {
        (Value::Int(a), Value::Int(b)) => Some(
            integers(*a, *b)
                .map(Value::Int)
                .ok_or(ValueError::Overflow(name)),
        ),
        (a @ (Value::Int(_) | Value::Double(_)), b @ (Value::Int(_) | Value::Double(_))) => {
            Some(Ok(Value::Double(doubles(as_f64(a), as_f64(b)))))
        }
        _ => None,
    }
}

fn as_f64(value: &Value) -> f64 {
    match value {
        Value::Int(i) => *i as f64,
        Value::Double(d) => *d,
        _ => f64::NAN,
    }
}

fn type_name(value: Option<&Value>) -> &'static str {
    match value {
        None => "an empty value",
        Some(Value::Str(_)) => "text",
        Some(Value::Int(_)) => "an integer",
        Some(Value::Double(_)) => "a double",
        Some(Value::Bool(_)) => "a boolean",
        Some(Value::JsonObj(_)) => "a JSON object",
        Some(Value::JsonArr(_)) => "a JSON array",
        Some(Value::Bytes(_)) => "bytes",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(i: i64) -> VariableValue {
        VariableValue {
            value: Some(Value::Int(i)),
        }
    }
    fn double(d: f64) -> VariableValue {
        VariableValue {
            value: Some(Value::Double(d)),
        }
    }
    fn text(s: &str) -> VariableValue {
        VariableValue {
            value: Some(Value::Str(s.to_owned())),
        }
    }
    fn empty() -> VariableValue {
        VariableValue { value: None }
    }

    #[test]
    fn numbers_compare_across_int_and_double() {
        assert_eq!(
            compare(&int(2), Comparator::LessThan, &double(2.5)),
            Ok(true)
        );
        assert_eq!(
            compare(&int(3), Comparator::GreaterThanEq, &int(3)),
            Ok(true)
        );
        assert_eq!(compare(&double(3.0), Comparator::Equals, &int(3)), Ok(true));
        assert_eq!(compare(&int(4), Comparator::LessThanEq, &int(3)), Ok(false));
        assert_eq!(
            compare(&text("a"), Comparator::LessThan, &text("b")),
            Ok(true)
        );
    }

    #[test]
    fn equality_works_for_any_type_and_order_only_for_ordered_ones() {
        assert_eq!(
            compare(&text("SHIPPING"), Comparator::Equals, &text("SHIPPING")),
            Ok(true)
        );
        assert_eq!(
            compare(&text("1"), Comparator::NotEquals, &int(1)),
            Ok(true)
        );
        assert_eq!(compare(&empty(), Comparator::Equals, &empty()), Ok(true));
        assert_eq!(compare(&empty(), Comparator::Equals, &int(0)), Ok(false));
        assert_eq!(
            compare(&text("1"), Comparator::LessThan, &int(2)).map_err(|e| e.to_string()),
            Err("cannot order text and an integer".to_owned())
        );
    }

    #[test]
    fn mutations_keep_integers_exact_and_refuse_nonsense() {
        assert_eq!(
            mutate(&int(2), VariableMutationType::Add, &int(3)),
            Ok(int(5))
        );
        assert_eq!(
            mutate(&int(2), VariableMutationType::Multiply, &double(1.5)),
            Ok(double(3.0))
        );
        assert_eq!(
            mutate(&int(7), VariableMutationType::Divide, &int(2)),
            Ok(int(3))
        );
        assert_eq!(
            mutate(&int(7), VariableMutationType::Subtract, &int(9)),
            Ok(int(-2))
        );
        assert_eq!(
            mutate(&text("a"), VariableMutationType::Extend, &text("b")),
            Ok(text("ab"))
        );
        assert_eq!(
            mutate(
                &text("PENDING"),
                VariableMutationType::Assign,
                &text("SHIPPING")
            ),
            Ok(text("SHIPPING"))
        );
        assert_eq!(
            mutate(&empty(), VariableMutationType::Assign, &int(1)),
            Ok(int(1))
        );
        assert_eq!(
            mutate(&int(1), VariableMutationType::Divide, &int(0)),
            Err(ValueError::DivisionByZero)
        );
        assert_eq!(
            mutate(&int(i64::MAX), VariableMutationType::Add, &int(1)),
            Err(ValueError::Overflow("add"))
        );
        assert_eq!(
            mutate(&text("a"), VariableMutationType::Subtract, &int(1)).map_err(|e| e.to_string()),
            Err("cannot subtract text and an integer".to_owned())
        );
        assert_eq!(
            mutate(&empty(), VariableMutationType::Add, &int(1)).map_err(|e| e.to_string()),
            Err("cannot add an empty value and an integer".to_owned())
        );
    }
}
