//! Small helpers the scenarios share: connecting, parsing, bounded waits.

use std::sync::Arc;
use std::time::Duration;

use pubsub_core::{Message, Pattern, PubSub, SubscribeOptions, Subscription, Topic};

use crate::{idle_timeout, Harness};

/// How long a wait for the next message may stay idle before the case fails.
pub(crate) fn idle() -> Duration {
    idle_timeout(Duration::from_secs(10))
}

/// How long a case waits to be sure that nothing (more) arrives.
pub(crate) fn quiet() -> Duration {
    idle_timeout(Duration::from_millis(300))
}

pub(crate) async fn connect(h: &Harness) -> Arc<dyn PubSub> {
    match (h.connect)().await {
        Ok(ps) => ps,
        Err(e) => panic!("[{}] cannot connect to the broker: {e}", h.name),
    }
}

pub(crate) fn topic(s: &str) -> Topic {
    Topic::new(s).unwrap_or_else(|e| panic!("test topic {s:?} is invalid: {e}"))
}

pub(crate) fn pattern(s: &str) -> Pattern {
    Pattern::new(s).unwrap_or_else(|e| panic!("test pattern {s:?} is invalid: {e}"))
}

pub(crate) async fn subscribe(ps: &Arc<dyn PubSub>, p: &str) -> Subscription {
    ps.subscribe(pattern(p))
        .await
        .unwrap_or_else(|e| panic!("[{}] subscribe {p}: {e}", ps.backend()))
}

pub(crate) async fn subscribe_cap(ps: &Arc<dyn PubSub>, p: &str, cap: usize) -> Subscription {
    ps.subscribe_with(pattern(p), SubscribeOptions::default().with_capacity(cap))
        .await
        .unwrap_or_else(|e| panic!("[{}] subscribe {p}: {e}", ps.backend()))
}

pub(crate) async fn publish(ps: &Arc<dyn PubSub>, t: &str, payload: impl Into<bytes::Bytes>) {
    ps.publish(Message::new(topic(t), payload))
        .await
        .unwrap_or_else(|e| panic!("[{}] publish {t}: {e}", ps.backend()))
}

/// The next message, failing the case after an idle timeout.
pub(crate) async fn next(sub: &mut Subscription, what: &str) -> Message {
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

/// Exactly `n` messages (idle timeout reset on each).
pub(crate) async fn take(sub: &mut Subscription, n: usize, what: &str) -> Vec<Message> {
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
pub(crate) async fn until_marker(
    sub: &mut Subscription,
    marker: &[u8],
    what: &str,
) -> Vec<Message> {
    let mut got = Vec::new();
    loop {
        let m = next(sub, what).await;
        if m.payload().as_ref() == marker {
            return got;
        }
        got.push(m);
    }
}

/// Fails if anything arrives within the quiet period.
pub(crate) async fn expect_silence(sub: &mut Subscription, what: &str) {
    if let Ok(Some(m)) = tokio::time::timeout(quiet(), sub.recv()).await {
        panic!("{what}: {} unexpectedly received {m:?}", sub.pattern());
    }
}

/// Polls `cond` until it holds, failing after `limit`.
pub(crate) async fn eventually(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + idle_timeout(limit);
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            panic!("{what}: still not true after {:?}", idle_timeout(limit));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub(crate) async fn shut_down(ps: &Arc<dyn PubSub>) {
    ps.close()
        .await
        .unwrap_or_else(|e| panic!("[{}] close: {e}", ps.backend()));
}

/// Encodes `(a, b)` as 8 bytes, for order checks.
pub(crate) fn seq(a: u32, b: u32) -> Vec<u8> {
    let mut v = a.to_be_bytes().to_vec();
    v.extend_from_slice(&b.to_be_bytes());
    v
}

pub(crate) fn unseq(m: &Message) -> (u32, u32) {
    let p = m.payload();
    assert!(p.len() == 8, "unexpected payload {m:?}");
    let a = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
    let b = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
    (a, b)
}
