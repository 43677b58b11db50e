//! Every `tracing` event (and `log` record) of the process, at TRACE level, kept as text so a
//! test can check that no secret was ever logged.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts capturing (once per process; the tests of one process share the capture).
pub fn capture() {
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink(buf.clone());
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .try_init()
            .expect("installing the capturing subscriber");
        buf
    });
}

/// Everything captured so far.
pub fn text() -> String {
    let buf = LOGS.get().expect("capture() first").lock().unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

/// Fails if `secret` was logged; also checks that something was captured at all.
pub fn assert_never_logged(secret: &str) {
    let text = text();
    assert!(!text.is_empty(), "nothing was captured");
    if std::env::var_os("SECURITY_DUMP_LOGS").is_some() {
        eprintln!("{text}");
    }
    if let Some(at) = text.find(secret) {
        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
        panic!(
            "a secret was logged: {}",
            text[line_start..line_end].replace(secret, "<SECRET>")
        );
    }
}
