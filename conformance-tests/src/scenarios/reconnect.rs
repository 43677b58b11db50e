//! Faults: the connection is cut and restored (reconnect), or goes silent (stalled_subscribe).

use std::time::Duration;

use pubsub_core::{ErrorKind, Message};

use crate::kit::*;
use crate::Harness;

/// Cut the connection, publish during the outage (typed error or success, never a hang),
/// restore it, and check that live subscriptions receive what is published after recovery.
pub async fn reconnect(h: &Harness) {
    let p = unique_prefix("reconnect");
    let (ps, link) = connect_cuttable(h).await;
    let healthy = connect_peer(h, &*link).await;
    let t = format!("{p}.r");
    let mut exact = subscribe_cap(&ps, &t, 10_000).await;
    let mut wild = subscribe_cap(&ps, &format!("{p}.>"), 10_000).await;
    let mut from_restored = subscribe(&healthy, &format!("{p}.back")).await;
    publish(&healthy, &t, "before").await;
    next(&mut exact, "before the cut").await;
    next(&mut wild, "before the cut").await;

    link.cut().await;
    let during = tokio::time::timeout(
        idle_timeout(Duration::from_secs(30)),
        ps.publish(Message::new(topic(&t), "during")),
    )
    .await
    .expect("publish during an outage must end within its timeout");
    if let Err(e) = during {
        assert!(
            e.is_temporary(),
            "publish during an outage: not a temporary error: {e}"
        );
    }
    link.restore().await;

    // Probe until every subscription of the restored handle is live at the broker again: on
    // some backends (Redis) the exact and the wildcard subscription ride different connections,
    // which come back one by one.
    let deadline = tokio::time::Instant::now() + idle_timeout(Duration::from_secs(30));
    let mut restored = [("exact", &mut exact, false), ("wildcard", &mut wild, false)];
    while restored.iter().any(|(_, _, seen)| !seen) {
        let waiting: Vec<&str> = restored
            .iter()
            .filter(|(_, _, seen)| !seen)
            .map(|(name, _, _)| *name)
            .collect();
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscriptions were not restored: {waiting:?}"
        );
        publish(&healthy, &t, "probe").await;
        for (_, sub, seen) in restored.iter_mut().filter(|(_, _, seen)| !seen) {
            while let Ok(Some(m)) =
                tokio::time::timeout(Duration::from_millis(200), sub.recv()).await
            {
                if m.payload().as_ref() == b"probe" {
                    *seen = true;
                    break;
                }
            }
        }
    }
    for i in 0..100 {
        publish(&healthy, &t, seq(3, i)).await;
    }
    for (name, sub) in [("exact", &mut exact), ("wildcard", &mut wild)] {
        let mut want = 0;
        while want < 100 {
            let m = next(sub, name).await;
            if m.payload().len() == 8 {
                assert_eq!(unseq(&m), (3, want), "{name}: after recovery, out of order");
                want += 1;
            }
        }
    }
    // Publishing from the restored handle works again.
    let deadline = tokio::time::Instant::now() + idle_timeout(Duration::from_secs(30));
    loop {
        match ps
            .publish(Message::new(topic(&format!("{p}.back")), "back"))
            .await
        {
            Ok(()) => break,
            Err(e) if e.is_temporary() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("publish after recovery: {e}"),
        }
    }
    let back = next_payload(&mut from_restored, "published by the restored handle").await;
    assert_eq!(back.as_ref(), b"back");
    shut_down(&ps).await;
    shut_down(&healthy).await;
}

/// The link goes silent (frozen, not closed) while a subscribe waits for the broker: that
/// subscribe does not succeed while frozen; subscribing again to a pattern whose filter is
/// already live does not wait for the broker; `close` does not hang (it may report a time-out:
/// the broker cannot hear it) and closes the handle; the pending subscribe then ends with an
/// error (`Closed` or `Timeout`) instead of hanging.
pub async fn stalled_subscribe(h: &Harness) {
    let p = unique_prefix("stalled");
    let (ps, link) = connect_cuttable(h).await;
    let live = format!("{p}.a");
    let mut first = subscribe(&ps, &live).await;

    link.freeze().await;
    let pending = {
        let ps = ps.clone();
        let new = pattern(&format!("{p}.b"));
        tokio::spawn(async move { ps.subscribe(new).await })
    };
    tokio::time::sleep(quiet()).await;
    if pending.is_finished() {
        match pending.await.expect("the pending subscribe panicked") {
            Ok(sub) => panic!(
                "subscribe to {} succeeded while the broker could not hear it",
                sub.pattern()
            ),
            Err(e) => panic!("subscribe failed at once while frozen (expected it to wait): {e}"),
        }
    }

    let again = tokio::time::timeout(
        idle_timeout(Duration::from_secs(1)),
        ps.subscribe(pattern(&live)),
    )
    .await
    .expect("subscribing to a pattern whose filter is live waited for the frozen broker")
    .expect("subscribing to a pattern whose filter is live");
    assert_eq!(again.pattern().as_str(), live);

    let closing = tokio::time::timeout(idle_timeout(Duration::from_secs(5)), ps.close()).await;
    let outcome = tokio::time::timeout(idle_timeout(Duration::from_secs(5)), pending).await;
    link.thaw().await;
    // The broker cannot hear the goodbye: a time-out is an honest answer, a hang is not.
    if let Err(e) = closing.expect("close hung while the link was frozen") {
        assert!(e.is_temporary(), "close while frozen: {e}");
    }
    match outcome
        .expect("the pending subscribe still hangs after close")
        .expect("the pending subscribe panicked")
    {
        Ok(sub) => panic!(
            "subscribe to {} succeeded without the broker",
            sub.pattern()
        ),
        Err(e) => assert!(
            matches!(e.kind(), ErrorKind::Closed | ErrorKind::Timeout),
            "the pending subscribe ended with {:?}, expected Closed or Timeout: {e}",
            e.kind()
        ),
    }
    assert!(
        next_within(&mut first, idle()).await.is_none(),
        "streams end after close"
    );
    assert_closed(&ps, &p).await;
}

/// A native filter whose removal the broker could not confirm is removed later: the last
/// subscription of a pattern leaves while the link is frozen, the unsubscribe ends (a temporary
/// error, or success where the backend needs no answer) instead of hanging, and once the link
/// is thawed the handle keeps retrying until the filter is gone; the handle keeps working.
pub async fn removal_is_retried(h: &Harness) {
    let p = unique_prefix("removal");
    let (ps, link) = connect_cuttable(h).await;
    let kept = format!("{p}.kept");
    let mut keep = subscribe(&ps, &kept).await;
    let gone = subscribe(&ps, &format!("{p}.gone")).await;
    assert_eq!(ps.stats().native_filters, 2);

    link.freeze().await;
    let leaving = tokio::time::timeout(idle_timeout(Duration::from_secs(30)), gone.unsubscribe())
        .await
        .expect("unsubscribe hung while the link was frozen");
    if let Err(e) = leaving {
        assert!(e.is_temporary(), "unsubscribe while frozen: {e}");
    }
    link.thaw().await;
    eventually(
        "the filter whose removal failed is removed after the link came back",
        Duration::from_secs(30),
        || ps.stats().native_filters == 1,
    )
    .await;

    publish(&ps, &kept, "still here").await;
    assert_eq!(
        next(&mut keep, "after the retried removal")
            .await
            .payload()
            .as_ref(),
        b"still here"
    );
    assert_eq!(ps.stats().subscriptions, 1);
    shut_down(&ps).await;
}
