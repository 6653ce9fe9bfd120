//! How a `PutWfSpec` relates to the latest stored version of the same name: an
//! identical spec changes nothing; a change to `enable_entity_events` alone (on the
//! spec or on any `ThreadVarDef`) updates the latest version in place; any other change
//! is a new version. A new version raises the major version when the variables a caller
//! provides (the entrypoint thread's definitions) change, and the revision otherwise.

use prost::Message;
use prost_types::Timestamp;
use weir_proto::{ThreadVarDef, WfSpec, WfSpecId};

/// What storing a proposed spec amounts to.
#[derive(Debug, Clone, PartialEq)]
pub enum WfSpecPut {
    /// Nothing differs from the latest version.
    Unchanged,
    /// Only `enable_entity_events` differs: the latest version, with the new flags.
    UpdatedInPlace(WfSpec),
    /// A new version to store, with its id and creation time set.
    NewVersion(WfSpec),
}

/// Decides what `proposed` (whose id and creation time are ignored, except the name)
/// does given the `latest` stored version of its name, at command time `time`.
pub fn resolve_put(latest: Option<&WfSpec>, proposed: &WfSpec, time: Timestamp) -> WfSpecPut {
    let name = proposed
        .id
        .as_ref()
        .map(|id| id.name.clone())
        .unwrap_or_default();
    let Some(latest) = latest else {
        return WfSpecPut::NewVersion(versioned(proposed, &name, 0, 0, time));
    };
    if shape(latest) == shape(proposed) {
        if flags(latest) == flags(proposed) {
            return WfSpecPut::Unchanged;
        }
        let mut updated = latest.clone();
        copy_flags(proposed, &mut updated);
        return WfSpecPut::UpdatedInPlace(updated);
    }
    let current = latest.id.clone().unwrap_or_default();
    let (major, revision) = if interface(latest) == interface(proposed) {
        (current.major_version, current.revision + 1)
    } else {
        (current.major_version + 1, 0)
    };
    WfSpecPut::NewVersion(versioned(proposed, &name, major, revision, time))
}

fn versioned(
    spec: &WfSpec,
    name: &str,
    major_version: i32,
    revision: i32,
    time: Timestamp,
) -> WfSpec {
    WfSpec {
        id: Some(WfSpecId {
            name: name.to_owned(),
            major_version,
            revision,
        }),
        created_at: Some(time),
        ..spec.clone()
    }
}

/// The spec's encoding without its identity and without any `enable_entity_events`:
/// what makes two specs the same workflow. Maps encode in key order, so equal specs
/// give equal bytes.
fn shape(spec: &WfSpec) -> Vec<u8> {
    let mut stripped = spec.clone();
    stripped.id = None;
    stripped.created_at = None;
    stripped.enable_entity_events = None;
    for thread in stripped.thread_specs.values_mut() {
        for var in &mut thread.variable_defs {
            var.enable_entity_events = None;
        }
    }
    stripped.encode_to_vec()
}

/// Every `enable_entity_events` of a spec: its own, then each thread variable's by
/// thread and declaration order.
fn flags(spec: &WfSpec) -> Vec<Option<bool>> {
    let mut flags = vec![spec.enable_entity_events];
    for thread in spec.thread_specs.values() {
        flags.extend(thread.variable_defs.iter().map(|v| v.enable_entity_events));
    }
    flags
}

fn copy_flags(from: &WfSpec, to: &mut WfSpec) {
    to.enable_entity_events = from.enable_entity_events;
    for (name, thread) in &mut to.thread_specs {
        if let Some(source) = from.thread_specs.get(name) {
            for (var, source_var) in thread.variable_defs.iter_mut().zip(&source.variable_defs) {
                var.enable_entity_events = source_var.enable_entity_events;
            }
        }
    }
}

/// The entrypoint thread's variable definitions, without output-topic flags: what a
/// caller of `RunWf` must match.
fn interface(spec: &WfSpec) -> Vec<ThreadVarDef> {
    spec.thread_specs
        .get(&spec.entrypoint_thread_name)
        .map(|thread| {
            thread
                .variable_defs
                .iter()
                .map(|v| ThreadVarDef {
                    enable_entity_events: None,
                    ..v.clone()
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use weir_proto::node::Node as NodeKind;
    use weir_proto::{
        Edge, EntrypointNode, ExitNode, Node, TaskNode, ThreadSpec, VariableDef, VariableType,
    };

    fn at(seconds: i64) -> Timestamp {
        Timestamp { seconds, nanos: 0 }
    }

    fn var(name: &str) -> ThreadVarDef {
        ThreadVarDef {
            var_def: Some(VariableDef {
                name: name.to_owned(),
                var_type: VariableType::Str.into(),
                default_value: None,
            }),
            ..Default::default()
        }
    }

    /// `entrypoint -> task(ship-item) -> exit`, declaring `vars`.
    fn spec(task: &str, vars: &[&str]) -> WfSpec {
        let edge = |to: &str| Edge {
            sink_node_name: to.to_owned(),
            ..Default::default()
        };
        let nodes = BTreeMap::from([
            (
                "0-entrypoint".to_owned(),
                Node {
                    outgoing_edges: vec![edge("1-task")],
                    node: Some(NodeKind::Entrypoint(EntrypointNode {})),
                },
            ),
            (
                "1-task".to_owned(),
                Node {
                    outgoing_edges: vec![edge("2-exit")],
                    node: Some(NodeKind::Task(TaskNode {
                        task_def_name: task.to_owned(),
                        args: Vec::new(),
                    })),
                },
            ),
            (
                "2-exit".to_owned(),
                Node {
                    outgoing_edges: Vec::new(),
                    node: Some(NodeKind::Exit(ExitNode::default())),
                },
            ),
        ]);
        WfSpec {
            id: Some(WfSpecId {
                name: "orders".to_owned(),
                ..Default::default()
            }),
            thread_specs: BTreeMap::from([(
                "entrypoint".to_owned(),
                ThreadSpec {
                    nodes,
                    variable_defs: vars.iter().map(|v| var(v)).collect(),
                },
            )]),
            entrypoint_thread_name: "entrypoint".to_owned(),
            ..Default::default()
        }
    }

    fn stored(put: WfSpecPut) -> WfSpec {
        match put {
            WfSpecPut::NewVersion(spec) | WfSpecPut::UpdatedInPlace(spec) => spec,
            WfSpecPut::Unchanged => panic!("expected something to store"),
        }
    }

    fn version(spec: &WfSpec) -> (i32, i32) {
        let id = spec.id.clone().unwrap_or_default();
        (id.major_version, id.revision)
    }

    #[test]
    fn the_first_put_is_version_zero_at_command_time() {
        let first = stored(resolve_put(None, &spec("ship-item", &["item-id"]), at(10)));
        assert_eq!(version(&first), (0, 0));
        assert_eq!(first.created_at, Some(at(10)));
        assert_eq!(first.id.map(|i| i.name), Some("orders".to_owned()));
    }

    #[test]
    fn an_identical_spec_is_a_no_op_whatever_its_id_or_time() {
        let first = stored(resolve_put(None, &spec("ship-item", &["item-id"]), at(10)));
        let mut again = spec("ship-item", &["item-id"]);
        again.id = Some(WfSpecId {
            name: "orders".to_owned(),
            major_version: 7,
            revision: 3,
        });
        again.created_at = Some(at(99));
        assert_eq!(
            resolve_put(Some(&first), &again, at(20)),
            WfSpecPut::Unchanged
        );
    }

    #[test]
    fn enable_entity_events_alone_updates_in_place() {
        let first = stored(resolve_put(None, &spec("ship-item", &["item-id"]), at(10)));
        let mut flagged = spec("ship-item", &["item-id"]);
        flagged.enable_entity_events = Some(false);
        let updated = stored(resolve_put(Some(&first), &flagged, at(20)));
        assert_eq!(version(&updated), (0, 0), "no new version");
        assert_eq!(updated.created_at, Some(at(10)), "still the same version");
        assert_eq!(updated.enable_entity_events, Some(false));

        let mut var_flag = spec("ship-item", &["item-id"]);
        if let Some(thread) = var_flag.thread_specs.get_mut("entrypoint") {
            thread.variable_defs[0].enable_entity_events = Some(true);
        }
        let updated = stored(resolve_put(Some(&first), &var_flag, at(30)));
        assert_eq!(version(&updated), (0, 0));
        assert_eq!(
            updated.thread_specs["entrypoint"].variable_defs[0].enable_entity_events,
            Some(true)
        );
        assert_eq!(
            resolve_put(Some(&updated), &var_flag, at(40)),
            WfSpecPut::Unchanged
        );
    }

    #[test]
    fn other_changes_make_a_revision_or_a_major_version() {
        let first = stored(resolve_put(None, &spec("ship-item", &["item-id"]), at(10)));
        let revised = stored(resolve_put(
            Some(&first),
            &spec("ship-item-fast", &["item-id"]),
            at(20),
        ));
        assert_eq!(
            version(&revised),
            (0, 1),
            "a node change keeps the variables: new revision"
        );
        assert_eq!(revised.created_at, Some(at(20)));
        let major = stored(resolve_put(
            Some(&revised),
            &spec("ship-item-fast", &["item-id", "user-id"]),
            at(30),
        ));
        assert_eq!(
            version(&major),
            (1, 0),
            "a variable change is a new major version"
        );
        // A structural change carrying a flag change too is still a new version.
        let mut both = spec("ship-item", &["item-id", "user-id"]);
        both.enable_entity_events = Some(true);
        let next = stored(resolve_put(Some(&major), &both, at(40)));
        assert_eq!(version(&next), (1, 1));
        assert_eq!(next.enable_entity_events, Some(true));
    }
}
