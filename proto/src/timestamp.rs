//! Conversions between `prost_types::Timestamp` and milliseconds since the
//! Unix epoch. Pure arithmetic: nothing here reads the clock.

use prost_types::Timestamp;

const MILLIS_PER_SECOND: i64 = 1_000;
const NANOS_PER_MILLI: i64 = 1_000_000;

/// The timestamp `millis` milliseconds after the Unix epoch (before it, if
/// negative). The result is normalized: `nanos` is in `0..1_000_000_000`.
pub fn from_millis(millis: i64) -> Timestamp {
    let seconds = millis.div_euclid(MILLIS_PER_SECOND);
    let sub_millis = millis.rem_euclid(MILLIS_PER_SECOND);
    Timestamp {
        seconds,
        // `sub_millis` is in 0..1000, so the product fits in an i32.
        nanos: (sub_millis * NANOS_PER_MILLI) as i32,
    }
}

/// Milliseconds since the Unix epoch, rounded down to the millisecond.
/// Unnormalized input is normalized first; values beyond the `i64`
/// millisecond range saturate at `i64::MIN` or `i64::MAX`.
pub fn to_millis(timestamp: &Timestamp) -> i64 {
    let mut normalized = *timestamp;
    normalized.normalize();
    // After normalizing, nanos is in 0..1_000_000_000, so this floors.
    let sub_millis = i64::from(normalized.nanos) / NANOS_PER_MILLI;
    // i128 holds every i64 seconds value times 1000 without overflow.
    let millis =
        i128::from(normalized.seconds) * i128::from(MILLIS_PER_SECOND) + i128::from(sub_millis);
    i64::try_from(millis).unwrap_or(if millis < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_seconds() {
        let ts = from_millis(1_700_000_000_000);
        assert_eq!(
            ts,
            Timestamp {
                seconds: 1_700_000_000,
                nanos: 0
            }
        );
        assert_eq!(to_millis(&ts), 1_700_000_000_000);
    }

    #[test]
    fn sub_second_part_goes_to_nanos() {
        let ts = from_millis(1_234);
        assert_eq!(
            ts,
            Timestamp {
                seconds: 1,
                nanos: 234_000_000
            }
        );
        assert_eq!(to_millis(&ts), 1_234);
    }

    #[test]
    fn negative_millis_keep_nanos_positive() {
        let ts = from_millis(-1);
        assert_eq!(
            ts,
            Timestamp {
                seconds: -1,
                nanos: 999_000_000
            }
        );
        assert_eq!(to_millis(&ts), -1);
    }

    #[test]
    fn sub_millisecond_nanos_round_down() {
        let ts = Timestamp {
            seconds: 2,
            nanos: 1_999_999,
        };
        assert_eq!(to_millis(&ts), 2_001);
        let before_epoch = Timestamp {
            seconds: -1,
            nanos: 999_999_999,
        };
        assert_eq!(to_millis(&before_epoch), -1);
    }

    #[test]
    fn unnormalized_input_is_normalized() {
        let ts = Timestamp {
            seconds: 1,
            nanos: -500_000_000,
        };
        assert_eq!(to_millis(&ts), 500);
        let ts = Timestamp {
            seconds: 0,
            nanos: 1_500_000_000,
        };
        assert_eq!(to_millis(&ts), 1_500);
    }

    #[test]
    fn extremes_saturate() {
        let ts = Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        };
        assert_eq!(to_millis(&ts), i64::MAX);
        let ts = Timestamp {
            seconds: i64::MIN,
            nanos: 0,
        };
        assert_eq!(to_millis(&ts), i64::MIN);
    }

    #[test]
    fn round_trips_at_the_edges_of_the_range() {
        for millis in [i64::MIN, i64::MIN + 1, -1_001, 0, 999, i64::MAX] {
            assert_eq!(to_millis(&from_millis(millis)), millis, "{millis}");
        }
    }
}
