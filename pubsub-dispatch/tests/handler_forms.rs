//! Handlers as a new user writes them: a closure with `?` and a bare `Ok(())` (which did not
//! compile while handlers could return any `E: Into<HandlerError>`), and a panicking handler,
//! logged once as one structured `error` event.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pubsub_core::{Message, PubSub};
use pubsub_dispatch::{Dispatcher, Raw, Retry, Route};

/// Log lines written by the test binary's subscriber.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what} did not happen");
}

#[tokio::test]
async fn a_closure_with_question_marks_is_a_handler() {
    let ps: Arc<dyn PubSub> = Arc::new(
        pubsub_core::memory::MemoryBus::new()
            .connect()
            .await
            .unwrap(),
    );
    let sum = Arc::new(AtomicU64::new(0));
    let total = sum.clone();
    let dispatcher = Dispatcher::builder(ps.clone())
        .retry(Retry::none())
        .route(
            Route::new("numbers.>", move |Raw(bytes): Raw| {
                let sum = sum.clone();
                async move {
                    let text = std::str::from_utf8(&bytes)?;
                    let n: u64 = text.trim().parse()?;
                    sum.fetch_add(n, Ordering::SeqCst);
                    Ok(())
                }
            })
            .name("numbers"),
        )
        .start()
        .await
        .unwrap();
    for payload in ["40", "not a number", "2"] {
        ps.publish(Message::new("numbers.x".parse().unwrap(), payload))
            .await
            .unwrap();
    }
    until("two handled, one failed", || {
        let stats = dispatcher.stats("numbers").unwrap();
        stats.handled == 2 && stats.failed == 1
    })
    .await;
    assert_eq!(total.load(Ordering::SeqCst), 42);
    dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_panic_is_one_structured_error_line() {
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::ERROR)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    // Keep the test's output clean, as an application that wants only the structured line.
    std::panic::set_hook(Box::new(|_| {}));

    let ps: Arc<dyn PubSub> = Arc::new(
        pubsub_core::memory::MemoryBus::new()
            .connect()
            .await
            .unwrap(),
    );
    let dispatcher = Dispatcher::builder(ps.clone())
        .retry(Retry::none())
        .route(
            Route::new("boom.>", |_: Raw| async move {
                if true {
                    panic!("kaboom");
                }
                Ok(())
            })
            .name("boom"),
        )
        .start()
        .await
        .unwrap();
    ps.publish(Message::new("boom.x".parse().unwrap(), "x"))
        .await
        .unwrap();
    until("a panic caught", || {
        dispatcher.stats("boom").unwrap().panics == 1
    })
    .await;
    dispatcher.shutdown(Duration::from_secs(5)).await;
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let panics: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("the handler panicked"))
        .collect();
    assert_eq!(panics.len(), 1, "{text}");
    assert!(panics[0].contains("ERROR"), "{text}");
    assert!(panics[0].contains("panic=kaboom"), "{text}");
    assert!(panics[0].contains("route=boom"), "{text}");
}
