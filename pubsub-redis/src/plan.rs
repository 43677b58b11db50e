//! Planning the globs a handle keeps at Redis: which [`RedisFilter`] serves a new pattern,
//! given the ones its subscriptions already use.
//!
//! # Cost model
//!
//! Redis keeps exact channels in a hash table (a `PUBLISH` finds the subscribers of its
//! channel in one lookup), but tests every `PSUBSCRIBE` glob of every client against the channel
//! of every `PUBLISH`. So a glob costs the whole server a little on every message published,
//! whoever it is for; a raw client holding 4000 globs slows Redis pub/sub to about a sixth.
//! A broader glob costs the same test, but may bring the handle messages none of its patterns
//! wants, which its router then drops (a network write at Redis, a read and a trie lookup here).
//!
//! The planner bounds the first cost and pays the second only where it must:
//!
//! 1. An exact pattern is a channel (`SUBSCRIBE`): free per publish, never planned.
//! 2. A wildcard pattern whose own glob (its first `pattern_depth` literal tokens, see
//!    [`native_filter`]) is in use shares it: no new glob, nothing more delivered.
//! 3. Under the budget (`max_globs` globs in use), it gets its own glob: the narrowest, so
//!    nothing is delivered that a pattern of that prefix could not want.
//! 4. Over the budget, it shares the narrowest broader glob of its prefix in use (`room.*` for
//!    `room.42.>`): no new glob; what that glob brings is already delivered to the handle.
//! 5. Otherwise it gets the glob of its first literal token (the group of patterns sharing that
//!    prefix), which later patterns of the group share by rule 4.
//!
//! So new globs are made only under the budget or one per first token: a handle holds at most
//! `max_globs` globs plus one per distinct first literal token of its wildcard patterns (plus `*`
//! for patterns that start with a wildcard). Widening further (to `*`) would make the handle
//! receive every message on the server, which no pattern count justifies without knowing the
//! traffic, so the planner stops at the first token.
//!
//! A subscription keeps its glob until it ends (the kit never moves a live route), so planning
//! never unsubscribes anything a live subscription needs and loses no message; and the globs of
//! one class keep living on their own connection, so each copy Redis sends is still attributed
//! to the one glob it came through (see the crate documentation) and every subscription gets
//! exactly one copy.

use pubsub_core::adapter::FiltersInUse;
use pubsub_core::Pattern;

use crate::glob::{native_filter, prefix_of, RedisFilter};

/// The filter for a new subscription's `pattern` (see the module documentation).
pub(crate) fn plan(
    pattern: &Pattern,
    depth: usize,
    max_globs: usize,
    in_use: &dyn FiltersInUse<RedisFilter>,
) -> RedisFilter {
    let own = native_filter(pattern, depth);
    let RedisFilter::Glob { prefix, class } = &own else {
        return own;
    };
    if in_use.contains(&own) || in_use.wildcards() < max_globs {
        return own;
    }
    let broader = (0..*class).rev().map(|c| widened(prefix, c));
    for glob in broader {
        if in_use.contains(&glob) {
            return glob;
        }
    }
    match *class {
        0 | 1 => own,
        _ => widened(prefix, 1),
    }
}

/// The glob of the first `class` tokens of `prefix` (which has more than `class` tokens).
fn widened(prefix: &str, class: usize) -> RedisFilter {
    RedisFilter::Glob {
        prefix: prefix_of(prefix, class).unwrap_or(prefix).into(),
        class,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use proptest::prelude::*;

    use super::*;
    use crate::glob::tests::redis_glob_match;

    /// The kit's view, as a test double: reference counts of filters in use.
    #[derive(Default)]
    struct InUse(HashMap<RedisFilter, usize>);

    impl FiltersInUse<RedisFilter> for InUse {
        fn contains(&self, filter: &RedisFilter) -> bool {
            self.0.contains_key(filter)
        }

        fn wildcards(&self) -> usize {
            self.0.keys().filter(|f| f.class().is_some()).count()
        }
    }

    impl InUse {
        fn add(&mut self, filter: &RedisFilter) {
            *self.0.entry(filter.clone()).or_default() += 1;
        }

        fn remove(&mut self, filter: &RedisFilter) {
            if let Some(refs) = self.0.get_mut(filter) {
                *refs -= 1;
                if *refs == 0 {
                    self.0.remove(filter);
                }
            }
        }
    }

    fn pat(s: &str) -> Pattern {
        s.parse().unwrap()
    }

    fn native(filter: &RedisFilter) -> String {
        filter.native()
    }

    #[test]
    fn under_the_budget_each_pattern_gets_its_own_glob() {
        let mut in_use = InUse::default();
        for p in ["room.1.*", "room.2.>", "room.*.msg", "a.b"] {
            let f = plan(&pat(p), 2, 8, &in_use);
            in_use.add(&f);
        }
        let mut got: Vec<String> = in_use.0.keys().map(native).collect();
        got.sort();
        assert_eq!(got, ["a.b", "room.*", "room.1.*", "room.2.*"]);
    }

    #[test]
    fn over_the_budget_patterns_share_or_widen_to_their_first_token() {
        let mut in_use = InUse::default();
        let mut plan_add = |p: &str| {
            let f = plan(&pat(p), 2, 2, &in_use);
            in_use.add(&f);
            native(&f)
        };
        assert_eq!(plan_add("room.1.*"), "room.1.*");
        assert_eq!(plan_add("room.2.*"), "room.2.*");
        // Over the budget: its own glob when in use, else the first token's.
        assert_eq!(plan_add("room.1.>"), "room.1.*");
        assert_eq!(plan_add("room.3.*"), "room.*");
        assert_eq!(plan_add("room.4.x.>"), "room.*");
        assert_eq!(plan_add("chat.9.*"), "chat.*");
        // Class 1 and 0 cannot widen short of `*`: they keep their own glob.
        assert_eq!(plan_add("news.>"), "news.*");
        assert_eq!(plan_add("*.x"), "*");
        // Once `*` is in use, every new pattern over the budget shares it.
        assert_eq!(plan_add("mail.1.*"), "*");
        // Exact patterns stay channels.
        assert_eq!(plan_add("room.5.msg"), "room.5.msg");
    }

    #[test]
    fn a_freed_budget_gives_own_globs_again() {
        let mut in_use = InUse::default();
        let a = plan(&pat("a.1.*"), 2, 1, &in_use);
        in_use.add(&a);
        assert_eq!(native(&plan(&pat("a.2.*"), 2, 1, &in_use)), "a.*");
        in_use.remove(&a);
        assert_eq!(native(&plan(&pat("a.2.*"), 2, 1, &in_use)), "a.2.*");
    }

    fn token() -> impl Strategy<Value = String> {
        // Few distinct tokens, so that prefixes are shared; glob characters included.
        proptest::sample::select(vec!["a", "b", "c", "d[", "e]", "f?"]).prop_map(String::from)
    }

    /// A pattern: tokens, `*` and a final `>`.
    fn pattern() -> impl Strategy<Value = String> {
        proptest::collection::vec((0u8..6, token()), 1..5).prop_map(|parts| {
            let last = parts.len() - 1;
            parts
                .into_iter()
                .enumerate()
                .map(|(i, (kind, t))| match kind {
                    0 => "*".to_string(),
                    1 if i == last => ">".to_string(),
                    _ => t,
                })
                .collect::<Vec<_>>()
                .join(".")
        })
    }

    /// A topic that `pattern` matches, with the wildcards filled from `fill`.
    fn instance(pattern: &str, fill: &[String]) -> String {
        let mut fill = fill.iter().cycle();
        let mut out = Vec::new();
        for t in pattern.split('.') {
            match t {
                "*" => out.push(fill.next().cloned().unwrap_or_default()),
                ">" => {
                    out.push(fill.next().cloned().unwrap_or_default());
                    out.push(fill.next().cloned().unwrap_or_default());
                }
                lit => out.push(lit.to_string()),
            }
        }
        out.join(".")
    }

    fn selects(filter: &RedisFilter, topic: &str) -> bool {
        match filter {
            RedisFilter::Channel(t) => t.as_str() == topic,
            RedisFilter::Glob { .. } => {
                redis_glob_match(filter.native().as_bytes(), topic.as_bytes())
            }
        }
    }

    proptest! {
        /// Subscribing and unsubscribing random patterns: every topic a subscribed pattern
        /// matches is selected by the glob planned for it, and the handle never holds more than
        /// `max_globs` globs plus one per first token (plus `*`).
        #[test]
        fn planned_filters_select_every_matching_topic(
            ops in proptest::collection::vec((pattern(), any::<bool>()), 1..80),
            fills in proptest::collection::vec(proptest::collection::vec(token(), 1..4), 1..6),
            depth in 0usize..4,
            max_globs in 0usize..6,
        ) {
            let mut in_use = InUse::default();
            let mut live: Vec<(Pattern, RedisFilter)> = Vec::new();
            for (text, unsubscribe) in ops {
                if unsubscribe && !live.is_empty() {
                    let (_, filter) = live.remove(text.len() % live.len());
                    in_use.remove(&filter);
                    continue;
                }
                let pattern = pat(&text);
                let filter = plan(&pattern, depth, max_globs, &in_use);
                in_use.add(&filter);
                for fill in &fills {
                    let topic = instance(&text, fill);
                    prop_assert!(pattern.matches(&topic.parse().unwrap()), "{} {}", text, topic);
                    prop_assert!(selects(&filter, &topic), "{:?} misses {}", filter, topic);
                }
                live.push((pattern, filter));
                let first_tokens: HashSet<&str> = live
                    .iter()
                    .filter_map(|(_, f)| match f {
                        RedisFilter::Glob { prefix, class } if *class > 0 => {
                            prefix.split('.').next()
                        }
                        _ => None,
                    })
                    .collect();
                prop_assert!(in_use.wildcards() <= max_globs + first_tokens.len() + 1);
            }
        }
    }
}
