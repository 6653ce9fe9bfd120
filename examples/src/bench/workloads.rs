//! Which workloads one run measures: all of them by default, or the ones
//! `BENCH_WORKLOADS` names (to profile or compare one of them without waiting for the
//! rest). Memory is not selected on its own: it is read from the keyed-count and
//! restore processes of whichever of those run.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// A workload of the bench, in the order a run measures them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Workload {
    Orders,
    RawCopy,
    KeyedCount,
    Latency,
    Restore,
}

impl Workload {
    pub const ALL: [Self; 5] = [
        Self::Orders,
        Self::RawCopy,
        Self::KeyedCount,
        Self::Latency,
        Self::Restore,
    ];

    /// Its name in `BENCH_WORKLOADS` and in the table.
    pub fn name(self) -> &'static str {
        match self {
            Self::Orders => "orders",
            Self::RawCopy => "raw-copy",
            Self::KeyedCount => "keyed-count",
            Self::Latency => "latency",
            Self::Restore => "restore",
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|workload| workload.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|w| w.name()).collect();
                format!("unknown workload {name:?}; use {}", names.join(", "))
            })
    }
}

/// The workloads of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection(BTreeSet<Workload>);

impl Selection {
    pub fn all() -> Self {
        Self(Workload::ALL.into_iter().collect())
    }

    /// Parses a comma-separated list such as `keyed-count,latency`. The latency
    /// workload feeds the keyed-count processor (at half the rate it measured, unless
    /// `BENCH_LATENCY_RATE` fixes one), so it needs keyed-count.
    pub fn parse(list: &str) -> Result<Self, String> {
        let workloads: BTreeSet<Workload> = list
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        if workloads.is_empty() {
            return Err("names no workload".to_owned());
        }
        if workloads.contains(&Workload::Latency) && !workloads.contains(&Workload::KeyedCount) {
            return Err("latency runs at half keyed-count's rate: add keyed-count".to_owned());
        }
        Ok(Self(workloads))
    }

    pub fn runs(&self, workload: Workload) -> bool {
        self.0.contains(&workload)
    }

    pub fn is_all(&self) -> bool {
        self.0.len() == Workload::ALL.len()
    }

    /// The names, in run order.
    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|workload| workload.name()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for workload in Workload::ALL {
            assert_eq!(workload.name().parse(), Ok(workload));
            assert_eq!(workload.to_string(), workload.name());
        }
    }

    #[test]
    fn a_list_selects_its_workloads_in_run_order() {
        let selection = Selection::parse(" latency, keyed-count ,").expect("a valid list");
        assert_eq!(selection.names(), vec!["keyed-count", "latency"]);
        assert!(selection.runs(Workload::Latency));
        assert!(!selection.runs(Workload::Restore));
        assert!(!selection.is_all());
        assert!(Selection::all().is_all());
        assert_eq!(
            Selection::parse("restore,latency,raw-copy,orders,keyed-count"),
            Ok(Selection::all())
        );
    }

    #[test]
    fn unknown_empty_and_unmet_lists_are_refused() {
        assert_eq!(
            Selection::parse("keyed-count,memory"),
            Err(
                "unknown workload \"memory\"; use orders, raw-copy, keyed-count, latency, restore"
                    .to_owned()
            )
        );
        assert_eq!(Selection::parse(" , "), Err("names no workload".to_owned()));
        assert!(
            Selection::parse("latency")
                .expect_err("latency alone")
                .contains("keyed-count")
        );
    }
}
