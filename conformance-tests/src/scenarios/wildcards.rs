//! Case 3: `*` and `>` semantics from one table, overlapping subscriptions, no duplicates.

use pubsub_core::pattern::MATCH_TABLE;

use crate::support::*;
use crate::{unique_prefix, Harness};

/// Every row of the shared match table gives the same answer on this backend as in the core.
pub async fn wildcard_table(h: &Harness) {
    let p = unique_prefix("wildcards");
    let (subscriber, publisher) = (connect(h).await, connect(h).await);
    let rows: Vec<(String, String, bool)> = MATCH_TABLE
        .iter()
        .enumerate()
        .map(|(i, &(pat, t, want))| (format!("{p}.r{i}.{pat}"), format!("{p}.r{i}.{t}"), want))
        .collect();
    let mut subs = Vec::new();
    for (pat, t, want) in &rows {
        assert_eq!(
            pattern(pat).matches(&topic(t)),
            *want,
            "prefixing changed row {pat} vs {t}"
        );
        subs.push(subscribe(&subscriber, pat).await);
    }
    for (_, t, _) in &rows {
        publish(&publisher, t, "row").await;
    }
    // Each row's marker topic matches its pattern for sure (wildcards replaced by one token).
    for (pat, _, _) in &rows {
        let marker: Vec<&str> = pat
            .split('.')
            .map(|tok| if tok == "*" || tok == ">" { "m" } else { tok })
            .collect();
        publish(&publisher, &marker.join("."), "marker").await;
    }
    for ((pat, t, want), sub) in rows.iter().zip(&mut subs) {
        let got: Vec<String> = until_marker(sub, b"marker", pat)
            .await
            .iter()
            .map(|m| m.topic().to_string())
            .collect();
        let expected: Vec<String> = if *want { vec![t.clone()] } else { vec![] };
        assert_eq!(
            got, expected,
            "pattern {pat}, topic {t}: expected match = {want}"
        );
    }
    shut_down(&subscriber).await;
    shut_down(&publisher).await;
}

/// Overlapping subscriptions on one handle each get one copy; none gets duplicates.
pub async fn overlapping_subscriptions(h: &Harness) {
    let p = unique_prefix("overlap");
    let (a, b) = (connect(h).await, connect(h).await);
    let pats = [
        format!("{p}.o.*"),
        format!("{p}.o.>"),
        format!("{p}.o.b"),
        format!("{p}.*.b"),
        format!("{p}.>"),
        format!("{p}.o.>"),
    ];
    let mut subs = Vec::new();
    for pat in &pats {
        subs.push(subscribe(&a, pat).await);
        subs.push(subscribe(&b, pat).await);
    }
    publish(&a, &format!("{p}.o.b"), "one").await;
    publish(&a, &format!("{p}.o.b"), "end").await;
    for sub in &mut subs {
        let got = until_marker(sub, b"end", "overlap").await;
        assert_eq!(
            got.len(),
            1,
            "{} got {} copies: {got:?}",
            sub.pattern(),
            got.len()
        );
        assert_eq!(got[0].payload().as_ref(), b"one");
    }
    // Deeper topics reach only the `>` subscriptions, once each.
    publish(&b, &format!("{p}.o.b.c"), "deep").await;
    publish(&b, &format!("{p}.o.b"), "end").await;
    for (i, sub) in subs.iter_mut().enumerate() {
        let got = until_marker(sub, b"end", "overlap deep").await;
        let is_rest = pats[i / 2].ends_with('>');
        assert_eq!(
            got.len(),
            usize::from(is_rest),
            "{}: {got:?}",
            sub.pattern()
        );
    }
    shut_down(&a).await;
    shut_down(&b).await;
}
