//! Which instance runs which task. Behind one trait so that dynamic membership can
//! replace the static rule without touching tasks.

use std::fmt::Debug;

/// Decides whether this instance owns a task.
pub trait PartitionAssignor: Debug + Send + Sync {
    /// True when this instance should run partition `partition` of `subtopology`.
    fn owns(&self, subtopology: &str, partition: i32) -> bool;
}

/// `LHS_INSTANCE_ID` of `LHS_INSTANCE_COUNT` owns partition `p` when
/// `p % count == id`, for every sub-topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticAssignor {
    instance_id: u32,
    instance_count: u32,
}

impl StaticAssignor {
    /// The assignor of instance `instance_id` (from 0) out of `instance_count`.
    pub fn new(instance_id: u32, instance_count: u32) -> Result<Self, String> {
        if instance_count == 0 || instance_id >= instance_count {
            return Err(format!(
                "instance id {instance_id} must be below the instance count {instance_count}"
            ));
        }
        Ok(Self {
            instance_id,
            instance_count,
        })
    }
}

impl PartitionAssignor for StaticAssignor {
    fn owns(&self, _subtopology: &str, partition: i32) -> bool {
        u32::try_from(partition).is_ok_and(|p| p % self.instance_count == self.instance_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_has_exactly_one_owner() -> Result<(), String> {
        let assignors: Vec<StaticAssignor> = (0..3)
            .map(|id| StaticAssignor::new(id, 3))
            .collect::<Result<_, _>>()?;
        for partition in 0..12 {
            let owners = assignors
                .iter()
                .filter(|a| a.owns("core", partition))
                .count();
            assert_eq!(owners, 1, "partition {partition}");
        }
        assert!(assignors[1].owns("core", 4));
        Ok(())
    }

    #[test]
    fn bad_ids_are_refused() {
        assert!(StaticAssignor::new(2, 2).is_err());
        assert!(StaticAssignor::new(0, 0).is_err());
    }
}
