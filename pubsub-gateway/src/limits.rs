//! Connections open per token: [`ConnectionCounter`] hands out [`ConnectionPermit`]s up to a
//! maximum per identity.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;

use crate::error::ApiError;

/// Open streams per identity name.
#[derive(Debug, Default)]
pub(crate) struct ConnectionCounter {
    open: Mutex<HashMap<String, usize>>,
}

/// One open stream of an identity; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct ConnectionPermit {
    counter: Arc<ConnectionCounter>,
    name: String,
}

impl ConnectionCounter {
    /// A permit for one more stream of `name`, or 429 when it has `max` open.
    pub(crate) fn acquire(
        self: &Arc<Self>,
        name: &str,
        max: usize,
    ) -> Result<ConnectionPermit, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(name.to_string()).or_default();
        if *count >= max {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_connections",
                format!("this token already has {max} open streams"),
            ));
        }
        *count += 1;
        Ok(ConnectionPermit {
            counter: self.clone(),
            name: name.to_string(),
        })
    }

    #[cfg(test)]
    fn open(&self, name: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(name).copied().unwrap_or(0)
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut open = self.counter.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.name) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_counted_per_name() {
        let counter = Arc::new(ConnectionCounter::default());
        let a1 = counter.acquire("a", 2).unwrap();
        let _a2 = counter.acquire("a", 2).unwrap();
        let err = counter.acquire("a", 2).unwrap_err();
        assert_eq!(err.status(), StatusCode::TOO_MANY_REQUESTS);
        let _b = counter.acquire("b", 2).unwrap();
        drop(a1);
        assert_eq!(counter.open("a"), 1);
        let _a3 = counter.acquire("a", 2).unwrap();
    }
}
