//! `make run-flows`: its script, `scripts/run-flows.sh` (`weir flows plan`, the example's
//! `flows demo`, `weir table scan`), run whole against the test broker. The demo checks
//! its own tables before it prints them; this test checks what it prints: the generator
//! was still producing when the flows were applied and after, and the table counts
//! agree with what was produced.

use std::time::Duration;

use weir_integration::TestNamespace;
use weir_integration::process::run_script;

/// The whole script: a plan, the demo's stages (each bounded by a minute), a scan.
const RUN_WAIT: Duration = Duration::from_secs(600);

/// Distinct users of the demo's UserActivity 0.0 generator and of its 0.1 producer.
const USERS: u64 = 1_000;
const APP_USERS: u64 = 100;

/// The line of `out` that starts with `prefix`.
fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{out}"))
}

/// The number `text` starts with.
fn leading_number(text: &str) -> u64 {
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("{text:?} does not start with a number"))
}

/// The number after `prefix` on the line that starts with it.
fn number_after(out: &str, prefix: &str) -> u64 {
    leading_number(&line(out, prefix)[prefix.len()..])
}

#[tokio::test]
async fn make_run_flows_applies_while_its_generator_produces_and_prints_agreeing_counts() {
    let ns = TestNamespace::new("make-run-flows").await;
    let cache = tempfile::tempdir().expect("cache dir");
    let records: u64 = 1_500;
    let mut env = ns.env();
    env.extend([
        ("FLOWS_RECORDS".to_owned(), records.to_string()),
        ("FLOWS_PARTITIONS".to_owned(), "2".to_owned()),
    ]);
    let out = run_script(
        "run-flows.sh",
        &[("weir-processor", "weir"), ("weir-examples", "flows")],
        &env,
        cache.path(),
        RUN_WAIT,
    )
    .await;

    // The generator went on through the apply and the load.
    let applied = line(&out, "applied examples/flows/user-activity.yaml while");
    let at_apply = leading_number(
        applied
            .split('(')
            .nth(1)
            .unwrap_or_else(|| panic!("no count in {applied:?}")),
    );
    assert!(at_apply > 0, "{applied}");
    let produced_line = line(&out, "produced ");
    assert!(
        produced_line.contains("UserActivity_0_0, "),
        "{produced_line}"
    );
    let produced = number_after(&out, "produced ");
    let after_apply = leading_number(
        produced_line
            .split(", ")
            .nth(1)
            .unwrap_or_else(|| panic!("no after-apply count in {produced_line:?}")),
    );
    assert!(produced >= records, "{produced_line}");
    assert!(
        after_apply > 0,
        "still producing after the apply: {produced_line}"
    );

    // The counts: one row per user, the migration of every 0.0 user in 0.1 beside the
    // newer producer's users, whose records alone reach ParsedActivity.
    let loaded = number_after(&out, "initial load done: ");
    assert!(
        out.contains(&format!(
            "produced {} records to UserActivity_0_1\n",
            records / 2
        )),
        "{out}"
    );
    let table_0_0 = number_after(&out, "  UserActivity 0.0: ");
    let table_0_1 = number_after(&out, "  UserActivity 0.1: ");
    let parsed = number_after(&out, "  ParsedActivity 0.1: ");
    assert_eq!(table_0_0, USERS.min(produced), "{out}");
    assert!(loaded <= table_0_0, "{out}");
    let app_users = APP_USERS.min(records / 2);
    assert_eq!(table_0_1, table_0_0 + app_users, "{out}");
    assert_eq!(parsed, app_users, "{out}");
    assert!(
        out.contains(&format!("each of the {table_0_0} UserActivity 0.0 users")),
        "{out}"
    );

    // The script's plan before, and its scan of three committed rows after.
    assert!(
        out.contains(
            "+ flow migrate-user-activity: migration UserActivity 0.0 -> UserActivity 0.1"
        ),
        "{out}"
    );
    let scan = out
        .split("weir table scan UserActivity 0.1 --limit 3:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no scan in:\n{out}"));
    let rows: Vec<serde_json::Value> = scan
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert_eq!(rows.len(), 3, "{scan}");
    assert!(
        rows.iter().all(|r| r["value"]["action"].is_string()),
        "{scan}"
    );
}
