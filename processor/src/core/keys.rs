//! How the core's objects are keyed in their stores. Every key starts with the tenant,
//! so one tenant's scan can never reach another's objects; execution keys then carry
//! the WfRun id, so everything a run created shares one prefix and lives on the run's
//! partition. Parts are joined by a NUL byte, which no name or id may contain;
//! numbers are big-endian so keys sort in number order.

const SEPARATOR: u8 = 0;

/// The kinds of metadata object in the global metadata store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MetadataKind {
    Tenant,
    TaskDef,
    WfSpec,
    ExternalEventDef,
    WorkflowEventDef,
    UserTaskDef,
}

impl MetadataKind {
    /// The kind's name, as used in keys and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::TaskDef => "task-def",
            Self::WfSpec => "wf-spec",
            Self::ExternalEventDef => "external-event-def",
            Self::WorkflowEventDef => "workflow-event-def",
            Self::UserTaskDef => "user-task-def",
        }
    }
}

/// Why a name or id cannot be used in a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} {value:?} contains a NUL character")]
    Nul { what: &'static str, value: String },
}

/// Checks that `value` can be part of a key.
pub fn check_part(what: &'static str, value: &str) -> Result<(), KeyError> {
    if value.is_empty() {
        return Err(KeyError::Empty { what });
    }
    if value.as_bytes().contains(&SEPARATOR) {
        return Err(KeyError::Nul {
            what,
            value: value.to_owned(),
        });
    }
    Ok(())
}

fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut key = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for part in parts {
        key.extend_from_slice(part);
        key.push(SEPARATOR);
    }
    key
}

/// The key of a tenant-scoped metadata object other than a WfSpec version:
/// `{tenant}\0{kind}\0{name}\0`. A tenant's own entry uses its id as the name.
pub fn metadata(tenant: &str, kind: MetadataKind, name: &str) -> Vec<u8> {
    join(&[tenant.as_bytes(), kind.name().as_bytes(), name.as_bytes()])
}

/// The prefix of every version of one WfSpec.
pub fn wf_spec_versions(tenant: &str, name: &str) -> Vec<u8> {
    metadata(tenant, MetadataKind::WfSpec, name)
}

/// The key of one WfSpec version; versions of a name sort by (major, revision).
pub fn wf_spec(tenant: &str, name: &str, major_version: i32, revision: i32) -> Vec<u8> {
    let mut key = wf_spec_versions(tenant, name);
    key.extend_from_slice(&ordered(major_version));
    key.extend_from_slice(&ordered(revision));
    key
}

/// The prefix of every object of one kind in a tenant.
pub fn metadata_kind(tenant: &str, kind: MetadataKind) -> Vec<u8> {
    join(&[tenant.as_bytes(), kind.name().as_bytes()])
}

/// The prefix of every metadata object of a tenant.
pub fn tenant_prefix(tenant: &str) -> Vec<u8> {
    join(&[tenant.as_bytes()])
}

/// The prefix of everything a WfRun created, in any execution store; it is also the
/// key of the WfRun itself.
pub fn wf_run(tenant: &str, wf_run_id: &str) -> Vec<u8> {
    join(&[tenant.as_bytes(), wf_run_id.as_bytes()])
}

/// A NodeRun: the run's prefix, the thread number, the position.
pub fn node_run(tenant: &str, wf_run_id: &str, thread: i32, position: i32) -> Vec<u8> {
    let mut key = thread_prefix(tenant, wf_run_id, thread);
    key.extend_from_slice(&ordered(position));
    key
}

/// The prefix of every NodeRun (or Variable) of one thread.
pub fn thread_prefix(tenant: &str, wf_run_id: &str, thread: i32) -> Vec<u8> {
    let mut key = wf_run(tenant, wf_run_id);
    key.extend_from_slice(&ordered(thread));
    key
}

/// A Variable: the run's prefix, the thread number, the name.
pub fn variable(tenant: &str, wf_run_id: &str, thread: i32, name: &str) -> Vec<u8> {
    let mut key = thread_prefix(tenant, wf_run_id, thread);
    key.extend_from_slice(name.as_bytes());
    key
}

/// A TaskRun or a UserTaskRun: the run's prefix and the guid.
pub fn by_guid(tenant: &str, wf_run_id: &str, guid: &str) -> Vec<u8> {
    let mut key = wf_run(tenant, wf_run_id);
    key.extend_from_slice(guid.as_bytes());
    key
}

/// The prefix of a run's ExternalEvents (or WorkflowEvents) of one def.
pub fn events_of_def(tenant: &str, wf_run_id: &str, def: &str) -> Vec<u8> {
    let mut key = wf_run(tenant, wf_run_id);
    key.extend_from_slice(&join(&[def.as_bytes()]));
    key
}

/// An ExternalEvent: the def's prefix and the guid.
pub fn external_event(tenant: &str, wf_run_id: &str, def: &str, guid: &str) -> Vec<u8> {
    let mut key = events_of_def(tenant, wf_run_id, def);
    key.extend_from_slice(guid.as_bytes());
    key
}

/// A WorkflowEvent: the def's prefix and the number.
pub fn workflow_event(tenant: &str, wf_run_id: &str, def: &str, number: i32) -> Vec<u8> {
    let mut key = events_of_def(tenant, wf_run_id, def);
    key.extend_from_slice(&ordered(number));
    key
}

/// Big-endian with the sign bit flipped, so negative numbers sort first.
fn ordered(value: i32) -> [u8; 4] {
    ((value as u32) ^ (1 << 31)).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tenant_prefix_never_covers_another() {
        let acme = tenant_prefix("acme");
        assert!(!metadata("acme-2", MetadataKind::TaskDef, "x").starts_with(&acme));
        assert!(metadata("acme", MetadataKind::TaskDef, "x").starts_with(&acme));
        assert!(!wf_run("acme-2", "r").starts_with(&acme));
    }

    #[test]
    fn one_run_prefix_never_covers_another() {
        let run = wf_run("t", "order-1");
        assert!(!wf_run("t", "order-10").starts_with(&run));
        assert!(node_run("t", "order-1", 0, 3).starts_with(&run));
        assert!(!node_run("t", "order-10", 0, 3).starts_with(&run));
    }

    #[test]
    fn versions_and_positions_sort_numerically() {
        let mut versions = vec![
            wf_spec("t", "s", 1, 0),
            wf_spec("t", "s", 0, 10),
            wf_spec("t", "s", 0, 2),
        ];
        versions.sort();
        assert_eq!(
            versions,
            vec![
                wf_spec("t", "s", 0, 2),
                wf_spec("t", "s", 0, 10),
                wf_spec("t", "s", 1, 0)
            ]
        );
        assert!(node_run("t", "r", 0, 9) < node_run("t", "r", 0, 10));
        assert!(node_run("t", "r", 0, 300) < node_run("t", "r", 1, 0));
    }

    #[test]
    fn names_with_nul_or_nothing_are_refused() {
        assert!(check_part("WfRun id", "a\0b").is_err());
        assert!(check_part("WfRun id", "").is_err());
        assert!(check_part("WfRun id", "order-1").is_ok());
    }
}
