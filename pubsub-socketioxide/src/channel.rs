//! [`ChannelMap`]: socketioxide's channel names to our topics and back, by escaping.
//!
//! socketioxide-redis names its channels `{prefix}-request#{namespace}#`,
//! `{prefix}-request#{namespace}#{server uid}#` and `{prefix}-response#{namespace}#{server uid}#`
//! (prefix `socket.io` by default). A channel is split on `#` and every part becomes one token
//! with [`Token::escape`] (so `.`, `*`, `>`, spaces and `%` can never make a level or a
//! wildcard; an empty part becomes `%`), under a root of our own:
//!
//! | channel | topic (root `sio`) |
//! |---|---|
//! | `socket.io-request#/#` | `sio.socket%2Eio-request./.%` |
//! | `socket.io-request#/chat#AbC123#` | `sio.socket%2Eio-request./chat.AbC123.%` |
//!
//! The map is reversible ([`ChannelMap::channel`]) and injective: two channels never share a
//! topic. A channel whose topic would exceed the 255-byte topic limit is a typed error.

use pubsub_core::{Error, Result, Token, Topic};

/// Maps socketioxide channel names to topics under a root, and back.
///
/// ```
/// use pubsub_socketioxide::ChannelMap;
/// let map = ChannelMap::new("sio".parse()?);
/// let topic = map.topic("socket.io-request#/#")?;
/// assert_eq!(topic.as_str(), "sio.socket%2Eio-request./.%");
/// assert_eq!(map.channel(&topic).as_deref(), Some("socket.io-request#/#"));
/// # Ok::<(), pubsub_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelMap {
    root: Topic,
}

impl ChannelMap {
    /// Channels become topics under `root` (one or more tokens).
    pub fn new(root: Topic) -> ChannelMap {
        ChannelMap { root }
    }

    /// The root every channel's topic starts with.
    pub fn root(&self) -> &Topic {
        &self.root
    }

    /// The topic of `channel`: one escaped token per `#`-separated part.
    pub fn topic(&self, channel: &str) -> Result<Topic> {
        let root = self.root.tokens().map(Token::new);
        let mut tokens = Vec::new();
        for token in root {
            tokens.push(token.map_err(|e| Error::invalid_config(e.to_string()))?);
        }
        tokens.extend(channel.split('#').map(Token::escape));
        Topic::from_tokens(tokens).map_err(|e| {
            Error::invalid_config(format!(
                "socket.io channel of {} bytes does not fit in a topic: {e}",
                channel.len()
            ))
        })
    }

    /// The channel a topic of this map stands for; `None` for a topic outside the root.
    pub fn channel(&self, topic: &Topic) -> Option<String> {
        let mut tokens = topic.tokens();
        for root in self.root.tokens() {
            if tokens.next()? != root {
                return None;
            }
        }
        let parts: Vec<String> = tokens
            .map(|t| Token::new(t).map(|t| t.unescape()))
            .collect::<std::result::Result<_, _>>()
            .ok()?;
        if parts.is_empty() {
            return None;
        }
        Some(parts.join("#"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn map() -> ChannelMap {
        ChannelMap::new("app.sio".parse().unwrap())
    }

    #[test]
    fn socketioxide_channels() {
        let m = map();
        for (channel, topic) in [
            ("socket.io-request#/#", "app.sio.socket%2Eio-request./.%"),
            (
                "socket.io-request#/chat#AbC123#",
                "app.sio.socket%2Eio-request./chat.AbC123.%",
            ),
            (
                "socket.io-response#/a.b >*#u#",
                "app.sio.socket%2Eio-response./a%2Eb%20%3E%2A.u.%",
            ),
            ("", "app.sio.%"),
            ("#", "app.sio.%.%"),
            ("%", "app.sio.%25"),
        ] {
            let t = m.topic(channel).unwrap();
            assert_eq!(t.as_str(), topic);
            assert_eq!(m.channel(&t).as_deref(), Some(channel));
        }
    }

    #[test]
    fn too_long_is_a_typed_error() {
        let err = map().topic(&"x".repeat(300)).unwrap_err();
        assert_eq!(err.kind(), pubsub_core::ErrorKind::Invalid);
    }

    #[test]
    fn topics_outside_the_root_have_no_channel() {
        let m = map();
        assert_eq!(m.channel(&"app.other.x".parse().unwrap()), None);
        assert_eq!(m.channel(&"app.sio".parse().unwrap()), None);
        assert_eq!(m.channel(&"app".parse().unwrap()), None);
    }

    proptest! {
        #[test]
        fn round_trips(channel in "\\PC{0,60}|[#%.*> a-z/]{0,60}") {
            let m = map();
            let topic = m.topic(&channel).unwrap();
            prop_assert_eq!(m.channel(&topic), Some(channel));
        }

        #[test]
        fn distinct_channels_get_distinct_topics(
            a in "[#%.*> a-z/\u{e9}]{0,30}",
            b in "[#%.*> a-z/\u{e9}]{0,30}",
        ) {
            let m = map();
            prop_assume!(a != b);
            prop_assert_ne!(m.topic(&a).unwrap(), m.topic(&b).unwrap());
        }

        #[test]
        fn any_channel_gives_a_topic_or_a_typed_error(channel in any::<String>()) {
            let m = map();
            match m.topic(&channel) {
                Ok(topic) => {
                    // A valid topic: parses back to itself, no wildcard possible.
                    prop_assert_eq!(topic.as_str().parse::<Topic>().unwrap(), topic.clone());
                    prop_assert!(topic.as_str().starts_with("app.sio."));
                    prop_assert_eq!(m.channel(&topic), Some(channel));
                }
                Err(e) => prop_assert_eq!(e.kind(), pubsub_core::ErrorKind::Invalid),
            }
        }
    }
}
