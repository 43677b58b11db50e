//! Streams: a bounded history of every message published under a root pattern, kept by the
//! broker, with positions to resume from (see [`StreamConfig`], [`Position`], [`StartAt`]).

mod config;
mod position;

pub use config::{StartAt, StreamConfig, DEFAULT_MAX_AGE, DEFAULT_MAX_LEN};
pub use position::{Offset, Position};
