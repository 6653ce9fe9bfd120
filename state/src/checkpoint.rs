//! [`Checkpoint`], the named positions saved atomically with a task's state, and how it is
//! stored: one key in the database's internal meta column family.

use std::collections::BTreeMap;

/// Named `i64` positions saved atomically with state: e.g. `"input/core-cmd/3"` -> next
/// offset, `"changelog/counts"` -> changelog offset, `"epoch"` -> n. The names are the
/// runtime's business; this crate only stores them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub positions: BTreeMap<String, i64>,
}

impl Checkpoint {
    /// The position stored under `name`, if any.
    pub fn get(&self, name: &str) -> Option<i64> {
        self.positions.get(name).copied()
    }

    /// Sets the position stored under `name`, returning the previous one.
    pub fn set(&mut self, name: impl Into<String>, position: i64) -> Option<i64> {
        self.positions.insert(name.into(), position)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let stored = StoredCheckpoint {
            positions: self.positions.clone(),
        };
        prost::Message::encode_to_vec(&stored)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, prost::DecodeError> {
        let stored: StoredCheckpoint = prost::Message::decode(bytes)?;
        Ok(Self {
            positions: stored.positions,
        })
    }
}

/// Column family holding the checkpoint; never a store name.
pub(crate) const META_CF: &str = "__weir_meta";
/// Key of the checkpoint in [`META_CF`].
pub(crate) const CHECKPOINT_KEY: &[u8] = b"checkpoint";

/// The stored form of a checkpoint: a protobuf map, so fields can be added later.
/// Map entries are encoded in key order (a `BTreeMap`), so the bytes are deterministic.
#[derive(Clone, PartialEq, prost::Message)]
struct StoredCheckpoint {
    #[prost(btree_map = "string, int64", tag = "1")]
    positions: BTreeMap<String, i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() -> Result<(), prost::DecodeError> {
        let mut checkpoint = Checkpoint::default();
        checkpoint.set("input/core-cmd/3", 42);
        checkpoint.set("epoch", -1);
        assert_eq!(Checkpoint::decode(&checkpoint.encode())?, checkpoint);
        assert_eq!(Checkpoint::decode(&[])?, Checkpoint::default());
        Ok(())
    }
}
