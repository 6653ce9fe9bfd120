//! PutTenant and DeleteTenant. A tenant's entry lives under its own key prefix, next
//! to everything else it owns, so "is it empty?" is one prefix scan.

use prost_types::Timestamp;
use std::collections::BTreeMap;
use weir_proto::stored_metadata::Object;
use weir_proto::{PutTenantRequest, StoredMetadata, Tenant};

use super::{Accepted, HandlerError, names};
use crate::core::keys::{self, MetadataKind};
use crate::core::metadata_view::{MetadataSource, MetadataView};
use crate::core::results::CommandError;
use crate::topics::DEFAULT_TENANT;

/// Creates the tenant, or changes its output topic settings in place (keeping its
/// creation time). Putting what is already there changes nothing.
pub(super) fn put<S: MetadataSource>(
    mut view: MetadataView<'_, S>,
    request: &PutTenantRequest,
    time: Timestamp,
) -> Result<Accepted, HandlerError> {
    names::check("tenant id", &request.id)?;
    let id = request.id.as_bytes().to_vec();
    let existing = view.tenant()?;
    let tenant = Tenant {
        id: request.id.clone(),
        // The default tenant exists without an entry; its first put dates it.
        created_at: existing.as_ref().and_then(|t| t.created_at).or(Some(time)),
        output_topic: request.output_topic_config,
    };
    if let Some(existing) = existing
        && existing.output_topic == tenant.output_topic
    {
        return Ok(Accepted::unchanged(id));
    }
    let key = keys::metadata(&request.id, MetadataKind::Tenant, &request.id);
    Ok(Accepted::put(
        key,
        StoredMetadata {
            object: Some(Object::Tenant(tenant)),
        },
        id,
    ))
}

/// Deletes an empty tenant. The default tenant cannot be deleted, and a tenant that
/// still holds metadata is refused with a count of what is left, by kind.
pub(super) fn delete<S: MetadataSource>(
    mut view: MetadataView<'_, S>,
) -> Result<Accepted, HandlerError> {
    let tenant = view.tenant.to_owned();
    names::check("tenant id", &tenant)?;
    if tenant == DEFAULT_TENANT {
        return Err(CommandError::precondition(format!(
            "the {DEFAULT_TENANT} tenant cannot be deleted"
        ))
        .into());
    }
    if view.tenant()?.is_none() {
        return Err(CommandError::not_found(format!("tenant {tenant} does not exist")).into());
    }
    let mut left: BTreeMap<MetadataKind, usize> = BTreeMap::new();
    for (_, stored) in view.source.scan(&keys::tenant_prefix(&tenant))? {
        let kind = match stored.object {
            Some(Object::Tenant(_)) | None => continue,
            Some(Object::TaskDef(_)) => MetadataKind::TaskDef,
            Some(Object::WfSpec(_)) => MetadataKind::WfSpec,
            Some(Object::ExternalEventDef(_)) => MetadataKind::ExternalEventDef,
            Some(Object::WorkflowEventDef(_)) => MetadataKind::WorkflowEventDef,
            Some(Object::UserTaskDef(_)) => MetadataKind::UserTaskDef,
        };
        *left.entry(kind).or_default() += 1;
    }
    if !left.is_empty() {
        let total: usize = left.values().sum();
        let by_kind: Vec<String> = left
            .iter()
            .map(|(kind, count)| format!("{count} {}", kind.name()))
            .collect();
        return Err(CommandError::precondition(format!(
            "tenant {tenant} still holds {total} metadata object(s) ({}); delete them first",
            by_kind.join(", ")
        ))
        .into());
    }
    Ok(Accepted::delete(
        keys::metadata(&tenant, MetadataKind::Tenant, &tenant),
        tenant.into_bytes(),
    ))
}
