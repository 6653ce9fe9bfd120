//! PutWfSpec and DeleteWfSpec. A put is checked against the definitions the tenant has
//! now ([`validate_wf_spec`]), then versioned against the latest stored version of its
//! name ([`resolve_put`]); every version is its own entry, so runs of an older version
//! keep the spec they started with.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;
use prost_types::Timestamp;
use weir_proto::node::Node as NodeKind;
use weir_proto::stored_metadata::Object;
use weir_proto::{PutWfSpecRequest, StoredMetadata, TaskDef, WfSpec, WfSpecId};

use super::{Accepted, HandlerError, names};
use crate::core::keys;
use crate::core::metadata_view::{MetadataSource, MetadataView};
use crate::core::results::CommandError;
use crate::metadata::validation::{KnownMetadata, validate_wf_spec};
use crate::metadata::versioning::{WfSpecPut, resolve_put};

/// Stores the spec `request` describes as a new version, updates the latest version in
/// place when only `enable_entity_events` changed, or changes nothing when it is the
/// latest version already. Answers with the `WfSpecId` of the version concerned.
pub(super) fn put<S: MetadataSource>(
    mut view: MetadataView<'_, S>,
    request: PutWfSpecRequest,
    time: Timestamp,
) -> Result<Accepted, HandlerError> {
    names::check("WfSpec name", &request.name)?;
    let spec = WfSpec {
        id: Some(WfSpecId {
            name: request.name.clone(),
            major_version: 0,
            revision: 0,
        }),
        created_at: None,
        thread_specs: request.thread_specs,
        entrypoint_thread_name: request.entrypoint_thread_name,
        enable_entity_events: request.enable_entity_events,
    };
    let known = TenantDefinitions::load(&mut view, &spec)?;
    let errors = validate_wf_spec(&spec, &known);
    if !errors.is_empty() {
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return Err(CommandError::invalid(format!(
            "WfSpec {} is invalid: {}",
            request.name,
            errors.join("; ")
        ))
        .into());
    }
    let latest = view.wf_spec_versions(&request.name)?.pop();
    let stored = match resolve_put(latest.as_ref(), &spec, time) {
        WfSpecPut::Unchanged => {
            let id = latest.and_then(|l| l.id).unwrap_or_default();
            return Ok(Accepted::unchanged(id.encode_to_vec()));
        }
        WfSpecPut::UpdatedInPlace(spec) | WfSpecPut::NewVersion(spec) => spec,
    };
    let id = stored.id.clone().unwrap_or_default();
    let key = keys::wf_spec(view.tenant, &id.name, id.major_version, id.revision);
    Ok(Accepted::put(
        key,
        StoredMetadata {
            object: Some(Object::WfSpec(stored)),
        },
        id.encode_to_vec(),
    ))
}

/// Deletes one exact version.
pub(super) fn delete<S: MetadataSource>(
    mut view: MetadataView<'_, S>,
    id: Option<WfSpecId>,
) -> Result<Accepted, HandlerError> {
    let Some(id) = id else {
        return Err(CommandError::invalid("DeleteWfSpec needs the id of the version").into());
    };
    names::check("WfSpec name", &id.name)?;
    let key = keys::wf_spec(view.tenant, &id.name, id.major_version, id.revision);
    let found = matches!(
        view.source.get(&key)?.and_then(|stored| stored.object),
        Some(Object::WfSpec(_))
    );
    if !found {
        return Err(CommandError::not_found(format!(
            "WfSpec version {} does not exist in tenant {}",
            version_label(&id),
            view.tenant
        ))
        .into());
    }
    Ok(Accepted::delete(key, id.encode_to_vec()))
}

/// `name major.revision`, as versions are named in messages.
pub(super) fn version_label(id: &WfSpecId) -> String {
    format!("{} {}.{}", id.name, id.major_version, id.revision)
}

/// The tenant's definitions that a spec names, loaded before validation (which only
/// borrows them). A name that is absent here does not exist in the tenant.
#[derive(Debug, Default)]
struct TenantDefinitions {
    task_defs: BTreeMap<String, TaskDef>,
    external_event_defs: BTreeSet<String>,
    workflow_event_defs: BTreeSet<String>,
    user_task_defs: BTreeSet<String>,
}

impl TenantDefinitions {
    fn load<S: MetadataSource>(
        view: &mut MetadataView<'_, S>,
        spec: &WfSpec,
    ) -> Result<Self, HandlerError> {
        let mut known = Self::default();
        let nodes = spec
            .thread_specs
            .values()
            .flat_map(|thread| thread.nodes.values())
            .filter_map(|node| node.node.as_ref());
        for node in nodes {
            match node {
                NodeKind::Task(task) => {
                    let name = &task.task_def_name;
                    if !known.task_defs.contains_key(name)
                        && let Some(def) = view.task_def(name)?
                    {
                        known.task_defs.insert(name.clone(), def);
                    }
                }
                NodeKind::ExternalEvent(event) => {
                    let name = &event.external_event_def_name;
                    if view.external_event_def(name)?.is_some() {
                        known.external_event_defs.insert(name.clone());
                    }
                }
                NodeKind::ThrowEvent(event) => {
                    let name = &event.workflow_event_def_name;
                    if view.workflow_event_def(name)?.is_some() {
                        known.workflow_event_defs.insert(name.clone());
                    }
                }
                NodeKind::UserTask(task) => {
                    let name = &task.user_task_def_name;
                    if view.user_task_def(name)?.is_some() {
                        known.user_task_defs.insert(name.clone());
                    }
                }
                NodeKind::Entrypoint(_) | NodeKind::Exit(_) => {}
            }
        }
        Ok(known)
    }
}

impl KnownMetadata for TenantDefinitions {
    fn task_def(&self, name: &str) -> Option<&TaskDef> {
        self.task_defs.get(name)
    }
    fn has_external_event_def(&self, name: &str) -> bool {
        self.external_event_defs.contains(name)
    }
    fn has_workflow_event_def(&self, name: &str) -> bool {
        self.workflow_event_defs.contains(name)
    }
    fn has_user_task_def(&self, name: &str) -> bool {
        self.user_task_defs.contains(name)
    }
}
