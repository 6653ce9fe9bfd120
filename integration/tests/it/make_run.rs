//! `make run`'s script, `scripts/run-orders.sh`, with two instances and
//! `LHS_METRICS_PORT`: instance i serves `/metrics` and the queries on the base port plus
//! i and advertises that port for queries, the script prints both, and the orders
//! complete.

use std::net::TcpListener;
use std::time::Duration;

use weir_integration::TestNamespace;
use weir_integration::broker::free_port;
use weir_integration::process::run_script;

const INSTANCES: u16 = 2;
const ORDERS: usize = 10;
/// Generous: two servers start and ten orders run on a shared two-core machine.
const RUN_WAIT: Duration = Duration::from_secs(300);

/// A free port whose successors, up to one per instance, are free too when looked at
/// (the script's servers bind them a moment later).
fn free_ports() -> u16 {
    loop {
        let base = free_port().unwrap_or_else(|e| panic!("{e}"));
        let rest_free = (1..INSTANCES).all(|i| {
            base.checked_add(i)
                .is_some_and(|port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        });
        if rest_free {
            return base;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn make_run_serves_each_instance_on_the_base_port_plus_its_id() {
    let ns = TestNamespace::new("make-run").await;
    let cache = tempfile::tempdir().expect("cache dir");
    let base = free_ports();
    let mut env = ns.env();
    env.extend([
        ("LHS_INSTANCE_COUNT".to_owned(), INSTANCES.to_string()),
        ("LHS_METRICS_PORT".to_owned(), base.to_string()),
        ("ORDERS".to_owned(), ORDERS.to_string()),
    ]);
    let stdout = run_script(
        "run-orders.sh",
        &[("weir-processor", "weir"), ("weir-examples", "orders")],
        &env,
        cache.path(),
        RUN_WAIT,
    )
    .await;
    for id in 0..INSTANCES {
        let port = base + id;
        let printed = format!(
            "weir server {id}/{INSTANCES} metrics at http://127.0.0.1:{port}/metrics, \
             queries at http://127.0.0.1:{port}\n"
        );
        assert!(stdout.contains(&printed), "no {printed:?} in:\n{stdout}");
        let log = cache.path().join(format!("run/server-{id}.log"));
        let log = std::fs::read_to_string(&log)
            .unwrap_or_else(|e| panic!("reading {}: {e}", log.display()));
        let serving = format!("weir server http on 0.0.0.0:{port} (/metrics)");
        assert!(
            log.contains(&serving),
            "no {serving:?} in instance {id}'s log:\n{log}"
        );
    }
    let completed = format!("{ORDERS}/{ORDERS} orders COMPLETED");
    assert!(
        stdout.contains(&completed),
        "no {completed:?} in:\n{stdout}"
    );
}
