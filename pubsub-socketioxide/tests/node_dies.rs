//! A node that dies while requests wait for its answer: once presence forgets it, `fetch_sockets`
//! and `rooms` return with what the live nodes answered, instead of waiting out the request
//! timeout (5 s here).

use std::sync::Arc;
use std::time::{Duration, Instant};

use pubsub_core::PubSub;
use pubsub_socketioxide::{AdapterConfig, DriverConfig, PubSubAdapter, PubSubDriver};
use socketioxide::adapter::Emitter;
use socketioxide::extract::SocketRef;
use socketioxide::SocketIo;

type Adapter = PubSubAdapter<Emitter>;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const EXPIRY: Duration = Duration::from_millis(600);

async fn node(url: &str, name: &str) -> (SocketIo<Adapter>, PubSubDriver, Arc<dyn PubSub>) {
    let ps: Arc<dyn PubSub> = Arc::new(pubsub::connect(url).await.unwrap());
    let config = DriverConfig::new("dies".parse().unwrap())
        .unwrap()
        .with_node_id(name)
        .with_heartbeat(Duration::from_millis(100), EXPIRY);
    let driver = PubSubDriver::start(ps.clone(), config).await.unwrap();
    let adapter = driver.adapter(AdapterConfig::default().with_request_timeout(REQUEST_TIMEOUT));
    let (_layer, io) = SocketIo::builder()
        .with_adapter::<Adapter>(adapter)
        .build_layer();
    io.ns("/", |_: SocketRef<Adapter>| async {}).await.unwrap();
    (io, driver, ps)
}

async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_for_a_dead_node_return_when_it_is_forgotten() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let url = format!("memory://sio-dies-{nanos}");
    let (a, a_driver, _a_ps) = node(&url, "a").await;
    let (b, b_driver, b_ps) = node(&url, "b").await;
    let (_c, _c_driver, _c_ps) = node(&url, "c").await;
    // Every node sees the three, with their request channels.
    let request_chan = "socket.io-request#/#";
    until("three nodes serve `/`", || {
        a_driver.presence().count_tagged(request_chan) == 3
    })
    .await;
    // Both requests work while all are alive.
    assert!(a.fetch_sockets().await.unwrap().is_empty());
    assert!(b.rooms().await.unwrap().is_empty());

    // B dies: its handle closes, so it neither answers nor beats; A still counts it until
    // presence forgets it after the expiry.
    b_ps.close().await.unwrap();
    drop(b_driver);
    let started = Instant::now();
    let (sockets, rooms) = tokio::join!(a.fetch_sockets(), a.rooms());
    let took = started.elapsed();
    assert!(sockets.unwrap().is_empty());
    assert!(rooms.unwrap().is_empty());
    assert!(
        took < EXPIRY * 3,
        "requests waited {took:?} for the dead node (expiry {EXPIRY:?}, request timeout \
         {REQUEST_TIMEOUT:?})"
    );
    assert_eq!(a_driver.presence().count_tagged(request_chan), 2);
}
