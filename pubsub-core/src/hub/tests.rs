//! The hub and its reconciler against a scripted driver.

use std::collections::HashSet;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::Mutex;

use super::*;
use crate::adapter::{launch, Context, FiltersInUse, Inbound, LinkReporter};
use crate::{Backoff, ErrorKind, WithOptions};

/// A driver that records filter changes, can refuse or stall them, and lets the test inject
/// messages. Like Redis, `>` and `*` both become a broad glob, so `a.*` and `a.>` share one.
#[derive(Debug, Default)]
struct Scripted {
    log: Mutex<Vec<String>>,
    /// Adds of these filters fail.
    refuse: Mutex<HashSet<String>>,
    /// Removals fail this many more times.
    refuse_removals: AtomicU32,
    /// Adds of these filters never complete.
    stall: Mutex<HashSet<String>>,
    inbound: Mutex<Option<Inbound<String>>>,
    link: Mutex<Option<LinkReporter>>,
    /// Plans: beyond this many wildcard filters in use, a new wildcard pattern gets `*`.
    budget: Mutex<Option<usize>>,
}

#[derive(Debug)]
struct Driven(Arc<Scripted>);

#[async_trait]
impl Driver for Driven {
    type Filter = String;
    const BACKEND: &'static str = "scripted";

    fn max_payload(&self) -> usize {
        8
    }

    fn native_filter(&self, pattern: &Pattern) -> Result<String> {
        Ok(pattern.as_str().replace('>', "*"))
    }

    fn plan_filter(&self, pattern: &Pattern, in_use: &dyn FiltersInUse<String>) -> Result<String> {
        let own = self.native_filter(pattern)?;
        match *self.0.budget.lock() {
            Some(budget) if self.is_wildcard(&own) && in_use.wildcards() >= budget => {
                Ok("*".into())
            }
            _ => Ok(own),
        }
    }

    fn is_wildcard(&self, filter: &String) -> bool {
        filter.contains('*')
    }

    async fn publish(&self, _message: Message) -> Result<()> {
        Ok(())
    }

    async fn add_filters(&self, filters: &[String]) -> Result<()> {
        let stalled = filters.iter().any(|f| self.0.stall.lock().contains(f));
        if stalled {
            std::future::pending::<()>().await;
        }
        if filters.iter().any(|f| self.0.refuse.lock().contains(f)) {
            return Err(Error::timeout("refused"));
        }
        let mut sorted = filters.to_vec();
        sorted.sort();
        self.0.log.lock().push(format!("+{}", sorted.join(",")));
        Ok(())
    }

    async fn remove_filters(&self, filters: &[String]) -> Result<()> {
        let refuse = self
            .0
            .refuse_removals
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if refuse.is_ok() {
            return Err(Error::connection("removal refused", "test"));
        }
        self.0.log.lock().push(format!("-{}", filters.join(",")));
        Ok(())
    }

    async fn restore_filters(&self, filters: &[String]) -> Result<()> {
        let mut sorted = filters.to_vec();
        sorted.sort();
        self.0
            .log
            .lock()
            .push(format!("restore {}", sorted.join(",")));
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        self.0.log.lock().push("close".into());
        Ok(())
    }
}

async fn hub() -> (Hub, Arc<Scripted>) {
    let s = Arc::new(Scripted::default());
    let script = s.clone();
    let options = CommonOptions::default()
        .with_command_timeout(Duration::from_secs(2))
        .with_publish_timeout(Duration::from_millis(300))
        .with_backoff(
            Backoff::default()
                .with_initial(Duration::from_millis(10))
                .with_max(Duration::from_millis(50)),
        );
    let hub = launch(options, |cx: Context<String>| async move {
        let link = cx.supervisor.link();
        link.up();
        *script.inbound.lock() = Some(cx.inbound);
        *script.link.lock() = Some(link);
        Ok(Driven(script))
    })
    .await
    .unwrap();
    (hub, s)
}

fn msg(t: &str) -> Message {
    Message::new(t.parse().unwrap(), "x")
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{what}: still not true");
}

#[tokio::test]
async fn native_filters_are_reference_counted() {
    let (hub, s) = hub().await;
    let a = hub.subscribe("a.*".parse().unwrap()).await.unwrap();
    let b = hub.subscribe("a.>".parse().unwrap()).await.unwrap();
    let c = hub.subscribe("a.b".parse().unwrap()).await.unwrap();
    assert_eq!(*s.log.lock(), ["+a.*", "+a.b"]);
    assert_eq!(hub.stats().native_filters, 2);
    a.unsubscribe().await.unwrap();
    assert_eq!(s.log.lock().len(), 2, "a.> still needs the glob");
    b.unsubscribe().await.unwrap();
    assert_eq!(*s.log.lock(), ["+a.*", "+a.b", "-a.*"]);
    drop(c);
    eventually("the dropped subscription's filter is removed", || {
        hub.stats().native_filters == 0
    })
    .await;
    assert_eq!(s.log.lock().last().unwrap(), "-a.b");
    assert_eq!(hub.stats().subscriptions, 0);
}

#[tokio::test]
async fn concurrent_subscribes_are_batched() {
    let (hub, s) = hub().await;
    let subs = futures::future::join_all(
        (0..50).map(|i| hub.subscribe(format!("t.{i}").parse().unwrap())),
    )
    .await;
    assert!(subs.iter().all(|s| s.is_ok()));
    assert_eq!(hub.stats().native_filters, 50);
    let calls = s.log.lock().len();
    assert!(calls < 50, "50 filters in {calls} driver calls");
}

#[tokio::test]
async fn overlapping_filters_give_one_copy_each() {
    let (hub, s) = hub().await;
    let mut star = hub.subscribe("a.*".parse().unwrap()).await.unwrap();
    let mut exact = hub.subscribe("a.b".parse().unwrap()).await.unwrap();
    let mut rest = hub.subscribe("a.>".parse().unwrap()).await.unwrap();
    let inbound = s.inbound.lock().clone().unwrap();
    // The broker sends one copy per matching native subscription.
    inbound.deliver_via(&"a.b".to_string(), msg("a.b"));
    inbound.deliver_via(&"a.*".to_string(), msg("a.b"));
    // The glob crosses dots; the exact matcher keeps `a.*` from getting `a.b.c`.
    inbound.deliver_via(&"a.*".to_string(), msg("a.b.c"));
    // A filter the handle does not have delivers nothing.
    inbound.deliver_via(&"zzz".to_string(), msg("a.b"));
    hub.close().await.unwrap();
    let topics = |v: Vec<Message>| v.iter().map(|m| m.topic().to_string()).collect::<Vec<_>>();
    assert_eq!(topics((&mut star).collect().await), ["a.b"]);
    assert_eq!(topics((&mut exact).collect().await), ["a.b"]);
    assert_eq!(topics((&mut rest).collect().await), ["a.b", "a.b.c"]);
    assert_eq!(hub.stats().delivered, 4);
}

/// Thousands of subscriptions share one native filter; a message reaches exactly the ones
/// whose pattern matches (routed through the trie, not by scanning the filter's routes).
#[tokio::test]
async fn many_patterns_sharing_one_filter() {
    let (hub, s) = hub().await;
    let mut subs = Vec::new();
    for i in 0..4000 {
        subs.push(
            hub.subscribe(format!("p.*.u{i}").parse().unwrap())
                .await
                .unwrap(),
        );
    }
    assert_eq!(hub.stats().native_filters, 4000);
    let shared = hub.subscribe("p.>".parse().unwrap()).await.unwrap();
    assert_eq!(*s.log.lock().last().unwrap(), "+p.*");
    let inbound = s.inbound.lock().clone().unwrap();
    for _ in 0..100 {
        inbound.deliver_via(&"p.*".to_string(), msg("p.x.u7"));
    }
    assert_eq!(shared.len(), 100);
    assert!(
        subs.iter().all(|s| s.is_empty()),
        "p.*.uN has its own filter"
    );
    inbound.deliver_via(&"p.*.u7".to_string(), msg("p.x.u7"));
    assert_eq!(subs[7].len(), 1);
    assert_eq!(subs.iter().map(Subscription::len).sum::<usize>(), 1);
}

#[tokio::test]
async fn failed_subscribe_leaves_nothing_behind() {
    let (hub, s) = hub().await;
    s.refuse.lock().insert("x.y".into());
    let err = hub.subscribe("x.y".parse().unwrap()).await.unwrap_err();
    assert!(err.is_temporary(), "{err}");
    assert_eq!(err.backend_name(), Some("scripted"));
    assert_eq!(err.operation(), Some(Operation::Subscribe));
    assert_eq!(hub.stats().subscriptions, 0);
    s.refuse.lock().clear();
    // The filter's state was unknown; the reconciler removes it (the broker may have it).
    eventually("the unknown filter is released", || {
        hub.stats().native_filters == 0
    })
    .await;
    let _sub = hub.subscribe("x.y".parse().unwrap()).await.unwrap();
    assert_eq!(hub.stats().native_filters, 1);
}

#[tokio::test]
async fn a_failed_removal_is_retried() {
    let (hub, s) = hub().await;
    let sub = hub.subscribe("r.s".parse().unwrap()).await.unwrap();
    s.refuse_removals.store(2, Ordering::SeqCst);
    let err = sub.unsubscribe().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection);
    assert_eq!(err.operation(), Some(Operation::Unsubscribe));
    eventually("the removal is retried until it succeeds", || {
        s.log.lock().last().map(String::as_str) == Some("-r.s")
    })
    .await;
    assert_eq!(hub.stats().native_filters, 0);
}

#[tokio::test]
async fn a_stalled_subscribe_blocks_nothing_else() {
    let (hub, s) = hub().await;
    let _live = hub.subscribe("live".parse().unwrap()).await.unwrap();
    s.stall.lock().insert("stuck".into());
    let pending = tokio::spawn({
        let hub = hub.clone();
        async move { hub.subscribe("stuck".parse().unwrap()).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let quick = Duration::from_millis(500);
    let again = tokio::time::timeout(quick, hub.subscribe("live".parse().unwrap())).await;
    assert!(
        again.unwrap().is_ok(),
        "a live filter's subscribe returns at once"
    );
    let other = tokio::time::timeout(quick, hub.subscribe("other".parse().unwrap())).await;
    assert!(
        other.unwrap().is_ok(),
        "another filter's subscribe is not queued behind it"
    );
    tokio::time::timeout(quick, hub.publish(msg("live")))
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(3), hub.close())
        .await
        .expect("close does not wait for the stalled subscribe")
        .unwrap();
    let err = pending.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);
}

#[tokio::test]
async fn a_reconnect_replays_the_filters_before_publishing_resumes() {
    let (hub, s) = hub().await;
    let _a = hub.subscribe("a".parse().unwrap()).await.unwrap();
    let _b = hub.subscribe("b.>".parse().unwrap()).await.unwrap();
    let link = s.link.lock().clone().unwrap();
    link.down();
    assert!(!hub.connection_state().is_up());
    let err = hub.publish(msg("a")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    link.reconnected();
    let mut state = hub.watch_connection();
    tokio::time::timeout(
        Duration::from_secs(2),
        state.wait_for(ConnectionState::is_up),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(
        s.log.lock().contains(&"restore a,b.*".to_string()),
        "{:?}",
        s.log.lock()
    );
    hub.publish(msg("a")).await.unwrap();
}

#[tokio::test]
async fn limits_and_close() {
    let (hub, s) = hub().await;
    hub.publish(msg("t")).await.unwrap();
    let big = Message::new("t".parse().unwrap(), vec![0u8; 9]);
    let err = hub.publish(big).await.unwrap_err();
    assert_eq!(err.payload_limit(), Some((9, 8)));
    let mut sub = hub.subscribe("t".parse().unwrap()).await.unwrap();
    hub.close().await.unwrap();
    hub.close().await.unwrap();
    assert_eq!(s.log.lock().iter().filter(|l| *l == "close").count(), 1);
    assert!(sub.recv().await.is_none());
    assert_eq!(
        hub.publish(msg("t")).await.unwrap_err().kind(),
        ErrorKind::Closed
    );
    let err = hub.subscribe("t".parse().unwrap()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);
    assert_eq!(hub.stats().published, 1);
    assert_eq!(hub.connection_state(), ConnectionState::Closed);
}

#[tokio::test]
async fn dropping_the_handle_stops_its_tasks() {
    let (hub, s) = hub().await;
    let _sub = hub.subscribe("t".parse().unwrap()).await.unwrap();
    let weak = Arc::downgrade(&s);
    drop((hub, s, _sub));
    eventually("the driver is dropped with the handle", || {
        weak.strong_count() == 0
    })
    .await;
}

#[tokio::test]
async fn broker_side_drops_become_gaps_of_the_matching_subscriptions() {
    use crate::{Delivery, Gap};
    let (hub, s) = hub().await;
    let matching = hub.subscribe("a.*".parse().unwrap()).await.unwrap();
    let other = hub.subscribe("b.*".parse().unwrap()).await.unwrap();
    let inbound = s.inbound.lock().clone().unwrap();
    inbound.lost(&"a.x".parse().unwrap(), 2);
    inbound.lost(&"a.y".parse().unwrap(), 1);
    inbound.deliver_via(&"a.*".to_string(), msg("a.z"));
    assert_eq!((matching.dropped(), other.dropped()), (3, 0));
    assert_eq!(hub.stats().dropped, 3);
    let mut deliveries = matching.deliveries();
    assert_eq!(
        deliveries.next().await,
        Some(Delivery::Gap(Gap::Dropped { count: 3 }))
    );
    assert!(matches!(
        deliveries.next().await,
        Some(Delivery::Message(_))
    ));
    assert!(other.is_empty());
}

#[tokio::test]
async fn a_client_side_loss_of_unknown_topics_is_a_gap_in_every_subscription() {
    use crate::{Delivery, Gap, SubscribeOptions};
    let (hub, s) = hub().await;
    let one = hub.subscribe("a.*".parse().unwrap()).await.unwrap();
    let both = hub
        .subscribe_all(
            vec!["b.*".parse().unwrap(), "c.*".parse().unwrap()],
            SubscribeOptions::default(),
        )
        .await
        .unwrap();
    let inbound = s.inbound.lock().clone().unwrap();
    inbound.record_lost(5);
    assert_eq!(hub.stats().dropped, 5);
    for sub in [one, both] {
        let mut deliveries = sub.deliveries();
        assert_eq!(
            deliveries.next().await,
            Some(Delivery::Gap(Gap::Dropped { count: 5 })),
            "one gap per subscription, also with several patterns"
        );
    }
}

#[tokio::test]
async fn planned_filters_are_shared_and_deliver_once() {
    let (hub, s) = hub().await;
    *s.budget.lock() = Some(2);
    let mut a = hub.subscribe("a.*".parse().unwrap()).await.unwrap();
    let b = hub.subscribe("b.>".parse().unwrap()).await.unwrap();
    let exact = hub.subscribe("c.x".parse().unwrap()).await.unwrap();
    // Two wildcard filters in use (the exact one does not count): the next ones share `*`.
    let mut c = hub.subscribe("c.*".parse().unwrap()).await.unwrap();
    let mut d = hub.subscribe("d.>".parse().unwrap()).await.unwrap();
    assert_eq!(hub.stats().native_filters, 4);
    let inbound = s.inbound.lock().clone().unwrap();
    // A copy through each filter that matches: every subscription gets one.
    inbound.deliver_via(&"a.*".to_string(), msg("a.1"));
    inbound.deliver_via(&"*".to_string(), msg("a.1"));
    inbound.deliver_via(&"*".to_string(), msg("c.1"));
    inbound.deliver_via(&"*".to_string(), msg("d.1.2"));
    inbound.deliver_via(&"*".to_string(), msg("e.1"));
    assert_eq!(a.recv().await.unwrap().topic().as_str(), "a.1");
    assert_eq!(c.recv().await.unwrap().topic().as_str(), "c.1");
    assert_eq!(d.recv().await.unwrap().topic().as_str(), "d.1.2");
    assert!(a.is_empty() && b.is_empty() && c.is_empty() && d.is_empty() && exact.is_empty());
    // The shared filter goes once its last subscription leaves.
    c.unsubscribe().await.unwrap();
    assert_eq!(hub.stats().native_filters, 4);
    d.unsubscribe().await.unwrap();
    assert_eq!(hub.stats().native_filters, 3);
    // Under the budget again: a new pattern gets its own filter.
    b.unsubscribe().await.unwrap();
    let _e = hub.subscribe("e.*".parse().unwrap()).await.unwrap();
    assert!(s.log.lock().iter().any(|l| l == "+e.*"));
    hub.close().await.unwrap();
}

#[tokio::test]
async fn a_filter_the_broker_refuses_later_ends_its_subscriptions() {
    use crate::EndReason;
    let (hub, s) = hub().await;
    // `a.*` and `a.>` share the filter `a.*`; `b.c` has its own.
    let mut one = hub.subscribe("a.*".parse().unwrap()).await.unwrap();
    let mut two = hub.subscribe("a.>".parse().unwrap()).await.unwrap();
    let mut other = hub.subscribe("b.c".parse().unwrap()).await.unwrap();
    let inbound = s.inbound.lock().clone().unwrap();
    inbound.deliver_via(&"a.*".to_string(), msg("a.x"));
    inbound.refused(&"a.*".to_string());
    for sub in [&mut one, &mut two] {
        assert_eq!(sub.recv().await.unwrap().topic().as_str(), "a.x");
        assert_eq!(sub.recv().await, None, "{}", sub.pattern());
        assert_eq!(sub.end_reason(), Some(EndReason::Refused));
    }
    inbound.deliver_via(&"b.c".to_string(), msg("b.c"));
    assert_eq!(other.recv().await.unwrap().topic().as_str(), "b.c");
    // The filter is no longer trusted: a new subscription needing it adds it again.
    let adds = |s: &Scripted| s.log.lock().iter().filter(|l| *l == "+a.*").count();
    assert_eq!(adds(&s), 1);
    let _again = hub.subscribe("a.*".parse().unwrap()).await.unwrap();
    assert_eq!(adds(&s), 2);
    // Dropping the ended subscriptions leaves the new one's filter in place.
    drop((one, two));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(hub.stats().native_filters, 2);
}
