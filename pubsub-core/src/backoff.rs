//! Placeholder, replaced by the backoff helper.
/// Reconnect backoff policy.
#[derive(Debug, Clone, Default)]
pub struct Backoff;
