//! An order service on the dispatcher: typed handlers for order events, a flaky payment
//! handler that succeeds on retry, a stock handler that fails for good on one item, and a
//! second route watching the dead-letter topic.
//!
//! ```sh
//! cargo run -p pubsub-dispatch --example orders                 # memory://
//! cargo run -p pubsub-dispatch --example orders -- redis://127.0.0.1:6379
//! ```
//!
//! The URL comes from the first argument, else `$PUBSUB_URL`, else `memory://orders`.
//! `RUST_LOG=info` (the default) shows the dispatcher's retries and dead letters.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pubsub::PubSub;
use pubsub_dispatch::{
    dead_letter, Backoff, Dispatcher, Event, HandlerError, Meta, Publisher, Retry, Route,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// `orders.<region>.created`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderCreated {
    pub id: u64,
    pub item: String,
    pub quantity: u32,
}

/// `orders.<region>.paid`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderPaid {
    pub id: u64,
    pub cents: u64,
}

/// What happened, for the summary (and the example's test).
#[derive(Debug, Default)]
pub struct Summary {
    /// Orders whose stock was reserved.
    pub reserved: Vec<u64>,
    /// Orders whose payment was recorded, with the attempt that succeeded.
    pub paid: Vec<(u64, u32)>,
    /// Dead letters seen by the watcher: original topic, reason, attempts.
    pub dead_letters: Vec<(String, String, String)>,
}

enum Outcome {
    Reserved(u64),
    Paid(u64, u32),
    DeadLetter(String, String, String),
}

/// Runs the service on `url`: starts the routes, publishes a few orders (one out of stock, one
/// not even JSON), waits for every outcome, shuts down gracefully and returns what happened.
pub async fn run(url: &str) -> Result<Summary, Box<dyn std::error::Error + Send + Sync>> {
    let ps: Arc<dyn PubSub> = Arc::new(pubsub::connect(url).await?);
    let (tx, mut outcomes) = mpsc::unbounded_channel();

    // Stock: an unknown item can never be reserved: a permanent failure, dead-lettered at once.
    let stock = {
        let tx = tx.clone();
        move |order: Event<OrderCreated>| {
            let tx = tx.clone();
            async move {
                if order.item == "unobtainium" {
                    return Err(HandlerError::permanent(format!(
                        "no stock of {} for order {}",
                        order.item, order.id
                    )));
                }
                let _ = tx.send(Outcome::Reserved(order.id));
                Ok(())
            }
        }
    };

    // Payments: the ledger is flaky and fails every other call; retries get it through.
    let ledger_calls = Arc::new(AtomicU32::new(0));
    let payments = {
        let tx = tx.clone();
        move |payment: Event<OrderPaid>| {
            let (tx, ledger_calls) = (tx.clone(), ledger_calls.clone());
            async move {
                if ledger_calls
                    .fetch_add(1, Ordering::SeqCst)
                    .is_multiple_of(2)
                {
                    return Err(HandlerError::msg("ledger timed out"));
                }
                let _ = tx.send(Outcome::Paid(payment.id, payment.meta.attempt()));
                Ok(())
            }
        }
    };

    // The dead-letter watcher: a second route on `dlq.orders.>`.
    let watcher = move |meta: Meta| {
        let tx = tx.clone();
        async move {
            let h = |name| meta.header(name).unwrap_or("?").to_owned();
            println!(
                "dead letter: {} ({} after {} attempt(s)): {}",
                h(dead_letter::DLQ_TOPIC),
                h(dead_letter::DLQ_REASON),
                h(dead_letter::DLQ_ATTEMPTS),
                h(dead_letter::DLQ_ERROR)
            );
            let _ = tx.send(Outcome::DeadLetter(
                h(dead_letter::DLQ_TOPIC),
                h(dead_letter::DLQ_REASON),
                h(dead_letter::DLQ_ATTEMPTS),
            ));
            Ok::<_, HandlerError>(())
        }
    };

    let retry =
        Retry::attempts(4).with_backoff(Backoff::default().with_initial(Duration::from_millis(20)));
    let dispatcher = Dispatcher::builder(ps.clone())
        .retry(retry)
        .route(
            Route::new("orders.*.created", stock)
                .name("stock")
                .ordered(4),
        )
        .route(Route::new("orders.*.paid", payments).name("payments"))
        .route(Route::new("dlq.orders.>", watcher).name("dead-letters"))
        .start()
        .await?;

    let publisher = Publisher::new(ps.clone(), "/examples/orders");
    let created = |id, item: &str| OrderCreated {
        id,
        item: item.to_owned(),
        quantity: 1,
    };
    publisher
        .publish(
            "orders.eu.created".parse()?,
            "com.example.order.created",
            &created(1, "teapot"),
        )
        .await?;
    publisher
        .publish(
            "orders.us.created".parse()?,
            "com.example.order.created",
            &created(2, "unobtainium"),
        )
        .await?;
    publisher
        .publish(
            "orders.eu.paid".parse()?,
            "com.example.order.paid",
            &OrderPaid {
                id: 1,
                cents: 2_500,
            },
        )
        .await?;
    publisher
        .publish_raw(
            "orders.eu.created".parse()?,
            "com.example.order.created",
            "application/json",
            "{ not json",
        )
        .await?;

    // Two reservations or dead letters from `created`, one payment, and two dead letters.
    let mut summary = Summary::default();
    while summary.reserved.len() + summary.paid.len() + summary.dead_letters.len() < 4 {
        let next = tokio::time::timeout(Duration::from_secs(20), outcomes.recv()).await;
        match next {
            Ok(Some(Outcome::Reserved(id))) => summary.reserved.push(id),
            Ok(Some(Outcome::Paid(id, attempt))) => summary.paid.push((id, attempt)),
            Ok(Some(Outcome::DeadLetter(t, r, a))) => summary.dead_letters.push((t, r, a)),
            Ok(None) | Err(_) => return Err("the example's events did not all arrive".into()),
        }
    }
    let report = dispatcher.shutdown(Duration::from_secs(5)).await;
    println!(
        "shutdown: drained = {}, cut off = {}",
        report.drained,
        report.cut_off.len()
    );
    ps.close().await?;
    Ok(summary)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("PUBSUB_URL").ok())
        .unwrap_or_else(|| "memory://orders".to_owned());
    let summary = run(&url).await?;
    println!("reserved: {:?}", summary.reserved);
    println!("paid (order, attempt): {:?}", summary.paid);
    println!(
        "dead letters (topic, reason, attempts): {:?}",
        summary.dead_letters
    );
    Ok(())
}
