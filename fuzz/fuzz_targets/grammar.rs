//! Topic and pattern parsing and matching against a small reference implementation.
//!
//! The input is split at its first 0 byte into a pattern and a topic (without a 0 byte, the
//! whole input is both). Non-UTF-8 halves are skipped.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pubsub_core::{Pattern, Topic, MAX_TOPIC_LEN};

fuzz_target!(|data: &[u8]| {
    let (pattern, topic) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    let (Ok(pattern), Ok(topic)) = (std::str::from_utf8(pattern), std::str::from_utf8(topic))
    else {
        return;
    };
    check_parsing(pattern);
    check_parsing(topic);
    if let (Ok(p), Ok(t)) = (Pattern::new(pattern), Topic::new(topic)) {
        let want = reference_matches(pattern, topic);
        assert_eq!(p.matches(&t), want, "pattern {pattern:?}, topic {topic:?}");
        assert_eq!(
            p.matches_str(topic),
            want,
            "pattern {pattern:?}, topic {topic:?}"
        );
    }
});

/// Parsers agree with the reference rules; a topic is also an exact pattern matching itself.
fn check_parsing(s: &str) {
    let topic = Topic::new(s);
    let pattern = Pattern::new(s);
    assert_eq!(topic.is_ok(), reference_topic(s), "topic {s:?}: {topic:?}");
    assert_eq!(
        pattern.is_ok(),
        reference_pattern(s),
        "pattern {s:?}: {pattern:?}"
    );
    if let (Ok(t), Ok(p)) = (&topic, &pattern) {
        assert!(p.is_exact(), "{s:?}");
        assert!(p.matches(t), "{s:?}");
        assert_eq!(p.as_topic().as_ref(), Some(t), "{s:?}");
    }
}

/// The token rule: 1+ chars, no `.`, `*`, `>`, whitespace or control character.
fn reference_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .chars()
            .all(|c| !matches!(c, '.' | '*' | '>') && !c.is_whitespace() && !c.is_control())
}

fn reference_topic(s: &str) -> bool {
    s.len() <= MAX_TOPIC_LEN && s.split('.').all(reference_token)
}

fn reference_pattern(s: &str) -> bool {
    let tokens: Vec<&str> = s.split('.').collect();
    s.len() <= MAX_TOPIC_LEN
        && tokens
            .iter()
            .enumerate()
            .all(|(i, &t)| reference_token(t) || t == "*" || (t == ">" && i + 1 == tokens.len()))
}

/// `*` is exactly one token, a trailing `>` one or more; everything else is literal.
fn reference_matches(pattern: &str, topic: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let topic: Vec<&str> = topic.split('.').collect();
    match_tokens(&pattern, &topic)
}

fn match_tokens(pattern: &[&str], topic: &[&str]) -> bool {
    match (pattern, topic) {
        ([], []) => true,
        ([">"], [_, ..]) => true,
        (["*", p @ ..], [_, t @ ..]) => match_tokens(p, t),
        ([lit, p @ ..], [tok, t @ ..]) => lit == tok && match_tokens(p, t),
        _ => false,
    }
}
