//! Subject-permission violations, which a NATS server reports asynchronously.
//!
//! A `SUB` or `PUB` that the user's permissions deny gets no reply of its own: the server
//! answers with `-ERR 'Permissions Violation for Subscription to "<subject>"'` (or `for Publish
//! to`), which async-nats hands to the connection's event callback as a server error. The
//! callback records it here ([`Violations::record`]); the driver reads it:
//!
//! - a subscribe checks, once the server has processed its `SUB`s (the barrier), whether any
//!   of them was refused, and fails with [`ErrorKind::Auth`];
//! - a refusal of a subscription that is live already (a permission revoked by a server
//!   configuration reload, or refused when async-nats sends it again on a new connection)
//!   ends every subscription that needs it with `EndReason::Refused` (through
//!   `Inbound::refused`), instead of leaving them open and silent;
//! - the barrier itself fails with `Auth` when its private subject is refused;
//! - a publish cannot wait for a verdict (core NATS publishes are not acknowledged), so the
//!   first one to a denied subject resolves `Ok` and the violation is logged; later publishes
//!   to that subject fail with `Auth` until the connection is re-established (permissions may
//!   have changed then).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use pubsub_core::{Error, ErrorKind};
use tokio::sync::watch;

/// Refused subscriptions kept for subscribes in progress to find (the oldest go first).
const KEPT: usize = 256;

/// What the server refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A `SUB` to this subject (a queue group, if any, is left out).
    Subscribe(String),
    /// A `PUB` to this subject.
    Publish(String),
}

/// The violation a server error text reports, if it is one (pure; fuzzed and property-tested):
/// `Permissions Violation for Subscription to "denied.>"` is a refused `SUB` to `denied.>`.
pub fn parse(text: &str) -> Option<Violation> {
    const PREFIX: &str = "permissions violation for ";
    let head = text.get(..PREFIX.len())?;
    if !head.eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let rest = &text[PREFIX.len()..];
    let (make, rest): (fn(String) -> Violation, &str) =
        if let Some(rest) = strip_prefix_ignore_case(rest, "subscription to \"") {
            (Violation::Subscribe, rest)
        } else if let Some(rest) = strip_prefix_ignore_case(rest, "publish to \"") {
            (Violation::Publish, rest)
        } else {
            return None;
        };
    // Subjects hold no `"`; a queue group may follow the closing one.
    let end = rest.find('"')?;
    let subject = &rest[..end];
    (!subject.is_empty()).then(|| make(subject.to_string()))
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// The violations of one connection, shared by its event callback and its driver.
#[derive(Debug)]
pub(crate) struct Violations {
    /// Refused subscriptions, numbered in arrival order.
    subscriptions: Mutex<VecDeque<(u64, String)>>,
    /// How many subscription violations arrived so far; watched by barriers.
    count: watch::Sender<u64>,
    /// Subjects publishes were refused for, since the last (re)connect.
    publishes: Mutex<HashSet<String>>,
    /// Whether `publishes` is non-empty (checked without the lock on every publish).
    any_publish: AtomicBool,
}

impl Default for Violations {
    fn default() -> Self {
        Violations {
            subscriptions: Mutex::new(VecDeque::new()),
            count: watch::Sender::new(0),
            publishes: Mutex::new(HashSet::new()),
            any_publish: AtomicBool::new(false),
        }
    }
}

impl Violations {
    /// Records what a server error reports, if it is a permission violation, and returns it.
    pub(crate) fn record(&self, text: &str) -> Option<Violation> {
        let violation = parse(text)?;
        match &violation {
            Violation::Subscribe(subject) => {
                tracing::warn!(%subject, "the NATS server refused a subscription (permissions violation)");
                let mut kept = self.subscriptions.lock();
                let seq = *self.count.borrow() + 1;
                kept.push_back((seq, subject.clone()));
                if kept.len() > KEPT {
                    kept.pop_front();
                }
                drop(kept);
                self.count.send_replace(seq);
            }
            Violation::Publish(subject) => {
                tracing::warn!(%subject, "the NATS server refused a publish (permissions violation); later publishes to this subject fail with Auth");
                self.publishes.lock().insert(subject.clone());
                self.any_publish.store(true, Ordering::Release);
                // A barrier waiting on a refused publish of its own is woken too.
                self.count.send_modify(|_| {});
            }
        }
        Some(violation)
    }

    /// Forgets refused publishes: a new connection may carry new permissions.
    pub(crate) fn reconnected(&self) {
        if self.any_publish.swap(false, Ordering::AcqRel) {
            self.publishes.lock().clear();
        }
    }

    /// The number of subscription violations so far: a subscribe notes it before its `SUB`s.
    pub(crate) fn mark(&self) -> u64 {
        *self.count.borrow()
    }

    /// A watch that changes on every violation (for a barrier to wake on).
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.count.subscribe()
    }

    /// `Auth` when a subscription to one of `subjects` was refused after `mark`.
    pub(crate) fn check_subscriptions<'a>(
        &self,
        since: u64,
        subjects: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), Error> {
        let kept = self.subscriptions.lock();
        if kept.back().is_none_or(|(seq, _)| *seq <= since) {
            return Ok(());
        }
        for subject in subjects {
            if kept.iter().any(|(seq, s)| *seq > since && s == subject) {
                return Err(Error::new(
                    ErrorKind::Auth,
                    format!("the NATS server refused the subscription to {subject:?} (permissions violation)"),
                ));
            }
        }
        Ok(())
    }

    /// `Auth` when a publish to `subject` was refused before (since the last reconnect).
    pub(crate) fn check_publish(&self, subject: &str) -> Result<(), Error> {
        if !self.any_publish.load(Ordering::Acquire) || !self.publishes.lock().contains(subject) {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Auth,
            format!("the NATS server refused publishing to {subject:?} (permissions violation)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn server_texts() {
        let sub = |s: &str| Some(Violation::Subscribe(s.into()));
        assert_eq!(
            parse(r#"Permissions Violation for Subscription to "a.>" using queue "q""#),
            sub("a.>")
        );
        assert_eq!(
            parse(r#"permissions violation for publish to "x.y""#),
            Some(Violation::Publish("x.y".into()))
        );
        for other in [
            "Authorization Violation",
            "Permissions Violation for Subscription to \"\"",
            "Permissions Violation for Subscription to \"unterminated",
            "Permissions Violation for Response to \"x\"",
            "Maximum Payload Violation",
            "",
            "Permissions Violation for é",
        ] {
            assert_eq!(parse(other), None, "{other}");
        }
    }

    #[test]
    fn registry() {
        let v = Violations::default();
        let mark = v.mark();
        assert_eq!(v.record("Slow Consumer"), None);
        assert!(v
            .record(r#"Permissions Violation for Subscription to "no.>""#)
            .is_some());
        assert!(v.check_subscriptions(mark, ["ok.>"]).is_ok());
        let e = v.check_subscriptions(mark, ["ok.>", "no.>"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Auth);
        assert!(!e.is_temporary());
        assert!(v.check_subscriptions(v.mark(), ["no.>"]).is_ok());
        assert!(v.check_publish("p").is_ok());
        v.record(r#"Permissions Violation for Publish to "p""#);
        assert_eq!(v.check_publish("p").unwrap_err().kind(), ErrorKind::Auth);
        assert!(v.check_publish("q").is_ok());
        v.reconnected();
        assert!(v.check_publish("p").is_ok());
    }

    proptest! {
        /// Never panics; what it reports round-trips through the server's wording.
        #[test]
        fn parse_never_panics_and_round_trips(text in "\\PC{0,80}", subject in "[^\"]{1,20}") {
            let _ = parse(&text);
            let said = format!("Permissions Violation for Subscription to \"{subject}\"{text}");
            prop_assert_eq!(parse(&said), Some(Violation::Subscribe(subject.clone())));
            let said = format!("Permissions Violation for Publish to \"{subject}\"");
            prop_assert_eq!(parse(&said), Some(Violation::Publish(subject)));
        }
    }
}
