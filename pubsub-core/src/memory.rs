//! The in-process backend (`memory://`): the shared router plus a driver that hands each
//! message to every handle connected to the same [`MemoryBus`].

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};

use crate::{
    ConnectionGate, Driver, Hub, HubConfig, Inbound, Message, NativeFilter, Pattern, Result,
};

/// Default largest payload of the memory backend: 16 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// Settings of a memory handle.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// The hub's settings (subscription buffer size).
    pub hub: HubConfig,
    /// Largest payload accepted.
    pub max_payload: usize,
    /// How long `publish` waits while the handle is disconnected (see [`MemoryLink`]).
    pub publish_timeout: Duration,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            hub: HubConfig::default(),
            max_payload: DEFAULT_MAX_PAYLOAD,
            publish_timeout: Duration::from_secs(5),
        }
    }
}

impl MemoryConfig {
    /// Sets the largest payload accepted.
    pub fn with_max_payload(mut self, max: usize) -> Self {
        self.max_payload = max;
        self
    }

    /// Sets how long `publish` waits while disconnected.
    pub fn with_publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// Sets the hub's settings.
    pub fn with_hub(mut self, hub: HubConfig) -> Self {
        self.hub = hub;
        self
    }
}

/// An in-process broker. Every handle connected to one bus sees the others' messages.
///
/// `memory://` in [`connect`](https://docs.rs/pubsub) uses [`MemoryBus::global`];
/// `memory://NAME` uses [`MemoryBus::named`].
///
/// ```
/// # async fn demo() -> pubsub_core::Result<()> {
/// use pubsub_core::{memory::MemoryBus, Message, PubSub};
/// let bus = MemoryBus::new();
/// let (a, b) = (bus.connect().await?, bus.connect().await?);
/// let mut sub = b.subscribe("news.>".parse()?).await?;
/// a.publish(Message::new("news.tech".parse()?, "x")).await?;
/// assert_eq!(sub.recv().await.unwrap().topic().as_str(), "news.tech");
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Clone, Default)]
pub struct MemoryBus {
    shared: Arc<BusShared>,
}

#[derive(Default)]
struct BusShared {
    handles: RwLock<Vec<Attached>>,
    next_id: AtomicU64,
}

struct Attached {
    id: u64,
    inbound: Inbound,
    gate: ConnectionGate,
}

impl MemoryBus {
    /// A new, private bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide bus behind `memory://`.
    pub fn global() -> Self {
        static GLOBAL: OnceLock<MemoryBus> = OnceLock::new();
        GLOBAL.get_or_init(MemoryBus::new).clone()
    }

    /// The process-wide bus with this name (`memory://NAME`); it lives while a handle or a
    /// `MemoryBus` value refers to it.
    pub fn named(name: &str) -> Self {
        static NAMED: OnceLock<Mutex<HashMap<String, Weak<BusShared>>>> = OnceLock::new();
        let mut map = NAMED.get_or_init(Default::default).lock();
        map.retain(|_, bus| bus.strong_count() > 0);
        if let Some(shared) = map.get(name).and_then(Weak::upgrade) {
            return MemoryBus { shared };
        }
        let bus = MemoryBus::new();
        map.insert(name.to_string(), Arc::downgrade(&bus.shared));
        bus
    }

    /// Connects a new handle with default settings.
    pub async fn connect(&self) -> Result<Hub> {
        Ok(self.connect_with(MemoryConfig::default()).await?.0)
    }

    /// Connects a new handle; also returns its [`MemoryLink`], which can cut and restore the
    /// handle's connection to the bus (for testing outage behaviour).
    pub async fn connect_with(&self, config: MemoryConfig) -> Result<(Hub, MemoryLink)> {
        let gate = ConnectionGate::new(true);
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let bus = self.shared.clone();
        let driver_gate = gate.clone();
        let hub = Hub::start(config.hub.clone(), move |inbound| async move {
            bus.handles.write().push(Attached {
                id,
                inbound,
                gate: driver_gate.clone(),
            });
            Ok(MemoryDriver {
                bus,
                id,
                gate: driver_gate,
                max_payload: config.max_payload,
                publish_timeout: config.publish_timeout,
                filters: AtomicUsize::new(0),
            })
        })
        .await?;
        Ok((hub, MemoryLink { gate }))
    }

    /// Number of handles attached to this bus.
    pub fn handle_count(&self) -> usize {
        self.shared.handles.read().len()
    }
}

impl fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBus")
            .field("handles", &self.handle_count())
            .finish()
    }
}

/// Cuts and restores one memory handle's connection, as a network fault would.
///
/// While cut, the handle receives nothing and its `publish` waits up to the publish timeout
/// and then fails with [`Error::Timeout`](crate::Error::Timeout).
#[derive(Debug, Clone)]
pub struct MemoryLink {
    gate: ConnectionGate,
}

impl MemoryLink {
    /// Cuts the connection.
    pub fn cut(&self) {
        self.gate.set_connected(false);
    }

    /// Restores the connection.
    pub fn restore(&self) {
        self.gate.set_connected(true);
    }
}

/// The memory backend's [`Driver`].
pub struct MemoryDriver {
    bus: Arc<BusShared>,
    id: u64,
    gate: ConnectionGate,
    max_payload: usize,
    publish_timeout: Duration,
    filters: AtomicUsize,
}

impl fmt::Debug for MemoryDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryDriver")
            .field("id", &self.id)
            .field("connected", &self.gate.is_connected())
            .field("filters", &self.filters.load(Ordering::Relaxed))
            .finish()
    }
}

#[async_trait]
impl Driver for MemoryDriver {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn max_payload(&self) -> usize {
        self.max_payload
    }

    fn native_filter(&self, pattern: &Pattern) -> Result<NativeFilter> {
        Ok(if pattern.is_exact() {
            NativeFilter::exact(pattern.as_str())
        } else {
            NativeFilter::wildcard(pattern.as_str())
        })
    }

    async fn publish(&self, message: &Message) -> Result<()> {
        self.gate.wait_connected(self.publish_timeout).await?;
        // Every connected handle gets one copy; its router decides which subscriptions want it.
        for attached in self.bus.handles.read().iter() {
            if attached.gate.is_connected() {
                attached.inbound.deliver(message.clone());
            }
        }
        Ok(())
    }

    async fn add_filter(&self, _filter: &NativeFilter) -> Result<()> {
        self.filters.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn remove_filter(&self, _filter: &NativeFilter) -> Result<()> {
        self.filters.fetch_sub(1, Ordering::Relaxed);
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        self.bus.handles.write().retain(|a| a.id != self.id);
        Ok(())
    }
}
