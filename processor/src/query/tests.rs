//! The query routes served for real (an [`HttpServer`] on a free port) over task
//! databases written the way a task commits them: ownership, redirects, JSON, errors.

use std::collections::BTreeMap;
use std::path::Path;

use weir_proto::stored_metadata::Object;
use weir_proto::variable_value::Value as Kind;
use weir_proto::{
    LhStatus, StoredMetadata, TaskDef, TaskRun, TaskRunId, UserTaskRun, UserTaskRunId,
    UserTaskRunStatus, Variable, VariableId, VariableValue, WfRunId, WfSpec, WfSpecId,
};
use weir_state::{Checkpoint, StateOptions, StateResources, TaskDb};
use weir_topology::{PartitionAssignor, StaticAssignor};

use super::*;
use crate::http::HttpServer;

const PARTITIONS: &str = "4";

fn config(instance: u32) -> WeirConfig {
    let vars = BTreeMap::from([
        ("LHS_CLUSTER_PARTITIONS", PARTITIONS.to_owned()),
        ("LHS_INSTANCE_COUNT", "2".to_owned()),
        ("LHS_INSTANCE_ID", instance.to_string()),
    ]);
    WeirConfig::from_lookup(|name| vars.get(name).cloned()).expect("config")
}

fn resources() -> StateResources {
    StateResources::new(&StateOptions {
        block_cache_bytes: 8 << 20,
        write_buffer_bytes: 8 << 20,
        max_open_files: 64,
        value_cache_bytes: 1 << 20,
    })
}

/// Writes `entries` (store, key, value) and commits them, as a task's batch does.
fn commit(db: &mut TaskDb, entries: Vec<(&str, Vec<u8>, Vec<u8>)>) {
    let entries: Vec<_> = entries
        .into_iter()
        .map(|(store, key, value)| (db.store_id(store).expect("store"), key, value))
        .collect();
    let mut record = db.record();
    for (store, key, value) in entries {
        record.put_raw(store, &key, value.into());
    }
    record.finish().expect("finish");
    db.commit_pending(&Checkpoint::default()).expect("commit");
}

fn open(path: &Path, stores: &[&str], resources: &StateResources) -> TaskDb {
    TaskDb::open(path, stores, resources).expect("open")
}

/// The first order id whose run lives on a partition of `instance`.
fn id_on(queries: &Queries, instance: u32) -> String {
    (0..)
        .map(|n| format!("order-{n}"))
        .find(|id| queries.placement(id).instance == instance)
        .expect("an id")
}

#[test]
fn a_run_is_placed_by_the_partitioner_and_the_static_assignment() {
    let queries = Queries::new(
        &config(0),
        StateReaders::default(),
        Arc::new(InstanceDirectory::fixed(BTreeMap::new())),
    );
    for n in 0..100 {
        let id = format!("run-{n}");
        let placement = queries.placement(&id);
        assert_eq!(placement.partition, partition_for_key(id.as_bytes(), 4));
        for instance in 0..2 {
            let assignor = StaticAssignor::new(instance, 2).expect("assignor");
            assert_eq!(
                assignor.owns(CORE, placement.partition),
                placement.instance == instance,
                "{id}: {placement:?}"
            );
        }
    }
}

/// GET without following redirects: status, `Location`, JSON body.
async fn get(base: &str, path: &str) -> (u16, Option<String>, Value) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = client
        .get(format!("{base}{path}"))
        .send()
        .await
        .expect("answer");
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned);
    let body = response.text().await.expect("body");
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, location, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_answer_owned_runs_redirect_others_and_name_what_is_missing() {
    let dir = tempfile::tempdir().expect("dir");
    let resources = resources();
    let readers = StateReaders::default();
    let directory = Arc::new(InstanceDirectory::fixed(BTreeMap::from([(
        1,
        "http://weir-1:9100".to_owned(),
    )])));
    let queries = Arc::new(Queries::new(&config(0), readers.clone(), directory));
    let mine = id_on(&queries, 0);
    let theirs = id_on(&queries, 1);
    let partition = queries.placement(&mine).partition;

    // The metadata replica: a TaskDef and two versions of a WfSpec, tenant acme.
    let mut metadata = open(
        &dir.path().join("global-metadata"),
        &["metadata"],
        &resources,
    );
    let stored = |object| StoredMetadata {
        object: Some(object),
    };
    let spec = |revision| WfSpec {
        id: Some(WfSpecId {
            name: "orders".to_owned(),
            major_version: 0,
            revision,
        }),
        ..WfSpec::default()
    };
    commit(
        &mut metadata,
        vec![
            (
                "metadata",
                keys::metadata("default", MetadataKind::TaskDef, "ship-item"),
                stored(Object::TaskDef(TaskDef {
                    name: "ship-item".to_owned(),
                    ..TaskDef::default()
                }))
                .encode_to_vec(),
            ),
            (
                "metadata",
                keys::wf_spec("default", "orders", 0, 0),
                stored(Object::WfSpec(spec(0))).encode_to_vec(),
            ),
            (
                "metadata",
                keys::wf_spec("default", "orders", 0, 1),
                stored(Object::WfSpec(spec(1))).encode_to_vec(),
            ),
        ],
    );
    readers.register_global(store_names::METADATA, metadata.reader());

    // The run's partition: the run, one TaskRun, one variable and one UserTaskRun.
    let stores = [
        store_names::WF_RUNS,
        store_names::NODE_RUNS,
        store_names::TASK_RUNS,
        store_names::VARIABLES,
        store_names::EXTERNAL_EVENTS,
        store_names::WORKFLOW_EVENTS,
        store_names::USER_TASK_RUNS,
    ];
    let mut core = open(
        &dir.path().join(format!("core-{partition}")),
        &stores,
        &resources,
    );
    let run_id = Some(WfRunId { id: mine.clone() });
    let run = WfRun {
        id: run_id.clone(),
        status: LhStatus::Completed as i32,
        ..WfRun::default()
    };
    let task = TaskRun {
        id: Some(TaskRunId {
            wf_run_id: run_id.clone(),
            task_guid: "0-1".to_owned(),
        }),
        task_def_name: "ship-item".to_owned(),
        ..TaskRun::default()
    };
    let variable = Variable {
        id: Some(VariableId {
            wf_run_id: run_id.clone(),
            thread_run_number: 0,
            name: "item-id".to_owned(),
        }),
        value: Some(VariableValue {
            value: Some(Kind::Str("item-1".to_owned())),
        }),
        ..Variable::default()
    };
    let user_task = UserTaskRun {
        id: Some(UserTaskRunId {
            wf_run_id: run_id.clone(),
            user_task_guid: "2-1".to_owned(),
        }),
        user_task_def_name: "approval".to_owned(),
        status: UserTaskRunStatus::Assigned as i32,
        user_id: Some("ana".to_owned()),
        ..UserTaskRun::default()
    };
    commit(
        &mut core,
        vec![
            (
                store_names::WF_RUNS,
                keys::wf_run("default", &mine),
                run.encode_to_vec(),
            ),
            (
                store_names::TASK_RUNS,
                keys::by_guid("default", &mine, "0-1"),
                task.encode_to_vec(),
            ),
            (
                store_names::VARIABLES,
                keys::variable("default", &mine, 0, "item-id"),
                variable.encode_to_vec(),
            ),
            (
                store_names::USER_TASK_RUNS,
                keys::by_guid("default", &mine, "2-1"),
                user_task.encode_to_vec(),
            ),
        ],
    );

    let server = HttpServer::serve(0, router(Arc::clone(&queries)))
        .await
        .expect("serve");
    let base = format!("http://127.0.0.1:{}", server.local_addr().port());
    let run_path = format!("/tenants/default/wf-runs/{mine}");

    // Owned, but the task is not ready: 503, never an answer from half a state.
    let (status, _, body) = get(&base, &run_path).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("partition {partition}"))),
        "{body}"
    );
    readers.register_task(CORE, partition, core.reader());

    let (status, _, body) = get(&base, &run_path).await;
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("COMPLETED")),
        "{body}"
    );
    assert_eq!(body["id"]["id"], json!(mine));
    let (status, _, body) = get(&base, &format!("{run_path}/task-runs")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["taskDefName"], "ship-item", "{body}");
    assert_eq!(body["results"].as_array().map(Vec::len), Some(1));
    let (status, _, body) = get(&base, &format!("{run_path}/task-runs/0-1")).await;
    assert_eq!(
        (status, &body["id"]["taskGuid"]),
        (200, &json!("0-1")),
        "{body}"
    );
    let (status, _, body) = get(&base, &format!("{run_path}/variables/item-id")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"], json!({"str": "item-1"}));
    let (status, _, body) = get(&base, &format!("{run_path}/user-task-runs")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"].as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(body["results"][0]["userTaskDefName"], "approval", "{body}");
    let (status, _, body) = get(&base, &format!("{run_path}/user-task-runs/2-1")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            &body["id"]["userTaskGuid"],
            &body["status"],
            &body["userId"]
        ),
        (&json!("2-1"), &json!("ASSIGNED"), &json!("ana")),
        "{body}"
    );
    assert_eq!(body["id"]["wfRunId"]["id"], json!(mine), "{body}");
    let (status, _, body) = get(&base, &format!("{run_path}/user-task-runs/9-9")).await;
    assert_eq!(status, 404, "{body}");
    let (status, _, body) = get(&base, &format!("{run_path}/external-events")).await;
    assert_eq!((status, body), (200, json!({"results": []})));
    let (status, _, body) = get(&base, &format!("{run_path}/variables/nothing")).await;
    assert_eq!(status, 404, "{body}");
    let (status, _, body) = get(&base, &format!("{run_path}/gadgets")).await;
    assert_eq!(status, 404, "{body}");

    // Not found: the run, or the tenant; a bad id or tenant is a bad request.
    let missing = format!("{mine}-missing");
    let missing = if queries.placement(&missing).instance == 0 {
        missing
    } else {
        format!("{mine}-gone")
    };
    if queries.placement(&missing).instance == 0 {
        let (status, _, body) = get(&base, &format!("/tenants/default/wf-runs/{missing}")).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(
            body["error"],
            json!(format!("WfRun {missing} not found in tenant default"))
        );
    }
    let (status, _, body) = get(&base, "/tenants/nobody/task-defs/ship-item").await;
    assert_eq!(
        (status, &body["error"]),
        (404, &json!("tenant nobody not found"))
    );
    let (status, _, body) = get(&base, "/tenants/default/wf-runs/a%00b").await;
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = get(&base, "/tenants/no%20way/wf-runs/x").await;
    assert_eq!(status, 400, "{body}");

    // Another instance's run: 307 to the owner's address for the same path.
    let path = format!("/tenants/default/wf-runs/{theirs}/variables");
    let (status, location, body) = get(&base, &path).await;
    assert_eq!(status, 307, "{body}");
    assert_eq!(location, Some(format!("http://weir-1:9100{path}")));
    assert_eq!(
        body["owner"],
        json!({"instance": 1, "address": "http://weir-1:9100"})
    );

    // Metadata, answered here.
    let (status, _, body) = get(&base, "/tenants/default/task-defs/ship-item").await;
    assert_eq!(
        (status, &body["name"]),
        (200, &json!("ship-item")),
        "{body}"
    );
    let (status, _, body) = get(&base, "/tenants/default/wf-specs/orders").await;
    assert_eq!(
        (status, &body["id"]["revision"]),
        (200, &json!(1)),
        "{body}"
    );
    let (status, _, body) = get(&base, "/tenants/default/wf-specs/orders/0/0").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["id"].get("revision").is_none(), "revision 0: {body}");
    let (status, _, body) = get(&base, "/tenants/default/wf-specs/orders/0/7").await;
    assert_eq!(status, 404, "{body}");
    let (status, _, body) = get(&base, "/tenants/default/wf-specs/orders/x/0").await;
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = get(&base, "/tenants/default/user-task-defs/approval").await;
    assert_eq!(status, 404, "{body}");
    let (status, _, body) = get(&base, "/tenants/default").await;
    assert_eq!((status, &body["id"]), (200, &json!("default")), "{body}");

    // A task that closes is not read again.
    drop(core);
    let (status, _, body) = get(&base, &run_path).await;
    assert_eq!(status, 503, "{body}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_that_never_advertised_is_named_in_a_503() {
    let queries = Arc::new(Queries::new(
        &config(0),
        StateReaders::default(),
        Arc::new(InstanceDirectory::fixed(BTreeMap::new())),
    ));
    let theirs = id_on(&queries, 1);
    let server = HttpServer::serve(0, router(Arc::clone(&queries)))
        .await
        .expect("serve");
    let base = format!("http://127.0.0.1:{}", server.local_addr().port());
    let (status, location, body) = get(&base, &format!("/tenants/default/wf-runs/{theirs}")).await;
    assert_eq!((status, location), (503, None), "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("owned by instance 1")),
        "{body}"
    );
    server.shutdown().await;
}
