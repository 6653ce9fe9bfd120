//! Puts and deletes of the definitions a WfSpec refers to by name: TaskDefs,
//! ExternalEventDefs, WorkflowEventDefs and UserTaskDefs. They follow LittleHorse:
//! a definition is immutable once created, except for `enable_entity_events`, which
//! is updated in place; and one still used by a stored WfSpec version cannot be
//! deleted, so no run loses a definition it needs.

use std::collections::BTreeSet;

use weir_proto::node::Node as NodeKind;
use weir_proto::stored_metadata::Object;
use weir_proto::{
    ExternalEventDef, RetryPolicy, StoredMetadata, TaskDef, UserTaskDef, WfSpec, WorkflowEventDef,
};

use super::wf_specs::version_label;
use super::{Accepted, HandlerError, names};
use crate::core::keys::{self, MetadataKind};
use crate::core::metadata_view::{MetadataSource, MetadataView};
use crate::core::results::CommandError;

/// What the put and delete rules need to know of one kind of definition.
pub(super) trait Definition: Sized {
    const KIND: MetadataKind;
    /// The kind's name in messages, as users know it ("TaskDef").
    const LABEL: &'static str;

    fn name(&self) -> &str;
    fn enable_entity_events(&self) -> Option<bool>;
    fn set_enable_entity_events(&mut self, value: Option<bool>);
    /// The fields, other than the name, the creation time and `enable_entity_events`,
    /// whose values differ from `other`'s.
    fn differences(&self, other: &Self) -> Vec<&'static str>;
    /// What is wrong with the definition itself; empty when it is sound.
    fn problems(&self) -> Vec<String>;
    /// Whether `node` uses the definition named `name`.
    fn used_by(node: &NodeKind, name: &str) -> bool;
    fn from_object(object: Object) -> Option<Self>;
    fn into_object(self) -> Object;
}

/// The accessors every definition message has in the same shape (a `name`, an optional
/// `enable_entity_events`, a case of `StoredMetadata`), written once.
macro_rules! same_shape_accessors {
    ($variant:ident) => {
        fn name(&self) -> &str {
            &self.name
        }
        fn enable_entity_events(&self) -> Option<bool> {
            self.enable_entity_events
        }
        fn set_enable_entity_events(&mut self, value: Option<bool>) {
            self.enable_entity_events = value;
        }
        fn from_object(object: Object) -> Option<Self> {
            match object {
                Object::$variant(def) => Some(def),
                _ => None,
            }
        }
        fn into_object(self) -> Object {
            Object::$variant(self)
        }
    };
}

/// Creates `proposed`, or compares it with the stored definition of the same name: the
/// same content changes nothing, a new `enable_entity_events` alone is applied in place,
/// anything else is refused.
pub(super) fn put<D: Definition, S: MetadataSource>(
    mut view: MetadataView<'_, S>,
    proposed: D,
) -> Result<Accepted, HandlerError> {
    names::check(&format!("{} name", D::LABEL), proposed.name())?;
    let problems = proposed.problems();
    if !problems.is_empty() {
        return Err(CommandError::invalid(format!(
            "{} {} is invalid: {}",
            D::LABEL,
            proposed.name(),
            problems.join("; ")
        ))
        .into());
    }
    let key = keys::metadata(view.tenant, D::KIND, proposed.name());
    let id = proposed.name().as_bytes().to_vec();
    let existing = view
        .source
        .get(&key)?
        .and_then(|stored| stored.object)
        .and_then(D::from_object);
    let stored = match existing {
        None => proposed,
        Some(existing) => {
            let differences = existing.differences(&proposed);
            if !differences.is_empty() {
                return Err(CommandError::already_exists(format!(
                    "{label} {name} already exists with a different {fields}; a {label} cannot \
                     change once created (only enable_entity_events can), so put the new one \
                     under another name",
                    label = D::LABEL,
                    name = proposed.name(),
                    fields = differences.join(", "),
                ))
                .into());
            }
            if existing.enable_entity_events() == proposed.enable_entity_events() {
                return Ok(Accepted::unchanged(id));
            }
            let mut updated = existing;
            updated.set_enable_entity_events(proposed.enable_entity_events());
            updated
        }
    };
    Ok(Accepted::put(
        key,
        StoredMetadata {
            object: Some(stored.into_object()),
        },
        id,
    ))
}

/// Deletes the definition named `name`, unless a stored WfSpec version still uses it.
pub(super) fn delete<D: Definition, S: MetadataSource>(
    mut view: MetadataView<'_, S>,
    name: &str,
) -> Result<Accepted, HandlerError> {
    names::check(&format!("{} name", D::LABEL), name)?;
    let key = keys::metadata(view.tenant, D::KIND, name);
    let exists = view
        .source
        .get(&key)?
        .and_then(|stored| stored.object)
        .and_then(D::from_object)
        .is_some();
    if !exists {
        return Err(CommandError::not_found(format!(
            "{} {name} does not exist in tenant {}",
            D::LABEL,
            view.tenant
        ))
        .into());
    }
    let users: Vec<String> = view
        .source
        .scan(&keys::metadata_kind(view.tenant, MetadataKind::WfSpec))?
        .into_iter()
        .filter_map(|(_, stored)| match stored.object {
            Some(Object::WfSpec(spec)) if uses::<D>(&spec, name) => {
                Some(version_label(&spec.id.unwrap_or_default()))
            }
            _ => None,
        })
        .collect();
    if !users.is_empty() {
        return Err(CommandError::precondition(format!(
            "{} {name} is still used by WfSpec version(s) {}; delete those versions first",
            D::LABEL,
            users.join(", ")
        ))
        .into());
    }
    Ok(Accepted::delete(key, name.as_bytes().to_vec()))
}

/// Whether any node of any thread of `spec` uses the `D` named `name`.
fn uses<D: Definition>(spec: &WfSpec, name: &str) -> bool {
    spec.thread_specs
        .values()
        .flat_map(|thread| thread.nodes.values())
        .filter_map(|node| node.node.as_ref())
        .any(|node| D::used_by(node, name))
}

/// Names that are empty or given twice, as problems of `what` (e.g. "input variable").
fn name_problems<'a>(what: &str, names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut problems = Vec::new();
    for (position, name) in names.into_iter().enumerate() {
        if name.is_empty() {
            problems.push(format!("{what} {position} has no name"));
        } else if !seen.insert(name) {
            problems.push(format!("{what} {name:?} is declared more than once"));
        }
    }
    problems
}

fn retry_problems(policy: &RetryPolicy) -> Vec<String> {
    let mut problems = Vec::new();
    if policy.max_retries < 0 {
        problems.push(format!(
            "retry_policy.max_retries is {}; it must be 0 or more",
            policy.max_retries
        ));
    }
    if policy.initial_backoff_ms < 0 {
        problems.push(format!(
            "retry_policy.initial_backoff_ms is {}; it must be 0 or more",
            policy.initial_backoff_ms
        ));
    }
    if policy.max_backoff_ms < 0 {
        problems.push(format!(
            "retry_policy.max_backoff_ms is {}; it must be 0 or more",
            policy.max_backoff_ms
        ));
    }
    if policy.max_retries > 0 {
        // NaN is refused too.
        if policy.backoff_multiplier.is_nan() || policy.backoff_multiplier < 1.0 {
            problems.push(format!(
                "retry_policy.backoff_multiplier is {}; with retries it must be 1 or more",
                policy.backoff_multiplier
            ));
        }
        if policy.max_backoff_ms < policy.initial_backoff_ms {
            problems.push(format!(
                "retry_policy.max_backoff_ms ({}) is below initial_backoff_ms ({})",
                policy.max_backoff_ms, policy.initial_backoff_ms
            ));
        }
    }
    problems
}

impl Definition for TaskDef {
    const KIND: MetadataKind = MetadataKind::TaskDef;
    const LABEL: &'static str = "TaskDef";

    same_shape_accessors!(TaskDef);
    fn differences(&self, other: &Self) -> Vec<&'static str> {
        let mut fields = Vec::new();
        if self.input_vars != other.input_vars {
            fields.push("input_vars");
        }
        if self.retry_policy != other.retry_policy {
            fields.push("retry_policy");
        }
        if self.timeout_seconds != other.timeout_seconds {
            fields.push("timeout_seconds");
        }
        fields
    }
    fn problems(&self) -> Vec<String> {
        let mut problems = name_problems(
            "input variable",
            self.input_vars.iter().map(|v| v.name.as_str()),
        );
        if let Some(policy) = &self.retry_policy {
            problems.extend(retry_problems(policy));
        }
        if self.timeout_seconds < 0 {
            problems.push(format!(
                "timeout_seconds is {}; it must be 0 or more",
                self.timeout_seconds
            ));
        }
        problems
    }
    fn used_by(node: &NodeKind, name: &str) -> bool {
        matches!(node, NodeKind::Task(task) if task.task_def_name == name)
    }
}

impl Definition for ExternalEventDef {
    const KIND: MetadataKind = MetadataKind::ExternalEventDef;
    const LABEL: &'static str = "ExternalEventDef";

    same_shape_accessors!(ExternalEventDef);
    fn differences(&self, _: &Self) -> Vec<&'static str> {
        Vec::new()
    }
    fn problems(&self) -> Vec<String> {
        Vec::new()
    }
    fn used_by(node: &NodeKind, name: &str) -> bool {
        matches!(node, NodeKind::ExternalEvent(event) if event.external_event_def_name == name)
    }
}

impl Definition for WorkflowEventDef {
    const KIND: MetadataKind = MetadataKind::WorkflowEventDef;
    const LABEL: &'static str = "WorkflowEventDef";

    same_shape_accessors!(WorkflowEventDef);
    fn differences(&self, other: &Self) -> Vec<&'static str> {
        if self.content_type != other.content_type {
            vec!["content_type"]
        } else {
            Vec::new()
        }
    }
    fn problems(&self) -> Vec<String> {
        Vec::new()
    }
    fn used_by(node: &NodeKind, name: &str) -> bool {
        matches!(node, NodeKind::ThrowEvent(event) if event.workflow_event_def_name == name)
    }
}

impl Definition for UserTaskDef {
    const KIND: MetadataKind = MetadataKind::UserTaskDef;
    const LABEL: &'static str = "UserTaskDef";

    same_shape_accessors!(UserTaskDef);
    fn differences(&self, other: &Self) -> Vec<&'static str> {
        let mut fields = Vec::new();
        if self.description != other.description {
            fields.push("description");
        }
        if self.fields != other.fields {
            fields.push("fields");
        }
        fields
    }
    fn problems(&self) -> Vec<String> {
        name_problems("field", self.fields.iter().map(|f| f.name.as_str()))
    }
    fn used_by(node: &NodeKind, name: &str) -> bool {
        matches!(node, NodeKind::UserTask(task) if task.user_task_def_name == name)
    }
}
