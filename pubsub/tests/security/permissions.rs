//! Users that may connect but not use every topic: a private `nats-server` with subject
//! permissions, a private `redis-server` with ACL channel permissions, and a temporary user of
//! the machine's RabbitMQ with topic permissions. A subscribe the broker refuses fails with a
//! typed `Auth` error (not temporary) instead of resolving `Ok` and delivering nothing (on
//! NATS, whose refusals come asynchronously, a subscribe that resolved just before its refusal
//! arrived ends with `EndReason::Refused` instead); so does a publish (on NATS, from the
//! second publish to a denied subject on: core NATS does not acknowledge publishes); allowed
//! topics keep working, and a refusal costs the handle's other subscriptions nothing.

use std::time::{Duration, Instant};

use pubsub::{ErrorKind, Hub, Message, Pattern, Subscription};

use crate::check::{connect_url, PROMPT};
use crate::logs;
use crate::servers::{self, Listen};

/// Subscribes to `pattern`, failing the test if that does not end within twice [`PROMPT`].
async fn subscribe_within(ps: &Hub, pattern: &str) -> pubsub::Result<Subscription> {
    let parsed: Pattern = pattern.parse().unwrap();
    tokio::time::timeout(PROMPT * 2, ps.subscribe(parsed))
        .await
        .unwrap_or_else(|_| panic!("subscribe to {pattern} hung"))
}

/// `error` is the broker's refusal of `what`: `Auth`, not temporary.
fn assert_refusal(what: &str, error: &pubsub::Error) {
    assert_eq!(error.kind(), ErrorKind::Auth, "{what}: {error:?}");
    assert!(!error.is_temporary(), "{error:?}");
}

/// `sub` ends `within` with nothing more, because the broker refused it (else: `why`).
async fn expect_ended_refused(sub: &mut Subscription, within: Duration, why: &str) {
    let end = tokio::time::timeout(within, sub.recv())
        .await
        .unwrap_or_else(|_| panic!("{}: {why}", sub.pattern()));
    assert!(end.is_none(), "{}: {end:?}", sub.pattern());
    assert_eq!(sub.end_reason(), Some(pubsub::EndReason::Refused));
}

/// Subscribes to `pattern` and expects a prompt, typed, permanent refusal.
async fn expect_denied_subscribe(ps: &Hub, pattern: &str) {
    let start = Instant::now();
    let Err(error) = subscribe_within(ps, pattern).await else {
        panic!("subscribed to {pattern}, which the broker refuses");
    };
    assert_refusal(pattern, &error);
    assert!(start.elapsed() < PROMPT, "{pattern}: {:?}", start.elapsed());
}

/// Subscribes to `pattern` on NATS, where the refusal comes asynchronously: either the
/// subscribe fails with `Auth` (the refusal arrived before it resolved, as it nearly always
/// does), or it resolved just before the refusal arrived and the subscription then ends
/// promptly with `EndReason::Refused`. Never a live-looking subscription that stays silent.
async fn expect_refused_subscribe(ps: &Hub, pattern: &str) {
    match subscribe_within(ps, pattern).await {
        Err(error) => assert_refusal(pattern, &error),
        Ok(mut sub) => {
            expect_ended_refused(&mut sub, PROMPT, "subscribed, which the broker refuses").await
        }
    }
}

/// Subscribes to `pattern`: true when it fails promptly with `Auth`, false when it resolves
/// `Ok`; anything else fails the test.
async fn denied_subscribe_refused(ps: &Hub, pattern: &str) -> bool {
    match subscribe_within(ps, pattern).await {
        Ok(_) => false,
        Err(error) => {
            assert_refusal(pattern, &error);
            true
        }
    }
}

/// Subscribes to `pattern`, publishes to `topic` and receives it.
async fn expect_allowed(ps: &Hub, pattern: &str, topic: &str) {
    let mut sub = ps.subscribe(pattern.parse().unwrap()).await.unwrap();
    ps.publish(Message::new(topic.parse().unwrap(), "ok"))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .expect("no message within 5 s")
        .expect("the subscription ended");
    assert_eq!(got.topic().as_str(), topic);
}

const NATS_PASSWORD: &str = "Np3-perm-Pw7";

/// A handle of `user` on the private `server`, with a 3 s command timeout.
async fn nats_user(server: &servers::Server, user: &str) -> Hub {
    let url = format!(
        "nats://{user}:{NATS_PASSWORD}@127.0.0.1:{}?command_timeout=3s",
        server.port
    );
    connect_url(url).await.unwrap()
}

fn nats_conf() -> String {
    format!(
        r#"
authorization {{
  users = [
    {{ user: alice, password: "{NATS_PASSWORD}",
       permissions: {{ publish: ["allowed.>", "_INBOX.>"], subscribe: ["allowed.>", "_INBOX.>"] }} }}
    {{ user: carol, password: "{NATS_PASSWORD}",
       permissions: {{ publish: ["allowed.>"], subscribe: ["allowed.>"] }} }}
  ]
}}
"#
    )
}

/// A user that may publish and subscribe to `allowed.>` (and `_INBOX.>`, which the handle
/// uses for its private barrier subject).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_subject_permissions() {
    logs::capture();
    let server = servers::nats_with_config(&nats_conf());
    let ps = nats_user(&server, "alice").await;
    expect_allowed(&ps, "allowed.>", "allowed.a").await;
    // Several times: the refusal reaches the adapter through async-nats's event task.
    for i in 0..10 {
        expect_refused_subscribe(&ps, &format!("denied.{i}")).await;
    }
    expect_refused_subscribe(&ps, "denied.>").await;
    expect_refused_subscribe(&ps, ">").await;
    expect_allowed(&ps, "allowed.b", "allowed.b").await;

    // Publish: the first one to a denied subject is queued (`Ok`: core NATS has no publish
    // acknowledgement); once the server's refusal arrived, the next ones fail with `Auth`.
    let denied = || Message::new("denied.topic".parse().unwrap(), "x");
    ps.publish(denied()).await.unwrap();
    let start = Instant::now();
    let error = loop {
        match ps.publish(denied()).await {
            Err(e) => break e,
            Ok(()) => {
                assert!(
                    start.elapsed() < PROMPT,
                    "publishes to a denied subject keep resolving Ok"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_refusal("publish", &error);
    expect_allowed(&ps, "allowed.c", "allowed.c").await;
    ps.close().await.unwrap();
    logs::assert_never_logged(NATS_PASSWORD);
}

/// A permission revoked while subscriptions use it (the server's configuration reloaded): the
/// server drops them with a violation, and every subscription needing the refused filter ends
/// with `EndReason::Refused` after what it had, instead of staying open and silent; another
/// subscription of the same handle keeps working, and subscribing again is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_revoked_permission_ends_subscriptions() {
    logs::capture();
    let conf = |subscribe: &str| {
        format!(
            r#"
authorization {{
  users = [
    {{ user: alice, password: "{NATS_PASSWORD}",
       permissions: {{ publish: [">"], subscribe: [{subscribe}] }} }}
  ]
}}
"#
        )
    };
    let server = servers::nats_with_config(&conf(r#""allowed.>", "revoked.>", "_INBOX.>""#));
    let ps = nats_user(&server, "alice").await;
    let mut exact = ps.subscribe("revoked.a".parse().unwrap()).await.unwrap();
    let mut wildcard = ps.subscribe("revoked.>".parse().unwrap()).await.unwrap();
    let mut kept = ps.subscribe("allowed.a".parse().unwrap()).await.unwrap();
    ps.publish(Message::new("revoked.a".parse().unwrap(), "before"))
        .await
        .unwrap();
    for sub in [&mut exact, &mut wildcard] {
        let got = tokio::time::timeout(PROMPT, sub.recv()).await.unwrap();
        assert_eq!(got.unwrap().payload().as_ref(), b"before");
    }

    server.reload_nats_config(&conf(r#""allowed.>", "_INBOX.>""#));
    for sub in [&mut exact, &mut wildcard] {
        expect_ended_refused(sub, PROMPT * 2, "still open after the revocation").await;
    }
    expect_refused_subscribe(&ps, "revoked.a").await;
    ps.publish(Message::new("allowed.a".parse().unwrap(), "still"))
        .await
        .unwrap();
    let got = tokio::time::timeout(PROMPT, kept.recv()).await.unwrap();
    assert_eq!(got.unwrap().payload().as_ref(), b"still");
    drop((exact, wildcard));
    ps.close().await.unwrap();
}

/// A user without `_INBOX.>`: the handle's private barrier subject is refused, so no
/// subscription can be confirmed; subscribe says so (`Auth`) instead of timing out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_without_inbox_permission() {
    logs::capture();
    let server = servers::nats_with_config(&nats_conf());
    let ps = nats_user(&server, "carol").await;
    let start = Instant::now();
    let error = ps
        .subscribe("allowed.x".parse().unwrap())
        .await
        .expect_err("the barrier subject is refused");
    assert_eq!(error.kind(), ErrorKind::Auth, "{error:?}");
    assert!(error.to_string().contains("_INBOX"), "{error}");
    assert!(start.elapsed() < PROMPT, "{:?}", start.elapsed());
    ps.close().await.unwrap();
}

/// A Redis ACL user whose channels are `allowed.*` only: `SUBSCRIBE`, `PSUBSCRIBE` and
/// `PUBLISH` elsewhere fail with `Auth` (Redis `NOPERM`), at once and every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_acl_channel_permissions() {
    logs::capture();
    const RIGHT: &str = "Ad4-bob-Pw6";
    let password = format!(">{RIGHT}");
    // `&allowed.*` allows the channels it matches, and (as a PSUBSCRIBE pattern, compared
    // literally) the glob `allowed.*` the adapter sends for `allowed.>` and `allowed.*`.
    let acl = [
        "--user",
        "bob",
        "on",
        &password,
        "~*",
        "resetchannels",
        "&allowed.*",
        "+@all",
    ];
    let server = servers::redis(Listen::Plain, &acl);
    let url = format!(
        "redis://bob:{RIGHT}@127.0.0.1:{}?command_timeout=2s&publish_timeout=2s",
        server.port
    );
    let ps = connect_url(url).await.unwrap();
    let start = Instant::now();
    let error = ps
        .publish(Message::new("denied.topic".parse().unwrap(), "x"))
        .await
        .expect_err("published to a channel the ACL denies");
    assert_refusal("publish", &error);
    assert!(start.elapsed() < PROMPT, "{:?}", start.elapsed());

    expect_allowed(&ps, "allowed.x", "allowed.x").await;
    // Several times: a refusal used to be lost when it arrived before the confirming PING.
    // On a loaded machine about one subscribe in 150 still resolves `Ok` (fred pairs a reply
    // with the wrong command now and then; a known gap, in the README): most must be refused.
    let mut refused = 0;
    for i in 0..10 {
        refused += usize::from(denied_subscribe_refused(&ps, &format!("denied.{i}")).await);
    }
    assert!(
        refused >= 8,
        "only {refused} of 10 refused subscribes failed"
    );
    expect_denied_subscribe(&ps, "denied.>").await;
    expect_denied_subscribe(&ps, ">").await;
    expect_allowed(&ps, "allowed.>", "allowed.y").await;
    expect_allowed(&ps, "allowed.z", "allowed.z").await;
    ps.close().await.unwrap();
    logs::assert_never_logged(RIGHT);
}

/// A temporary RabbitMQ user of the machine's broker, deleted when dropped.
struct RabbitUser(String);

impl RabbitUser {
    /// A user with full rights on `/` but, on `exchange`, topic permissions for routing keys
    /// (publish) and binding keys (subscribe) starting with `allowed.` only.
    fn with_topic_permissions(exchange: &str) -> RabbitUser {
        let name = format!("pubsub-limited-{}", std::process::id());
        let user = RabbitUser(name.clone());
        let ctl = |args: &[&str]| {
            let out = std::process::Command::new("rabbitmqctl")
                .args(args)
                .output()
                .expect("running rabbitmqctl");
            assert!(out.status.success(), "rabbitmqctl {args:?}: {out:?}");
        };
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["delete_user", &name])
            .output();
        ctl(&["add_user", &name, RABBIT_PASSWORD]);
        ctl(&["set_permissions", "-p", "/", &name, ".*", ".*", ".*"]);
        ctl(&[
            "set_topic_permissions",
            "-p",
            "/",
            &name,
            exchange,
            "^allowed\\.",
            "^allowed\\.",
        ]);
        user
    }
}

impl Drop for RabbitUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["delete_user", &self.0])
            .output();
    }
}

const RABBIT_PASSWORD: &str = "Rb7-topic-Pw2";

/// A RabbitMQ user whose topic permissions allow `allowed.*` routing and binding keys only:
/// subscribing or publishing elsewhere fails with `Auth`, every time, and costs the handle
/// nothing else: its other subscriptions keep receiving, with no outage (a refusal closes the
/// AMQP channel it happened on, which must not take the handle's consumer down with it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_topic_permissions() {
    logs::capture();
    // One name for every run: exchanges are not deleted, and need not be unique (each run has
    // its own user, and topic permissions are per user).
    let exchange = "pubsub-permissions-test".to_string();
    let user = RabbitUser::with_topic_permissions(&exchange);
    let url = format!(
        "amqp://{}:{RABBIT_PASSWORD}@127.0.0.1:5672/%2f?exchange={exchange}&command_timeout=3s",
        user.0
    );
    let ps = connect_url(url).await.unwrap();
    let mut kept = ps.subscribe("allowed.>".parse().unwrap()).await.unwrap();
    for round in 0..3 {
        expect_denied_subscribe(&ps, &format!("denied.{round}")).await;
        expect_denied_subscribe(&ps, "denied.>").await;
        let error = tokio::time::timeout(
            PROMPT,
            ps.publish(Message::new("denied.topic".parse().unwrap(), "x")),
        )
        .await
        .expect("a refused publish hung")
        .expect_err("published to a refused routing key");
        assert_refusal("publish", &error);
        let payload = format!("kept-{round}");
        ps.publish(Message::new("allowed.k".parse().unwrap(), payload.clone()))
            .await
            .unwrap();
        let got = tokio::time::timeout(PROMPT, kept.recv_delivery())
            .await
            .expect("the kept subscription stopped receiving")
            .expect("the kept subscription ended");
        match got {
            pubsub::Delivery::Message(m) => assert_eq!(m.payload().as_ref(), payload.as_bytes()),
            other => {
                panic!("round {round}: a refusal disturbed the other subscriptions: {other:?}")
            }
        }
    }
    assert!(ps.connection_state().is_up());
    expect_allowed(&ps, "allowed.b", "allowed.b").await;
    ps.close().await.unwrap();
    logs::assert_never_logged(RABBIT_PASSWORD);
    drop(user);
}
