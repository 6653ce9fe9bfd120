//! The metadata processor: reads `metadata-cmd`, checks each command against the
//! tenant's stored metadata, applies it to the `metadata` store and answers it with one
//! `CommandResult`. A refused command writes nothing: handlers only read and return
//! the writes they want ([`Accepted`]), which are applied once the answer is OK.
//!
//! Handlers by object: [`tenants`], [`definitions`] (TaskDefs, ExternalEventDefs,
//! WorkflowEventDefs, UserTaskDefs), [`wf_specs`]; the naming rule they share is in
//! [`names`].

mod definitions;
mod names;
mod tenants;
mod wf_specs;

use std::sync::Arc;

use prost::Message;
use prost_types::Timestamp;
use weir_proto::metadata_command::Command;
use weir_proto::{
    ExternalEventDef, MetadataCommand, StoredMetadata, TaskDef, UserTaskDef, WorkflowEventDef,
};
use weir_topology::{InputRecord, ProcessingError, Processor, ProcessorContext};

use super::CoreStores;
use super::metadata_view::{MetadataSource, MetadataView, OwnedStore};
use super::results::{self, CommandError};
use crate::output;
use crate::topics::{CoreTopics, DEFAULT_TENANT, TENANT_HEADER};

/// Handles the single `metadata-cmd` partition.
#[derive(Debug)]
pub struct MetadataProcessor {
    stores: Arc<CoreStores>,
    topics: CoreTopics,
}

impl MetadataProcessor {
    pub fn new(stores: Arc<CoreStores>, topics: CoreTopics) -> Self {
        Self { stores, topics }
    }

    /// Decides what `command` does, reading but never writing the store.
    fn handle(
        &self,
        ctx: &mut ProcessorContext<'_, '_>,
        record: &InputRecord,
        command: Option<Command>,
        time: Timestamp,
    ) -> Result<Accepted, HandlerError> {
        let Some(command) = command else {
            return Err(CommandError::invalid("the metadata command names no operation").into());
        };
        // Tenant commands act on the tenant they name; the header plays no part.
        let tenant = match &command {
            Command::PutTenant(request) => request.id.clone(),
            Command::DeleteTenant(request) => request.id.clone(),
            _ => header_tenant(record)?,
        };
        let view = MetadataView::new(
            OwnedStore {
                ctx,
                store: &self.stores.metadata,
            },
            &tenant,
        );
        match command {
            Command::PutTenant(request) => tenants::put(view, &request, time),
            Command::DeleteTenant(_) => tenants::delete(view),
            Command::PutTaskDef(request) => definitions::put(
                existing_tenant(view)?,
                TaskDef {
                    name: request.name,
                    input_vars: request.input_vars,
                    retry_policy: request.retry_policy,
                    timeout_seconds: request.timeout_seconds,
                    created_at: Some(time),
                    enable_entity_events: request.enable_entity_events,
                },
            ),
            Command::PutExternalEventDef(request) => definitions::put(
                existing_tenant(view)?,
                ExternalEventDef {
                    name: request.name,
                    created_at: Some(time),
                    enable_entity_events: request.enable_entity_events,
                },
            ),
            Command::PutWorkflowEventDef(request) => definitions::put(
                existing_tenant(view)?,
                WorkflowEventDef {
                    name: request.name,
                    created_at: Some(time),
                    content_type: request.content_type,
                    enable_entity_events: request.enable_entity_events,
                },
            ),
            Command::PutUserTaskDef(request) => definitions::put(
                existing_tenant(view)?,
                UserTaskDef {
                    name: request.name,
                    description: request.description,
                    fields: request.fields,
                    created_at: Some(time),
                    enable_entity_events: request.enable_entity_events,
                },
            ),
            Command::PutWfSpec(request) => wf_specs::put(existing_tenant(view)?, request, time),
            Command::DeleteTaskDef(request) => {
                definitions::delete::<TaskDef, _>(existing_tenant(view)?, &request.name)
            }
            Command::DeleteExternalEventDef(request) => {
                definitions::delete::<ExternalEventDef, _>(existing_tenant(view)?, &request.name)
            }
            Command::DeleteWorkflowEventDef(request) => {
                definitions::delete::<WorkflowEventDef, _>(existing_tenant(view)?, &request.name)
            }
            Command::DeleteUserTaskDef(request) => {
                definitions::delete::<UserTaskDef, _>(existing_tenant(view)?, &request.name)
            }
            Command::DeleteWfSpec(request) => wf_specs::delete(existing_tenant(view)?, request.id),
        }
    }
}

impl Processor for MetadataProcessor {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, '_>,
        record: &InputRecord,
    ) -> Result<(), ProcessingError> {
        let Some(value) = record.value.as_deref() else {
            return Err(ProcessingError::record(format!(
                "metadata command at {} has no value; expected an encoded MetadataCommand",
                record.position()
            )));
        };
        let command = MetadataCommand::decode(value).map_err(|error| {
            ProcessingError::record(format!(
                "metadata command at {} does not decode as a MetadataCommand: {error}",
                record.position()
            ))
        })?;
        let command_id = if command.command_id.is_empty() {
            record.position()
        } else {
            command.command_id
        };
        // Deterministic: the command's own time, else the record's, never the clock.
        let time = command
            .time
            .unwrap_or_else(|| weir_proto::timestamp::from_millis(record.timestamp_ms));

        let result = match self.handle(ctx, record, command.command, time) {
            Ok(accepted) => {
                let mut published = Vec::new();
                for write in accepted.writes {
                    match write {
                        Write::Put(key, object) => {
                            ctx.put(&self.stores.metadata, &key, &object)?;
                            published.push(Published::Put(object));
                        }
                        Write::Delete(key) => {
                            if let Some(old) = ctx.get(&self.stores.metadata, &key)? {
                                published.push(Published::Deleted(old));
                            }
                            ctx.delete(&self.stores.metadata, &key)?;
                        }
                    }
                }
                self.publish(ctx, record, published)?;
                results::ok(&command_id, Some(accepted.id))
            }
            Err(HandlerError::Refused(error)) => {
                tracing::debug!(
                    command_id = %command_id,
                    code = ?error.code,
                    message = %error.message,
                    "metadata command refused"
                );
                results::refused(&command_id, &error)
            }
            Err(HandlerError::Storage(error)) => return Err(error),
        };
        ctx.forward(results::record(&self.topics, &result));
        Ok(())
    }
}

/// A metadata change the tenant's metadata-output topic announces.
enum Published {
    Put(StoredMetadata),
    Deleted(StoredMetadata),
}

impl MetadataProcessor {
    /// Sends the command's metadata changes to the tenant's metadata-output topic, when
    /// the tenant has one.
    fn publish(
        &self,
        ctx: &mut ProcessorContext<'_, '_>,
        record: &InputRecord,
        published: Vec<Published>,
    ) -> Result<(), ProcessingError> {
        let Ok(tenant) = header_tenant(record) else {
            return Ok(());
        };
        if published.is_empty() {
            return Ok(());
        }
        let view_source = OwnedStore {
            ctx: &mut *ctx,
            store: &self.stores.metadata,
        };
        let enabled = MetadataView::new(view_source, &tenant)
            .tenant()?
            .is_some_and(|t| t.output_topic.is_some());
        if !enabled {
            return Ok(());
        }
        for change in published {
            let record = match change {
                Published::Put(object) => {
                    output::metadata::put_record(&self.topics, &tenant, object)
                }
                Published::Deleted(old) => output::metadata::tombstone(&self.topics, &tenant, &old),
            };
            if let Some(record) = record {
                ctx.forward(record);
            }
        }
        Ok(())
    }
}

/// The tenant a command names in its header; [`DEFAULT_TENANT`] when it names none.
fn header_tenant(record: &InputRecord) -> Result<String, CommandError> {
    let Some(raw) = record.header(TENANT_HEADER) else {
        return Ok(DEFAULT_TENANT.to_owned());
    };
    let tenant = std::str::from_utf8(raw).map_err(|_| {
        CommandError::invalid(format!("the {TENANT_HEADER} header is not valid UTF-8"))
    })?;
    names::check(&format!("tenant (the {TENANT_HEADER} header)"), tenant)?;
    Ok(tenant.to_owned())
}

/// The view, if its tenant exists (the default tenant always does); a command in a
/// tenant that was never put is refused.
fn existing_tenant<S: MetadataSource>(
    mut view: MetadataView<'_, S>,
) -> Result<MetadataView<'_, S>, HandlerError> {
    if view.tenant()?.is_none() {
        return Err(CommandError::not_found(format!(
            "tenant {} does not exist; put it first",
            view.tenant
        ))
        .into());
    }
    Ok(view)
}

/// What an accepted command does: the entries it writes, in order, and the encoded id
/// of what it created or changed, for the `CommandResult`.
#[derive(Debug)]
struct Accepted {
    writes: Vec<Write>,
    id: Vec<u8>,
}

impl Accepted {
    /// Accepted, but nothing changes (the store already holds what was put).
    fn unchanged(id: Vec<u8>) -> Self {
        Self {
            writes: Vec::new(),
            id,
        }
    }

    fn put(key: Vec<u8>, object: StoredMetadata, id: Vec<u8>) -> Self {
        Self {
            writes: vec![Write::Put(key, object)],
            id,
        }
    }

    fn delete(key: Vec<u8>, id: Vec<u8>) -> Self {
        Self {
            writes: vec![Write::Delete(key)],
            id,
        }
    }
}

/// One write to the `metadata` store.
#[derive(Debug)]
enum Write {
    Put(Vec<u8>, StoredMetadata),
    Delete(Vec<u8>),
}

/// Why a handler produced no [`Accepted`]: the command was refused (answered with an
/// error), or the store failed (the task stops and retries the record).
#[derive(Debug)]
enum HandlerError {
    Refused(CommandError),
    Storage(ProcessingError),
}

impl From<CommandError> for HandlerError {
    fn from(error: CommandError) -> Self {
        Self::Refused(error)
    }
}

impl From<ProcessingError> for HandlerError {
    fn from(error: ProcessingError) -> Self {
        Self::Storage(error)
    }
}
