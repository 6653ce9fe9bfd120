//! The benchmark's report: one row per figure with its limit or baseline, the ratio
//! between them and the target it should meet; printed as one table and written as JSON.
//! Everything here is pure (no I/O), so the table, the ratios and the percentiles are
//! unit-tested.

use serde_json::{Value, json};

/// What a figure is held against.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// `value / baseline` must be at least this (keyed-count against raw-copy).
    RatioAtLeast(f64),
    /// The value itself must be at most this, in the row's unit (p99 latency, RSS).
    AtMost(f64),
    /// Nothing to meet: a figure shown for context (the raw produce rate).
    None,
}

/// The limit or baseline a figure is compared with, measured in the same run.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    /// What it is (`raw-copy records/s`).
    pub name: String,
    pub value: f64,
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub workload: String,
    pub figure: String,
    /// `None` for a workload not measured (yet): the table says so, never a number.
    pub value: Option<f64>,
    pub unit: String,
    pub baseline: Option<Baseline>,
    pub target: Target,
    /// A remark printed after the table (why a figure is missing, how it was taken).
    pub note: Option<String>,
}

impl Row {
    /// A measured figure with no baseline and no target.
    pub fn measured(workload: &str, figure: &str, value: f64, unit: &str) -> Self {
        Self {
            workload: workload.to_owned(),
            figure: figure.to_owned(),
            value: Some(value),
            unit: unit.to_owned(),
            baseline: None,
            target: Target::None,
            note: None,
        }
    }

    /// A figure the benchmark does not measure yet, with the target it will have.
    pub fn not_measured(workload: &str, figure: &str, unit: &str, target: Target) -> Self {
        Self {
            workload: workload.to_owned(),
            figure: figure.to_owned(),
            value: None,
            unit: unit.to_owned(),
            baseline: None,
            target,
            note: None,
        }
    }

    /// The same row compared with `baseline`.
    pub fn against(mut self, name: &str, value: f64) -> Self {
        self.baseline = Some(Baseline {
            name: name.to_owned(),
            value,
        });
        self
    }

    /// The same row with a target.
    pub fn target(mut self, target: Target) -> Self {
        self.target = target;
        self
    }

    /// The same row with a note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// `value / baseline`, when both are known and the baseline is not zero.
    pub fn ratio(&self) -> Option<f64> {
        let value = self.value?;
        let baseline = self.baseline.as_ref()?.value;
        (baseline != 0.0).then(|| value / baseline)
    }

    /// Whether the target is met: `None` when there is no target or nothing to judge.
    pub fn met(&self) -> Option<bool> {
        match self.target {
            Target::None => None,
            Target::RatioAtLeast(min) => self.ratio().map(|ratio| ratio >= min),
            Target::AtMost(max) => self.value.map(|value| value <= max),
        }
    }

    fn target_text(&self) -> String {
        match self.target {
            Target::None => String::new(),
            Target::RatioAtLeast(min) => format!("ratio >= {}", percent(min)),
            Target::AtMost(max) => format!("<= {}", format_value(max, &self.unit)),
        }
    }
}

/// The whole run: how it ran and its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Which build ran: its directory name (`debug`, `release`, `bench-opt`).
    pub profile: String,
    pub quick: bool,
    /// Input records per workload.
    pub records: u64,
    /// Cores the machine offers (`available_parallelism`).
    pub cores: usize,
    /// The workloads `BENCH_WORKLOADS` selected; `None` when all ran.
    pub workloads: Option<Vec<&'static str>>,
    pub rows: Vec<Row>,
    /// Workloads that failed, each with its error; their rows are not measured.
    pub failures: Vec<String>,
}

impl Report {
    /// The table, with a header line naming the profile and notes under it.
    pub fn table(&self) -> String {
        let header = [
            "workload",
            "figure",
            "value",
            "limit or baseline",
            "ratio",
            "target",
            "met?",
        ];
        let cells: Vec<[String; 7]> = self.rows.iter().map(row_cells).collect();
        let mut widths = header.map(str::len);
        for row in &cells {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let mut out = format!(
            "weir bench: {} build, {} records per workload{}, {} cores{}\n\n",
            self.profile,
            thousands(self.records),
            if self.quick { " (QUICK)" } else { "" },
            self.cores,
            self.workloads
                .as_ref()
                .map_or_else(String::new, |names| format!(
                    "; only {} (BENCH_WORKLOADS)",
                    names.join(", ")
                ))
        );
        out.push_str(&line(&header.map(str::to_owned)));
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
        for row in &cells {
            out.push_str(&line(row));
        }
        let notes: Vec<String> = self
            .rows
            .iter()
            .filter_map(|row| {
                row.note
                    .as_ref()
                    .map(|note| format!("- {} {}: {note}", row.workload, row.figure))
            })
            .collect();
        if !notes.is_empty() {
            out.push('\n');
            out.push_str(&notes.join("\n"));
            out.push('\n');
        }
        if !self.failures.is_empty() {
            out.push('\n');
            for failure in &self.failures {
                out.push_str(&format!("FAILED {failure}\n"));
            }
        }
        out
    }

    /// The same as JSON: the run's settings and one object per row (value, ratio and
    /// met are `null` where the table says "not measured yet" or has no target).
    pub fn json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                json!({
                    "workload": row.workload,
                    "figure": row.figure,
                    "value": row.value,
                    "unit": row.unit,
                    "baseline": row.baseline.as_ref().map(|b| json!({"name": b.name, "value": b.value})),
                    "ratio": row.ratio(),
                    "target": row.target_text(),
                    "met": row.met(),
                    "note": row.note,
                })
            })
            .collect();
        json!({
            "profile": self.profile,
            "quick": self.quick,
            "records": self.records,
            "cores": self.cores,
            "workloads": self.workloads,
            "rows": rows,
            "failures": self.failures,
        })
    }
}

fn row_cells(row: &Row) -> [String; 7] {
    let value = match row.value {
        Some(value) => format_value(value, &row.unit),
        None => "not measured yet".to_owned(),
    };
    let baseline = row
        .baseline
        .as_ref()
        .map(|b| format!("{} ({})", format_value(b.value, &row.unit), b.name))
        .unwrap_or_default();
    let ratio = row.ratio().map(percent).unwrap_or_default();
    let met = match row.met() {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "",
    };
    [
        row.workload.clone(),
        row.figure.clone(),
        value,
        baseline,
        ratio,
        row.target_text(),
        met.to_owned(),
    ]
}

/// A value with its unit, to the precision that unit deserves.
pub fn format_value(value: f64, unit: &str) -> String {
    match unit {
        "rec/s" | "records" | "runs/s" | "cmd/s" => {
            // Rounded to a whole number first; these figures are far below 2^53.
            let whole = value.max(0.0).round() as u64;
            format!("{} {unit}", thousands(whole))
        }
        "ms" | "s" => format!("{value:.1} {unit}"),
        "MiB" => format!("{value:.0} {unit}"),
        "MB/s" => format!("{value:.1} {unit}"),
        _ => format!("{value:.2} {unit}"),
    }
}

/// `0.5` as `50%`.
pub fn percent(ratio: f64) -> String {
    format!("{:.0}%", ratio * 100.0)
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The `q`-quantile (0 < q <= 1) of `samples` by the nearest-rank method: the smallest
/// sample with at least `q` of all samples at or below it. `None` when empty.
pub fn percentile(samples: &mut [f64], q: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    // n * q is at most n here, far below 2^53.
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    Some(samples[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(rows: Vec<Row>) -> Report {
        Report {
            profile: "debug".to_owned(),
            quick: true,
            records: 100_000,
            cores: 2,
            workloads: None,
            rows,
            failures: Vec::new(),
        }
    }

    #[test]
    fn ratio_target_is_met_at_or_above_the_minimum() {
        let row = Row::measured("keyed-count", "records/s", 50.0, "rec/s")
            .against("raw-copy", 100.0)
            .target(Target::RatioAtLeast(0.5));
        assert_eq!(row.ratio(), Some(0.5));
        assert_eq!(row.met(), Some(true));
        let slower = Row {
            value: Some(49.0),
            ..row
        };
        assert_eq!(slower.met(), Some(false));
    }

    #[test]
    fn absolute_target_is_met_at_or_below_the_maximum() {
        let row = Row::measured("latency", "p99", 50.0, "ms").target(Target::AtMost(50.0));
        assert_eq!(row.ratio(), None);
        assert_eq!(row.met(), Some(true));
        assert_eq!(
            Row::measured("latency", "p99", 50.1, "ms")
                .target(Target::AtMost(50.0))
                .met(),
            Some(false)
        );
    }

    #[test]
    fn nothing_is_judged_without_a_value_a_baseline_or_a_target() {
        let unmeasured =
            Row::not_measured("restore", "records/s", "rec/s", Target::RatioAtLeast(0.5));
        assert_eq!(unmeasured.ratio(), None);
        assert_eq!(unmeasured.met(), None);
        let no_baseline =
            Row::measured("restore", "records/s", 10.0, "rec/s").target(Target::RatioAtLeast(0.5));
        assert_eq!(no_baseline.met(), None);
        let zero_baseline = Row::measured("x", "y", 1.0, "rec/s").against("z", 0.0);
        assert_eq!(zero_baseline.ratio(), None);
        assert_eq!(Row::measured("x", "y", 1.0, "rec/s").met(), None);
    }

    #[test]
    fn table_aligns_columns_and_says_what_was_not_measured() {
        let table = report(vec![
            Row::measured("raw-copy", "records/s", 123_456.4, "rec/s"),
            Row::measured("keyed-count", "records/s", 61_728.2, "rec/s")
                .against("raw-copy", 123_456.4)
                .target(Target::RatioAtLeast(0.5)),
            Row::not_measured("restore", "records/s", "rec/s", Target::RatioAtLeast(0.5))
                .note("workload 4 is not built yet"),
        ])
        .table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "weir bench: debug build, 100,000 records per workload (QUICK), 2 cores"
        );
        let widths: Vec<usize> = lines[2..7].iter().map(|l| l.len()).collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "{table}");
        assert!(lines[3].starts_with("|---"));
        assert!(lines[5].contains("61,728 rec/s"));
        assert!(lines[5].contains("123,456 rec/s (raw-copy)"));
        assert!(lines[5].contains("| 50%"));
        assert!(lines[5].contains("ratio >= 50%"));
        assert!(lines[5].contains("yes"));
        assert!(lines[6].contains("not measured yet"));
        assert!(!lines[6].contains("yes") && !lines[6].contains("NO"));
        assert_eq!(lines[8], "- restore records/s: workload 4 is not built yet");
    }

    #[test]
    fn failed_workloads_are_listed_under_the_table_and_in_the_json() {
        let mut failed = report(vec![
            Row::not_measured("orders", "WfRuns/s", "runs/s", Target::None)
                .note("FAILED: 3 of 5 orders COMPLETED"),
        ]);
        failed.failures = vec!["orders: 3 of 5 orders COMPLETED".to_owned()];
        let table = failed.table();
        assert!(
            table.ends_with("\nFAILED orders: 3 of 5 orders COMPLETED\n"),
            "{table}"
        );
        assert_eq!(
            failed.json()["failures"][0],
            "orders: 3 of 5 orders COMPLETED"
        );
    }

    #[test]
    fn json_holds_every_row_with_nulls_for_what_is_unknown() {
        let json = report(vec![
            Row::measured("latency", "p99", 12.5, "ms").target(Target::AtMost(50.0)),
            Row::not_measured("orders", "WfRuns/s", "rec/s", Target::None),
        ])
        .json();
        assert_eq!(json["profile"], "debug");
        assert_eq!(json["rows"][0]["value"], 12.5);
        assert_eq!(json["rows"][0]["met"], true);
        assert_eq!(json["rows"][0]["target"], "<= 50.0 ms");
        assert!(json["rows"][1]["value"].is_null());
        assert!(json["rows"][1]["met"].is_null());
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let mut samples: Vec<f64> = (1..=1000).map(f64::from).rev().collect();
        assert_eq!(percentile(&mut samples, 0.5), Some(500.0));
        assert_eq!(percentile(&mut samples, 0.99), Some(990.0));
        assert_eq!(percentile(&mut samples, 0.999), Some(999.0));
        assert_eq!(percentile(&mut samples, 1.0), Some(1000.0));
        assert_eq!(percentile(&mut [7.0], 0.999), Some(7.0));
        assert_eq!(percentile(&mut [], 0.5), None);
        let mut few = [3.0, 1.0, 2.0];
        assert_eq!(percentile(&mut few, 0.5), Some(2.0));
    }

    #[test]
    fn numbers_are_grouped_and_rounded_by_unit() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(format_value(1234.6, "rec/s"), "1,235 rec/s");
        assert_eq!(format_value(3.26, "ms"), "3.3 ms");
        assert_eq!(format_value(1024.4, "MiB"), "1024 MiB");
        assert_eq!(format_value(4.26, "MB/s"), "4.3 MB/s");
        assert_eq!(format_value(61.4, "runs/s"), "61 runs/s");
        assert_eq!(format_value(1491.0, "cmd/s"), "1,491 cmd/s");
        assert_eq!(percent(0.504), "50%");
    }
}
