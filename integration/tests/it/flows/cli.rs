//! The flows commands of `weir` against the real broker, on the example manifest: `weir
//! flows plan` lists the topics to create, `apply` creates them with the partitions
//! asked for, a second plan is empty, and a flow removed from the file without
//! `--allow-data-removal` keeps its topics and says so; `weir table get|scan` print a
//! table's committed rows.

use weir_examples::flows_demo::{self};
use weir_integration::WeirProcess;

use super::{FlowsCluster, START_WAIT as WAIT};
use crate::cluster::stop_server;

#[tokio::test]
async fn plan_apply_and_keep_without_data_removal() {
    let flows = FlowsCluster::new("flows-cli").await;
    let ns = &flows.cluster.ns;
    let env = flows.cluster.env();
    let (ua, pa) = (&flows.user_activity, &flows.parsed_activity);
    let text = flows.manifest();
    let file = flows.write("flows.yaml", &text);

    let parse_in = format!("{ua}_0_1_{pa}_0_1_input");
    let parse_out = format!("{ua}_0_1_{pa}_0_1_output");
    let created = [
        format!("{ua}_0_0"),
        format!("{ua}_0_1"),
        format!("{pa}_0_1"),
        format!("{ua}_0_0_{ua}_0_1_input"),
        format!("{ua}_0_0_{ua}_0_1_output"),
        parse_in.clone(),
        parse_out.clone(),
    ];

    let plan = WeirProcess::run_ok(
        "flows-plan",
        &["flows", "plan", &file, "--partitions", "2"],
        env,
        WAIT,
    )
    .await;
    for topic in &created {
        assert!(
            plan.contains(&format!("+ topic {topic} (2 partitions)")),
            "{topic} missing from the plan:\n{plan}"
        );
    }
    assert!(plan.contains("+ flow parse-activity"), "{plan}");

    let applied = WeirProcess::run_ok(
        "flows-apply",
        &["flows", "apply", &file, "--partitions", "2"],
        env,
        WAIT,
    )
    .await;
    assert!(
        applied.contains(&format!(
            "stored the manifest in {}",
            ns.topic("flows-manifest")
        )),
        "{applied}"
    );
    let described = ns
        .admin()
        .await
        .describe_topics(&created)
        .await
        .expect("created topics exist");
    for topic in &described {
        assert_eq!(topic.partitions.len(), 2, "{}", topic.name);
    }

    let again = WeirProcess::run_ok("flows-plan-again", &["flows", "plan", &file], env, WAIT).await;
    assert_eq!(again.trim(), "No changes.");

    // The regular flow is the manifest's last entry: drop it.
    let cut = text
        .find("  - name: parse-activity")
        .expect("the flow is declared");
    flows.write("flows.yaml", &text[..cut]);
    let plan =
        WeirProcess::run_ok("flows-plan-removal", &["flows", "plan", &file], env, WAIT).await;
    assert!(plan.contains("- flow parse-activity"), "{plan}");
    for topic in [&parse_in, &parse_out] {
        assert!(
            plan.contains(&format!("= keep topic {topic}")),
            "{topic} not kept:\n{plan}"
        );
        assert!(!plan.contains(&format!("- topic {topic}")), "{plan}");
    }
    let applied =
        WeirProcess::run_ok("flows-apply-removal", &["flows", "apply", &file], env, WAIT).await;
    assert!(applied.contains("removed flow parse-activity"), "{applied}");
    assert!(
        applied.contains(&format!("kept topic {parse_in}")),
        "{applied}"
    );
    ns.admin()
        .await
        .describe_topics(&[parse_in, parse_out])
        .await
        .expect("the removed flow's topics are kept");
    let last = WeirProcess::run_ok("flows-plan-last", &["flows", "plan", &file], env, WAIT).await;
    assert!(!last.contains("- flow"), "the removal was stored:\n{last}");
}

#[tokio::test]
async fn table_get_and_scan_print_the_committed_rows() {
    let flows = FlowsCluster::new("flows-table").await;
    let env = flows.cluster.env();
    let file = flows.write("models.yaml", &flows.models_only());
    flows.apply(&file, 2).await;
    let running = flows.start_flows("flows-table", &file, &[]).await;

    let model = flows.model("UserActivity", 0);
    let records: Vec<_> = (0..50).map(|i| flows_demo::record(i, 10)).collect();
    let expected = flows_demo::latest_per_key(records.clone());
    flows.produce(&model, records, "records produced").await;
    flows
        .wait_for_tables(
            WAIT,
            "the table to hold the latest record per user",
            &[(&model, &expected)],
        )
        .await;

    let name = &flows.user_activity;
    let got = WeirProcess::run_ok(
        "table-get",
        &["table", "get", name, "0.0", "user-3"],
        env,
        WAIT,
    )
    .await;
    let row: serde_json::Value = serde_json::from_str(got.trim()).expect("one JSON line");
    assert_eq!(row["key"], "user-3");
    assert_eq!(row["value"], expected["user-3"]);
    assert_eq!(row["source_topic"], model.ingestion_topic());

    let scanned = WeirProcess::run_ok(
        "table-scan",
        &["table", "scan", name, "0.0", "--limit", "3"],
        env,
        WAIT,
    )
    .await;
    let keys: Vec<String> = scanned
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).expect("JSON lines");
            assert_eq!(row["value"], expected[row["key"].as_str().expect("key")]);
            row["key"].as_str().expect("key").to_owned()
        })
        .collect();
    assert_eq!(keys, ["user-0", "user-1", "user-2"]);

    let mut missing = WeirProcess::start(
        "table-get-missing",
        &["table", "get", name, "0.0", "nobody"],
        env,
    );
    assert!(!missing.wait_for_exit(WAIT).await.success());
    assert!(
        missing.stderr().contains(&format!(
            "no row with key \"nobody\" in table {}",
            model.table()
        )),
        "{}",
        missing.stderr()
    );
    let mut undeclared = WeirProcess::start(
        "table-scan-undeclared",
        &["table", "scan", name, "7.0"],
        env,
    );
    assert!(!undeclared.wait_for_exit(WAIT).await.success());
    assert!(
        undeclared.stderr().contains("has no changelog topic"),
        "{}",
        undeclared.stderr()
    );
    stop_server(running).await;
}
