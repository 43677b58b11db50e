//! Routing one topic against 1k, 10k and 100k registered patterns (a mix of exact, `*` and `>`),
//! with the core's token trie against a naive scan that tests every pattern with a compiled
//! `regex` (what seed systems do).
//!
//! Run: `cargo bench -p pubsub-core --bench routing` (`BENCH_ROUNDS=<n>`, default 7). Rounds
//! alternate (trie, scan, trie, …); prints the median ns per routed topic of each and the
//! median of the per-round ratios scan / trie with its spread.

use std::hint::black_box;
use std::time::{Duration, Instant};

use pubsub_bench::{interleave, mixed_patterns, pattern_regex, Settings, Side};

use pubsub_core::adapter::PatternTrie;
use pubsub_core::Pattern;
use regex::Regex;

fn main() {
    let topics = [
        "tenant7.room3.msg",
        "tenant42.room99.typing",
        "tenant1.nope.x.y",
    ];
    let settings = Settings::from_env(7);
    println!(
        "routing one topic against N patterns (trie vs regex scan), median of {} interleaved rounds",
        settings.rounds
    );
    for n in [1_000, 10_000, 100_000] {
        let pats = mixed_patterns(n);
        let mut trie = PatternTrie::default();
        for (i, p) in pats.iter().enumerate() {
            trie.insert(&Pattern::new(p).expect("pattern"), i as u64, i);
        }
        let regexes: Vec<Regex> = pats.iter().map(|p| pattern_regex(p)).collect();

        // Same answers first.
        for t in topics {
            let mut a = 0;
            trie.for_each_match(t, |_| a += 1);
            let b = regexes.iter().filter(|r| r.is_match(t)).count();
            assert_eq!(a, b, "trie and regex disagree on {t}");
        }

        // Each round's time is per topic routed (as a Duration of nanoseconds, scaled by
        // 1000 to keep the fraction), so that the two sides' different counts compare.
        let per_topic = |iters: usize, took: Duration| took.mul_f64(1000.0 / iters as f64);
        let trie_iters = settings.count(200_000, 10);
        let scan_iters = settings.count((3_000_000 / n).max(10), 10);
        let timed = interleave(settings.rounds, |side| match side {
            Side::Adapter => {
                let start = Instant::now();
                for i in 0..trie_iters {
                    let mut hits = 0usize;
                    trie.for_each_match(topics[i % topics.len()], |_| hits += 1);
                    black_box(hits);
                }
                per_topic(trie_iters, start.elapsed())
            }
            Side::Raw => {
                let start = Instant::now();
                for i in 0..scan_iters {
                    let t = topics[i % topics.len()];
                    black_box(regexes.iter().filter(|r| r.is_match(t)).count());
                }
                per_topic(scan_iters, start.elapsed())
            }
        });
        let ns = |d: Duration| d.as_secs_f64() * 1e9 / 1000.0;
        println!(
            "  {n:>7} patterns: trie {:>9.0} ns/topic, regex scan {:>12.0} ns/topic, ratio {}",
            ns(timed.ours_median()),
            ns(timed.base_median()),
            timed.ratio_cell()
        );
    }
}
