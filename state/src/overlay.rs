//! The overlay: changes of finished records that are not yet committed to RocksDB, per store,
//! and the merge of a stored key range with it. [`Pending`] stacks the open batch's
//! overlay on the frozen overlays of batches that are being committed, so the next
//! batch is processed while an earlier one's changelog writes are in flight.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use bytes::Bytes;

/// Pending changes per store index: `Some` is the new value, `None` a deletion.
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    stores: Vec<BTreeMap<Bytes, Option<Bytes>>>,
}

impl Overlay {
    pub(crate) fn new(stores: usize) -> Self {
        Self {
            stores: (0..stores).map(|_| BTreeMap::new()).collect(),
        }
    }

    /// The pending state of `key`: `None` if the overlay does not know it, `Some(None)` if
    /// it is deleted.
    pub(crate) fn get(&self, store: usize, key: &[u8]) -> Option<&Option<Bytes>> {
        self.stores[store].get(key)
    }

    pub(crate) fn insert(&mut self, store: usize, key: Bytes, value: Option<Bytes>) {
        self.stores[store].insert(key, value);
    }

    /// Number of pending keys over all stores.
    pub(crate) fn len(&self) -> usize {
        self.stores.iter().map(BTreeMap::len).sum()
    }

    pub(crate) fn clear(&mut self) {
        self.stores.iter_mut().for_each(BTreeMap::clear);
    }

    /// Every entry, per store index.
    pub(crate) fn into_stores(
        self,
    ) -> impl Iterator<Item = (usize, BTreeMap<Bytes, Option<Bytes>>)> {
        self.stores.into_iter().enumerate()
    }

    /// Pending entries per store index, each in key order.
    pub(crate) fn stores(&self) -> impl Iterator<Item = (usize, &BTreeMap<Bytes, Option<Bytes>>)> {
        self.stores.iter().enumerate()
    }

    /// Pending entries of `store` with `lower <= key < upper` (no upper bound if `None`).
    pub(crate) fn range<'a>(
        &'a self,
        store: usize,
        lower: &[u8],
        upper: Option<&[u8]>,
    ) -> impl Iterator<Item = (&'a Bytes, &'a Option<Bytes>)> {
        self.stores[store].range::<[u8], _>(key_bounds(lower, upper))
    }
}

/// Every change not yet in RocksDB: the open batch's overlay over the frozen overlays
/// of batches handed over for committing, which are written to RocksDB oldest first. A
/// read sees the newest layer that knows the key.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    open: Overlay,
    /// Oldest first.
    frozen: VecDeque<Overlay>,
}

impl Pending {
    pub(crate) fn new(stores: usize) -> Self {
        Self {
            open: Overlay::new(stores),
            frozen: VecDeque::new(),
        }
    }

    /// The pending state of `key` in the newest layer that knows it: `None` if none
    /// does, `Some(None)` if it is deleted.
    pub(crate) fn get(&self, store: usize, key: &[u8]) -> Option<&Option<Bytes>> {
        self.open.get(store, key).or_else(|| {
            self.frozen
                .iter()
                .rev()
                .find_map(|layer| layer.get(store, key))
        })
    }

    /// A finished record's change, into the open layer.
    pub(crate) fn insert(&mut self, store: usize, key: Bytes, value: Option<Bytes>) {
        self.open.insert(store, key, value);
    }

    /// Number of pending entries over all layers (a key changed by two batches counts
    /// twice).
    pub(crate) fn len(&self) -> usize {
        self.open.len() + self.frozen.iter().map(Overlay::len).sum::<usize>()
    }

    pub(crate) fn frozen_layers(&self) -> usize {
        self.frozen.len()
    }

    /// The open layer becomes the newest frozen one, returned; later changes go to a
    /// new open layer.
    pub(crate) fn freeze(&mut self) -> &Overlay {
        let stores = self.open.stores.len();
        let frozen = std::mem::replace(&mut self.open, Overlay::new(stores));
        self.frozen.push_back(frozen);
        &self.frozen[self.frozen.len() - 1]
    }

    /// The oldest frozen layer, the next to be written to RocksDB.
    pub(crate) fn oldest_frozen(&self) -> Option<&Overlay> {
        self.frozen.front()
    }

    /// Removes the oldest frozen layer once RocksDB holds it.
    pub(crate) fn pop_oldest_frozen(&mut self) -> Option<Overlay> {
        self.frozen.pop_front()
    }

    pub(crate) fn clear(&mut self) {
        self.open.clear();
        self.frozen.clear();
    }

    /// Merges stored entries of `store` in `[lower, upper)` (in key order) with every
    /// layer, oldest first, so the newest change of each key wins.
    pub(crate) fn merge_range<E>(
        &self,
        stored: impl Iterator<Item = Result<(Bytes, Bytes), E>>,
        store: usize,
        lower: &[u8],
        upper: Option<&[u8]>,
    ) -> Result<Vec<(Bytes, Bytes)>, E> {
        // The open layer is always last, so the chain is never empty.
        let mut layers = self.frozen.iter().chain([&self.open]);
        let oldest = layers.next().unwrap_or(&self.open);
        let mut merged = merge_live(stored, oldest.range(store, lower, upper))?;
        for layer in layers {
            merged = merge_live(merged.into_iter().map(Ok), layer.range(store, lower, upper))?;
        }
        Ok(merged)
    }
}

/// Bounds for a `BTreeMap<Bytes, _>` range; callers make sure `lower < upper`.
pub(crate) fn key_bounds<'a>(
    lower: &'a [u8],
    upper: Option<&'a [u8]>,
) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    (
        Bound::Included(lower),
        upper.map_or(Bound::Unbounded, Bound::Excluded),
    )
}

/// Merges stored entries (in key order) with pending ones (in key order): a pending value
/// replaces the stored one, a pending deletion hides it. Returns the live entries in key order.
pub(crate) fn merge_live<'a, E>(
    stored: impl Iterator<Item = Result<(Bytes, Bytes), E>>,
    pending: impl Iterator<Item = (&'a Bytes, &'a Option<Bytes>)>,
) -> Result<Vec<(Bytes, Bytes)>, E> {
    let mut out = Vec::new();
    let mut pending = pending.peekable();
    for entry in stored {
        let (key, value) = entry?;
        while let Some((k, v)) = pending.next_if(|(k, _)| **k < key) {
            if let Some(v) = v {
                out.push((k.clone(), v.clone()));
            }
        }
        match pending.next_if(|(k, _)| **k == key) {
            Some((_, Some(v))) => out.push((key, v.clone())),
            Some((_, None)) => {}
            None => out.push((key, value)),
        }
    }
    out.extend(pending.filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone()))));
    Ok(out)
}

/// The smallest key greater than every key starting with `prefix`, or `None` if there is
/// none (empty prefix, or all bytes 0xff).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn merge_applies_pending_values_and_deletions_in_order() -> Result<(), Infallible> {
        let stored = [("a", "1"), ("c", "3"), ("e", "5"), ("g", "7")]
            .map(|(k, v)| Ok::<_, Infallible>((b(k), b(v))));
        let pending: BTreeMap<Bytes, Option<Bytes>> = [
            ("b", Some("2")),
            ("c", None),
            ("d", None),
            ("e", Some("55")),
            ("h", Some("8")),
        ]
        .into_iter()
        .map(|(k, v)| (b(k), v.map(b)))
        .collect();
        let merged = merge_live(stored.into_iter(), pending.iter())?;
        let expected: Vec<(Bytes, Bytes)> =
            [("a", "1"), ("b", "2"), ("e", "55"), ("g", "7"), ("h", "8")]
                .map(|(k, v)| (b(k), b(v)))
                .into();
        assert_eq!(merged, expected);
        Ok(())
    }

    #[test]
    fn prefix_end_carries_over_0xff() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }
}
