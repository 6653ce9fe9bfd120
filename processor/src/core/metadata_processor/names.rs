//! The naming rule for tenant ids and metadata names: they become parts of Kafka topic
//! names (`{cluster}_{tenant}_task_{task_def}`), so they are held to Kafka's topic
//! alphabet.

use crate::core::results::CommandError;

/// Refuses an empty `value`, or one with a character Kafka does not allow in a topic
/// name; `field` names what the value is, for the message.
pub(super) fn check(field: &str, value: &str) -> Result<(), CommandError> {
    if value.is_empty() {
        return Err(CommandError::invalid(format!("{field} must not be empty")));
    }
    if let Some(bad) = value.chars().find(|&c| !is_name_char(c)) {
        return Err(CommandError::invalid(format!(
            "{field} {value:?} contains {bad:?}; names may only contain letters, digits, \
             '.', '_' and '-' (they become part of Kafka topic names)"
        )));
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
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
