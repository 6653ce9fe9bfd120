//! Read-only queries over HTTP, served beside `/metrics` on `LHS_METRICS_PORT`: a
//! WfRun and what it created (task runs, variables, external events, user task runs,
//! node runs, workflow events), and a tenant's metadata, as JSON ([`render`]).
//!
//! This module owns the routes ([`router`]) and the rule that answers them honestly: a
//! WfRun is read only by the instance that runs its partition, from that task's
//! committed state ([`weir_topology::StateReaders`]); any other instance answers
//! `307 Temporary Redirect` to the owner's advertised URL for the same path
//! ([`instances`]), so a client that follows redirects can ask any instance. Metadata is
//! answered by every instance from its replica of the `metadata` store.

pub mod instances;
pub mod render;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use prost::Message;
use serde_json::{Value, json};
use weir_proto::{
    ExternalEvent, NodeRun, StoredMetadata, TaskRun, UserTaskRun, Variable, WfRun, WorkflowEvent,
};
use weir_state::TaskDbReader;
use weir_topology::{ProcessingError, StateReaders};

use crate::config::WeirConfig;
use crate::core::keys::{self, MetadataKind};
use crate::core::metadata_view::{MetadataSource, MetadataView};
use crate::core::store_names;
use crate::topics::{is_valid_name, partition_for_key};
use instances::InstanceDirectory;

/// The sub-topology whose partitions hold the WfRuns.
const CORE: &str = "core";

/// What the query routes need: this instance's place in the cluster, its state readers
/// and the directory of the other instances.
#[derive(Debug)]
pub struct Queries {
    instance_id: u32,
    instance_count: u32,
    partitions: i32,
    readers: StateReaders,
    directory: Arc<InstanceDirectory>,
}

impl Queries {
    pub fn new(
        config: &WeirConfig,
        readers: StateReaders,
        directory: Arc<InstanceDirectory>,
    ) -> Self {
        Self {
            instance_id: config.instance_id,
            instance_count: config.instance_count,
            partitions: config.cluster_partitions,
            readers,
            directory,
        }
    }

    /// Where a WfRun lives: its `core-cmd` partition and the instance that runs it
    /// (partition `p` runs on instance `p % LHS_INSTANCE_COUNT`, the static assignment).
    pub fn placement(&self, wf_run_id: &str) -> Placement {
        let partition = partition_for_key(wf_run_id.as_bytes(), self.partitions);
        Placement {
            partition,
            instance: partition.unsigned_abs() % self.instance_count.max(1),
        }
    }
}

/// The partition of a WfRun and the instance that owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub partition: i32,
    pub instance: u32,
}

/// Every query route, to be merged into the process's router ([`crate::http`]).
pub fn router(queries: Arc<Queries>) -> Router {
    Router::new()
        .route("/tenants/{tenant}", get(tenant))
        .route("/tenants/{tenant}/wf-runs/{id}", get(wf_run))
        .route("/tenants/{tenant}/wf-runs/{id}/{objects}", get(run_objects))
        .route(
            "/tenants/{tenant}/wf-runs/{id}/{objects}/{key}",
            get(run_object),
        )
        .route("/tenants/{tenant}/wf-specs/{name}", get(wf_spec_latest))
        .route(
            "/tenants/{tenant}/wf-specs/{name}/{major}",
            get(wf_spec_major),
        )
        .route(
            "/tenants/{tenant}/wf-specs/{name}/{major}/{revision}",
            get(wf_spec_exact),
        )
        .route("/tenants/{tenant}/{kind}/{name}", get(definition))
        .with_state(queries)
}

/// A JSON answer: a status, a body and, for a redirect, where to.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub location: Option<String>,
}

impl Answer {
    fn ok(body: Value) -> Self {
        Self {
            status: StatusCode::OK,
            body,
            location: None,
        }
    }

    fn error(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({ "error": message.into() }),
            location: None,
        }
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::error(StatusCode::NOT_FOUND, message)
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::error(StatusCode::BAD_REQUEST, message)
    }

    fn unavailable(message: impl Into<String>) -> Self {
        Self::error(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    fn internal(message: impl std::fmt::Display) -> Self {
        Self::error(StatusCode::INTERNAL_SERVER_ERROR, message.to_string())
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut text = serde_json::to_string_pretty(&self.body).unwrap_or_default();
        text.push('\n');
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            text,
        )
            .into_response();
        if let Some(location) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        response
    }
}

/// Lets handlers stop at the first answer that is not a success.
type Step<T> = Result<T, Answer>;

// ---------------------------------------------------------------------------
// Metadata: answered by every instance from its replica.
// ---------------------------------------------------------------------------

/// The metadata replica as a [`MetadataSource`].
struct Replica<'r>(&'r TaskDbReader);

impl MetadataSource for Replica<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<StoredMetadata>, ProcessingError> {
        self.0
            .get(store_names::METADATA, key)?
            .map(|bytes| decode_metadata(key, &bytes))
            .transpose()
    }

    fn scan(&mut self, prefix: &[u8]) -> Result<Vec<(Bytes, StoredMetadata)>, ProcessingError> {
        self.0
            .scan_prefix(store_names::METADATA, prefix)?
            .into_iter()
            .map(|(key, bytes)| decode_metadata(&key, &bytes).map(|stored| (key, stored)))
            .collect()
    }
}

fn decode_metadata(key: &[u8], bytes: &[u8]) -> Result<StoredMetadata, ProcessingError> {
    StoredMetadata::decode(bytes).map_err(|e| {
        ProcessingError::record(format!(
            "metadata key {} does not decode: {e}",
            String::from_utf8_lossy(key)
        ))
    })
}

/// Runs `read` on a view of `tenant`'s metadata in a blocking thread, after checking the
/// tenant's name and that it exists.
async fn with_metadata(
    queries: &Queries,
    tenant: String,
    read: impl FnOnce(&mut MetadataView<'_, Replica<'_>>) -> Step<Answer> + Send + 'static,
) -> Answer {
    if let Err(answer) = check_tenant(&tenant) {
        return answer;
    }
    let Some(reader) = queries.readers.global(store_names::METADATA) else {
        return Answer::unavailable("this instance has no replica of the metadata store yet");
    };
    let blocking = tokio::task::spawn_blocking(move || {
        let mut view = MetadataView::new(Replica(&reader), &tenant);
        match view.tenant() {
            Ok(Some(_)) => read(&mut view).unwrap_or_else(|answer| answer),
            Ok(None) => Answer::not_found(format!("tenant {tenant} not found")),
            Err(error) => Answer::internal(error),
        }
    });
    blocking.await.unwrap_or_else(Answer::internal)
}

/// Renders a metadata object found, or 404 naming it.
fn found<M: Message + prost::Name>(
    lookup: Result<Option<M>, ProcessingError>,
    what: impl FnOnce() -> String,
) -> Step<Answer> {
    match lookup.map_err(Answer::internal)? {
        Some(object) => Ok(Answer::ok(
            render::message(&object).map_err(Answer::internal)?,
        )),
        None => Err(Answer::not_found(format!("{} not found", what()))),
    }
}

async fn tenant(State(queries): State<Arc<Queries>>, Path(tenant): Path<String>) -> Answer {
    with_metadata(&queries, tenant, |view| found(view.tenant(), String::new)).await
}

async fn wf_spec_latest(
    State(queries): State<Arc<Queries>>,
    Path((tenant, name)): Path<(String, String)>,
) -> Answer {
    wf_spec(&queries, tenant, name, None, None).await
}

async fn wf_spec_major(
    State(queries): State<Arc<Queries>>,
    Path((tenant, name, major)): Path<(String, String, String)>,
) -> Answer {
    match number("major version", &major) {
        Ok(major) => wf_spec(&queries, tenant, name, Some(major), None).await,
        Err(answer) => answer,
    }
}

async fn wf_spec_exact(
    State(queries): State<Arc<Queries>>,
    Path((tenant, name, major, revision)): Path<(String, String, String, String)>,
) -> Answer {
    match (
        number("major version", &major),
        number("revision", &revision),
    ) {
        (Ok(major), Ok(revision)) => {
            wf_spec(&queries, tenant, name, Some(major), Some(revision)).await
        }
        (Err(answer), _) | (_, Err(answer)) => answer,
    }
}

/// The latest WfSpec version of `name`, the latest revision of a major version, or an
/// exact version.
async fn wf_spec(
    queries: &Queries,
    tenant: String,
    name: String,
    major: Option<i32>,
    revision: Option<i32>,
) -> Answer {
    if let Err(answer) = check("WfSpec name", &name) {
        return answer;
    }
    with_metadata(queries, tenant.clone(), move |view| {
        found(view.wf_spec(&name, major, revision), || {
            let version = match (major, revision) {
                (Some(m), Some(r)) => format!(" version {m}.{r}"),
                (Some(m), None) => format!(" major version {m}"),
                _ => String::new(),
            };
            format!("WfSpec {name}{version} of tenant {tenant}")
        })
    })
    .await
}

/// `/tenants/{t}/{kind}/{name}` for the definitions other than WfSpecs.
async fn definition(
    State(queries): State<Arc<Queries>>,
    Path((tenant, kind, name)): Path<(String, String, String)>,
) -> Answer {
    let kind = match kind.as_str() {
        "task-defs" => MetadataKind::TaskDef,
        "external-event-defs" => MetadataKind::ExternalEventDef,
        "workflow-event-defs" => MetadataKind::WorkflowEventDef,
        "user-task-defs" => MetadataKind::UserTaskDef,
        _ => {
            return Answer::not_found(format!(
                "no such route: /tenants/{tenant}/{kind}/… (definitions are task-defs, \
                 external-event-defs, workflow-event-defs, user-task-defs and wf-specs)"
            ));
        }
    };
    if let Err(answer) = check("name", &name) {
        return answer;
    }
    with_metadata(&queries, tenant.clone(), move |view| {
        let what = || format!("{} {name} of tenant {tenant}", kind.name());
        match kind {
            MetadataKind::TaskDef => found(view.task_def(&name), what),
            MetadataKind::ExternalEventDef => found(view.external_event_def(&name), what),
            MetadataKind::WorkflowEventDef => found(view.workflow_event_def(&name), what),
            _ => found(view.user_task_def(&name), what),
        }
    })
    .await
}

// ---------------------------------------------------------------------------
// A WfRun and its objects: answered by the instance that owns its partition.
// ---------------------------------------------------------------------------

/// The objects of a run a route lists, by their path segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunObjects {
    TaskRuns,
    Variables,
    ExternalEvents,
    UserTaskRuns,
    NodeRuns,
    WorkflowEvents,
}

impl RunObjects {
    const ALL: [Self; 6] = [
        Self::TaskRuns,
        Self::Variables,
        Self::ExternalEvents,
        Self::UserTaskRuns,
        Self::NodeRuns,
        Self::WorkflowEvents,
    ];

    fn segment(self) -> &'static str {
        match self {
            Self::TaskRuns => "task-runs",
            Self::Variables => "variables",
            Self::ExternalEvents => "external-events",
            Self::UserTaskRuns => "user-task-runs",
            Self::NodeRuns => "node-runs",
            Self::WorkflowEvents => "workflow-events",
        }
    }

    fn parse(segment: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.segment() == segment)
    }

    fn store(self) -> &'static str {
        match self {
            Self::TaskRuns => store_names::TASK_RUNS,
            Self::Variables => store_names::VARIABLES,
            Self::ExternalEvents => store_names::EXTERNAL_EVENTS,
            Self::UserTaskRuns => store_names::USER_TASK_RUNS,
            Self::NodeRuns => store_names::NODE_RUNS,
            Self::WorkflowEvents => store_names::WORKFLOW_EVENTS,
        }
    }

    fn render(self, bytes: &[u8]) -> Result<Value, render::RenderError> {
        match self {
            Self::TaskRuns => render::stored::<TaskRun>(bytes),
            Self::Variables => render::stored::<Variable>(bytes),
            Self::ExternalEvents => render::stored::<ExternalEvent>(bytes),
            Self::UserTaskRuns => render::stored::<UserTaskRun>(bytes),
            Self::NodeRuns => render::stored::<NodeRun>(bytes),
            Self::WorkflowEvents => render::stored::<WorkflowEvent>(bytes),
        }
    }

    /// The key of one object by its natural key in a path: a TaskRun's or UserTaskRun's
    /// guid, a variable's name (of the entrypoint thread, 0). Others have none.
    fn key(self, tenant: &str, wf_run_id: &str, key: &str) -> Option<Vec<u8>> {
        match self {
            Self::TaskRuns | Self::UserTaskRuns => Some(keys::by_guid(tenant, wf_run_id, key)),
            Self::Variables => Some(keys::variable(tenant, wf_run_id, 0, key)),
            _ => None,
        }
    }
}

/// What a run route reads once it has its partition's reader.
#[derive(Debug, Clone)]
enum RunRead {
    Run,
    List(RunObjects),
    One(RunObjects, String),
}

async fn wf_run(
    State(queries): State<Arc<Queries>>,
    Path((tenant, id)): Path<(String, String)>,
    uri: Uri,
) -> Answer {
    run_route(&queries, tenant, id, RunRead::Run, &uri).await
}

async fn run_objects(
    State(queries): State<Arc<Queries>>,
    Path((tenant, id, objects)): Path<(String, String, String)>,
    uri: Uri,
) -> Answer {
    match RunObjects::parse(&objects) {
        Some(objects) => run_route(&queries, tenant, id, RunRead::List(objects), &uri).await,
        None => no_such_objects(&objects),
    }
}

async fn run_object(
    State(queries): State<Arc<Queries>>,
    Path((tenant, id, objects, key)): Path<(String, String, String, String)>,
    uri: Uri,
) -> Answer {
    match RunObjects::parse(&objects) {
        Some(objects) if objects.key("t", "r", "k").is_some() => {
            if let Err(answer) = check("key", &key) {
                return answer;
            }
            run_route(&queries, tenant, id, RunRead::One(objects, key), &uri).await
        }
        Some(objects) => Answer::not_found(format!(
            "{} have no single-object route; list them at …/{}",
            objects.segment(),
            objects.segment()
        )),
        None => no_such_objects(&objects),
    }
}

fn no_such_objects(segment: &str) -> Answer {
    let known: Vec<&str> = RunObjects::ALL.iter().map(|o| o.segment()).collect();
    Answer::not_found(format!(
        "no such route: a WfRun has no {segment:?}; it has {}",
        known.join(", ")
    ))
}

/// Checks the names, then answers here, or sends the client to the owner.
async fn run_route(
    queries: &Queries,
    tenant: String,
    id: String,
    read: RunRead,
    uri: &Uri,
) -> Answer {
    if let Err(answer) = check_tenant(&tenant).and_then(|()| check("WfRun id", &id)) {
        return answer;
    }
    let placement = queries.placement(&id);
    if placement.instance != queries.instance_id {
        return redirect(queries, placement, &id, uri).await;
    }
    let Some(reader) = queries.readers.task(CORE, placement.partition) else {
        return Answer::unavailable(format!(
            "WfRun {id} is on partition {} of this instance ({}), which is opening or \
             restoring its state; try again shortly",
            placement.partition, queries.instance_id
        ));
    };
    let metadata = queries.readers.global(store_names::METADATA);
    let blocking = tokio::task::spawn_blocking(move || {
        read_run(&reader, metadata.as_ref(), &tenant, &id, &read).unwrap_or_else(|a| a)
    });
    blocking.await.unwrap_or_else(Answer::internal)
}

/// The answer of a run route on the owning instance, from the partition's committed state.
fn read_run(
    reader: &TaskDbReader,
    metadata: Option<&TaskDbReader>,
    tenant: &str,
    id: &str,
    read: &RunRead,
) -> Step<Answer> {
    let run_key = keys::wf_run(tenant, id);
    let Some(run) = reader
        .get(store_names::WF_RUNS, &run_key)
        .map_err(Answer::internal)?
    else {
        // Say which is unknown: the tenant, or the run.
        let tenant_known = match metadata {
            Some(metadata) => MetadataView::new(Replica(metadata), tenant)
                .tenant()
                .map_err(Answer::internal)?
                .is_some(),
            None => true,
        };
        return Err(Answer::not_found(if tenant_known {
            format!("WfRun {id} not found in tenant {tenant}")
        } else {
            format!("tenant {tenant} not found")
        }));
    };
    let body = match read {
        RunRead::Run => render::stored::<WfRun>(&run).map_err(Answer::internal)?,
        RunRead::List(objects) => {
            let results = reader
                .scan_prefix(objects.store(), &run_key)
                .map_err(Answer::internal)?
                .iter()
                .map(|(_, bytes)| objects.render(bytes))
                .collect::<Result<Vec<_>, _>>()
                .map_err(Answer::internal)?;
            json!({ "results": results })
        }
        RunRead::One(objects, key) => {
            let stored = objects
                .key(tenant, id, key)
                .map(|k| reader.get(objects.store(), &k))
                .transpose()
                .map_err(Answer::internal)?
                .flatten()
                .ok_or_else(|| {
                    Answer::not_found(format!(
                        "WfRun {id} of tenant {tenant} has no {} {key}",
                        objects.segment()
                    ))
                })?;
            objects.render(&stored).map_err(Answer::internal)?
        }
    };
    Ok(Answer::ok(body))
}

/// `307` to the owner's URL for the same path, or `503` when its address is unknown.
async fn redirect(queries: &Queries, placement: Placement, id: &str, uri: &Uri) -> Answer {
    let Placement {
        partition,
        instance,
    } = placement;
    match queries.directory.address(instance).await {
        Ok(Some(address)) => {
            let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
            let location = format!("{address}{path}");
            Answer {
                status: StatusCode::TEMPORARY_REDIRECT,
                body: json!({
                    "error": format!(
                        "WfRun {id} is on partition {partition}, owned by instance {instance}"
                    ),
                    "owner": { "instance": instance, "address": address },
                    "partition": partition,
                    "location": location,
                }),
                location: Some(location),
            }
        }
        Ok(None) => Answer::unavailable(format!(
            "WfRun {id} is on partition {partition}, owned by instance {instance}, which has \
             not advertised its address (is it running?)"
        )),
        Err(error) => Answer::unavailable(format!(
            "WfRun {id} is on partition {partition}, owned by instance {instance}, whose \
             address cannot be read: {error}"
        )),
    }
}

/// A name or id that can be part of a key, else `400`.
fn check(what: &'static str, value: &str) -> Step<()> {
    keys::check_part(what, value).map_err(|e| Answer::bad_request(e.to_string()))
}

/// A tenant id that can exist (a valid name, since it names topics), else `400`.
fn check_tenant(tenant: &str) -> Step<()> {
    if is_valid_name(tenant) {
        Ok(())
    } else {
        Err(Answer::bad_request(format!(
            "tenant id {tenant:?} is not a valid name (letters, digits, '.', '_' and '-')"
        )))
    }
}

/// A version number in a path, else `400`.
fn number(what: &str, text: &str) -> Step<i32> {
    text.parse()
        .map_err(|_| Answer::bad_request(format!("{what} must be a number, not {text:?}")))
}

#[cfg(test)]
mod tests;
