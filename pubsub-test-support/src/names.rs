//! Names and waits that never collide or flake: a fresh topic prefix per case, and timeouts
//! scaled for slow machines.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `base` scaled by `PUBSUB_TEST_TIME_SCALE` (a float, default 1) for slow machines.
pub fn idle_timeout(base: Duration) -> Duration {
    let scale = std::env::var("PUBSUB_TEST_TIME_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(1.0);
    base.mul_f64(scale)
}

/// A fresh topic prefix (one token) for one case: never the same twice, in this process or
/// across reruns.
pub fn unique_prefix(case: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let clean: String = case
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    format!(
        "t_{clean}_{}_{nanos:x}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
