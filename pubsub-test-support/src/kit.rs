//! The test kit: small helpers shared by the conformance scenarios and by every adapter's own
//! integration tests (parse, subscribe, publish, bounded waits, order checks). Connecting
//! through a conformance `Harness` is the suite's part (`conformance_tests::kit`).
//!
//! Every wait is bounded: a helper that expects something panics with what it waited for and
//! for how long; one that may see nothing returns an `Option` or a `Vec`. Handle arguments are
//! `&Arc<dyn PubSub>`, as the conformance harness connects them (wrap a concrete handle with `Arc::new`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pubsub_core::{
    Backoff, ErrorKind, Message, Pattern, PubSub, SubscribeOptions, Subscription, Topic,
    WithOptions,
};

pub use crate::names::{idle_timeout, unique_prefix};

/// How long a wait for the next message may stay idle before the case fails (10 s, scaled).
pub fn idle() -> Duration {
    idle_timeout(Duration::from_secs(10))
}

/// How long a case waits to be sure that nothing (more) arrives (300 ms, scaled).
pub fn quiet() -> Duration {
    idle_timeout(Duration::from_millis(300))
}

/// A concrete handle (such as `pubsub_core::Hub`) as the `Arc<dyn PubSub>` the kit takes.
pub fn shared(ps: impl PubSub + 'static) -> Arc<dyn PubSub> {
    Arc::new(ps)
}

/// Reconnect backoff for a handle behind a fault proxy: 20 ms, growing to at most 200 ms.
pub fn fast_backoff() -> Backoff {
    Backoff::default()
        .with_initial(Duration::from_millis(20))
        .with_max(Duration::from_millis(200))
}

/// Heartbeat for a handle behind a fault proxy (500 ms): a half-open connection is noticed in
/// a second or two instead of the default few seconds.
pub fn fast_heartbeat() -> Duration {
    Duration::from_millis(500)
}

/// Subscribes `ps` to `p`, then drops the handle and the subscription without `close`: the
/// handle first when `handle_first`, else the subscription first.
pub async fn abandon(ps: Arc<dyn PubSub>, p: &str, handle_first: bool) {
    let sub = subscribe(&ps, p).await;
    if handle_first {
        drop(ps);
        drop(sub);
    } else {
        drop(sub);
        drop(ps);
    }
}

/// A topic from a string that the test knows is valid.
pub fn topic(s: &str) -> Topic {
    Topic::new(s).unwrap_or_else(|e| panic!("test topic {s:?} is invalid: {e}"))
}

/// A pattern from a string that the test knows is valid.
pub fn pattern(s: &str) -> Pattern {
    Pattern::new(s).unwrap_or_else(|e| panic!("test pattern {s:?} is invalid: {e}"))
}

/// A message without headers.
pub fn msg(t: &str, payload: impl Into<Bytes>) -> Message {
    Message::new(topic(t), payload)
}

/// Subscribes with the default buffer; panics on error.
pub async fn subscribe(ps: &Arc<dyn PubSub>, p: &str) -> Subscription {
    ps.subscribe(pattern(p))
        .await
        .unwrap_or_else(|e| panic!("[{}] subscribe {p}: {e}", ps.backend()))
}

/// Subscribes with a buffer of `cap` messages; panics on error.
pub async fn subscribe_cap(ps: &Arc<dyn PubSub>, p: &str, cap: usize) -> Subscription {
    ps.subscribe_with(pattern(p), SubscribeOptions::default().with_capacity(cap))
        .await
        .unwrap_or_else(|e| panic!("[{}] subscribe {p}: {e}", ps.backend()))
}

/// Publishes a message without headers; panics on error.
pub async fn publish(ps: &Arc<dyn PubSub>, t: &str, payload: impl Into<Bytes>) {
    ps.publish(msg(t, payload))
        .await
        .unwrap_or_else(|e| panic!("[{}] publish {t}: {e}", ps.backend()))
}

/// Closes a handle; panics on error.
pub async fn shut_down(ps: &Arc<dyn PubSub>) {
    ps.close()
        .await
        .unwrap_or_else(|e| panic!("[{}] close: {e}", ps.backend()));
}

/// Asserts that `publish` and `subscribe` (under prefix `p`) fail with
/// [`ErrorKind::Closed`] on a closed handle.
pub async fn assert_closed(ps: &Arc<dyn PubSub>, p: &str) {
    let what = format!("{p}.after_close");
    match ps.publish(msg(&what, "x")).await {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Closed, "publish after close: {e}"),
        Ok(()) => panic!("[{}] publish after close succeeded", ps.backend()),
    }
    match ps.subscribe(pattern(&what)).await {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Closed, "subscribe after close: {e}"),
        Ok(_) => panic!("[{}] subscribe after close succeeded", ps.backend()),
    }
}

/// The next message, or `None` if the stream ended or nothing came within `wait`.
pub async fn next_within(sub: &mut Subscription, wait: Duration) -> Option<Message> {
    tokio::time::timeout(wait, sub.recv()).await.ok().flatten()
}

/// The next message, failing the test after an idle timeout ([`idle`]).
pub async fn next(sub: &mut Subscription, what: &str) -> Message {
    match tokio::time::timeout(idle(), sub.recv()).await {
        Ok(Some(m)) => m,
        Ok(None) => panic!("{what}: the stream of {} ended", sub.pattern()),
        Err(_) => panic!(
            "{what}: nothing arrived on {} within {:?}",
            sub.pattern(),
            idle()
        ),
    }
}

/// The payload of the next message ([`next`]).
pub async fn next_payload(sub: &mut Subscription, what: &str) -> Bytes {
    next(sub, what).await.payload().clone()
}

/// Receives up to `n` messages, handing each to `each`, until the subscription stays quiet
/// for `wait` (or its stream ends); returns how many arrived.
pub async fn receive(
    sub: &mut Subscription,
    n: usize,
    wait: Duration,
    mut each: impl FnMut(Message),
) -> usize {
    let mut got = 0;
    while got < n {
        match next_within(sub, wait).await {
            Some(m) => each(m),
            None => break,
        }
        got += 1;
    }
    got
}

/// Everything that arrives until the subscription stays quiet for `wait` (or its stream ends).
pub async fn drain(sub: &mut Subscription, wait: Duration) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(m) = next_within(sub, wait).await {
        out.push(m);
    }
    out
}

/// Exactly `n` messages (idle timeout reset on each).
pub async fn take(sub: &mut Subscription, n: usize, what: &str) -> Vec<Message> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        match tokio::time::timeout(idle(), sub.recv()).await {
            Ok(Some(m)) => got.push(m),
            Ok(None) => panic!(
                "{what}: stream of {} ended after {} of {n}",
                sub.pattern(),
                got.len()
            ),
            Err(_) => panic!(
                "{what}: {} received {} of {n} messages, then nothing for {:?}",
                sub.pattern(),
                got.len(),
                idle()
            ),
        }
    }
    got
}

/// Messages up to and including the first whose payload is `marker`; returns those before it.
pub async fn until_marker(sub: &mut Subscription, marker: &[u8], what: &str) -> Vec<Message> {
    let mut got = Vec::new();
    loop {
        let m = next(sub, what).await;
        if m.payload().as_ref() == marker {
            return got;
        }
        got.push(m);
    }
}

/// Fails if anything arrives within the quiet period ([`quiet`]).
pub async fn expect_silence(sub: &mut Subscription, what: &str) {
    if let Ok(Some(m)) = tokio::time::timeout(quiet(), sub.recv()).await {
        panic!("{what}: {} unexpectedly received {m:?}", sub.pattern());
    }
}

/// Polls `cond` until it holds, failing after `limit` (scaled).
pub async fn eventually(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + idle_timeout(limit);
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            panic!("{what}: still not true after {:?}", idle_timeout(limit));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until no more tasks than `baseline` are alive on this runtime (a closed or dropped
/// handle leaves none behind), failing after `limit` (scaled).
pub async fn tasks_settle(baseline: usize, limit: Duration) {
    let metrics = tokio::runtime::Handle::current().metrics();
    let what = format!("back to {baseline} live tasks");
    eventually(&what, limit, || metrics.num_alive_tasks() <= baseline).await;
}

/// Encodes `(a, b)` as 8 bytes, for order checks.
pub fn seq(a: u32, b: u32) -> Vec<u8> {
    let mut v = a.to_be_bytes().to_vec();
    v.extend_from_slice(&b.to_be_bytes());
    v
}

/// Decodes a payload made by [`seq`]; panics on any other payload.
pub fn unseq(m: &Message) -> (u32, u32) {
    let p = m.payload();
    assert!(p.len() == 8, "unexpected payload {m:?}");
    let a = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
    let b = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
    (a, b)
}

/// The deadlines of a handle a test faults, on any backend's configuration.
pub trait FaultedDeadlines: WithOptions {
    /// Publish timeout 500 ms, [`fast_heartbeat`], command timeout 2 s (add [`fast_backoff`]
    /// where the backend reconnects with a backoff).
    fn with_faulted_deadlines(self) -> Self {
        self.with_publish_timeout(Duration::from_millis(500))
            .with_heartbeat(fast_heartbeat())
            .with_command_timeout(Duration::from_secs(2))
    }
}

impl<C: WithOptions> FaultedDeadlines for C {}
