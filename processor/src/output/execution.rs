//! From what one command changed to the execution-output records it sends.
//!
//! A command's changes arrive as [`Change`]s, each the object as it was before the
//! command and as it is after, with the order in which the command last wrote it. What counts as a change to publish: a `WfRun` whose status
//! changed (a new one included), any change of a `TaskRun`, a `Variable` whose value
//! changed, an `ExternalEvent` registered or claimed, a `WorkflowEvent` thrown, a
//! `UserTaskRun` with a new entry in its history. NodeRuns are never published. Each
//! candidate is then checked against the tenant's [`policy`](super::policy).
//!
//! A record is a snapshot of the object after the command, so an object the command
//! changed twice (a variable assigned on two edges the command crossed) is published
//! once, with its final value. Order within a command: a new WfRun first, a WfRun that
//! reached a terminal status last, and everything else in the order of its last change
//! in the command (a run's variables before its first TaskRun, a task's result before
//! the mutation it feeds, a claimed event before the mutation after the wait). That
//! order is as deterministic as processing itself.

use prost::Message;
use prost_types::Timestamp;
use weir_proto::output_topic_record::Payload;
use weir_proto::{
    ExternalEvent, LhStatus, OutputTopicConfig, OutputTopicRecord, TaskRun, UserTaskRun, Variable,
    WfRun, WfSpec, WorkflowEvent,
};
use weir_topology::{OutputRecord, ProcessingError};

use super::{TYPE_HEADER, policy};
use crate::core::metadata_view::{MetadataSource, MetadataView};
use crate::topics::{CoreTopics, TENANT_HEADER};

/// One execution object a command wrote, as it was before (`None`: new) and after.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    WfRun {
        before: Option<WfRun>,
        after: WfRun,
    },
    TaskRun {
        before: Option<TaskRun>,
        after: TaskRun,
    },
    Variable {
        before: Option<Variable>,
        after: Variable,
    },
    ExternalEvent {
        before: Option<ExternalEvent>,
        after: ExternalEvent,
    },
    WorkflowEvent {
        before: Option<WorkflowEvent>,
        after: WorkflowEvent,
    },
    UserTaskRun {
        before: Option<UserTaskRun>,
        after: UserTaskRun,
    },
}

/// Where in a command's records a change goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    NewWfRun,
    InOrder(u64),
    FinishedWfRun,
}

fn bytes_differ<M: Message>(before: Option<&M>, after: &M) -> bool {
    before.is_none_or(|b| b.encode_to_vec() != after.encode_to_vec())
}

fn is_terminal(status: LhStatus) -> bool {
    matches!(
        status,
        LhStatus::Completed | LhStatus::Error | LhStatus::Exception
    )
}

impl Change {
    /// Whether the change is one the output topic publishes (before the policy), and
    /// where it goes among the command's records.
    fn slot(&self, sequence: u64) -> Option<Slot> {
        let in_order = Some(Slot::InOrder(sequence));
        match self {
            Self::WfRun { before: None, .. } => Some(Slot::NewWfRun),
            Self::WfRun {
                before: Some(before),
                after,
            } => {
                if before.status == after.status {
                    None
                } else if is_terminal(after.status()) {
                    Some(Slot::FinishedWfRun)
                } else {
                    in_order
                }
            }
            Self::TaskRun { before, after } => {
                bytes_differ(before.as_ref(), after).then_some(Slot::InOrder(sequence))
            }
            Self::Variable { before, after } => {
                let changed = before.as_ref().is_none_or(|b| b.value != after.value);
                changed.then_some(Slot::InOrder(sequence))
            }
            Self::ExternalEvent { before, after } => {
                bytes_differ(before.as_ref(), after).then_some(Slot::InOrder(sequence))
            }
            Self::WorkflowEvent { before, after } => {
                bytes_differ(before.as_ref(), after).then_some(Slot::InOrder(sequence))
            }
            Self::UserTaskRun { before, after } => {
                let entries = before.as_ref().map_or(0, |b| b.events.len());
                (after.events.len() > entries).then_some(Slot::InOrder(sequence))
            }
        }
    }

    fn wf_run_id(&self) -> String {
        let id = match self {
            Self::WfRun { after, .. } => after.id.as_ref(),
            Self::TaskRun { after, .. } => after.id.as_ref().and_then(|i| i.wf_run_id.as_ref()),
            Self::Variable { after, .. } => after.id.as_ref().and_then(|i| i.wf_run_id.as_ref()),
            Self::ExternalEvent { after, .. } => {
                after.id.as_ref().and_then(|i| i.wf_run_id.as_ref())
            }
            Self::WorkflowEvent { after, .. } => {
                after.id.as_ref().and_then(|i| i.wf_run_id.as_ref())
            }
            Self::UserTaskRun { after, .. } => after.id.as_ref().and_then(|i| i.wf_run_id.as_ref()),
        };
        id.map(|i| i.id.clone()).unwrap_or_default()
    }

    fn into_payload(self) -> (Payload, &'static str) {
        match self {
            Self::WfRun { after, .. } => (Payload::WfRun(after), "wf_run"),
            Self::TaskRun { after, .. } => (Payload::TaskRun(after), "task_run"),
            Self::Variable { after, .. } => (Payload::Variable(after), "variable"),
            Self::ExternalEvent { after, .. } => (Payload::ExternalEvent(after), "external_event"),
            Self::WorkflowEvent { after, .. } => (Payload::WorkflowEvent(after), "workflow_event"),
            Self::UserTaskRun { after, .. } => (Payload::UserTaskRun(after), "user_task_run"),
        }
    }
}

/// Whether the tenant's policy sends `change`, looking up its governing object.
fn policy_sends<S: MetadataSource>(
    change: &Change,
    config: &OutputTopicConfig,
    view: &mut MetadataView<'_, S>,
) -> Result<bool, ProcessingError> {
    let config = Some(config);
    Ok(match change {
        Change::WfRun { after, .. } => {
            let spec = spec_of(view, after.wf_spec_id.as_ref())?;
            policy::sends(config, spec.and_then(|s| s.enable_entity_events))
        }
        Change::TaskRun { after, .. } => {
            let def = view.task_def(&after.task_def_name)?;
            policy::sends(config, def.and_then(|d| d.enable_entity_events))
        }
        Change::ExternalEvent { after, .. } => {
            let name = after
                .id
                .as_ref()
                .map_or("", |i| i.external_event_def_name.as_str());
            let def = view.external_event_def(name)?;
            policy::sends(config, def.and_then(|d| d.enable_entity_events))
        }
        Change::WorkflowEvent { after, .. } => {
            let name = after
                .id
                .as_ref()
                .map_or("", |i| i.workflow_event_def_name.as_str());
            let def = view.workflow_event_def(name)?;
            policy::sends(config, def.and_then(|d| d.enable_entity_events))
        }
        Change::UserTaskRun { after, .. } => {
            let def = view.user_task_def(&after.user_task_def_name)?;
            policy::sends(config, def.and_then(|d| d.enable_entity_events))
        }
        Change::Variable { after, .. } => {
            let spec = spec_of(view, after.wf_spec_id.as_ref())?;
            let name = after.id.as_ref().map_or("", |i| i.name.as_str());
            let declared = spec.as_ref().and_then(|spec| {
                spec.thread_specs
                    .get(&spec.entrypoint_thread_name)?
                    .variable_defs
                    .iter()
                    .find(|d| d.var_def.as_ref().is_some_and(|v| v.name == name))
                    .cloned()
            });
            match declared {
                Some(def) => {
                    policy::sends_variable(config, def.access_level(), def.enable_entity_events)
                }
                None => false,
            }
        }
    })
}

fn spec_of<S: MetadataSource>(
    view: &mut MetadataView<'_, S>,
    id: Option<&weir_proto::WfSpecId>,
) -> Result<Option<WfSpec>, ProcessingError> {
    let Some(id) = id else { return Ok(None) };
    view.wf_spec(&id.name, Some(id.major_version), Some(id.revision))
}

/// The execution-output records of one command: `changes` with the sequence of their
/// last write, for `tenant` on core-cmd partition `partition`.
pub fn records<S: MetadataSource>(
    changes: Vec<(u64, Change)>,
    view: &mut MetadataView<'_, S>,
    topics: &CoreTopics,
    partition: i32,
    time: Timestamp,
) -> Result<Vec<OutputRecord>, ProcessingError> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let Some(config) = view.tenant()?.and_then(|t| t.output_topic) else {
        return Ok(Vec::new());
    };
    let mut chosen = Vec::new();
    for (sequence, change) in changes {
        let Some(slot) = change.slot(sequence) else {
            continue;
        };
        if policy_sends(&change, &config, view)? {
            chosen.push((slot, change));
        }
    }
    chosen.sort_by_key(|(slot, _)| *slot);
    let tenant = view.tenant.to_owned();
    let topic = topics.execution_output(&tenant);
    let output_partition = partition % topics.output_partitions.max(1);
    Ok(chosen
        .into_iter()
        .map(|(_, change)| {
            let key = change.wf_run_id();
            let (payload, kind) = change.into_payload();
            super::count_published(&tenant, kind);
            let record = OutputTopicRecord {
                timestamp: Some(time),
                payload: Some(payload),
            };
            OutputRecord::new(
                topic.clone(),
                output_partition,
                key.into_bytes(),
                record.encode_to_vec(),
            )
            .with_header(TENANT_HEADER, tenant.clone().into_bytes())
            .with_header(TYPE_HEADER, kind.as_bytes().to_vec())
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::Bytes;
    use weir_proto::output_topic_config::OutputTopicRecordingLevel;
    use weir_proto::stored_metadata::Object;
    use weir_proto::{
        ExternalEventDef, ExternalEventId, StoredMetadata, TaskDef, ThreadSpec, ThreadVarDef,
        UserTaskDef, UserTaskEvent, VariableDef, VariableId, VariableValue,
        WfRunVariableAccessLevel, WfSpecId, WorkflowEventDef, WorkflowEventId,
    };

    use super::*;
    use crate::core::keys::{self, MetadataKind};

    /// Metadata held in memory, keyed like the real store.
    #[derive(Debug, Default)]
    struct Memory(BTreeMap<Vec<u8>, StoredMetadata>);

    impl MetadataSource for &Memory {
        fn get(&mut self, key: &[u8]) -> Result<Option<StoredMetadata>, ProcessingError> {
            Ok(self.0.get(key).cloned())
        }

        fn scan(&mut self, prefix: &[u8]) -> Result<Vec<(Bytes, StoredMetadata)>, ProcessingError> {
            Ok(self
                .0
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (Bytes::copy_from_slice(k), v.clone()))
                .collect())
        }
    }

    const T: &str = "t";

    fn spec_id() -> WfSpecId {
        WfSpecId {
            name: "s".into(),
            major_version: 0,
            revision: 0,
        }
    }

    /// The metadata governing each of the six kinds, every one carrying `flag`; the
    /// variable `v` has access level `access`.
    fn metadata(flag: Option<bool>, access: WfRunVariableAccessLevel) -> Memory {
        let mut memory = Memory::default();
        let mut put = |key: Vec<u8>, object: Object| {
            memory.0.insert(
                key,
                StoredMetadata {
                    object: Some(object),
                },
            );
        };
        put(
            keys::metadata(T, MetadataKind::TaskDef, "task"),
            Object::TaskDef(TaskDef {
                name: "task".into(),
                enable_entity_events: flag,
                ..TaskDef::default()
            }),
        );
        put(
            keys::metadata(T, MetadataKind::ExternalEventDef, "ext"),
            Object::ExternalEventDef(ExternalEventDef {
                name: "ext".into(),
                enable_entity_events: flag,
                ..ExternalEventDef::default()
            }),
        );
        put(
            keys::metadata(T, MetadataKind::WorkflowEventDef, "thrown"),
            Object::WorkflowEventDef(WorkflowEventDef {
                name: "thrown".into(),
                enable_entity_events: flag,
                ..WorkflowEventDef::default()
            }),
        );
        put(
            keys::metadata(T, MetadataKind::UserTaskDef, "form"),
            Object::UserTaskDef(UserTaskDef {
                name: "form".into(),
                enable_entity_events: flag,
                ..UserTaskDef::default()
            }),
        );
        let thread = ThreadSpec {
            nodes: BTreeMap::new(),
            variable_defs: vec![ThreadVarDef {
                var_def: Some(VariableDef {
                    name: "v".into(),
                    ..VariableDef::default()
                }),
                required: false,
                access_level: access as i32,
                enable_entity_events: flag,
            }],
        };
        put(
            keys::wf_spec(T, "s", 0, 0),
            Object::WfSpec(WfSpec {
                id: Some(spec_id()),
                thread_specs: BTreeMap::from([("main".to_owned(), thread)]),
                entrypoint_thread_name: "main".into(),
                enable_entity_events: flag,
                ..WfSpec::default()
            }),
        );
        memory
    }

    /// One new object of each of the six kinds, each governed by `metadata`'s objects.
    fn changes() -> Vec<(&'static str, Change)> {
        vec![
            (
                "WfRun",
                Change::WfRun {
                    before: None,
                    after: WfRun {
                        wf_spec_id: Some(spec_id()),
                        ..WfRun::default()
                    },
                },
            ),
            (
                "TaskRun",
                Change::TaskRun {
                    before: None,
                    after: TaskRun {
                        task_def_name: "task".into(),
                        ..TaskRun::default()
                    },
                },
            ),
            (
                "Variable",
                Change::Variable {
                    before: None,
                    after: Variable {
                        id: Some(VariableId {
                            name: "v".into(),
                            ..VariableId::default()
                        }),
                        wf_spec_id: Some(spec_id()),
                        ..Variable::default()
                    },
                },
            ),
            (
                "ExternalEvent",
                Change::ExternalEvent {
                    before: None,
                    after: ExternalEvent {
                        id: Some(ExternalEventId {
                            external_event_def_name: "ext".into(),
                            ..ExternalEventId::default()
                        }),
                        ..ExternalEvent::default()
                    },
                },
            ),
            (
                "WorkflowEvent",
                Change::WorkflowEvent {
                    before: None,
                    after: WorkflowEvent {
                        id: Some(WorkflowEventId {
                            workflow_event_def_name: "thrown".into(),
                            ..WorkflowEventId::default()
                        }),
                        ..WorkflowEvent::default()
                    },
                },
            ),
            (
                "UserTaskRun",
                Change::UserTaskRun {
                    before: None,
                    after: UserTaskRun {
                        user_task_def_name: "form".into(),
                        events: vec![UserTaskEvent::default()],
                        ..UserTaskRun::default()
                    },
                },
            ),
        ]
    }

    #[test]
    fn each_kind_follows_its_governing_object_over_the_tenant_default() {
        use OutputTopicRecordingLevel::{AllEntityEvents, NoEntityEvents};
        use WfRunVariableAccessLevel::{PrivateVar, PublicVar};
        for level in [AllEntityEvents, NoEntityEvents] {
            let config = OutputTopicConfig {
                default_recording_level: level as i32,
            };
            for flag in [None, Some(true), Some(false)] {
                for access in [PublicVar, PrivateVar] {
                    let memory = metadata(flag, access);
                    let mut view = MetadataView::new(&memory, T);
                    for (kind, change) in changes() {
                        let expected = match (flag, kind) {
                            (Some(explicit), _) => explicit,
                            (None, "Variable") => level == AllEntityEvents && access == PublicVar,
                            (None, _) => level == AllEntityEvents,
                        };
                        assert_eq!(
                            policy_sends(&change, &config, &mut view).expect("lookup"),
                            expected,
                            "{kind}: tenant {level:?}, override {flag:?}, variable {access:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn only_real_changes_are_candidates() {
        let run = WfRun {
            status: LhStatus::Running as i32,
            ..WfRun::default()
        };
        let done = WfRun {
            status: LhStatus::Completed as i32,
            ..WfRun::default()
        };
        let same_status = Change::WfRun {
            before: Some(run.clone()),
            after: run.clone(),
        };
        assert_eq!(
            same_status.slot(1),
            None,
            "a WfRun is published only when its status changes"
        );
        assert_eq!(
            Change::WfRun {
                before: None,
                after: run.clone()
            }
            .slot(9),
            Some(Slot::NewWfRun)
        );
        assert_eq!(
            Change::WfRun {
                before: Some(run),
                after: done
            }
            .slot(2),
            Some(Slot::FinishedWfRun)
        );

        let value = |s: &str| Variable {
            value: Some(VariableValue {
                value: Some(weir_proto::variable_value::Value::Str(s.into())),
            }),
            ..Variable::default()
        };
        assert_eq!(
            Change::Variable {
                before: Some(value("a")),
                after: value("a")
            }
            .slot(3),
            None
        );
        assert_eq!(
            Change::Variable {
                before: Some(value("a")),
                after: value("b")
            }
            .slot(3),
            Some(Slot::InOrder(3))
        );

        let form = UserTaskRun {
            events: vec![UserTaskEvent::default()],
            ..UserTaskRun::default()
        };
        let mut reassigned = form.clone();
        reassigned.user_id = Some("x".into());
        assert_eq!(
            Change::UserTaskRun {
                before: Some(form.clone()),
                after: reassigned
            }
            .slot(4),
            None,
            "no new history entry"
        );
        let mut completed = form.clone();
        completed.events.push(UserTaskEvent::default());
        assert_eq!(
            Change::UserTaskRun {
                before: Some(form),
                after: completed
            }
            .slot(4),
            Some(Slot::InOrder(4))
        );

        let task = TaskRun {
            task_def_name: "t".into(),
            ..TaskRun::default()
        };
        assert_eq!(
            Change::TaskRun {
                before: Some(task.clone()),
                after: task
            }
            .slot(5),
            None
        );
        assert!(Slot::NewWfRun < Slot::InOrder(0) && Slot::InOrder(u64::MAX) < Slot::FinishedWfRun);
    }
}
