//! [`Topics`]: which topics are known to exist, and the creations under way, so that however
//! many publishes and subscribes need a new topic at once, it is created once.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use futures::future::{join_all, BoxFuture, FutureExt, Shared};
use parking_lot::Mutex;
use pubsub_core::Result;

/// One creation request for a batch of names, awaited by everyone who needs one of them.
type Creation = Shared<BoxFuture<'static, Result<()>>>;

/// The broker's answer to a creation request: for each name, whether it exists now.
pub(crate) type Answers = Result<Vec<(String, Result<()>)>>;

/// The topics a handle knows to exist, and the creations under way.
#[derive(Default)]
pub(crate) struct Topics {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    existing: HashSet<String>,
    creating: HashMap<String, Creation>,
}

impl Topics {
    /// Resolves once every name in `names` exists. Names not known to exist and not being
    /// created already are created by one call of `create` (which answers each name with `Ok`
    /// when it exists now); a name already being created waits for that creation instead of
    /// asking again. A failed creation is forgotten, so that the next call asks again.
    pub(crate) async fn ensure<F, Fut>(&self, names: &[&str], create: F) -> Result<()>
    where
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = Answers> + Send + 'static,
    {
        let waits: Vec<Creation> = {
            let mut state = self.state.lock();
            let mut waits = Vec::new();
            let mut missing = Vec::new();
            for &name in names {
                if state.existing.contains(name) {
                    continue;
                }
                match state.creating.get(name) {
                    Some(creation) => waits.push(creation.clone()),
                    None if missing.iter().any(|m| m == name) => {}
                    None => missing.push(name.to_owned()),
                }
            }
            if !missing.is_empty() {
                let creation = settle(self.state.clone(), missing.clone(), create(missing.clone()));
                for name in missing {
                    state.creating.insert(name, creation.clone());
                }
                waits.push(creation);
            }
            waits
        };
        for result in join_all(waits).await {
            result?;
        }
        Ok(())
    }
}

/// The creation of `names` as a shared future that, when it ends, records which names exist
/// and forgets the creation, whoever polled it to the end.
fn settle<Fut>(state: Arc<Mutex<State>>, names: Vec<String>, create: Fut) -> Creation
where
    Fut: Future<Output = Answers> + Send + 'static,
{
    async move {
        let answers = create.await;
        let mut state = state.lock();
        for name in &names {
            state.creating.remove(name);
        }
        let mut first_error = None;
        for (name, answer) in answers? {
            match answer {
                Ok(()) => {
                    state.existing.insert(name);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
    .boxed()
    .shared()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use pubsub_core::{Error, ErrorKind};

    use super::*;

    fn counted(
        calls: &Arc<AtomicUsize>,
        fail: bool,
    ) -> impl FnOnce(Vec<String>) -> BoxFuture<'static, Answers> {
        let calls = calls.clone();
        move |names| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Ok(names
                    .into_iter()
                    .map(|n| {
                        let answer = if fail {
                            Err(Error::new(ErrorKind::Backend, "refused"))
                        } else {
                            Ok(())
                        };
                        (n, answer)
                    })
                    .collect())
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_creation() {
        let topics = Arc::new(Topics::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let waiters: Vec<_> = (0..100)
            .map(|_| {
                let (topics, calls) = (topics.clone(), calls.clone());
                tokio::spawn(
                    async move { topics.ensure(&["a", "a"], counted(&calls, false)).await },
                )
            })
            .collect();
        for w in waiters {
            w.await.unwrap().unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        topics.ensure(&["a"], counted(&calls, false)).await.unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "a known topic is not created again"
        );
    }

    #[tokio::test]
    async fn a_batch_creates_only_what_is_missing() {
        let topics = Topics::default();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let record = |asked: &Arc<Mutex<Vec<Vec<String>>>>| {
            let asked = asked.clone();
            move |names: Vec<String>| {
                asked.lock().push(names.clone());
                async move { Ok(names.into_iter().map(|n| (n, Ok(()))).collect()) }
            }
        };
        topics.ensure(&["a"], record(&asked)).await.unwrap();
        topics
            .ensure(&["a", "b", "c"], record(&asked))
            .await
            .unwrap();
        assert_eq!(*asked.lock(), vec![vec!["a"], vec!["b", "c"]]);
    }

    #[tokio::test]
    async fn a_failed_creation_is_asked_again() {
        let topics = Topics::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let err = topics
            .ensure(&["a"], counted(&calls, true))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Backend);
        topics.ensure(&["a"], counted(&calls, false)).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_abandoned_creation_is_finished_by_the_next_caller() {
        let topics = Topics::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let first = topics.ensure(&["a"], counted(&calls, false));
        // Polled once, then dropped: the creation stays under way for the next caller.
        assert!(futures::poll!(Box::pin(first)).is_pending());
        topics.ensure(&["a"], counted(&calls, false)).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
