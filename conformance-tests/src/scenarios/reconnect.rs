//! Case 12: the connection is cut and restored; live subscriptions keep receiving.

use std::time::Duration;

use pubsub_core::Message;

use crate::support::*;
use crate::{idle_timeout, unique_prefix, Harness};

/// Cut the connection, publish during the outage (typed error or success, never a hang),
/// restore it, and check that live subscriptions receive what is published after recovery.
pub async fn reconnect(h: &Harness) {
    let p = unique_prefix("reconnect");
    let (ps, link) = match (h.connect_cuttable)().await {
        Ok(x) => x,
        Err(e) => panic!("[{}] cannot connect through the cuttable link: {e}", h.name),
    };
    let healthy = connect(h).await;
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

    // Probe until the restored handle's subscriptions are live at the broker again.
    let deadline = tokio::time::Instant::now() + idle_timeout(Duration::from_secs(30));
    'recovered: loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscriptions were not restored"
        );
        publish(&healthy, &t, "probe").await;
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), exact.recv()).await
        {
            if m.payload().as_ref() == b"probe" {
                break 'recovered;
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
    assert_eq!(
        next(&mut from_restored, "published by the restored handle")
            .await
            .payload()
            .as_ref(),
        b"back"
    );
    shut_down(&ps).await;
    shut_down(&healthy).await;
}
