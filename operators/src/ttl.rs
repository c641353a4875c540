//! State TTL (`table.exec.state.ttl`), as Flink's: state not written for the TTL (processing
//! time) is forgotten. Operators sweep their state on a processing-time timer that fires
//! every half TTL, so an entry lives between one and one and a half TTLs after its last write.

use weir_engine::operator::{Context, TimeDomain};

/// A state TTL in ms (the state tables' conversion): `None` for none or zero.
pub use weir_engine::state::table::ttl_millis as ttl_ms;

/// Whether an entry written at `written_ms` has outlived `ttl_ms` at `now_ms` (the state
/// tables' rule, Flink's).
pub use weir_engine::state::table::ttl_expired as expired;

/// How an operator's `describe` (and so `EXPLAIN` and its identity) shows its state TTL:
/// `", state TTL 3600s"`, or nothing without one.
pub fn describe(ttl: Option<std::time::Duration>) -> String {
    ttl.map_or(String::new(), |t| format!(", state TTL {t:?}"))
}

/// Arms the next sweep of a `ttl_ms` state TTL, half a TTL after `now_ms`.
pub fn arm_sweep(ctx: &mut Context<'_>, ttl_ms: i64, now_ms: i64) {
    ctx.register_timer(
        TimeDomain::ProcessingTime,
        now_ms.saturating_add((ttl_ms / 2).max(1)),
    );
}
