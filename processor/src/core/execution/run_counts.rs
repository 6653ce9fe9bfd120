//! The [`WF_RUNS`] gauge: how many WfRuns the tasks open in this instance hold, by
//! tenant and status.
//!
//! Each execution processor counts the runs of its own partition: from its `wf-runs`
//! store as restored when the task opens ([`RunCounts::load`]), then by the status
//! changes of every command it accepts ([`RunCounts::apply`]). What it added to the
//! gauge it takes back when it is dropped (its task stopped, failed or moved away).
//! So the gauge is the sum over the tasks open here, and it is right again after any
//! restart: a reopened task counts its committed store afresh. A change is counted
//! when its command is accepted, before its batch commits; if that batch is lost, the
//! task reopens from its last commit and counts again. Summed over instances, the
//! gauge counts every run once.

use std::collections::BTreeMap;

use bytes::Bytes;
use prost::Message;
use weir_proto::{LhStatus, WfRun};
use weir_topology::{InitContext, ProcessingError, StoreHandle};

use crate::metrics::WF_RUNS;

/// A WfRun's status before and after one command: `None` where there is no run (a new
/// run has none before, a deleted one none after).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatusChange {
    pub(crate) before: Option<LhStatus>,
    pub(crate) after: Option<LhStatus>,
}

/// The status field of a stored `WfRun` alone (the same field number), so counting the
/// store decodes nothing else.
#[derive(Clone, PartialEq, Message)]
struct WfRunStatus {
    #[prost(int32, tag = "3")]
    status: i32,
}

/// One partition's runs by tenant and status, as added to the gauge.
#[derive(Debug, Default)]
pub(crate) struct RunCounts {
    counts: BTreeMap<(String, LhStatus), i64>,
}

impl RunCounts {
    /// Counts every run in the task's `wf-runs` store (keys `{tenant}\0{id}\0`).
    pub(crate) fn load(
        ctx: &InitContext<'_>,
        store: &StoreHandle<WfRun>,
    ) -> Result<Self, ProcessingError> {
        let mut counts = Self::default();
        for (key, value) in ctx.scan_prefix_raw(store, &[])? {
            match read_entry(&key, &value) {
                Some((tenant, status)) => counts.add(tenant, status, 1),
                None => tracing::warn!(
                    partition = ctx.partition(),
                    key = %String::from_utf8_lossy(&key),
                    "a wf-runs entry does not read as a tenant's WfRun; not counted"
                ),
            }
        }
        Ok(counts)
    }

    /// Counts one accepted command's status changes of `tenant`'s runs.
    pub(crate) fn apply(&mut self, tenant: &str, changes: &[StatusChange]) {
        for change in changes {
            if let Some(before) = change.before {
                self.add(tenant, before, -1);
            }
            if let Some(after) = change.after {
                self.add(tenant, after, 1);
            }
        }
    }

    fn add(&mut self, tenant: &str, status: LhStatus, delta: i64) {
        *self.counts.entry((tenant.to_owned(), status)).or_default() += delta;
        let gauge = gauge(tenant, status);
        if delta >= 0 {
            gauge.increment(delta as f64);
        } else {
            gauge.decrement(-delta as f64);
        }
    }
}

impl Drop for RunCounts {
    fn drop(&mut self) {
        for ((tenant, status), &count) in &self.counts {
            gauge(tenant, *status).decrement(count as f64);
        }
    }
}

fn gauge(tenant: &str, status: LhStatus) -> metrics::Gauge {
    metrics::gauge!(WF_RUNS, "tenant" => tenant.to_owned(), "status" => status.as_str_name())
}

/// The tenant (the key's first part) and status of a `wf-runs` entry.
fn read_entry<'k>(key: &'k Bytes, value: &Bytes) -> Option<(&'k str, LhStatus)> {
    let tenant = key.split(|&b| b == 0).next()?;
    let status = WfRunStatus::decode(value.as_ref()).ok()?.status;
    Some((
        std::str::from_utf8(tenant).ok()?,
        LhStatus::try_from(status).ok()?,
    ))
}
