//! Refusing a tenant id or metadata name that breaks the naming rule: they become parts
//! of Kafka topic names (`{cluster}_{tenant}_task_{task_def}`), so they are held to
//! Kafka's topic alphabet ([`crate::topics::is_valid_name`]), and a refusal says which
//! character is wrong.

use crate::core::results::CommandError;
use crate::topics::{is_name_char, is_valid_name};

/// Refuses an empty `value`, or one with a character Kafka does not allow in a topic
/// name ([`is_valid_name`]); `field` names what the value is, for the message.
pub(super) fn check(field: &str, value: &str) -> Result<(), CommandError> {
    if is_valid_name(value) {
        return Ok(());
    }
    let problem = match value.chars().find(|&c| !is_name_char(c)) {
        None => format!("{field} must not be empty"),
        Some(bad) => format!(
            "{field} {value:?} contains {bad:?}; names may only contain letters, digits, \
             '.', '_' and '-' (they become part of Kafka topic names)"
        ),
    };
    Err(CommandError::invalid(problem))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_topic_alphabet_is_allowed() {
        assert!(check("TaskDef name", "ship-item_v2.1").is_ok());
        let empty = check("TaskDef name", "").expect_err("empty");
        assert_eq!(empty.message, "TaskDef name must not be empty");
        let spaced = check("TaskDef name", "ship item").expect_err("space");
        assert!(
            spaced
                .message
                .starts_with("TaskDef name \"ship item\" contains ' '")
        );
        assert!(check("tenant id", "ünïcode").is_err());
        assert!(check("tenant id", "a/b").is_err());
    }
}
