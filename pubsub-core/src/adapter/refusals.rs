//! [`Refusals`]: the permission refusals a broker reports apart from the request it refuses.
//!
//! Some brokers answer a subscription or a publish they do not allow with no reply of its own:
//! the refusal arrives later, on the connection's event stream (a NATS server's
//! `-ERR 'Permissions Violation …'`). The adapter parses the broker's wording and records each
//! refusal here; its driver then asks:
//!
//! - a subscribe notes [`Refusals::mark`] before it sends its subscriptions and, once the
//!   broker has processed them, fails with [`ErrorKind::Auth`] when
//!   [`Refusals::check_subscriptions`] finds one of them refused since;
//! - a publish cannot wait for a verdict, so the first one to a refused subject resolves and
//!   is logged; later publishes to it fail with `Auth` ([`Refusals::check_publish`]) until the
//!   connection is re-established ([`Refusals::reconnected`]: permissions may have changed).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::{Error, ErrorKind, Result};

/// Refused subscriptions kept for subscribes in progress to find (the oldest go first).
const KEPT: usize = 256;

/// The refusals of one connection, shared by its event handler and its driver.
#[derive(Debug)]
pub struct Refusals {
    /// Who refuses, as errors and logs name it (`"NATS server"`).
    broker: &'static str,
    /// Refused subscriptions, numbered in arrival order.
    subscriptions: Mutex<VecDeque<(u64, String)>>,
    /// How many subscription refusals arrived so far; watched by those waiting for a verdict.
    count: watch::Sender<u64>,
    /// Subjects publishes were refused for, since the last (re)connect.
    publishes: Mutex<HashSet<String>>,
    /// Whether `publishes` is non-empty (checked without the lock on every publish).
    any_publish: AtomicBool,
}

impl Refusals {
    /// No refusals yet; `broker` names who refuses in errors and logs (`"NATS server"`).
    pub fn new(broker: &'static str) -> Self {
        Refusals {
            broker,
            subscriptions: Mutex::new(VecDeque::new()),
            count: watch::Sender::new(0),
            publishes: Mutex::new(HashSet::new()),
            any_publish: AtomicBool::new(false),
        }
    }

    /// Records that the broker refused a subscription to `subject`.
    pub fn subscription_refused(&self, subject: &str) {
        tracing::warn!(%subject, "the {} refused a subscription (permissions violation)", self.broker);
        let mut kept = self.subscriptions.lock();
        let seq = *self.count.borrow() + 1;
        kept.push_back((seq, subject.to_string()));
        if kept.len() > KEPT {
            kept.pop_front();
        }
        drop(kept);
        self.count.send_replace(seq);
    }

    /// Records that the broker refused a publish to `subject`: later publishes to it fail.
    pub fn publish_refused(&self, subject: &str) {
        tracing::warn!(%subject, "the {} refused a publish (permissions violation); later publishes to this subject fail with Auth", self.broker);
        self.publishes.lock().insert(subject.to_string());
        self.any_publish.store(true, Ordering::Release);
        // One waiting on a refused publish of its own is woken too.
        self.count.send_modify(|_| {});
    }

    /// Forgets refused publishes: a new connection may carry new permissions.
    pub fn reconnected(&self) {
        if self.any_publish.swap(false, Ordering::AcqRel) {
            self.publishes.lock().clear();
        }
    }

    /// The number of subscription refusals so far: a subscribe notes it before it subscribes.
    pub fn mark(&self) -> u64 {
        *self.count.borrow()
    }

    /// A watch that changes on every refusal (for one waiting on the broker to wake on).
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.count.subscribe()
    }

    /// `Auth` when a subscription to one of `subjects` was refused after `since` (a
    /// [`Refusals::mark`]).
    pub fn check_subscriptions<'a>(
        &self,
        since: u64,
        subjects: impl IntoIterator<Item = &'a str>,
    ) -> Result<()> {
        let kept = self.subscriptions.lock();
        if kept.back().is_none_or(|(seq, _)| *seq <= since) {
            return Ok(());
        }
        for subject in subjects {
            if kept.iter().any(|(seq, s)| *seq > since && s == subject) {
                return Err(Error::new(
                    ErrorKind::Auth,
                    format!(
                        "the {} refused the subscription to {subject:?} (permissions violation)",
                        self.broker
                    ),
                ));
            }
        }
        Ok(())
    }

    /// [`Refusals::check_subscriptions`], after letting the task that records refusals catch
    /// up: the broker's refusal came before its confirmation of the subscriptions, but may
    /// still be on its way to [`Refusals::subscription_refused`] through another task (the
    /// client library's event task). Checks, yields, `yields` times, then checks once more.
    pub async fn check_subscriptions_settled(
        &self,
        since: u64,
        subjects: &[String],
        yields: usize,
    ) -> Result<()> {
        for _ in 0..yields {
            self.check_subscriptions(since, subjects.iter().map(String::as_str))?;
            tokio::task::yield_now().await;
        }
        self.check_subscriptions(since, subjects.iter().map(String::as_str))
    }

    /// `Auth` when a publish to `subject` was refused before (since the last reconnect).
    pub fn check_publish(&self, subject: &str) -> Result<()> {
        if !self.any_publish.load(Ordering::Acquire) || !self.publishes.lock().contains(subject) {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Auth,
            format!(
                "the {} refused publishing to {subject:?} (permissions violation)",
                self.broker
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry() {
        let v = Refusals::new("test broker");
        let mark = v.mark();
        v.subscription_refused("no.>");
        assert!(v.check_subscriptions(mark, ["ok.>"]).is_ok());
        let e = v.check_subscriptions(mark, ["ok.>", "no.>"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Auth);
        assert!(!e.is_temporary());
        assert!(e.to_string().contains("the test broker refused"), "{e}");
        assert!(v.check_subscriptions(v.mark(), ["no.>"]).is_ok());
        assert!(v.check_publish("p").is_ok());
        v.publish_refused("p");
        assert_eq!(v.check_publish("p").unwrap_err().kind(), ErrorKind::Auth);
        assert!(v.check_publish("q").is_ok());
        v.reconnected();
        assert!(v.check_publish("p").is_ok());
    }

    #[test]
    fn keeps_the_latest_subscription_refusals() {
        let v = Refusals::new("test broker");
        for i in 0..KEPT + 10 {
            v.subscription_refused(&format!("s{i}"));
        }
        assert!(v.check_subscriptions(0, ["s0"]).is_ok(), "the oldest went");
        let last = format!("s{}", KEPT + 9);
        assert!(v.check_subscriptions(0, [last.as_str()]).is_err());
    }

    #[tokio::test]
    async fn a_refusal_recorded_by_another_task_is_found_after_yields() {
        let v = std::sync::Arc::new(Refusals::new("test broker"));
        let since = v.mark();
        let recorder = v.clone();
        tokio::spawn(async move { recorder.subscription_refused("late") });
        let subjects = ["late".to_string()];
        let e = v.check_subscriptions_settled(since, &subjects, 64).await;
        assert_eq!(e.unwrap_err().kind(), ErrorKind::Auth);
        assert!(v.check_subscriptions_settled(since, &[], 2).await.is_ok());
    }

    #[tokio::test]
    async fn a_refusal_wakes_the_watch() {
        let v = Refusals::new("test broker");
        let mut watch = v.watch();
        v.publish_refused("p");
        assert!(watch.changed().await.is_ok());
        v.subscription_refused("s");
        assert!(watch.changed().await.is_ok());
        assert_eq!(*watch.borrow(), 1);
    }
}
