//! Metadata spec files: a tenant, TaskDef, WfSpec or other definition written as JSON or
//! YAML in the proto3 JSON mapping, read into the `Put…Request` that creates it.
//!
//! Files are read through the schemas' descriptors ([`weir_proto::FILE_DESCRIPTOR_SET`])
//! with `prost-reflect`, so field names may be camelCase or as in the schema, enums are
//! written by name, and 64-bit integers as numbers or strings, exactly as any protobuf
//! JSON tool would accept them.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage};
use weir_proto::metadata_command::Command as MetadataRequest;
use weir_proto::{
    PutExternalEventDefRequest, PutTaskDefRequest, PutTenantRequest, PutUserTaskDefRequest,
    PutWfSpecRequest, PutWorkflowEventDefRequest,
};

/// What a spec file defines; the names are the `weir put` kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SpecKind {
    Tenant,
    TaskDef,
    WfSpec,
    ExternalEventDef,
    WorkflowEventDef,
    UserTaskDef,
}

impl SpecKind {
    /// The kind as `weir put` spells it, such as `task-def`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::TaskDef => "task-def",
            Self::WfSpec => "wf-spec",
            Self::ExternalEventDef => "external-event-def",
            Self::WorkflowEventDef => "workflow-event-def",
            Self::UserTaskDef => "user-task-def",
        }
    }

    /// The full protobuf name of the request a file of this kind holds.
    pub fn message_name(self) -> &'static str {
        match self {
            Self::Tenant => "weir.PutTenantRequest",
            Self::TaskDef => "weir.PutTaskDefRequest",
            Self::WfSpec => "weir.PutWfSpecRequest",
            Self::ExternalEventDef => "weir.PutExternalEventDefRequest",
            Self::WorkflowEventDef => "weir.PutWorkflowEventDefRequest",
            Self::UserTaskDef => "weir.PutUserTaskDefRequest",
        }
    }
}

/// The syntax a spec file is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecFormat {
    Json,
    Yaml,
}

impl SpecFormat {
    /// YAML for `.yaml` and `.yml` files, JSON for anything else.
    pub fn of_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml") => {
                Self::Yaml
            }
            _ => Self::Json,
        }
    }

    /// The format's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "JSON",
            Self::Yaml => "YAML",
        }
    }
}

/// A spec file that could not be read or does not hold a valid request.
#[derive(Debug, thiserror::Error)]
pub enum SpecFileError {
    /// The file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file is not a valid request of its kind.
    #[error("{origin}: not a valid {kind} ({format}): {message}")]
    Invalid {
        origin: String,
        kind: &'static str,
        format: &'static str,
        message: String,
    },
    /// The built-in schemas could not be loaded: a bug in weir, not in the file.
    #[error("weir's built-in schemas cannot be read: {0}")]
    Schema(String),
}

/// The request a spec file holds, ready to be sent as a metadata command.
#[derive(Debug, Clone, PartialEq)]
pub enum SpecRequest {
    Tenant(PutTenantRequest),
    TaskDef(PutTaskDefRequest),
    WfSpec(PutWfSpecRequest),
    ExternalEventDef(PutExternalEventDefRequest),
    WorkflowEventDef(PutWorkflowEventDefRequest),
    UserTaskDef(PutUserTaskDefRequest),
}

impl SpecRequest {
    /// The kind of the request.
    pub fn kind(&self) -> SpecKind {
        match self {
            Self::Tenant(_) => SpecKind::Tenant,
            Self::TaskDef(_) => SpecKind::TaskDef,
            Self::WfSpec(_) => SpecKind::WfSpec,
            Self::ExternalEventDef(_) => SpecKind::ExternalEventDef,
            Self::WorkflowEventDef(_) => SpecKind::WorkflowEventDef,
            Self::UserTaskDef(_) => SpecKind::UserTaskDef,
        }
    }

    /// The name (or, for a tenant, the id) of what the request defines.
    pub fn name(&self) -> &str {
        match self {
            Self::Tenant(r) => &r.id,
            Self::TaskDef(r) => &r.name,
            Self::WfSpec(r) => &r.name,
            Self::ExternalEventDef(r) => &r.name,
            Self::WorkflowEventDef(r) => &r.name,
            Self::UserTaskDef(r) => &r.name,
        }
    }

    /// The metadata command that carries the request.
    pub fn into_command(self) -> MetadataRequest {
        match self {
            Self::Tenant(r) => MetadataRequest::PutTenant(r),
            Self::TaskDef(r) => MetadataRequest::PutTaskDef(r),
            Self::WfSpec(r) => MetadataRequest::PutWfSpec(r),
            Self::ExternalEventDef(r) => MetadataRequest::PutExternalEventDef(r),
            Self::WorkflowEventDef(r) => MetadataRequest::PutWorkflowEventDef(r),
            Self::UserTaskDef(r) => MetadataRequest::PutUserTaskDef(r),
        }
    }
}

/// Reads the spec file at `path` as a request of `kind`; YAML by extension, else JSON.
pub fn read(kind: SpecKind, path: &Path) -> Result<SpecRequest, SpecFileError> {
    let text = std::fs::read_to_string(path).map_err(|error| SpecFileError::Read {
        path: path.to_owned(),
        error,
    })?;
    parse(
        kind,
        &text,
        SpecFormat::of_path(path),
        &path.display().to_string(),
    )
}

/// Parses `text` as a request of `kind`; `origin` names the text in errors.
pub fn parse(
    kind: SpecKind,
    text: &str,
    format: SpecFormat,
    origin: &str,
) -> Result<SpecRequest, SpecFileError> {
    let invalid = |message: String| SpecFileError::Invalid {
        origin: origin.to_owned(),
        kind: kind.label(),
        format: format.name(),
        // One line: the CLI prints the whole error on one.
        message: message.split_whitespace().collect::<Vec<_>>().join(" "),
    };
    let text_error = |error: TextError| match error {
        TextError::Schema(message) => SpecFileError::Schema(message),
        TextError::Invalid(message) => invalid(message),
    };
    let message = decode_text(kind.message_name(), text, format).map_err(text_error)?;
    let transcode_error = |e: prost::DecodeError| invalid(e.to_string());
    Ok(match kind {
        SpecKind::Tenant => SpecRequest::Tenant(message.transcode_to().map_err(transcode_error)?),
        SpecKind::TaskDef => SpecRequest::TaskDef(message.transcode_to().map_err(transcode_error)?),
        SpecKind::WfSpec => SpecRequest::WfSpec(message.transcode_to().map_err(transcode_error)?),
        SpecKind::ExternalEventDef => {
            SpecRequest::ExternalEventDef(message.transcode_to().map_err(transcode_error)?)
        }
        SpecKind::WorkflowEventDef => {
            SpecRequest::WorkflowEventDef(message.transcode_to().map_err(transcode_error)?)
        }
        SpecKind::UserTaskDef => {
            SpecRequest::UserTaskDef(message.transcode_to().map_err(transcode_error)?)
        }
    })
}

/// Why a text could not be read as a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextError {
    /// The built-in schemas could not be loaded, or do not define the message.
    Schema(String),
    /// The text is not a valid message of that type (one line, saying where).
    Invalid(String),
}

/// Reads `text` (JSON or YAML, proto3 JSON mapping: camelCase or schema field names,
/// enums by name) as the message `message_name` of weir's schemas (`weir.…`).
pub fn decode_text(
    message_name: &str,
    text: &str,
    format: SpecFormat,
) -> Result<DynamicMessage, TextError> {
    let descriptor = pool()
        .map_err(|e| TextError::Schema(e.to_string()))?
        .get_message_by_name(message_name)
        .ok_or_else(|| TextError::Schema(format!("no message {message_name}")))?;
    let invalid = |message: String| {
        TextError::Invalid(message.split_whitespace().collect::<Vec<_>>().join(" "))
    };
    match format {
        SpecFormat::Json => {
            let mut deserializer = serde_json::Deserializer::from_str(text);
            let message = DynamicMessage::deserialize(descriptor, &mut deserializer)
                .map_err(|e| invalid(e.to_string()))?;
            deserializer.end().map_err(|e| invalid(e.to_string()))?;
            Ok(message)
        }
        SpecFormat::Yaml => {
            DynamicMessage::deserialize(descriptor, yaml_serde::Deserializer::from_str(text))
                .map_err(|e| invalid(e.to_string()))
        }
    }
}

/// The schemas' descriptors, decoded once (spec files, flow manifests and `weir output
/// tail` read messages by name through them).
pub fn pool() -> Result<&'static DescriptorPool, SpecFileError> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(weir_proto::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| SpecFileError::Schema(e.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use weir_proto::node::Node as NodeKind;
    use weir_proto::variable_assignment::Source;
    use weir_proto::variable_value::Value;
    use weir_proto::{
        Edge, EntrypointNode, ExitNode, Node, RetryPolicy, TaskNode, ThreadSpec, ThreadVarDef,
        VariableAssignment, VariableDef, VariableType, VariableValue,
    };

    fn expected_wf_spec() -> PutWfSpecRequest {
        let edge = |to: &str| Edge {
            sink_node_name: to.to_owned(),
            ..Edge::default()
        };
        let nodes = BTreeMap::from([
            (
                "0-entrypoint".to_owned(),
                Node {
                    outgoing_edges: vec![edge("1-charge")],
                    node: Some(NodeKind::Entrypoint(EntrypointNode {})),
                },
            ),
            (
                "1-charge".to_owned(),
                Node {
                    outgoing_edges: vec![edge("2-exit")],
                    node: Some(NodeKind::Task(TaskNode {
                        task_def_name: "charge".to_owned(),
                        args: vec![VariableAssignment {
                            source: Some(Source::VariableName("amount".to_owned())),
                        }],
                    })),
                },
            ),
            (
                "2-exit".to_owned(),
                Node {
                    outgoing_edges: vec![],
                    node: Some(NodeKind::Exit(ExitNode {
                        exception_name: None,
                    })),
                },
            ),
        ]);
        PutWfSpecRequest {
            name: "orders".to_owned(),
            thread_specs: BTreeMap::from([(
                "entrypoint".to_owned(),
                ThreadSpec {
                    nodes,
                    variable_defs: vec![ThreadVarDef {
                        var_def: Some(VariableDef {
                            name: "amount".to_owned(),
                            var_type: VariableType::Int as i32,
                            default_value: Some(VariableValue {
                                value: Some(Value::Int(5_000_000_000)),
                            }),
                        }),
                        required: true,
                        access_level: 0,
                        enable_entity_events: None,
                    }],
                },
            )]),
            entrypoint_thread_name: "entrypoint".to_owned(),
            enable_entity_events: None,
        }
    }

    #[test]
    fn json_wf_spec_parses_with_camel_case_and_enum_names() {
        let json = r#"{
          "name": "orders",
          "entrypointThreadName": "entrypoint",
          "threadSpecs": {
            "entrypoint": {
              "variableDefs": [
                {"varDef": {"name": "amount", "varType": "INT", "defaultValue": {"int": "5000000000"}},
                 "required": true}
              ],
              "nodes": {
                "0-entrypoint": {"entrypoint": {}, "outgoingEdges": [{"sinkNodeName": "1-charge"}]},
                "1-charge": {"task": {"taskDefName": "charge", "args": [{"variableName": "amount"}]},
                             "outgoingEdges": [{"sinkNodeName": "2-exit"}]},
                "2-exit": {"exit": {}}
              }
            }
          }
        }"#;
        let parsed = parse(SpecKind::WfSpec, json, SpecFormat::Json, "orders.json")
            .expect("valid JSON spec");
        assert_eq!(parsed, SpecRequest::WfSpec(expected_wf_spec()));
        assert_eq!(parsed.name(), "orders");
    }

    #[test]
    fn yaml_wf_spec_parses_with_schema_field_names_and_numbers() {
        let yaml = r#"
name: orders
entrypoint_thread_name: entrypoint
thread_specs:
  entrypoint:
    variable_defs:
      - var_def: {name: amount, var_type: INT, default_value: {int: 5000000000}}
        required: true
    nodes:
      0-entrypoint:
        entrypoint: {}
        outgoing_edges: [{sink_node_name: 1-charge}]
      1-charge:
        task:
          task_def_name: charge
          args: [{variable_name: amount}]
        outgoing_edges: [{sink_node_name: 2-exit}]
      2-exit:
        exit: {}
"#;
        let parsed = parse(SpecKind::WfSpec, yaml, SpecFormat::Yaml, "orders.yaml")
            .expect("valid YAML spec");
        assert_eq!(parsed, SpecRequest::WfSpec(expected_wf_spec()));
    }

    #[test]
    fn task_def_parses_from_json_and_yaml() {
        let expected = SpecRequest::TaskDef(PutTaskDefRequest {
            name: "charge".to_owned(),
            input_vars: vec![VariableDef {
                name: "amount".to_owned(),
                var_type: VariableType::Double as i32,
                default_value: None,
            }],
            retry_policy: Some(RetryPolicy {
                max_retries: 3,
                initial_backoff_ms: 100,
                backoff_multiplier: 2.0,
                max_backoff_ms: 10_000,
            }),
            timeout_seconds: 30,
            enable_entity_events: Some(false),
        });
        let json = r#"{"name": "charge", "inputVars": [{"name": "amount", "varType": "DOUBLE"}],
            "retryPolicy": {"maxRetries": 3, "initialBackoffMs": "100", "backoffMultiplier": 2,
                            "maxBackoffMs": 10000},
            "timeoutSeconds": 30, "enableEntityEvents": false}"#;
        let yaml = "name: charge\ninput_vars:\n  - {name: amount, var_type: DOUBLE}\n\
            retry_policy: {max_retries: 3, initial_backoff_ms: '100', backoff_multiplier: 2.0, max_backoff_ms: 10000}\n\
            timeout_seconds: 30\nenable_entity_events: false\n";
        assert_eq!(
            parse(SpecKind::TaskDef, json, SpecFormat::Json, "t.json").expect("JSON task def"),
            expected
        );
        assert_eq!(
            parse(SpecKind::TaskDef, yaml, SpecFormat::Yaml, "t.yml").expect("YAML task def"),
            expected
        );
    }

    #[test]
    fn unknown_field_is_named_in_one_line() {
        let err = parse(
            SpecKind::TaskDef,
            r#"{"name": "charge",
                "retries": 3}"#,
            SpecFormat::Json,
            "charge.json",
        )
        .expect_err("unknown field");
        let text = err.to_string();
        assert!(
            text.starts_with("charge.json: not a valid task-def (JSON): "),
            "{text}"
        );
        assert!(text.contains("retries"), "{text}");
        assert!(!text.contains('\n'), "{text}");

        let err = parse(
            SpecKind::TaskDef,
            "name: charge\nretries: 3\n",
            SpecFormat::Yaml,
            "charge.yaml",
        )
        .expect_err("unknown field");
        assert!(err.to_string().contains("retries"), "{err}");
    }

    #[test]
    fn bad_enum_and_wrong_type_are_clear() {
        let err = parse(
            SpecKind::WorkflowEventDef,
            r#"{"name": "shipped", "contentType": "TEXT"}"#,
            SpecFormat::Json,
            "shipped.json",
        )
        .expect_err("bad enum");
        assert!(err.to_string().contains("TEXT"), "{err}");

        let err = parse(
            SpecKind::TaskDef,
            r#"{"name": "charge", "timeoutSeconds": "soon"}"#,
            SpecFormat::Json,
            "charge.json",
        )
        .expect_err("wrong type");
        assert!(err.to_string().starts_with("charge.json: "), "{err}");

        let err = parse(
            SpecKind::Tenant,
            "{\"id\": \"acme\"} trailing",
            SpecFormat::Json,
            "t.json",
        )
        .expect_err("trailing text");
        assert!(err.to_string().contains("t.json"), "{err}");
    }

    #[test]
    fn format_follows_the_extension() {
        assert_eq!(SpecFormat::of_path(Path::new("a.yaml")), SpecFormat::Yaml);
        assert_eq!(SpecFormat::of_path(Path::new("a.YML")), SpecFormat::Yaml);
        assert_eq!(SpecFormat::of_path(Path::new("a.json")), SpecFormat::Json);
        assert_eq!(SpecFormat::of_path(Path::new("spec")), SpecFormat::Json);
        let err = read(SpecKind::TaskDef, Path::new("/nonexistent/missing.json"))
            .expect_err("missing file");
        assert!(
            err.to_string()
                .starts_with("cannot read /nonexistent/missing.json: "),
            "{err}"
        );
    }
}
