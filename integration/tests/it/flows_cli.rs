//! `weir flows plan` and `weir flows apply` against the real broker, on the example
//! manifest (its models renamed after the test's namespace, since flows topics carry no
//! cluster prefix): the plan lists the topics to create, apply creates them with the
//! partitions asked for, a second plan is empty, and a flow removed from the file
//! without `--allow-data-removal` keeps its topics and says so.

use std::time::Duration;

use weir_examples::flows_demo::MANIFEST;
use weir_integration::{TestNamespace, WeirProcess};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn plan_apply_and_keep_without_data_removal() {
    let ns = TestNamespace::new("flows-cli").await;
    let env = ns.env();
    let suffix: String = ns
        .cluster_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let ua = format!("UserActivity{suffix}");
    let pa = format!("ParsedActivity{suffix}");
    let text = MANIFEST
        .replace("UserActivity", &ua)
        .replace("ParsedActivity", &pa);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("flows.yaml");
    std::fs::write(&file, &text).expect("manifest written");
    let file = file.display().to_string();

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
        &env,
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
        &env,
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

    let again =
        WeirProcess::run_ok("flows-plan-again", &["flows", "plan", &file], &env, WAIT).await;
    assert_eq!(again.trim(), "No changes.");

    // The regular flow is the manifest's last entry: drop it.
    let cut = text
        .find("  - name: parse-activity")
        .expect("the flow is declared");
    std::fs::write(dir.path().join("flows.yaml"), &text[..cut]).expect("manifest rewritten");
    let plan =
        WeirProcess::run_ok("flows-plan-removal", &["flows", "plan", &file], &env, WAIT).await;
    assert!(plan.contains("- flow parse-activity"), "{plan}");
    for topic in [&parse_in, &parse_out] {
        assert!(
            plan.contains(&format!("= keep topic {topic}")),
            "{topic} not kept:\n{plan}"
        );
        assert!(!plan.contains(&format!("- topic {topic}")), "{plan}");
    }
    let applied = WeirProcess::run_ok(
        "flows-apply-removal",
        &["flows", "apply", &file],
        &env,
        WAIT,
    )
    .await;
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
    let last = WeirProcess::run_ok("flows-plan-last", &["flows", "plan", &file], &env, WAIT).await;
    assert!(!last.contains("- flow"), "the removal was stored:\n{last}");
}
