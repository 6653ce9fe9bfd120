//! Reading metadata the same way from both sides: the metadata processor reads the
//! `metadata` store it owns, core tasks read their global replica of it. Both go
//! through [`MetadataView`], which knows the key layout and the object kinds.

use bytes::Bytes;
use weir_proto::stored_metadata::Object;
use weir_proto::{
    ExternalEventDef, StoredMetadata, TaskDef, Tenant, UserTaskDef, WfSpec, WorkflowEventDef,
};
use weir_topology::{GlobalStoreHandle, ProcessingError, ProcessorContext, StoreHandle};

use super::keys::{self, MetadataKind};
use crate::topics::DEFAULT_TENANT;

/// Where metadata entries are read from.
pub trait MetadataSource {
    fn get(&mut self, key: &[u8]) -> Result<Option<StoredMetadata>, ProcessingError>;
    fn scan(&mut self, prefix: &[u8]) -> Result<Vec<(Bytes, StoredMetadata)>, ProcessingError>;
}

/// The metadata store through its owner's context (reads see the record's own writes).
#[derive(Debug)]
pub struct OwnedStore<'c, 'a, 'b> {
    pub ctx: &'c mut ProcessorContext<'a, 'b>,
    pub store: &'c StoreHandle<StoredMetadata>,
}

impl MetadataSource for OwnedStore<'_, '_, '_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<StoredMetadata>, ProcessingError> {
        self.ctx.get(self.store, key)
    }

    fn scan(&mut self, prefix: &[u8]) -> Result<Vec<(Bytes, StoredMetadata)>, ProcessingError> {
        self.ctx.scan_prefix(self.store, prefix)
    }
}

/// The local replica of the metadata store, as a core task reads it.
#[derive(Debug)]
pub struct GlobalReplica<'c, 'a, 'b> {
    pub ctx: &'c ProcessorContext<'a, 'b>,
    pub store: &'c GlobalStoreHandle<StoredMetadata>,
}

impl MetadataSource for GlobalReplica<'_, '_, '_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<StoredMetadata>, ProcessingError> {
        self.ctx.global_get(self.store, key)
    }

    fn scan(&mut self, prefix: &[u8]) -> Result<Vec<(Bytes, StoredMetadata)>, ProcessingError> {
        self.ctx.global_scan_prefix(self.store, prefix)
    }
}

/// Typed reads of one tenant's metadata.
#[derive(Debug)]
pub struct MetadataView<'t, S> {
    pub source: S,
    pub tenant: &'t str,
}

impl<'t, S: MetadataSource> MetadataView<'t, S> {
    pub fn new(source: S, tenant: &'t str) -> Self {
        Self { source, tenant }
    }

    fn object(
        &mut self,
        kind: MetadataKind,
        name: &str,
    ) -> Result<Option<Object>, ProcessingError> {
        let key = keys::metadata(self.tenant, kind, name);
        Ok(self.source.get(&key)?.and_then(|stored| stored.object))
    }

    /// The tenant itself. The default tenant exists even if it was never put.
    pub fn tenant(&mut self) -> Result<Option<Tenant>, ProcessingError> {
        let tenant = self.tenant.to_owned();
        match self.object(MetadataKind::Tenant, &tenant)? {
            Some(Object::Tenant(found)) => Ok(Some(found)),
            _ if tenant == DEFAULT_TENANT => Ok(Some(Tenant {
                id: tenant,
                created_at: None,
                output_topic: None,
            })),
            _ => Ok(None),
        }
    }

    pub fn task_def(&mut self, name: &str) -> Result<Option<TaskDef>, ProcessingError> {
        Ok(match self.object(MetadataKind::TaskDef, name)? {
            Some(Object::TaskDef(found)) => Some(found),
            _ => None,
        })
    }

    pub fn external_event_def(
        &mut self,
        name: &str,
    ) -> Result<Option<ExternalEventDef>, ProcessingError> {
        Ok(match self.object(MetadataKind::ExternalEventDef, name)? {
            Some(Object::ExternalEventDef(found)) => Some(found),
            _ => None,
        })
    }

    pub fn workflow_event_def(
        &mut self,
        name: &str,
    ) -> Result<Option<WorkflowEventDef>, ProcessingError> {
        Ok(match self.object(MetadataKind::WorkflowEventDef, name)? {
            Some(Object::WorkflowEventDef(found)) => Some(found),
            _ => None,
        })
    }

    pub fn user_task_def(&mut self, name: &str) -> Result<Option<UserTaskDef>, ProcessingError> {
        Ok(match self.object(MetadataKind::UserTaskDef, name)? {
            Some(Object::UserTaskDef(found)) => Some(found),
            _ => None,
        })
    }

    /// Every stored version of a WfSpec, oldest first.
    pub fn wf_spec_versions(&mut self, name: &str) -> Result<Vec<WfSpec>, ProcessingError> {
        let prefix = keys::wf_spec_versions(self.tenant, name);
        Ok(self
            .source
            .scan(&prefix)?
            .into_iter()
            .filter_map(|(_, stored)| match stored.object {
                Some(Object::WfSpec(spec)) => Some(spec),
                _ => None,
            })
            .collect())
    }

    /// The version a run asks for: an exact one, the latest revision of a major
    /// version, or the latest of all.
    pub fn wf_spec(
        &mut self,
        name: &str,
        major_version: Option<i32>,
        revision: Option<i32>,
    ) -> Result<Option<WfSpec>, ProcessingError> {
        if let (Some(major), Some(revision)) = (major_version, revision) {
            // An exact version is one key: no scan of every version (every command on a
            // run loads its spec this way).
            let key = keys::wf_spec(self.tenant, name, major, revision);
            return Ok(
                match self.source.get(&key)?.and_then(|stored| stored.object) {
                    Some(Object::WfSpec(spec)) => Some(spec),
                    _ => None,
                },
            );
        }
        let versions = self.wf_spec_versions(name)?;
        Ok(versions.into_iter().rev().find(|spec| {
            let id = spec.id.clone().unwrap_or_default();
            major_version.is_none_or(|m| id.major_version == m)
                && revision.is_none_or(|r| id.revision == r)
        }))
    }
}
