//! Routing one topic against 1k, 10k and 100k registered patterns (a mix of exact, `*` and `>`),
//! with the core's token trie against a naive scan that tests every pattern with a compiled
//! `regex` (what seed systems do).
//!
//! Run: `cargo bench -p pubsub-core --bench routing`. Prints ns per routed topic for both and
//! the ratio, measured in the same run.

use std::hint::black_box;
use std::time::Instant;

use pubsub_core::adapter::PatternTrie;
use pubsub_core::Pattern;
use regex::Regex;

/// A realistic mix: 60% exact room topics, 25% `*` patterns, 15% `>` patterns.
fn patterns(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let tenant = i % 100;
            let room = i / 100;
            match i % 20 {
                0..=11 => format!("tenant{tenant}.room{room}.msg"),
                12..=13 => format!("tenant{tenant}.*.msg"),
                14..=16 => format!("tenant{tenant}.room{room}.*"),
                17..=18 => format!("tenant{tenant}.room{room}.>"),
                _ => format!("tenant{tenant}.>"),
            }
        })
        .collect()
}

fn to_regex(pattern: &str) -> Regex {
    let body: Vec<String> = pattern
        .split('.')
        .map(|t| match t {
            "*" => "[^.]+".to_string(),
            ">" => ".+".to_string(),
            lit => regex::escape(lit),
        })
        .collect();
    Regex::new(&format!("^{}$", body.join(r"\."))).expect("regex")
}

fn main() {
    let topics = [
        "tenant7.room3.msg",
        "tenant42.room99.typing",
        "tenant1.nope.x.y",
    ];
    println!("routing one topic against N patterns (trie vs regex scan)");
    for n in [1_000, 10_000, 100_000] {
        let pats = patterns(n);
        let mut trie = PatternTrie::default();
        for (i, p) in pats.iter().enumerate() {
            trie.insert(&Pattern::new(p).expect("pattern"), i as u64, i);
        }
        let regexes: Vec<Regex> = pats.iter().map(|p| to_regex(p)).collect();

        // Same answers first.
        for t in topics {
            let mut a = 0;
            trie.for_each_match(t, |_| a += 1);
            let b = regexes.iter().filter(|r| r.is_match(t)).count();
            assert_eq!(a, b, "trie and regex disagree on {t}");
        }

        let trie_iters = 200_000;
        let start = Instant::now();
        for i in 0..trie_iters {
            let mut hits = 0usize;
            trie.for_each_match(topics[i % topics.len()], |_| hits += 1);
            black_box(hits);
        }
        let trie_ns = start.elapsed().as_nanos() as f64 / trie_iters as f64;

        let scan_iters = (3_000_000 / n).max(10);
        let start = Instant::now();
        for i in 0..scan_iters {
            let t = topics[i % topics.len()];
            black_box(regexes.iter().filter(|r| r.is_match(t)).count());
        }
        let scan_ns = start.elapsed().as_nanos() as f64 / scan_iters as f64;

        println!(
            "  {n:>7} patterns: trie {trie_ns:>9.0} ns/topic, regex scan {scan_ns:>12.0} ns/topic, ratio {:>9.0}x",
            scan_ns / trie_ns
        );
    }
}
