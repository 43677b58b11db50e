//! Streams: replay then live, resuming from positions, history gaps, recovery through cuts,
//! patterns filtering the replay, two streams side by side, bad input, and a mass resume.
//!
//! Every case declares a stream under a fresh root, so runs never see each other's history.

use std::sync::Arc;
use std::time::Duration;

use pubsub_core::{
    Delivery, ErrorKind, Gap, Message, Offset, Position, PubSub, StartAt, StreamConfig,
    SubscribeOptions, Subscription,
};

use super::outage::{cut_until_down, restore_until_up};
use crate::kit::*;
use crate::Harness;

/// A stream under `{p}.>` with room for `max_len` messages, declared on every handle given.
pub(super) async fn declare(handles: &[&Arc<dyn PubSub>], p: &str, max_len: u64) -> StreamConfig {
    let stream = StreamConfig::new(pattern(&format!("{p}.>")))
        .with_max_len(max_len)
        .with_max_age(Duration::from_secs(600));
    for ps in handles {
        ps.declare_stream(stream.clone())
            .await
            .unwrap_or_else(|e| panic!("declaring stream `{p}.>`: {e}"));
    }
    stream
}

/// Subscribes to `patterns` beginning at `start`.
pub(super) async fn subscribe_from(
    ps: &Arc<dyn PubSub>,
    patterns: &[&str],
    start: StartAt,
) -> Subscription {
    let patterns = patterns.iter().map(|p| pattern(p)).collect();
    ps.subscribe_all(patterns, SubscribeOptions::default().starting_at(start))
        .await
        .unwrap_or_else(|e| panic!("subscribing from {start}: {e}"))
}

/// Reads `want` messages; panics on a gap or a wait longer than [`idle`].
pub(super) async fn messages(sub: &mut Subscription, want: usize, what: &str) -> Vec<Message> {
    let mut got = Vec::with_capacity(want);
    while got.len() < want {
        match tokio::time::timeout(idle(), sub.recv_delivery()).await {
            Ok(Some(Delivery::Message(m))) => got.push(m),
            Ok(Some(Delivery::Gap(gap))) => {
                panic!(
                    "{what}: a gap {gap:?} after {} of {want} messages",
                    got.len()
                )
            }
            Ok(Some(other)) => panic!("{what}: unexpected {other:?}"),
            Ok(None) => panic!(
                "{what}: the subscription ended after {} of {want}",
                got.len()
            ),
            Err(_) => panic!(
                "{what}: {} of {want} messages, then nothing within {:?}",
                got.len(),
                idle()
            ),
        }
    }
    got
}

/// Checks that `got` carries `(round, first..first + len)` in order, each with a position after
/// the one before.
pub(super) fn assert_run(got: &[Message], round: u32, first: u32, what: &str) {
    let mut previous: Option<Position> = None;
    for (i, m) in got.iter().enumerate() {
        let want = first + u32::try_from(i).expect("small");
        assert_eq!(
            unseq(m),
            (round, want),
            "{what}: lost, repeated or reordered at {i}"
        );
        let position = *m
            .position()
            .unwrap_or_else(|| panic!("{what}: message {want} has no position"));
        if let Some(before) = previous {
            assert!(
                position.is_after(&before),
                "{what}: positions out of order at {i}"
            );
        }
        previous = Some(position);
    }
}

/// A subscription beginning at the start of the history replays what was published before
/// it, then goes on live while another handle publishes at full speed throughout: every
/// message once, in order, positions increasing.
pub async fn stream_replay_then_live(h: &Harness) {
    const BEFORE: u32 = 300;
    const DURING: u32 = 3_000;
    let p = unique_prefix("replay");
    let (publisher, reader) = (connect(h).await, connect(h).await);
    declare(&[&publisher, &reader], &p, 100_000).await;
    let t = format!("{p}.t");
    for i in 0..BEFORE {
        publish(&publisher, &t, seq(0, i)).await;
    }
    let writer = {
        let (publisher, t) = (publisher.clone(), t.clone());
        tokio::spawn(async move {
            for i in BEFORE..BEFORE + DURING {
                publish(&publisher, &t, seq(0, i)).await;
            }
        })
    };
    let mut sub = subscribe_from(&reader, &[format!("{p}.>").as_str()], StartAt::Start).await;
    let got = messages(&mut sub, (BEFORE + DURING) as usize, "replay then live").await;
    writer.await.expect("publisher task");
    assert_run(&got, 0, 0, "replay then live");
    expect_silence(&mut sub, "after the last message").await;
    shut_down(&publisher).await;
    shut_down(&reader).await;
}

/// Resuming after each position of a run (as text, parsed back) yields exactly the rest of
/// the run; `last:N` the last N; `now` nothing old.
pub async fn stream_resume_from_position(h: &Harness) {
    const N: u32 = 40;
    let p = unique_prefix("resume");
    let ps = connect(h).await;
    declare(&[&ps], &p, 10_000).await;
    let t = format!("{p}.t");
    for i in 0..N {
        publish(&ps, &t, seq(1, i)).await;
    }
    let all = {
        let mut sub = subscribe_from(&ps, &[t.as_str()], StartAt::Start).await;
        messages(&mut sub, N as usize, "the whole run").await
    };
    assert_run(&all, 1, 0, "the whole run");
    for k in [0usize, 1, 17, 38, 39] {
        let text = all[k].position().expect("position").to_string();
        assert!(text.len() <= 64, "a position's text is short: {text}");
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b)),
            "a position's text is URL-safe: {text}"
        );
        let start: StartAt = text.parse().expect("a position parses back");
        let mut sub = subscribe_from(&ps, &[t.as_str()], start).await;
        let rest = N as usize - k - 1;
        let got = messages(&mut sub, rest, &format!("after #{k}")).await;
        assert_run(
            &got,
            1,
            u32::try_from(k + 1).expect("small"),
            &format!("after #{k}"),
        );
        expect_silence(&mut sub, &format!("after #{k}: nothing more")).await;
    }
    let mut last = subscribe_from(&ps, &[t.as_str()], StartAt::Last(5)).await;
    assert_run(&messages(&mut last, 5, "last:5").await, 1, N - 5, "last:5");
    let mut now = subscribe_from(&ps, &[t.as_str()], StartAt::Now).await;
    // With headers: they come through the stream as they were published, live and replayed.
    let with_headers = Message::builder(topic(&t))
        .payload(seq(1, N))
        .header("x-app", "kept")
        .header("x-order", "2")
        .build()
        .expect("message");
    ps.publish(with_headers).await.expect("publish");
    let live = messages(&mut now, 1, "now").await;
    assert_run(&live, 1, N, "now");
    let after_last = StartAt::After(*all[N as usize - 1].position().expect("position"));
    let mut replayed = subscribe_from(&ps, &[t.as_str()], after_last).await;
    let replayed = messages(&mut replayed, 1, "replayed with headers").await;
    for (m, what) in [(&live[0], "live"), (&replayed[0], "replayed")] {
        let headers: Vec<(&str, &str)> = m.headers().iter().collect();
        assert_eq!(
            headers,
            [("x-app", "kept"), ("x-order", "2")],
            "{what}: headers through the stream"
        );
    }
    shut_down(&ps).await;
}

/// A position older than the stream still holds (trimmed past `max_len`): a
/// [`Gap::History`] first, then the oldest message held, and on to the last, in order.
pub async fn stream_trimmed_gap(h: &Harness) {
    const N: u32 = 600;
    let p = unique_prefix("trim");
    let ps = connect(h).await;
    declare(&[&ps], &p, 20).await;
    let t = format!("{p}.t");
    let mut first = subscribe_from(&ps, &[t.as_str()], StartAt::Now).await;
    publish(&ps, &t, seq(2, 0)).await;
    let position = *messages(&mut first, 1, "the first message").await[0]
        .position()
        .expect("position");
    drop(first);
    for i in 1..N {
        publish(&ps, &t, seq(2, i)).await;
    }
    let mut sub = subscribe_from(&ps, &[t.as_str()], StartAt::After(position)).await;
    match tokio::time::timeout(idle(), sub.recv_delivery()).await {
        Ok(Some(Delivery::Gap(Gap::History {
            reset: false,
            missed,
        }))) => {
            if let Some(missed) = missed {
                assert!(missed > 0, "a history gap of zero messages");
            }
        }
        other => panic!("expected a history gap first, got {other:?}"),
    }
    let mut got = Vec::new();
    while let Some(m) = next_within(&mut sub, quiet()).await {
        got.push(m);
        if unseq(got.last().expect("one")) == (2, N - 1) {
            break;
        }
    }
    let first_held = unseq(got.first().expect("the oldest held")).1;
    assert!(
        first_held > 1,
        "nothing was trimmed: the stream kept {first_held}.."
    );
    assert_run(&got, 2, first_held, "after the history gap");
    shut_down(&ps).await;
}

/// A position of the stream's earlier life (another epoch: the log was lost and re-created)
/// is never taken for a place in the log now: a reset [`Gap::History`], then the log from
/// its start. Where the harness can destroy a stream's history at the broker
/// ([`Harness::with_history_loss`]), it does, and a position from before the loss is
/// recognised the same way; otherwise a forged epoch stands for it.
pub async fn stream_reset_gap(h: &Harness) {
    let p = unique_prefix("reset");
    let ps = connect(h).await;
    declare(&[&ps], &p, 1_000).await;
    let t = format!("{p}.t");
    let mut sub = subscribe_from(&ps, &[t.as_str()], StartAt::Now).await;
    for i in 0..3 {
        publish(&ps, &t, seq(3, i)).await;
    }
    let got = messages(&mut sub, 3, "three messages").await;
    drop(sub);
    let real = *got[2].position().expect("position");
    let forged = Position::new(real.stream_tag(), real.epoch() ^ 0x5a5a, real.offset());
    expect_reset(&ps, &t, forged, 3, 0, "a forged epoch").await;
    if let Some(lose) = &h.lose_history {
        lose(format!("{p}.>"))
            .await
            .unwrap_or_else(|e| panic!("destroying the stream's history: {e}"));
        for i in 10..12 {
            publish(&ps, &t, seq(3, i)).await;
        }
        expect_reset(&ps, &t, real, 2, 10, "a history lost at the broker").await;
    }
    shut_down(&ps).await;
}

/// Subscribing after `old`, a position of another life of the log, gives a reset history gap
/// and then the `count` messages of round 3 from `first` (the log now).
async fn expect_reset(
    ps: &Arc<dyn PubSub>,
    t: &str,
    old: Position,
    count: usize,
    first: u32,
    what: &str,
) {
    let mut resumed = subscribe_from(ps, &[t], StartAt::After(old)).await;
    match tokio::time::timeout(idle(), resumed.recv_delivery()).await {
        Ok(Some(Delivery::Gap(Gap::History { reset: true, .. }))) => {}
        other => panic!("{what}: expected a reset history gap first, got {other:?}"),
    }
    let got = messages(&mut resumed, count, what).await;
    assert_run(&got, 3, first, what);
    assert_ne!(
        got[0].position().expect("position").epoch(),
        old.epoch(),
        "{what}: the log now has another epoch"
    );
    expect_silence(&mut resumed, what).await;
}

/// A subscription under a stream on a handle whose connection is cut again and again while
/// another handle keeps publishing loses nothing: every message once, in order, and no
/// outage gap.
pub async fn stream_recovery_through_cuts(h: &Harness) {
    const CUTS: u32 = 3;
    let p = unique_prefix("recover");
    let (ps, link) = connect_cuttable(h).await;
    let healthy = connect_peer(h, &*link).await;
    declare(&[&ps, &healthy], &p, 100_000).await;
    let t = format!("{p}.t");
    let mut sub = subscribe_from(&ps, &[format!("{p}.>").as_str()], StartAt::Now).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (healthy, t, stop) = (healthy.clone(), t.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                publish(&healthy, &t, seq(4, i)).await;
                i += 1;
                if i.is_multiple_of(20) {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            i
        })
    };
    let mut state = ps.watch_connection();
    for _ in 0..CUTS {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cut_until_down(&*link, &mut state).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        restore_until_up(&*link, &mut state).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let published = writer.await.expect("publisher task");
    let got = messages(&mut sub, published as usize, "through the cuts").await;
    assert_run(&got, 4, 0, "through the cuts");
    expect_silence(&mut sub, "after the last message").await;
    shut_down(&ps).await;
    shut_down(&healthy).await;
}

/// The replay gives a subscription only what its patterns match, in stream order.
pub async fn stream_patterns_filter_replay(h: &Harness) {
    const N: u32 = 100;
    let p = unique_prefix("filter");
    let ps = connect(h).await;
    declare(&[&ps], &p, 10_000).await;
    for i in 0..N {
        let leaf = if i.is_multiple_of(2) { "even" } else { "odd" };
        publish(&ps, &format!("{p}.{leaf}.x"), seq(5, i / 2)).await;
    }
    let mut even = subscribe_from(&ps, &[format!("{p}.even.*").as_str()], StartAt::Start).await;
    let got = messages(&mut even, (N / 2) as usize, "even").await;
    assert_run(&got, 5, 0, "even");
    assert!(got.iter().all(|m| m.topic().as_str().contains(".even.")));
    expect_silence(&mut even, "no odd one").await;
    shut_down(&ps).await;
}

/// Two streams side by side: each subscription replays its own, positions name their stream,
/// and one stream's position is refused by the other.
pub async fn stream_two_side_by_side(h: &Harness) {
    let (p, q) = (unique_prefix("side_a"), unique_prefix("side_b"));
    let ps = connect(h).await;
    declare(&[&ps], &p, 1_000).await;
    declare(&[&ps], &q, 1_000).await;
    for i in 0..10 {
        publish(&ps, &format!("{p}.t"), seq(6, i)).await;
        publish(&ps, &format!("{q}.t"), seq(7, i)).await;
    }
    let mut a = subscribe_from(&ps, &[format!("{p}.>").as_str()], StartAt::Start).await;
    let mut b = subscribe_from(&ps, &[format!("{q}.>").as_str()], StartAt::Start).await;
    let (ga, gb) = (
        messages(&mut a, 10, "a").await,
        messages(&mut b, 10, "b").await,
    );
    assert_run(&ga, 6, 0, "stream a");
    assert_run(&gb, 7, 0, "stream b");
    let from_a = StartAt::After(*ga[0].position().expect("position"));
    let refused = ps
        .subscribe_all(
            vec![pattern(&format!("{q}.>"))],
            SubscribeOptions::default().starting_at(from_a),
        )
        .await
        .expect_err("a position of another stream");
    assert_eq!(refused.kind(), ErrorKind::Invalid, "{refused}");
    shut_down(&ps).await;
}

/// Bad input is a typed `Invalid` error: zero limits, a conflicting declaration, overlapping
/// roots, a start for patterns under no stream, patterns across two streams, a token that is
/// not a position.
pub async fn stream_bad_input(h: &Harness) {
    let p = unique_prefix("bad");
    let ps = connect(h).await;
    let root = pattern(&format!("{p}.>"));
    let invalid = |what: &str, result: pubsub_core::Result<()>| match result {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Invalid, "{what}: {e}"),
        Ok(()) => panic!("{what}: accepted"),
    };
    invalid(
        "max_len 0",
        ps.declare_stream(StreamConfig::new(root.clone()).with_max_len(0))
            .await,
    );
    invalid(
        "max_age 0",
        ps.declare_stream(StreamConfig::new(root.clone()).with_max_age(Duration::ZERO))
            .await,
    );
    declare(&[&ps], &p, 100).await;
    declare(&[&ps], &p, 100).await; // idempotent
    invalid(
        "other limits",
        ps.declare_stream(StreamConfig::new(root.clone()).with_max_len(5))
            .await,
    );
    invalid(
        "an overlapping root",
        ps.declare_stream(StreamConfig::new(pattern(&format!("{p}.a.>"))))
            .await,
    );
    let outside = ps
        .subscribe_all(
            vec![pattern(&format!("{p}x.>"))],
            SubscribeOptions::default().starting_at(StartAt::Start),
        )
        .await;
    invalid("a start outside any stream", outside.map(drop));
    for token in [
        "",
        "ps1",
        "ps1-zz-1-2-3",
        "0-1",
        "../../etc",
        "ps1-1-2-3-4-5",
    ] {
        invalid(
            &format!("token {token:?}"),
            token.parse::<StartAt>().map(drop),
        );
    }
    // A position with this stream's tag but an offset far in the future of this epoch is a
    // place after the end: nothing, and no panic.
    let t = format!("{p}.t");
    let mut sub = subscribe_from(&ps, &[t.as_str()], StartAt::Now).await;
    publish(&ps, &t, "x").await;
    let real = *messages(&mut sub, 1, "one").await[0]
        .position()
        .expect("position");
    let future = Position::new(real.stream_tag(), real.epoch(), Offset(u64::MAX, u64::MAX));
    let mut beyond = subscribe_from(&ps, &[t.as_str()], StartAt::After(future)).await;
    expect_silence(&mut beyond, "after a position beyond the end").await;
    shut_down(&ps).await;
}

/// A thousand subscriptions under a stream on one handle, cut off while messages are
/// published, all recover every message they missed once the handle is up again.
pub async fn stream_mass_resume(h: &Harness) {
    const SUBSCRIPTIONS: usize = 1_000;
    const MISSED: u32 = 100;
    let p = unique_prefix("mass");
    let (ps, link) = connect_cuttable(h).await;
    let healthy = connect_peer(h, &*link).await;
    declare(&[&ps, &healthy], &p, 100_000).await;
    let t = format!("{p}.t");
    let mut subs = Vec::with_capacity(SUBSCRIPTIONS);
    for _ in 0..SUBSCRIPTIONS {
        subs.push(subscribe_from(&ps, &[t.as_str()], StartAt::Now).await);
    }
    let mut state = ps.watch_connection();
    cut_until_down(&*link, &mut state).await;
    for i in 0..MISSED {
        publish(&healthy, &t, seq(8, i)).await;
    }
    restore_until_up(&*link, &mut state).await;
    let reads = subs.iter_mut().map(|sub| async move {
        let got = messages(sub, MISSED as usize, "mass resume").await;
        assert_run(&got, 8, 0, "mass resume");
    });
    futures::future::join_all(reads).await;
    shut_down(&ps).await;
    shut_down(&healthy).await;
}
