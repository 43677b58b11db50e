//! Case 3: `*` and `>` semantics from one table, overlapping subscriptions, no duplicates.

use std::time::Duration;

use pubsub_core::pattern::MATCH_TABLE;

use crate::kit::*;
use crate::Harness;

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
    // Each row's marker follows its message on a topic the pattern matches: the row's own topic
    // when it matches (order holds per topic, on every backend), or the pattern with its
    // wildcards replaced by one token.
    let markers: Vec<String> = rows
        .iter()
        .map(|(pat, t, want)| match want {
            true => t.clone(),
            false => pat
                .split('.')
                .map(|tok| if tok == "*" || tok == ">" { "m" } else { tok })
                .collect::<Vec<&str>>()
                .join("."),
        })
        .collect();
    for marker in &markers {
        publish(&publisher, marker, "marker").await;
    }
    let mut got: Vec<Vec<String>> = Vec::new();
    for ((pat, _, _), sub) in rows.iter().zip(&mut subs) {
        let before = until_marker(sub, b"marker", pat).await;
        got.push(before.iter().map(|m| m.topic().to_string()).collect());
    }
    // A wrong match on another topic may come after the marker (order across topics is not
    // promised everywhere): what arrives in a quiet period afterwards counts too.
    tokio::time::sleep(quiet()).await;
    for (sub, got) in subs.iter_mut().zip(&mut got) {
        for m in drain(sub, Duration::ZERO).await {
            if m.payload().as_ref() != b"marker" {
                got.push(m.topic().to_string());
            }
        }
    }
    for ((pat, t, want), got) in rows.iter().zip(got) {
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
    // Deeper topics reach only the `>` subscriptions, once each. The marker is on another
    // topic, and order holds per topic only (Kafka: a partition each, and a new topic is
    // found by discovery): each subscription waits for what it must get, in any order, then
    // a quiet period shows that nothing more comes.
    publish(&b, &format!("{p}.o.b.c"), "deep").await;
    publish(&b, &format!("{p}.o.b"), "end").await;
    for (i, sub) in subs.iter_mut().enumerate() {
        let is_rest = pats[i / 2].ends_with('>');
        let mut want: Vec<&[u8]> = vec![b"end"];
        if is_rest {
            want.push(b"deep");
        }
        let mut got: Vec<Vec<u8>> = take(sub, want.len(), "overlap deep")
            .await
            .iter()
            .map(|m| m.payload().to_vec())
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{}", sub.pattern());
    }
    tokio::time::sleep(quiet()).await;
    for sub in &mut subs {
        let extra = drain(sub, Duration::ZERO).await;
        assert!(
            extra.is_empty(),
            "{}: a second copy {extra:?}",
            sub.pattern()
        );
    }
    shut_down(&a).await;
    shut_down(&b).await;
}

/// Thousands of wildcard subscriptions on one handle (`{p}.*.u{i}`; on Redis they share one
/// native glob) and 20 000 messages for one of them: that one gets every message in order,
/// the others get exactly their own messages and nothing else (fewer messages on a broker
/// lacking [`LongTopics`](crate::Capability::LongTopics)).
pub async fn shared_filter_fanin(h: &Harness) {
    const SUBS: usize = 2_000;
    const TARGET: usize = 7;
    const OWN: [usize; 4] = [0, 1, 999, SUBS - 1];
    let n = h.topic_volume(20_000);
    let p = unique_prefix("fanin");
    let (ps, publisher) = (connect(h).await, connect(h).await);
    let mut subs = Vec::with_capacity(SUBS);
    for i in 0..SUBS {
        subs.push(subscribe_cap(&ps, &format!("{p}.*.u{i}"), 16).await);
    }
    let target = format!("{p}.x.u{TARGET}");
    let mut reader = subscribe_cap(&ps, &format!("{p}.*.u{TARGET}"), n as usize + 16).await;
    let stats = ps.stats();
    assert_eq!(stats.subscriptions, SUBS + 1, "{stats:?}");
    assert!(
        (1..=SUBS).contains(&stats.native_filters),
        "equal patterns share a native filter: {stats:?}"
    );

    let reading = tokio::spawn(async move {
        let mut got = Vec::with_capacity(n as usize);
        receive(&mut reader, n as usize, idle(), |m| got.push(m)).await;
        (reader, got)
    });
    let started = std::time::Instant::now();
    for i in 0..n {
        publish(&publisher, &target, seq(4, i)).await;
    }
    let published = started.elapsed();
    let (mut reader, got) = reading.await.expect("the u7 reader panicked");
    assert_eq!(
        got.len(),
        n as usize,
        "the u7 reader received {} of {n} messages, {} dropped from its buffer; handle: {:?}",
        got.len(),
        reader.dropped(),
        ps.stats()
    );
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.topic().as_str(), target);
        assert_eq!(
            unseq(m),
            (4, i as u32),
            "the u7 reader: message {i} out of order"
        );
    }
    assert_eq!(reader.dropped(), 0, "the u7 reader dropped messages");
    println!(
        "conformance[{}] shared_filter_fanin: {n} messages past {SUBS} patterns in {published:?}",
        h.name
    );

    for (k, &i) in OWN.iter().enumerate() {
        for j in 0..3 {
            publish(&publisher, &format!("{p}.y.u{i}"), seq(k as u32, j)).await;
        }
    }
    publish(&publisher, &target, "end").await;
    assert_eq!(next_payload(&mut reader, "marker").await.as_ref(), b"end");
    // The own messages went to topics of their own, which a broker may order after the marker
    // (Kafka orders per topic, and finds a new topic by discovery): wait for each set.
    let mut own = Vec::with_capacity(OWN.len());
    for &i in &OWN {
        own.push(take(&mut subs[i], 3, "its own messages").await);
    }
    tokio::time::sleep(quiet()).await;

    for (i, sub) in subs.iter_mut().enumerate() {
        let mut got = drain(sub, Duration::ZERO).await;
        if let Some(k) = OWN.iter().position(|&o| o == i) {
            got.splice(0..0, std::mem::take(&mut own[k]));
        }
        if i == TARGET {
            // The same pattern as the reader's, with a 16-message buffer: the newest 16 of
            // n + 1 kept in order, the rest dropped and counted.
            let kept = got.len() as u64;
            assert_eq!(kept + sub.dropped(), u64::from(n) + 1, "{}", sub.pattern());
            assert_eq!(got.last().map(|m| m.payload().as_ref()), Some(&b"end"[..]));
        } else if let Some(k) = OWN.iter().position(|&o| o == i) {
            let seqs: Vec<(u32, u32)> = got.iter().map(unseq).collect();
            let want: Vec<(u32, u32)> = (0..3).map(|j| (k as u32, j)).collect();
            assert_eq!(
                seqs,
                want,
                "{} gets exactly its own messages",
                sub.pattern()
            );
            assert_eq!(sub.dropped(), 0);
        } else {
            assert!(got.is_empty(), "{} received {got:?}", sub.pattern());
            assert_eq!(sub.dropped(), 0, "{} dropped messages", sub.pattern());
        }
    }
    shut_down(&ps).await;
    shut_down(&publisher).await;
}
