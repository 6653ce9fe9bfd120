//! Timer keys: timers live in each task's timer store, keyed so that a range scan up to
//! "now" returns exactly the due ones in firing order.
//!
//! A due timer is not run in place: the runtime marks it fired and produces its record
//! to the task's own input partition, so processing stays a replayable function of the
//! input log. The entry is removed when that record is processed, which makes a
//! redelivered timer record (at-least-once output) a no-op.

/// Length of a timer key: fire time, scheduling offset, sequence within the record.
pub(crate) const TIMER_KEY_LEN: usize = 20;

/// The store key of a timer: big-endian, sign-flipped fire time (so negative times sort
/// first), then the scheduling record's offset, then its sequence number.
pub(crate) fn timer_key(fire_at_ms: i64, offset: i64, sequence: u32) -> [u8; TIMER_KEY_LEN] {
    let mut key = [0u8; TIMER_KEY_LEN];
    key[..8].copy_from_slice(&order_preserving(fire_at_ms).to_be_bytes());
    key[8..16].copy_from_slice(&order_preserving(offset).to_be_bytes());
    key[16..].copy_from_slice(&sequence.to_be_bytes());
    key
}

/// The exclusive upper bound of the timers due at `now_ms` (those with fire time <= now).
pub(crate) fn due_before(now_ms: i64) -> [u8; 8] {
    order_preserving(now_ms.saturating_add(1)).to_be_bytes()
}

fn order_preserving(value: i64) -> u64 {
    (value as u64) ^ (1 << 63)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_fire_time_then_offset_then_sequence() {
        let mut keys = vec![
            timer_key(2_000, 1, 0),
            timer_key(-5, 9, 0),
            timer_key(1_000, 7, 1),
            timer_key(1_000, 7, 0),
            timer_key(1_000, 3, 4),
        ];
        keys.sort();
        assert_eq!(
            keys,
            vec![
                timer_key(-5, 9, 0),
                timer_key(1_000, 3, 4),
                timer_key(1_000, 7, 0),
                timer_key(1_000, 7, 1),
                timer_key(2_000, 1, 0),
            ]
        );
    }

    #[test]
    fn due_bound_includes_now_and_excludes_later() {
        let bound = due_before(1_000);
        assert!(timer_key(1_000, i64::MAX, u32::MAX).as_slice() < bound.as_slice());
        assert!(timer_key(1_001, 0, 0).as_slice() >= bound.as_slice());
    }
}
