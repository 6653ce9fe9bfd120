//! Read-only queries end to end: two `weir server` instances share four partitions and
//! serve HTTP on ports they pick, advertising `http://127.0.0.1:{port}`. Orders run to
//! the end; then, for a run on each instance's partitions, the other instance answers
//! `307` to the owner for the run and each of its object routes, and following it gives
//! the run as JSON, COMPLETED, with the expected variables, its three task runs and its
//! delivery event. Either instance answers metadata, an unknown run is a `404` from its
//! owner, and `weir get` asked through the non-owner prints the run.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use weir_examples::orders;
use weir_integration::WeirProcess;
use weir_processor::client::WeirClient;
use weir_processor::query::render;
use weir_processor::topics::partition_for_key;
use weir_proto::LhStatus;

use crate::cluster::{Cluster, START_WAIT, stop_server};

const TENANT: &str = "default";
const PREFIX: &str = "query-order";
const ORDERS: usize = 12;
const PARTITIONS: i32 = 4;
const WAIT: Duration = Duration::from_secs(120);
const QUERIES_LINE: &str = "weir server queries at ";

/// Starts instance `id` of two with its own state directory and an HTTP port it picks,
/// and returns it with its advertised base URL.
async fn start_instance(cluster: &Cluster, id: u32) -> (WeirProcess, String) {
    let mut env = cluster.env().to_vec();
    let state = cluster.state_dir().join(format!("instance-{id}"));
    for (name, value) in [
        ("LHS_INSTANCE_ID", id.to_string()),
        ("LHS_STATE_DIR", state.display().to_string()),
        ("LHS_METRICS_PORT", "0".to_owned()),
        ("LHS_ADVERTISED_HTTP", "http://127.0.0.1:{port}".to_owned()),
    ] {
        env.push((name.to_owned(), value));
    }
    let mut server = WeirProcess::start(&format!("queries-server-{id}"), &["server"], &env);
    let out = server
        .wait_for_stdout(START_WAIT, "the server's running line", |out| {
            out.contains("weir server running tasks ")
        })
        .await;
    assert!(out.contains("weir server http on "), "{out}");
    let base = out
        .lines()
        .find_map(|line| line.strip_prefix(QUERIES_LINE))
        .unwrap_or_else(|| panic!("no `{QUERIES_LINE}` line in {out:?}"))
        .trim()
        .to_owned();
    (server, base)
}

/// `GET url` without following redirects: status, `Location` and the JSON body.
async fn get(url: &str) -> (u16, Option<String>, Value) {
    let uri: hyper::Uri = url.parse().unwrap_or_else(|e| panic!("{url}: {e}"));
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = tokio::time::timeout(Duration::from_secs(10), client.get(uri))
        .await
        .unwrap_or_else(|_| panic!("GET {url}: no answer"))
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned);
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .to_bytes();
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("GET {url}: {e}: {}", String::from_utf8_lossy(&body)));
    (status, location, json)
}

/// `GET url`, following one redirect, which must point at `owner`.
async fn get_via(url: &str, owner: &str) -> (u16, Value) {
    let (status, location, body) = get(url).await;
    if status != 307 {
        return (status, body);
    }
    let location = location.unwrap_or_else(|| panic!("a 307 without Location: {body}"));
    assert!(location.starts_with(owner), "{location} is not on {owner}");
    let (status, _, body) = get(&location).await;
    (status, body)
}

/// The partition's owner: instance `p % 2`.
fn owner_of(id: &str) -> usize {
    (partition_for_key(id.as_bytes(), PARTITIONS) % 2) as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_instance_answers_queries_by_sending_clients_to_the_owner() {
    let partitions = PARTITIONS.to_string();
    let cluster = Cluster::with_env(
        "queries",
        &[
            ("LHS_CLUSTER_PARTITIONS", partitions.as_str()),
            ("LHS_INSTANCE_COUNT", "2"),
        ],
    )
    .await;
    let (first, first_base) = start_instance(&cluster, 0).await;
    let (second, second_base) = start_instance(&cluster, 1).await;
    let bases = [first_base, second_base];

    // An order on each instance's partitions.
    let ids: Vec<String> = (0..ORDERS).map(|n| orders::order_id(PREFIX, n)).collect();
    let picked: Vec<usize> = (0..2)
        .map(|instance| {
            (0..ORDERS)
                .find(|&n| owner_of(&ids[n]) == instance)
                .unwrap_or_else(|| panic!("no order on instance {instance}: {ids:?}"))
        })
        .collect();

    let client = WeirClient::connect(&cluster.config).await.expect("client");
    orders::setup(&client, TENANT, &orders::NO_RETRY)
        .await
        .expect("metadata");
    let (workers, delivery) = orders::start_workers_and_delivery(&cluster.config, &client, TENANT)
        .await
        .expect("workers");
    orders::start_orders(&client, TENANT, PREFIX, ORDERS)
        .await
        .expect("starting orders");
    let runs = orders::wait_for_orders(&cluster.config, TENANT, PREFIX, ORDERS, WAIT, |_, _| {})
        .await
        .expect("waiting for orders");
    assert!(
        runs.values().all(|r| r.status() == LhStatus::Completed),
        "{runs:?}"
    );

    for &n in &picked {
        let id = &ids[n];
        let owner = owner_of(id);
        let other = 1 - owner;
        let run_path = format!("/tenants/{TENANT}/wf-runs/{id}");
        // The changelog is committed a moment before the task's RocksDB: wait for the
        // owner's store to show the end too.
        let deadline = Instant::now() + WAIT;
        loop {
            let (status, _, run) = get(&format!("{}{run_path}", bases[owner])).await;
            if status == 200 && run["status"] == "COMPLETED" {
                break;
            }
            assert!(Instant::now() < deadline, "{id}: {status} {run}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // The non-owner sends the client to the owner, for the run and each route.
        for route in [
            "",
            "/task-runs",
            "/variables",
            "/external-events",
            "/user-task-runs",
        ] {
            let path = format!("{run_path}{route}");
            let (status, location, body) = get(&format!("{}{path}", bases[other])).await;
            assert_eq!(status, 307, "{path} on instance {other}: {body}");
            assert_eq!(location, Some(format!("{}{path}", bases[owner])), "{body}");
            assert_eq!(
                body["owner"],
                json!({"instance": owner, "address": bases[owner]}),
                "{body}"
            );
        }
        let (status, run) = get_via(&format!("{}{run_path}", bases[other]), &bases[owner]).await;
        assert_eq!(status, 200, "{run}");
        assert_eq!(
            (&run["id"]["id"], &run["status"]),
            (&json!(id), &json!("COMPLETED"))
        );
        assert_eq!(run["wfSpecId"]["name"], orders::WF_SPEC, "{run}");

        let (status, variables) = get_via(
            &format!("{}{run_path}/variables", bases[other]),
            &bases[owner],
        )
        .await;
        assert_eq!(status, 200, "{variables}");
        let found: Vec<(Value, Value)> = variables["results"]
            .as_array()
            .unwrap_or_else(|| panic!("{variables}"))
            .iter()
            .map(|v| (v["id"]["name"].clone(), v["value"].clone()))
            .collect();
        let expected: Vec<(Value, Value)> = orders::expected_variables(n)
            .iter()
            .map(|(name, value)| {
                (
                    json!(name),
                    render::message(value).expect("rendering a value"),
                )
            })
            .collect();
        for pair in &expected {
            assert!(found.contains(pair), "{pair:?} not in {found:?}");
        }
        let (_, one) = get_via(
            &format!("{}{run_path}/variables/order-status", bases[other]),
            &bases[owner],
        )
        .await;
        assert_eq!(one["value"], json!({"str": "COMPLETED"}), "{one}");

        let (status, tasks) = get_via(
            &format!("{}{run_path}/task-runs", bases[other]),
            &bases[owner],
        )
        .await;
        assert_eq!(status, 200, "{tasks}");
        let tasks = tasks["results"].as_array().cloned().unwrap_or_default();
        let mut names: Vec<&str> = tasks
            .iter()
            .filter_map(|t| t["taskDefName"].as_str())
            .collect();
        names.sort_unstable();
        let mut expected_names = orders::TASK_DEFS.to_vec();
        expected_names.sort_unstable();
        assert_eq!(names, expected_names, "{tasks:?}");
        assert!(
            tasks.iter().all(|t| t["status"] == "TASK_SUCCESS"),
            "{tasks:?}"
        );
        let (_, events) = get_via(
            &format!("{}{run_path}/external-events", bases[other]),
            &bases[owner],
        )
        .await;
        assert_eq!(
            events["results"].as_array().map(Vec::len),
            Some(1),
            "{events}"
        );
        let (_, user_tasks) = get_via(
            &format!("{}{run_path}/user-task-runs", bases[other]),
            &bases[owner],
        )
        .await;
        assert_eq!(user_tasks, json!({"results": []}));
    }

    // Metadata, from either instance's replica.
    for base in &bases {
        let (status, _, spec) = get(&format!("{base}/tenants/{TENANT}/wf-specs/orders")).await;
        assert_eq!(
            (status, &spec["id"]["name"]),
            (200, &json!("orders")),
            "{spec}"
        );
        for def in orders::TASK_DEFS {
            let (status, _, task_def) =
                get(&format!("{base}/tenants/{TENANT}/task-defs/{def}")).await;
            assert_eq!(
                (status, &task_def["name"]),
                (200, &json!(def)),
                "{task_def}"
            );
        }
        let (status, _, event_def) = get(&format!(
            "{base}/tenants/{TENANT}/external-event-defs/{}",
            orders::DELIVERED
        ))
        .await;
        assert_eq!(status, 200, "{event_def}");
        let (status, _, missing) = get(&format!("{base}/tenants/{TENANT}/task-defs/nope")).await;
        assert_eq!(status, 404, "{missing}");
    }

    // An unknown run: its owner says so, whoever is asked.
    let unknown = "query-order-unknown";
    let owner = owner_of(unknown);
    for base in &bases {
        let (status, body) = get_via(
            &format!("{base}/tenants/{TENANT}/wf-runs/{unknown}"),
            &bases[owner],
        )
        .await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(
            body["error"],
            json!(format!("WfRun {unknown} not found in tenant {TENANT}"))
        );
    }

    // `weir get` through instance 1, for instance 0's order: the run, printed.
    let id = &ids[picked[0]];
    let printed = WeirProcess::run_ok(
        "queries-get-wf-run",
        &["get", "wf-run", id, "--url", &bases[1]],
        cluster.env(),
        WAIT,
    )
    .await;
    let run: Value = serde_json::from_str(&printed).unwrap_or_else(|e| panic!("{e}: {printed}"));
    assert_eq!(
        (&run["id"]["id"], &run["status"]),
        (&json!(id), &json!("COMPLETED"))
    );
    let printed = WeirProcess::run_ok(
        "queries-get-task-def",
        &["get", "task-def", "ship-item", "--url", &bases[1]],
        cluster.env(),
        WAIT,
    )
    .await;
    assert!(printed.contains("\"name\": \"ship-item\""), "{printed}");
    let mut missing = WeirProcess::start(
        "queries-get-missing",
        &["get", "wf-run", unknown, "--url", &bases[1]],
        cluster.env(),
    );
    let status = missing.wait_for_exit(WAIT).await;
    assert_eq!(status.code(), Some(1), "{}", missing.stdout());
    let stderr = missing.stderr();
    assert!(
        stderr.contains("404") && stderr.contains(&format!("WfRun {unknown} not found")),
        "{stderr}"
    );

    let stats = workers.stop().await.expect("workers stop");
    assert!(stats.iter().all(|s| s.failed == 0), "{stats:?}");
    delivery.abort();
    stop_server(first).await;
    stop_server(second).await;
}
