//! The dispatcher suite on the in-process memory backend, plus what only memory (or a wrapped
//! handle) can set up: failing dead-letter publishes, middleware, metrics.
mod common;

use common::Backend;

dispatch_suite!(Backend::memory);
