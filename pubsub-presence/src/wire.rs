//! What a node publishes on the presence topic: one small JSON object per heartbeat.
//!
//! ```json
//! {"v":1,"node":"a1b2…","kind":"beat","expiry_ms":3000,"tags":["chat"]}
//! ```
//!
//! `kind` is `hello` (a node arrives or comes back after an outage: everyone answers with a
//! heartbeat at once), `beat` (the periodic heartbeat) or `leave` (the node stops on purpose).
//! `expiry_ms` is how long the sender's heartbeat holds: a receiver forgets the sender that long
//! after the last one, so nodes with different settings agree on each other.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The wire version this crate writes and reads.
pub(crate) const VERSION: u8 = 1;

/// Longest node id accepted, in bytes.
pub(crate) const MAX_NODE_ID: usize = 128;

/// Expiries announced outside this range are clamped into it: a hostile or broken peer can
/// neither stay forever nor flap faster than heartbeats can travel.
pub(crate) const MIN_EXPIRY: Duration = Duration::from_millis(10);
pub(crate) const MAX_EXPIRY: Duration = Duration::from_secs(3600);

/// The kind of a presence message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    Hello,
    Beat,
    Leave,
}

/// One presence message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Beat {
    pub v: u8,
    pub node: String,
    pub kind: Kind,
    pub expiry_ms: u64,
    #[serde(default)]
    pub tags: BTreeSet<String>,
}

/// Why a presence payload was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BadBeat {
    /// Not the JSON object above.
    Malformed(String),
    /// A wire version this crate does not read.
    Version(u8),
    /// An empty or too long node id.
    NodeId,
}

impl Beat {
    pub(crate) fn encode(&self) -> Vec<u8> {
        // Serializing a struct of strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Beat, BadBeat> {
        let beat: Beat =
            serde_json::from_slice(bytes).map_err(|e| BadBeat::Malformed(e.to_string()))?;
        if beat.v != VERSION {
            return Err(BadBeat::Version(beat.v));
        }
        if beat.node.is_empty() || beat.node.len() > MAX_NODE_ID {
            return Err(BadBeat::NodeId);
        }
        Ok(beat)
    }

    /// The sender's expiry, clamped to the sane range.
    pub(crate) fn expiry(&self) -> Duration {
        Duration::from_millis(self.expiry_ms).clamp(MIN_EXPIRY, MAX_EXPIRY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn beat(node: &str, kind: Kind) -> Beat {
        Beat {
            v: VERSION,
            node: node.into(),
            kind,
            expiry_ms: 3000,
            tags: ["a#b".to_string(), "".to_string()].into(),
        }
    }

    #[test]
    fn round_trip() {
        for kind in [Kind::Hello, Kind::Beat, Kind::Leave] {
            let b = beat("n1", kind);
            assert_eq!(Beat::decode(&b.encode()), Ok(b));
        }
    }

    #[test]
    fn refuses_bad_input() {
        assert!(matches!(Beat::decode(b"nope"), Err(BadBeat::Malformed(_))));
        assert!(matches!(Beat::decode(b"{}"), Err(BadBeat::Malformed(_))));
        let mut b = beat("n1", Kind::Beat);
        b.v = 9;
        assert_eq!(Beat::decode(&b.encode()), Err(BadBeat::Version(9)));
        let b = beat("", Kind::Beat);
        assert_eq!(Beat::decode(&b.encode()), Err(BadBeat::NodeId));
        let b = beat(&"x".repeat(MAX_NODE_ID + 1), Kind::Beat);
        assert_eq!(Beat::decode(&b.encode()), Err(BadBeat::NodeId));
    }

    #[test]
    fn expiry_is_clamped() {
        let mut b = beat("n", Kind::Beat);
        b.expiry_ms = 0;
        assert_eq!(b.expiry(), MIN_EXPIRY);
        b.expiry_ms = u64::MAX;
        assert_eq!(b.expiry(), MAX_EXPIRY);
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Beat::decode(&bytes);
        }

        #[test]
        fn any_beat_round_trips(
            node in "\\PC{1,30}",
            tags in proptest::collection::btree_set(".{0,40}", 0..5),
            expiry_ms in any::<u64>(),
        ) {
            let b = Beat { v: VERSION, node, kind: Kind::Beat, expiry_ms, tags };
            prop_assert_eq!(Beat::decode(&b.encode()), Ok(b));
        }
    }
}
