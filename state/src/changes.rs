//! [`Change`] and [`ChangeSet`]: what one record changed, in (store, key) order. The runtime
//! logs each change to the store's changelog.

use bytes::Bytes;

use crate::StoreId;

/// One key whose encoded bytes differ after a record from what they were before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub store: StoreId,
    pub key: Bytes,
    /// The bytes before the record (`None`: the key did not exist).
    pub previous: Option<Bytes>,
    /// The bytes after the record (`None`: the key was deleted).
    pub value: Option<Bytes>,
}

/// The changes of one record, sorted by (store, key) so their order never depends on the
/// order the processor wrote in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeSet {
    changes: Vec<Change>,
}

impl ChangeSet {
    /// Builds a change set from changes already sorted by (store, key) without duplicates.
    pub(crate) fn from_sorted(changes: Vec<Change>) -> Self {
        debug_assert!(
            changes
                .windows(2)
                .all(|w| (w[0].store, &w[0].key) < (w[1].store, &w[1].key))
        );
        Self { changes }
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.changes.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter()
    }

    pub fn into_vec(self) -> Vec<Change> {
        self.changes
    }
}

impl IntoIterator for ChangeSet {
    type Item = Change;
    type IntoIter = std::vec::IntoIter<Change>;

    fn into_iter(self) -> Self::IntoIter {
        self.changes.into_iter()
    }
}

impl<'a> IntoIterator for &'a ChangeSet {
    type Item = &'a Change;
    type IntoIter = std::slice::Iter<'a, Change>;

    fn into_iter(self) -> Self::IntoIter {
        self.changes.iter()
    }
}
