//! Answers to commands: the error a handler returns (a code and a message a person can
//! act on) and the `CommandResult` record that carries it to `command-results`, keyed
//! by command id so the sender can wait for it.

use prost::Message;
use weir_proto::CommandResult;
use weir_proto::command_result::Code;
use weir_topology::OutputRecord;

use crate::topics::{CoreTopics, partition_for_key};

/// Why a command was not applied. Nothing it would have changed is kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct CommandError {
    pub code: Code,
    pub message: String,
}

impl CommandError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, message)
    }

    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(Code::AlreadyExists, message)
    }

    pub fn precondition(message: impl Into<String>) -> Self {
        Self::new(Code::FailedPrecondition, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }
}

impl From<super::keys::KeyError> for CommandError {
    fn from(error: super::keys::KeyError) -> Self {
        Self::invalid(error.to_string())
    }
}

/// A successful answer, with the encoded id of what the command created or changed.
pub fn ok(command_id: &str, result: Option<Vec<u8>>) -> CommandResult {
    CommandResult {
        command_id: command_id.to_owned(),
        code: Code::Ok as i32,
        message: String::new(),
        result,
    }
}

/// An answer that says why the command was refused.
pub fn refused(command_id: &str, error: &CommandError) -> CommandResult {
    CommandResult {
        command_id: command_id.to_owned(),
        code: error.code as i32,
        message: error.message.clone(),
        result: None,
    }
}

/// The record that carries `result` to `command-results`, on the partition its command
/// id hashes to.
pub fn record(topics: &CoreTopics, result: &CommandResult) -> OutputRecord {
    let partition = partition_for_key(result.command_id.as_bytes(), topics.partitions);
    OutputRecord::new(
        topics.command_results(),
        partition,
        result.command_id.clone().into_bytes(),
        result.encode_to_vec(),
    )
}
