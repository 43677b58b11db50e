//! [`random_u64`]: a number no other process or call is likely to have, for epochs and ids.

use std::hash::{BuildHasher, Hasher};
use std::time::SystemTime;

/// A random `u64`: the standard library's per-process random hasher keys (fresh for every
/// call) mixed with the clock. Not for cryptography; for a new log's epoch, a client id, a
/// seed.
pub fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

#[cfg(test)]
mod tests {
    #[test]
    fn calls_differ() {
        assert_ne!(super::random_u64(), super::random_u64());
    }
}
