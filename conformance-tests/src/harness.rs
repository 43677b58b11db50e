//! What the suite needs to know about a backend, and the knobs shared by every case.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use pubsub_core::memory::{MemoryBus, MemoryConfig, MemoryLink};
use pubsub_core::{PubSub, Result};

use pubsub_test_support::kit::FaultedDeadlines;
use pubsub_test_support::private_broker::{BrokerKind, PrivateBroker};
use pubsub_test_support::proxy::TcpProxy;

/// Connects a new handle (a new connection) to the backend under test.
pub type Connect = Arc<dyn Fn() -> BoxFuture<'static, Result<Arc<dyn PubSub>>> + Send + Sync>;

/// Connects a new handle whose connection the test can cut and restore.
pub type ConnectCuttable =
    Arc<dyn Fn() -> BoxFuture<'static, Result<(Arc<dyn PubSub>, Box<dyn Link>)>> + Send + Sync>;

/// Connects a new handle that dials only the given address (see [`Harness::proxied`]).
pub type ConnectTo =
    Arc<dyn Fn(SocketAddr) -> BoxFuture<'static, Result<Arc<dyn PubSub>>> + Send + Sync>;

/// Starts a broker of the case's own and connects a handle to it (see
/// [`Harness::with_restart`]).
pub type StartRestartable =
    Arc<dyn Fn() -> BoxFuture<'static, Result<(Arc<dyn PubSub>, PrivateBroker)>> + Send + Sync>;

/// A message as another client of the broker publishes it: what the `foreign_publisher` case
/// sends through [`Foreign::publish`].
#[derive(Debug, Clone)]
pub struct ForeignMessage {
    /// The channel, subject, routing key or topic name, as our adapter would write it.
    pub topic: String,
    /// The payload, byte for byte.
    pub payload: bytes::Bytes,
    /// Headers in the broker's own form (only sent when [`Foreign::headers`] says so).
    pub headers: Vec<(String, String)>,
}

/// Publishes with the broker's own client library, not through this crate: how the suite
/// checks interoperation with the other programs on the same broker.
#[derive(Clone)]
pub struct Foreign {
    /// Publishes one message with the broker's own client.
    pub publish: Arc<dyn Fn(ForeignMessage) -> BoxFuture<'static, Result<()>> + Send + Sync>,
    /// Whether the broker carries headers of its own (NATS headers, AMQP headers table, Kafka
    /// record headers), which must then arrive as the message's headers; false where a foreign
    /// message is a payload alone (a Redis `PUBLISH`).
    pub headers: bool,
}

impl Foreign {
    /// A foreign publisher from an async closure.
    pub fn new<F, Fut>(headers: bool, publish: F) -> Self
    where
        F: Fn(ForeignMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        Foreign {
            publish: Arc::new(move |m| Box::pin(publish(m))),
            headers,
        }
    }
}

/// A connection the test can break (a TCP proxy, or the memory backend's switch).
#[async_trait]
pub trait Link: Send + Sync {
    /// Cuts the connection: open connections are closed and new ones fail until restored.
    async fn cut(&self);
    /// Lets connections through again.
    async fn restore(&self);
    /// Stops all traffic without closing anything, like a black-holed network: nothing is
    /// delivered either way, and nothing tells the client, until [`Link::thaw`].
    async fn freeze(&self);
    /// Lets traffic flow again after [`Link::freeze`].
    async fn thaw(&self);
    /// Connects a healthy handle to the broker behind this link (not through it), for cases
    /// that watch the cut handle from outside. `None` (the default): the harness's own
    /// [`Harness::connect`] reaches that broker. A link that owns its broker (a cluster started
    /// for one case) connects its own peers.
    async fn connect_peer(&self) -> Option<Result<Arc<dyn PubSub>>> {
        None
    }
    /// Delays all traffic by `latency` each way (zero: none), like a slow network; false when
    /// this link cannot (an in-process link has no network to slow down).
    async fn set_latency(&self, latency: Duration) -> bool {
        let _ = latency;
        false
    }
}

/// Messages per topic of a long-topic case on a backend lacking [`Capability::LongTopics`].
pub const SHORT_TOPIC: u32 = 2_000;

/// The cases that publish many messages one by one to one topic (see [`Capability::LongTopics`]).
pub const LONG_TOPIC_CASES: [&str; 3] = [
    "ordering",
    "shared_filter_fanin",
    "dropped_handle_is_detached",
];

/// Something a backend's broker truly cannot do; cases needing it are skipped, or run on a
/// smaller scale, and the report says which and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Capability {
    /// Surviving a cut, frozen or slow connection (the fault cases: `reconnect`,
    /// `stalled_subscribe`, `removal_is_retried`, `outage_gap`, `repeated_cuts`,
    /// `gap_under_traffic`,
    /// `outage_operations`, `half_open`, `added_latency`).
    Reconnect,
    /// Thousands of messages published one by one to one topic, all readable back. Every real
    /// broker can, and every backend of this workspace does; an adapter tested against a
    /// broker that cannot (a test broker with a hard limit on a partition's length, say) may
    /// declare that it lacks it. The cases that publish many messages to one topic
    /// (`ordering`, `shared_filter_fanin`, `dropped_handle_is_detached`) still run on such a
    /// backend, with at most [`SHORT_TOPIC`] messages per topic ([`Harness::topic_volume`]);
    /// the report says so.
    LongTopics,
    /// Streams: history, positions, replay and recovery (the `stream_*` cases). An adapter
    /// that has no streams yet declares that it lacks them.
    Streams,
    /// A stream's history outlives the harness's cut (`stream_recovery_through_cuts`,
    /// `stream_mass_resume`). A harness whose cut destroys the node that holds a log (a
    /// cluster harness that kills a master whose data is not persisted) lacks it: recovery
    /// from a log that the cut itself erased is not what those cases measure.
    HistoryThroughCuts,
    /// Groups: members sharing a stream's messages with acknowledgements (the `group_*`
    /// cases). An adapter that has no groups yet declares that it lacks them.
    Groups,
    /// The members of one group read its messages at the same time. A backend whose group
    /// gives a stream to one member at a time while the others stand by (Kafka: a stream is
    /// one partition, and a consumer group assigns a partition to one member) lacks it:
    /// `group_members_split` still runs there and checks that every message is acknowledged
    /// exactly once, but not that every member did some of the work; the report says so.
    GroupSharing,
    /// A broker restart that keeps what the broker persists (`group_through_restart`): the
    /// harness starts a broker of the case's own ([`Harness::with_restart`]) that the case
    /// stops and starts again. A harness whose test broker keeps nothing across a restart, or
    /// that has no broker, lacks it.
    Restart,
}

impl Capability {
    /// The capabilities a case needs.
    pub fn needed_by(case: &str) -> &'static [Capability] {
        match case {
            "reconnect" | "stalled_subscribe" | "removal_is_retried" | "outage_gap"
            | "repeated_cuts" | "gap_under_traffic" | "outage_operations" | "half_open"
            | "added_latency" => &[Capability::Reconnect],
            "stream_recovery_through_cuts" | "stream_mass_resume" => &[
                Capability::Streams,
                Capability::Reconnect,
                Capability::HistoryThroughCuts,
            ],
            _ if case.starts_with("stream_") => &[Capability::Streams],
            "group_through_cut" => &[
                Capability::Streams,
                Capability::Groups,
                Capability::Reconnect,
                Capability::HistoryThroughCuts,
            ],
            "group_through_restart" => {
                &[Capability::Streams, Capability::Groups, Capability::Restart]
            }
            _ if case.starts_with("group_") => &[Capability::Streams, Capability::Groups],
            _ => &[],
        }
    }
}

/// One backend, as the suite sees it.
#[derive(Clone)]
pub struct Harness {
    /// Backend name, for messages and the report.
    pub name: &'static str,
    /// Connects a new handle.
    pub connect: Connect,
    /// Connects a new handle through a [`Link`] the test can cut.
    pub connect_cuttable: ConnectCuttable,
    /// Capabilities the backend lacks, each with the reason.
    pub lacks: Vec<(Capability, &'static str)>,
    /// Another client of the same broker, for the `foreign_publisher` case (which fails
    /// without one).
    pub foreign: Option<Foreign>,
    /// Destroys a stream's history at the broker, as a flush, a restart without persistence
    /// or an operator would (see [`Harness::with_history_loss`]); `stream_reset_gap` then
    /// checks that positions of the lost history are seen as such.
    pub lose_history: Option<LoseHistory>,
    /// Connects a handle that dials only a given address (set by [`Harness::proxied`]).
    pub connect_to: Option<ConnectTo>,
    /// Starts a broker of the case's own and connects a handle to it, for the cases that
    /// restart the broker ([`Harness::with_restart`]).
    pub restartable: Option<StartRestartable>,
    /// How soon a silent (half-open) connection must be taken as dead in the `half_open`
    /// case, where the cuttable handle's heartbeat is
    /// [`fast_heartbeat`](crate::kit::fast_heartbeat): three heartbeats, as documented, plus
    /// room for a loaded machine, unless the backend says otherwise
    /// ([`Harness::noticing_silence_within`]).
    pub silence_noticed_within: Duration,
}

/// What the `half_open` case allows beyond three heartbeats for a loaded machine.
const SILENCE_SLACK: Duration = Duration::from_secs(2);

/// Destroys the history of the stream whose root is given (its text), at the broker.
pub type LoseHistory = Arc<dyn Fn(String) -> BoxFuture<'static, Result<()>> + Send + Sync>;

impl Harness {
    /// A harness from two async closures.
    pub fn new<C, CF, K, KF>(name: &'static str, connect: C, connect_cuttable: K) -> Self
    where
        C: Fn() -> CF + Send + Sync + 'static,
        CF: Future<Output = Result<Arc<dyn PubSub>>> + Send + 'static,
        K: Fn() -> KF + Send + Sync + 'static,
        KF: Future<Output = Result<(Arc<dyn PubSub>, Box<dyn Link>)>> + Send + 'static,
    {
        Harness {
            name,
            connect: Arc::new(move || Box::pin(connect())),
            connect_cuttable: Arc::new(move || Box::pin(connect_cuttable())),
            lacks: Vec::new(),
            foreign: None,
            lose_history: None,
            connect_to: None,
            restartable: None,
            silence_noticed_within: crate::kit::fast_heartbeat() * 3 + SILENCE_SLACK,
        }
    }

    /// A harness for a broker reached over TCP at `upstream` (`host:port`): `connect(None)`
    /// connects a handle directly; `connect(Some(addr))` connects one that dials only `addr`,
    /// a [`TcpProxy`] in front of the broker that the cases cut and freeze (give it short
    /// publish timeouts and reconnect backoff, e.g. [`fast_backoff`](crate::kit::fast_backoff)).
    pub fn proxied<C, F, P>(name: &'static str, upstream: String, connect: C) -> Self
    where
        C: Fn(Option<SocketAddr>) -> F + Send + Sync + 'static,
        F: Future<Output = Result<P>> + Send + 'static,
        P: PubSub + 'static,
    {
        let connect = Arc::new(connect);
        let direct = connect.clone();
        let to = connect.clone();
        let connect_to: ConnectTo = Arc::new(move |addr| {
            let handle = to(Some(addr));
            Box::pin(async move { Ok(Arc::new(handle.await?) as Arc<dyn PubSub>) })
        });
        let mut harness = Harness::new(
            name,
            move || {
                let handle = direct(None);
                async move { Ok(Arc::new(handle.await?) as Arc<dyn PubSub>) }
            },
            move || {
                let (connect, upstream) = (connect.clone(), upstream.clone());
                async move {
                    let proxy = TcpProxy::start(&upstream).await.map_err(|e| {
                        pubsub_core::Error::connection("starting the test's TCP proxy", e)
                    })?;
                    let handle = connect(Some(proxy.local_addr())).await?;
                    Ok((
                        Arc::new(handle) as Arc<dyn PubSub>,
                        Box::new(proxy) as Box<dyn Link>,
                    ))
                }
            },
        );
        harness.connect_to = Some(connect_to);
        harness
    }

    /// Gives the suite a broker of `kind` of each case's own that the case may restart
    /// ([`Capability::Restart`]), reached with the connect function of [`Harness::proxied`]
    /// (so with its fault deadlines and fast reconnects).
    ///
    /// # Panics
    /// On a harness not made by [`Harness::proxied`].
    pub fn with_restart(mut self, kind: BrokerKind) -> Self {
        let connect_to = self
            .connect_to
            .clone()
            .expect("with_restart needs a harness made by Harness::proxied");
        self.restartable = Some(Arc::new(move || {
            let connect_to = connect_to.clone();
            Box::pin(async move {
                let broker = PrivateBroker::start(kind).await.map_err(|e| {
                    pubsub_core::Error::connection("starting a broker of the case's own", e)
                })?;
                Ok((connect_to(broker.addr()).await?, broker))
            })
        }));
        self
    }

    /// Gives the suite a foreign client of the broker (see [`Foreign`]).
    pub fn with_foreign(mut self, foreign: Foreign) -> Self {
        self.foreign = Some(foreign);
        self
    }

    /// Gives the suite a way to destroy a stream's history at the broker (the stream's root
    /// is passed as text): deleting its log and whatever the adapter keeps beside it, so that
    /// the adapter's next use of the stream starts a new history.
    pub fn with_history_loss<F, Fut>(mut self, lose: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.lose_history = Some(Arc::new(move |root| Box::pin(lose(root))));
        self
    }

    /// Lets the `half_open` case wait up to `bound` for a silent connection to be taken as
    /// dead (for a backend whose liveness check cannot be as short as the heartbeat, such as
    /// MQTT's keep-alive).
    pub fn noticing_silence_within(mut self, bound: Duration) -> Self {
        self.silence_noticed_within = bound;
        self
    }

    /// Declares a capability the backend's broker cannot provide.
    pub fn lacking(mut self, capability: Capability, reason: &'static str) -> Self {
        self.lacks.push((capability, reason));
        self
    }

    /// How many messages a case publishes one by one to one topic when it means `n`: `n`, or
    /// at most [`SHORT_TOPIC`] on a backend lacking [`Capability::LongTopics`].
    pub fn topic_volume(&self, n: u32) -> u32 {
        match self.lacks(Capability::LongTopics) {
            Some(_) => n.min(SHORT_TOPIC),
            None => n,
        }
    }

    /// Why the backend lacks `capability`, if it does.
    pub fn lacks(&self, capability: Capability) -> Option<&'static str> {
        self.lacks
            .iter()
            .find(|(c, _)| *c == capability)
            .map(|(_, why)| *why)
    }

    /// Why the backend cannot run `case`, if it cannot.
    pub fn skip_reason(&self, case: &str) -> Option<&'static str> {
        Capability::needed_by(case)
            .iter()
            .find_map(|capability| self.lacks(*capability))
    }
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("name", &self.name)
            .field("lacks", &self.lacks)
            .finish()
    }
}

/// Runs one case, or prints why the backend skips it.
///
/// With `RUST_LOG` set, the case's logs are printed with its output (shown when it fails):
/// `RUST_LOG=pubsub_core=debug,pubsub_amqp=debug` shows how a case on RabbitMQ recovers.
pub async fn run_case(harness: &Harness, case: &str, scenario: impl Future<Output = ()>) {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    match harness.skip_reason(case) {
        Some(why) => println!("conformance[{}] {case}: SKIPPED ({why})", harness.name),
        None => scenario.await,
    }
}

/// Prints the suite's report for a backend: how many cases, and which are skipped and why.
pub fn report(harness: &Harness, cases: &[&str]) {
    let skipped: Vec<(&str, &str)> = cases
        .iter()
        .filter_map(|c| harness.skip_reason(c).map(|why| (*c, why)))
        .collect();
    println!(
        "conformance[{}]: {} cases, {} run, {} skipped",
        harness.name,
        cases.len(),
        cases.len() - skipped.len(),
        skipped.len()
    );
    for (case, why) in skipped {
        println!("  skipped {case}: {why}");
    }
    if let Some(why) = harness.lacks(Capability::LongTopics) {
        for case in LONG_TOPIC_CASES.iter().filter(|c| cases.contains(c)) {
            println!("  reduced {case}: at most {SHORT_TOPIC} messages per topic ({why})");
        }
    }
    let split = "group_members_split";
    if cases.contains(&split) && harness.skip_reason(split).is_none() {
        if let Some(why) = harness.lacks(Capability::GroupSharing) {
            println!("  reduced {split}: one member at a time does the work ({why})");
        }
    }
}

/// Implements [`Link`] for a type with inherent `cut`, `restore`, `freeze` and `thaw` methods.
macro_rules! link_by_inherent_methods {
    ($t:ty $(, $($extra:tt)*)?) => {
        #[async_trait]
        impl Link for $t {
            async fn cut(&self) {
                <$t>::cut(self);
            }
            async fn restore(&self) {
                <$t>::restore(self);
            }
            async fn freeze(&self) {
                <$t>::freeze(self);
            }
            async fn thaw(&self) {
                <$t>::thaw(self);
            }
            $($($extra)*)?
        }
    };
}

link_by_inherent_methods!(MemoryLink);
link_by_inherent_methods!(
    TcpProxy,
    async fn set_latency(&self, latency: Duration) -> bool {
        TcpProxy::set_latency(self, latency);
        true
    }
);

/// The memory backend: every handle joins the process-wide bus, as `memory://` does.
pub fn memory_harness() -> Harness {
    Harness::new(
        "memory",
        || async {
            let hub = MemoryBus::global().connect().await?;
            Ok(Arc::new(hub) as Arc<dyn PubSub>)
        },
        || async {
            let config = MemoryConfig::default().with_faulted_deadlines();
            let (hub, link) = MemoryBus::global().connect_with(config).await?;
            Ok((
                Arc::new(hub) as Arc<dyn PubSub>,
                Box::new(link) as Box<dyn Link>,
            ))
        },
    )
    // The bus has no other kind of client: the foreign publisher is a plain handle.
    .with_foreign(Foreign::new(true, |m: ForeignMessage| async move {
        let hub = MemoryBus::global().connect().await?;
        let mut headers = pubsub_core::Headers::new();
        for (name, value) in &m.headers {
            headers.insert(name, value)?;
        }
        let topic = m.topic.parse()?;
        hub.publish(pubsub_core::Message::with_headers(
            topic, m.payload, headers,
        ))
        .await?;
        hub.close().await
    }))
    .lacking(
        Capability::Restart,
        "no broker to restart: the bus lives in the process and keeps nothing beyond it",
    )
}
