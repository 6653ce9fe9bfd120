//! The overlay: changes of finished records that are not yet committed to RocksDB, per store,
//! and the merge of a stored key range with it.

use std::collections::BTreeMap;
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

    /// Takes every pending entry, per store index, leaving the overlay empty.
    pub(crate) fn drain(
        &mut self,
    ) -> impl Iterator<Item = (usize, BTreeMap<Bytes, Option<Bytes>>)> {
        let emptied = (0..self.stores.len()).map(|_| BTreeMap::new()).collect();
        std::mem::replace(&mut self.stores, emptied)
            .into_iter()
            .enumerate()
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
