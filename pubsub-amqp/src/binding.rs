//! Patterns as topic-exchange binding keys.

use lapin::types::ShortString;
use pubsub_core::pattern::Segment;
use pubsub_core::Pattern;

/// The binding key that selects (a superset of) `pattern`'s topics on a topic exchange.
///
/// A literal token is itself, except a token that is exactly `#` (a wildcard to the broker),
/// which binds as `*`; `*` stays `*`; `>` becomes `*.#` (one or more tokens). A key over 255
/// bytes (a long pattern ending in `>`) binds as `#`. The core's matcher picks the exact topics.
pub(crate) fn binding_key(pattern: &Pattern) -> ShortString {
    let key: Vec<&str> = pattern
        .segments()
        .map(|segment| match segment {
            Segment::Literal("#") | Segment::One => "*",
            Segment::Literal(token) => token,
            Segment::Rest => "*.#",
        })
        .collect();
    ShortString::try_new(key.join(".")).unwrap_or_else(|_| "#".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use pubsub_core::Topic;

    /// RabbitMQ's topic matching: `*` is one word, `#` zero or more.
    fn amqp_matches(key: &[&str], topic: &[&str]) -> bool {
        match (key.split_first(), topic.split_first()) {
            (None, None) => true,
            (Some((&"#", rest)), _) => {
                amqp_matches(rest, topic) || (!topic.is_empty() && amqp_matches(key, &topic[1..]))
            }
            (Some((&"*", rest)), Some((_, more))) => amqp_matches(rest, more),
            (Some((word, rest)), Some((token, more))) => word == token && amqp_matches(rest, more),
            _ => false,
        }
    }

    fn bound(pattern: &str, topic: &str) -> bool {
        let key = binding_key(&pattern.parse().unwrap());
        let key: Vec<&str> = key.as_str().split('.').collect();
        amqp_matches(&key, &topic.split('.').collect::<Vec<_>>())
    }

    #[test]
    fn translation_table() {
        let key = |p: &str| binding_key(&p.parse().unwrap()).to_string();
        assert_eq!(key("a.b"), "a.b");
        assert_eq!(key("a.*.c"), "a.*.c");
        assert_eq!(key("a.>"), "a.*.#");
        assert_eq!(key(">"), "*.#");
        assert_eq!(key("a.#.b"), "a.*.b");
        assert_eq!(key("a#.#x"), "a#.#x");
        let long = format!("{}.>", "x".repeat(253));
        assert_eq!(key(&long), "#");
        assert!(bound("a.#", "a.#") && bound("a.#", "a.z") && !bound("a.#", "a"));
        assert!(bound("a.>", "a.b.c") && !bound("a.>", "a"));
    }

    fn token() -> impl Strategy<Value = String> {
        prop_oneof![Just("#".to_string()), Just("a".to_string()), "[a-c#]{1,3}"]
    }

    fn pattern_token() -> impl Strategy<Value = String> {
        prop_oneof![token(), Just("*".to_string())]
    }

    proptest! {
        /// Every topic the core's matcher accepts is bound (a superset, never a miss).
        #[test]
        fn binds_a_superset(
            tokens in prop::collection::vec(pattern_token(), 1..5),
            rest in any::<bool>(),
            topic in prop::collection::vec(token(), 1..7),
        ) {
            let mut p = tokens.join(".");
            if rest {
                p.push_str(".>");
            }
            let pattern: Pattern = p.parse().unwrap();
            let topic_text = topic.join(".");
            let topic = Topic::new(&topic_text).unwrap();
            if pattern.matches(&topic) {
                prop_assert!(bound(&p, &topic_text), "{} -> {}", p, binding_key(&pattern));
            }
            // And without a literal `#`, the binding is exact.
            if !p.split('.').any(|t| t == "#") {
                prop_assert_eq!(pattern.matches(&topic), bound(&p, &topic_text));
            }
        }
    }
}
