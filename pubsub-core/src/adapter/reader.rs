//! [`drain_broadcast`]: the reader task of a client library that hands out received messages
//! on a tokio broadcast channel.

use std::hash::Hash;

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::broadcast::Receiver;

use super::Inbound;

/// Most messages handled in a row before the reader yields to the scheduler.
const DRAIN_BATCH: usize = 256;

/// Reads `messages` until the channel closes, handing each to `route` (which translates it and
/// calls [`Inbound::deliver`] or [`Inbound::deliver_via`]).
///
/// Each wake-up handles what is already queued without going back to the scheduler, up to a
/// bound. When the reader falls so far behind that the channel overwrote messages, the loss is
/// logged (naming `channel`, the client's channel, with the advice to enlarge it) and counted
/// with [`Inbound::record_lost`]: every subscription gets a
/// [`Gap::Dropped`](crate::Gap::Dropped), since the channel does not say which topics were lost.
pub async fn drain_broadcast<T, F, R>(
    mut messages: Receiver<T>,
    inbound: Inbound<F>,
    channel: &'static str,
    mut route: R,
) where
    T: Clone,
    F: Clone + Eq + Hash,
    R: FnMut(&Inbound<F>, T),
{
    let lagged = |lost: u64| {
        tracing::warn!(
            lost,
            channel,
            "the reader fell behind its client's channel and lost messages; \
             consider a larger capacity"
        );
        inbound.record_lost(lost);
    };
    loop {
        match messages.recv().await {
            Ok(message) => route(&inbound, message),
            Err(RecvError::Lagged(lost)) => lagged(lost),
            Err(RecvError::Closed) => return,
        }
        for _ in 0..DRAIN_BATCH {
            match messages.try_recv() {
                Ok(message) => route(&inbound, message),
                Err(TryRecvError::Lagged(lost)) => lagged(lost),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::{launch, Driver};
    use crate::{CommonOptions, Delivery, Gap, Message, Pattern, Result, Topic};
    use async_trait::async_trait;
    use tokio::sync::broadcast;

    /// A driver that only hands out its inbound.
    #[derive(Debug)]
    struct Bare;

    #[async_trait]
    impl Driver for Bare {
        type Filter = String;
        const BACKEND: &'static str = "bare";
        fn max_payload(&self) -> usize {
            64
        }
        fn native_filter(&self, pattern: &Pattern) -> Result<String> {
            Ok(pattern.as_str().to_string())
        }
        async fn publish(&self, _message: Message) -> Result<()> {
            Ok(())
        }
        async fn add_filters(&self, _filters: &[String]) -> Result<()> {
            Ok(())
        }
        async fn remove_filters(&self, _filters: &[String]) -> Result<()> {
            Ok(())
        }
        async fn close(&self) -> Result<()> {
            Ok(())
        }
    }

    /// Routes every message until the channel closes, and counts what the channel overwrote
    /// as drops that every subscription sees.
    #[tokio::test]
    async fn routes_and_counts_lag_as_drops() {
        let (tx, inbound) = tokio::sync::oneshot::channel();
        let handle = launch(CommonOptions::default(), |cx| async move {
            cx.supervisor.link().up();
            let _ = tx.send(cx.inbound);
            Ok(Bare)
        })
        .await
        .unwrap();
        let inbound = inbound.await.unwrap();
        let sub = handle.subscribe("a.>".parse().unwrap()).await.unwrap();
        let (messages, rx) = broadcast::channel::<u32>(2);
        for i in 0..5 {
            messages.send(i).unwrap();
        }
        drop(messages);
        let mut routed = Vec::new();
        drain_broadcast(rx, inbound, "test channel", |inbound, n| {
            routed.push(n);
            let topic = Topic::new(&format!("a.{n}")).unwrap();
            inbound.deliver(Message::new(topic, "x"));
        })
        .await;
        assert_eq!(routed, [3, 4], "the channel kept the last two");
        assert_eq!(handle.stats().dropped, 3);
        let mut deliveries = sub.deliveries();
        let first = futures::StreamExt::next(&mut deliveries).await;
        assert!(
            matches!(first, Some(Delivery::Gap(Gap::Dropped { count: 3 }))),
            "{first:?}"
        );
        handle.close().await.unwrap();
    }
}
