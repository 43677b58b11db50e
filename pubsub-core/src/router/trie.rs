//! A token trie from patterns to subscribers: matching a topic walks its tokens, so the cost
//! grows with topic depth (and with the wildcard branches present), not with the number of
//! registered patterns.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use indexmap::map::Slice;
use indexmap::IndexMap;
use rustc_hash::FxHasher;

use crate::pattern::Segment;
use crate::Pattern;

/// A set of patterns, each holding values (subscribers) under unique keys, matched against
/// topics by walking the topic's tokens. Inserting and removing cost the pattern's depth,
/// however many values share a pattern.
///
/// ```
/// use pubsub_core::adapter::PatternTrie;
/// let mut trie = PatternTrie::default();
/// trie.insert(&"room.*.msg".parse()?, 1, 1);
/// trie.insert(&"room.>".parse()?, 2, 2);
/// let mut hits = vec![];
/// trie.for_each_match("room.42.msg", |v| hits.push(*v));
/// hits.sort();
/// assert_eq!(hits, [1, 2]);
/// # Ok::<(), pubsub_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Trie<T> {
    root: Node<T>,
    len: usize,
}

#[derive(Debug)]
struct Node<T> {
    literal: HashMap<Box<str>, Node<T>, foldhash::fast::RandomState>,
    one: Option<Box<Node<T>>>,
    /// Values whose pattern ends at this node, by key.
    here: IndexMap<u64, T, BuildHasherDefault<FxHasher>>,
    /// Values whose pattern is this node's path followed by `>`, by key.
    rest: IndexMap<u64, T, BuildHasherDefault<FxHasher>>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node {
            literal: HashMap::default(),
            one: None,
            here: IndexMap::default(),
            rest: IndexMap::default(),
        }
    }
}

impl<T> Node<T> {
    fn is_empty(&self) -> bool {
        self.literal.is_empty()
            && self.one.is_none()
            && self.here.is_empty()
            && self.rest.is_empty()
    }
}

impl<T> Default for Trie<T> {
    fn default() -> Self {
        Trie {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<T> Trie<T> {
    /// Adds `value` under `pattern` and `key` (replacing a value with the same pattern and key).
    pub fn insert(&mut self, pattern: &Pattern, key: u64, value: T) {
        let mut node = &mut self.root;
        for seg in pattern.segments() {
            node = match seg {
                Segment::Literal(l) => node.literal.entry(l.into()).or_default(),
                Segment::One => node.one.get_or_insert_with(Default::default),
                Segment::Rest => {
                    if node.rest.insert(key, value).is_none() {
                        self.len += 1;
                    }
                    return;
                }
            };
        }
        if node.here.insert(key, value).is_none() {
            self.len += 1;
        }
    }

    /// Removes the value under `pattern` and `key`, pruning empty nodes.
    pub fn remove(&mut self, pattern: &Pattern, key: u64) -> Option<T> {
        let segs: smallvec::SmallVec<[Segment<'_>; 16]> = pattern.segments().collect();
        let found = remove_in(&mut self.root, &segs, key);
        if found.is_some() {
            self.len -= 1;
        }
        found
    }

    /// Calls `f` once for every value whose pattern matches `topic`, which must be a valid topic
    /// string (see [`Topic`](crate::Topic)); each value is reported at most once.
    pub fn for_each_match<'t>(&'t self, topic: &str, mut f: impl FnMut(&'t T)) {
        self.for_each_match_group(topic, |group| group.values().for_each(&mut f));
    }

    /// Calls `f` with each group of values (all those of one pattern) whose pattern matches
    /// `topic`, as [`Trie::for_each_match`] does value by value; no group is empty.
    pub(crate) fn for_each_match_group<'t>(
        &'t self,
        topic: &str,
        mut f: impl FnMut(&'t Slice<u64, T>),
    ) {
        let tokens: smallvec::SmallVec<[&str; 16]> = topic.split('.').collect();
        walk(&self.root, &tokens, &mut f);
    }

    /// Calls `f` once for every value.
    pub fn for_each<'t>(&'t self, mut f: impl FnMut(&'t T)) {
        fn all<'t, T>(node: &'t Node<T>, f: &mut impl FnMut(&'t T)) {
            node.here
                .values()
                .chain(node.rest.values())
                .for_each(&mut *f);
            node.literal.values().for_each(|child| all(child, f));
            if let Some(child) = &node.one {
                all(child, f);
            }
        }
        all(&self.root, &mut f);
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no value is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn walk<'t, T>(node: &'t Node<T>, tokens: &[&str], f: &mut impl FnMut(&'t Slice<u64, T>)) {
    let Some((first, rest)) = tokens.split_first() else {
        if !node.here.is_empty() {
            f(node.here.as_slice());
        }
        return;
    };
    if !node.rest.is_empty() {
        f(node.rest.as_slice());
    }
    if let Some(child) = node.literal.get(*first) {
        walk(child, rest, f);
    }
    if let Some(child) = &node.one {
        walk(child, rest, f);
    }
}

fn remove_in<T>(node: &mut Node<T>, segs: &[Segment<'_>], key: u64) -> Option<T> {
    let Some((first, rest)) = segs.split_first() else {
        return node.here.swap_remove(&key);
    };
    match first {
        Segment::Rest => node.rest.swap_remove(&key),
        Segment::Literal(l) => {
            let child = node.literal.get_mut(*l)?;
            let found = remove_in(child, rest, key);
            if child.is_empty() {
                node.literal.remove(*l);
            }
            found
        }
        Segment::One => {
            let child = node.one.as_mut()?;
            let found = remove_in(child, rest, key);
            if child.is_empty() {
                node.one = None;
            }
            found
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::MATCH_TABLE;
    use crate::Topic;
    use proptest::prelude::*;

    fn matches(trie: &Trie<usize>, topic: &str) -> Vec<usize> {
        let mut v = Vec::new();
        trie.for_each_match(topic, |&x| v.push(x));
        v.sort();
        v
    }

    #[test]
    fn agrees_with_table() {
        for (i, &(p, t, want)) in MATCH_TABLE.iter().enumerate() {
            let mut trie = Trie::default();
            trie.insert(&Pattern::new(p).unwrap(), 0, i);
            assert_eq!(!matches(&trie, t).is_empty(), want, "{p} vs {t}");
        }
    }

    #[test]
    fn remove_prunes() {
        let mut trie = Trie::default();
        let p = Pattern::new("a.*.c").unwrap();
        let q = Pattern::new("a.>").unwrap();
        trie.insert(&p, 1, 1);
        trie.insert(&p, 2, 2);
        trie.insert(&q, 3, 3);
        assert_eq!(matches(&trie, "a.b.c"), [1, 2, 3]);
        assert_eq!(trie.remove(&p, 1), Some(1));
        assert_eq!(trie.remove(&p, 1), None);
        assert_eq!(matches(&trie, "a.b.c"), [2, 3]);
        trie.remove(&p, 2);
        trie.remove(&q, 3);
        assert_eq!(trie.len(), 0);
        assert!(trie.root.is_empty());
    }

    proptest! {
        #[test]
        fn each_matching_pattern_reported_once(
            pats in prop::collection::vec("(a|b|\\*)(\\.(a|b|\\*)){0,3}(\\.>)?", 1..20),
            topic in "(a|b|c)(\\.(a|b|c)){0,4}",
        ) {
            let mut trie = Trie::default();
            let parsed: Vec<Pattern> = pats.iter().map(|p| Pattern::new(p).unwrap()).collect();
            for (i, p) in parsed.iter().enumerate() {
                trie.insert(p, i as u64, i);
            }
            let t = Topic::new(&topic).unwrap();
            let want: Vec<usize> = parsed.iter().enumerate().filter(|(_, p)| p.matches(&t)).map(|(i, _)| i).collect();
            prop_assert_eq!(matches(&trie, &topic), want);
        }
    }
}
