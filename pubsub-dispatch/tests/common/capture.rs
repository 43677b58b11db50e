//! A global `tracing` layer that records the fields of every span, so that a test can check
//! the dispatcher's spans (ids and OpenTelemetry attributes).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

type Fields = HashMap<String, String>;

#[derive(Default)]
struct Store {
    /// Every span seen: name and fields.
    spans: Vec<(String, Fields)>,
    /// Live span id -> index in `spans`.
    live: HashMap<u64, usize>,
}

fn store() -> &'static Mutex<Store> {
    static STORE: OnceLock<Mutex<Store>> = OnceLock::new();
    STORE.get_or_init(Default::default)
}

struct Visitor<'a>(&'a mut Fields);

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

struct Capture;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = Fields::new();
        attrs.record(&mut Visitor(&mut fields));
        let mut store = store().lock().unwrap();
        let index = store.spans.len();
        store
            .spans
            .push((attrs.metadata().name().to_owned(), fields));
        store.live.insert(id.into_u64(), index);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut store = store().lock().unwrap();
        if let Some(&index) = store.live.get(&id.into_u64()) {
            values.record(&mut Visitor(&mut store.spans[index].1));
        }
    }

    fn on_close(&self, id: Id, _: Context<'_, S>) {
        store().lock().unwrap().live.remove(&id.into_u64());
    }
}

/// Installs the capturing subscriber as the global default (once per test binary).
pub fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(Capture);
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this test binary");
    });
}

/// The fields of the span named `name` whose `span_id` field is `span_id`, waiting a little
/// for it to be recorded.
pub async fn find_span(name: &str, span_id: &str) -> Option<Fields> {
    for _ in 0..200 {
        {
            let store = store().lock().unwrap();
            let found = store
                .spans
                .iter()
                .find(|(n, f)| n == name && f.get("span_id").map(String::as_str) == Some(span_id));
            if let Some((_, fields)) = found {
                return Some(fields.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}
