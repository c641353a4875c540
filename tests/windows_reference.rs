//! Every window kind against a brute-force reference, over random out-of-order input, at 1, 2
//! and 4 shards, including late rows (dropped and counted, or sent to a side output).
//!
//! Two regimes keep the expected output deterministic:
//! - several source splits, watermark delay >= the disorder: no row can be late, and every
//!   window containing a row is still open when the row arrives;
//! - one source split, any delay: the window subtasks see the split's exact sequence of rows
//!   and watermarks, so which rows are late is fixed; the reference replays that sequence.

mod common;

use common::reference::{events, reference, run_weir, split_into, time_window};
use common::Event;
use proptest::prelude::*;
use weir::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Several splits, no late rows: the result is the batch grouping of all rows.
    #[test]
    fn windows_match_reference_without_late_rows(
        spec in time_window(),
        input in events(400, 100),
        splits in 1usize..4,
        sizes in prop::collection::vec(1usize..50, 1..4),
    ) {
        let split_batches = split_into(&input, splits, &sizes);
        let all: Vec<Vec<Event>> = vec![input.clone()];
        let (expected, expected_late) = reference(spec, &all, 100);
        prop_assert!(expected_late.is_empty());
        for shards in [1, 2, 4] {
            let (rows, _, dropped, _) = run_weir(spec, &split_batches, 100, shards, false);
            prop_assert_eq!(&rows, &expected, "{:?} at {} shards", spec, shards);
            prop_assert_eq!(dropped, 0);
        }
    }

    /// One split, a watermark delay smaller than the disorder: late rows are dropped and
    /// counted, exactly as the reference says.
    #[test]
    fn late_rows_are_dropped_and_counted(
        spec in time_window(),
        input in events(400, 150),
        delay in 0i64..60,
        sizes in prop::collection::vec(1usize..40, 1..4),
    ) {
        let split_batches = split_into(&input, 1, &sizes);
        let (expected, expected_late) = reference(spec, &split_batches[0], delay);
        for shards in [1, 2, 4] {
            let (rows, _, dropped, side) = run_weir(spec, &split_batches, delay, shards, false);
            prop_assert_eq!(&rows, &expected, "{:?} at {} shards", spec, shards);
            prop_assert_eq!(dropped, expected_late.len() as u64);
            prop_assert_eq!(side, 0);
        }
    }

    /// Same, with the late-row side output connected: late rows arrive there, intact.
    #[test]
    fn late_rows_go_to_the_side_output(
        spec in time_window(),
        input in events(300, 150),
        delay in 0i64..40,
        sizes in prop::collection::vec(1usize..40, 1..4),
    ) {
        let split_batches = split_into(&input, 1, &sizes);
        let (expected, expected_late) = reference(spec, &split_batches[0], delay);
        for shards in [1, 2, 4] {
            let (rows, late, dropped, side) = run_weir(spec, &split_batches, delay, shards, true);
            prop_assert_eq!(&rows, &expected, "{:?} at {} shards", spec, shards);
            prop_assert_eq!(&late, &expected_late);
            prop_assert_eq!(dropped, 0);
            prop_assert_eq!(side, expected_late.len() as u64);
        }
    }

    /// Count windows: per key, every `size` rows of the split's order.
    #[test]
    fn count_windows_match_reference(
        size in 1usize..6,
        input in events(300, 50),
        sizes in prop::collection::vec(1usize..40, 1..4),
    ) {
        let spec = Window::Count { size };
        let split_batches = split_into(&input, 1, &sizes);
        let (expected, _) = reference(spec, &split_batches[0], 0);
        for shards in [1, 2, 4] {
            let (rows, _, _, _) = run_weir(spec, &split_batches, 0, shards, false);
            prop_assert_eq!(&rows, &expected, "{:?} at {} shards", spec, shards);
        }
    }
}
