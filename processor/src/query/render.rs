//! Stored protobuf messages as JSON, one way for every object kind: decoded through the
//! schemas' descriptors ([`crate::spec_file::pool`]) into the proto3 JSON mapping
//! (camelCase names, enum names, fields at their default left out), as `weir output
//! tail` prints them.

use prost_reflect::DynamicMessage;
use serde_json::Value;

use crate::spec_file;

/// Why a stored value could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("weir's schemas cannot be read: {0}")]
    Schema(String),
    #[error("weir's schemas have no message {0}")]
    UnknownMessage(String),
    #[error("a stored value is not a valid {message}: {reason}")]
    Decode { message: String, reason: String },
}

/// The stored bytes of a message `M` as JSON.
pub fn stored<M: prost::Name>(bytes: &[u8]) -> Result<Value, RenderError> {
    by_name(&M::full_name(), bytes)
}

/// A message held in memory as JSON.
pub fn message<M: prost::Message + prost::Name>(message: &M) -> Result<Value, RenderError> {
    stored::<M>(&message.encode_to_vec())
}

/// The bytes of the message named `full_name` (`weir.WfRun`) as JSON.
pub fn by_name(full_name: &str, bytes: &[u8]) -> Result<Value, RenderError> {
    let descriptor = spec_file::pool()
        .map_err(|e| RenderError::Schema(e.to_string()))?
        .get_message_by_name(full_name)
        .ok_or_else(|| RenderError::UnknownMessage(full_name.to_owned()))?;
    let decode_error = |reason: String| RenderError::Decode {
        message: full_name.to_owned(),
        reason,
    };
    let message =
        DynamicMessage::decode(descriptor, bytes).map_err(|e| decode_error(e.to_string()))?;
    serde_json::to_value(&message).map_err(|e| decode_error(e.to_string()))
}

#[cfg(test)]
mod tests {
    use weir_proto::variable_value::Value as Kind;
    use weir_proto::{
        LhStatus, TaskDef, Variable, VariableId, VariableValue, WfRun, WfRunId, WfSpecId,
    };

    use super::*;

    #[test]
    fn stored_objects_render_in_the_proto3_json_mapping() -> Result<(), RenderError> {
        let run = WfRun {
            id: Some(WfRunId {
                id: "order-7".to_owned(),
            }),
            wf_spec_id: Some(WfSpecId {
                name: "orders".to_owned(),
                major_version: 0,
                revision: 2,
            }),
            status: LhStatus::Completed as i32,
            ..WfRun::default()
        };
        let json = stored::<WfRun>(&prost::Message::encode_to_vec(&run))?;
        assert_eq!(json["id"]["id"], "order-7");
        assert_eq!(json["status"], "COMPLETED");
        assert_eq!(json["wfSpecId"]["revision"], 2);
        // Proto3 JSON leaves default values out.
        assert!(json["wfSpecId"].get("majorVersion").is_none(), "{json}");

        let variable = Variable {
            id: Some(VariableId {
                wf_run_id: run.id.clone(),
                thread_run_number: 0,
                name: "item-id".to_owned(),
            }),
            value: Some(VariableValue {
                value: Some(Kind::Str("item-7".to_owned())),
            }),
            ..Variable::default()
        };
        let json = message(&variable)?;
        assert_eq!(json["id"]["name"], "item-id");
        assert_eq!(json["value"], serde_json::json!({"str": "item-7"}));

        let def = TaskDef {
            name: "ship-item".to_owned(),
            ..TaskDef::default()
        };
        assert_eq!(message(&def)?["name"], "ship-item");
        Ok(())
    }

    #[test]
    fn bytes_that_do_not_decode_say_which_message() {
        let error = by_name("weir.WfRun", &[0xff, 0xff, 0xff])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.starts_with("a stored value is not a valid weir.WfRun"),
            "{error}"
        );
        assert!(matches!(
            by_name("weir.Nothing", &[]),
            Err(RenderError::UnknownMessage(_))
        ));
    }
}
