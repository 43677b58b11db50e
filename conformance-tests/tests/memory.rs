//! The conformance suite on the in-process memory backend, plus what only memory can observe.
conformance_tests::suite!(conformance_tests::memory_harness);

use std::time::Duration;

use conformance_tests::kit::{
    abandon, eventually, next, publish, shared, subscribe, unique_prefix,
};
use pubsub_core::memory::MemoryBus;

/// Handles dropped without `close` (with or without a live subscription, before or after it)
/// leave the bus: none stays attached, and the bus still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_handles_leave_the_bus() {
    let bus = MemoryBus::new();
    let p = unique_prefix("leave");
    for i in 0..200 {
        let ps = shared(bus.connect().await.expect("connect"));
        abandon(ps, &format!("{p}.>"), i % 2 == 0).await;
    }
    eventually(
        "every dropped handle detached from the bus",
        Duration::from_secs(5),
        || bus.handle_count() == 0,
    )
    .await;

    let ps = shared(bus.connect().await.expect("connect"));
    let mut sub = subscribe(&ps, &format!("{p}.>")).await;
    assert_eq!(bus.handle_count(), 1);
    publish(&ps, &format!("{p}.x"), "still works").await;
    assert_eq!(
        next(&mut sub, "after the drops").await.payload().as_ref(),
        b"still works"
    );
    drop(sub);
    drop(ps);
    eventually("the last handle detached", Duration::from_secs(5), || {
        bus.handle_count() == 0
    })
    .await;
}
