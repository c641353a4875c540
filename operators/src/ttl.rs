//! State TTL (`table.exec.state.ttl`), as Flink's: state not written for the TTL (processing
//! time) is forgotten. Operators sweep their state on a processing-time timer that fires
//! every half TTL, so an entry lives between one and one and a half TTLs after its last write.

use weir_engine::operator::{Context, TimeDomain};

/// Arms the next sweep of a `ttl_ms` state TTL, half a TTL after `now_ms`.
pub fn arm_sweep(ctx: &mut Context<'_>, ttl_ms: i64, now_ms: i64) {
    ctx.register_timer(TimeDomain::ProcessingTime, now_ms + (ttl_ms / 2).max(1));
}
