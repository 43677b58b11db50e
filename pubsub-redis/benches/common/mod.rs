//! What the pattern-count benches share: the mixed pattern set and handle set-up.
#![allow(dead_code)] // each bench uses a part

use pubsub_core::{Hub, Pattern, Subscription};
use pubsub_redis::RedisConfig;

/// Subscriptions made at once (each subscribe waits for Redis; in flight together, the kit
/// batches their native filters).
pub const IN_FLIGHT: usize = 512;

/// The first token of tenant `tenant`'s topics in one run: unique per process and `run`, so
/// rounds never see each other's messages.
pub fn tenant(run: &str, tenant: usize) -> String {
    format!("{run}t{tenant}")
}

/// `n` patterns in the routing bench's mix (60% exact, 25% `*`, 15% `>`, 100 tenants).
pub fn mixed(run: &str, n: usize) -> Vec<Pattern> {
    (0..n)
        .map(|i| {
            let t = tenant(run, i % 100);
            let room = i / 100;
            let text = match i % 20 {
                0..=11 => format!("{t}.room{room}.msg"),
                12..=13 => format!("{t}.*.msg"),
                14..=16 => format!("{t}.room{room}.*"),
                17..=18 => format!("{t}.room{room}.>"),
                _ => format!("{t}.>"),
            };
            text.parse().expect("pattern")
        })
        .collect()
}

/// `BENCH_MAX_GLOBS`, to compare with another glob budget (a huge one plans nothing).
pub fn max_globs() -> usize {
    std::env::var("BENCH_MAX_GLOBS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(pubsub_redis::DEFAULT_MAX_GLOBS)
}

/// A handle on the bench's Redis with the glob budget of [`max_globs`].
pub async fn connect() -> Hub {
    let url = pubsub_test_support::broker::redis_url();
    let config = RedisConfig::from_url(&url)
        .expect("PUBSUB_REDIS_URL")
        .with_max_globs(max_globs());
    pubsub_redis::connect(config).await.expect("connect")
}

/// The number of `PSUBSCRIBE` globs the server holds (`PUBSUB NUMPAT`, every client's).
pub async fn server_globs() -> usize {
    use pubsub_redis::fred::clients::Client;
    use pubsub_redis::fred::interfaces::{ClientLike, PubsubInterface};
    use pubsub_redis::fred::types::config::Config;
    let url = pubsub_test_support::broker::redis_url();
    let client = Client::new(Config::from_url(&url).expect("URL"), None, None, None);
    let task = client.init().await.expect("Redis");
    let n: usize = client.pubsub_numpat().await.expect("PUBSUB NUMPAT");
    let _ = client.quit().await;
    let _ = task.await;
    n
}

/// Subscribes every pattern, [`IN_FLIGHT`] at a time.
pub async fn subscribe_all(hub: &Hub, patterns: Vec<Pattern>) -> Vec<Subscription> {
    let mut subs = Vec::with_capacity(patterns.len());
    for chunk in patterns.chunks(IN_FLIGHT) {
        let made = futures::future::join_all(chunk.iter().map(|p| hub.subscribe(p.clone()))).await;
        subs.extend(made.into_iter().map(|s| s.expect("subscribe")));
    }
    subs
}

/// Unsubscribes every subscription (each waits until Redis released what no other needs),
/// [`IN_FLIGHT`] at a time.
pub async fn unsubscribe_all(subs: Vec<Subscription>) {
    let mut subs = subs.into_iter();
    loop {
        let chunk: Vec<Subscription> = subs.by_ref().take(IN_FLIGHT).collect();
        if chunk.is_empty() {
            return;
        }
        for done in
            futures::future::join_all(chunk.into_iter().map(Subscription::unsubscribe)).await
        {
            done.expect("unsubscribe");
        }
    }
}
