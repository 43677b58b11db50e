//! [`SharedReads`]: reads of a stream's log that several followers of one handle need at the
//! same time are made once.
//!
//! After an outage every subscription under a stream resumes from its last position, and
//! subscriptions that were live together stand at the same one: a thousand of them would ask
//! the broker for the same batch a thousand times, and decode it as often. Here the first
//! asks; the others wait for its answer and share it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, Shared};
use futures::FutureExt;
use parking_lot::Mutex;

use crate::adapter::driver::Driver;
use crate::adapter::stream_log::{LogRead, ReadFrom};
use crate::{Error, ErrorKind, Pattern, Result, StreamConfig};

/// Which read: the stream (by root), where from, how many.
type Key = (Pattern, ReadFrom, usize);

/// A read's outcome as every waiter gets it (an [`Error`] is not `Clone`: its kind and text).
type Outcome = std::result::Result<Arc<LogRead>, (ErrorKind, String)>;

type SharedRead = Shared<BoxFuture<'static, Outcome>>;

/// The reads of one handle's stream logs under way.
pub(crate) struct SharedReads<D> {
    driver: Arc<D>,
    /// A read's bound, inside the shared read: a read that hangs ends for every waiter.
    timeout: Duration,
    inflight: Mutex<HashMap<Key, SharedRead>>,
}

impl<D: Driver> SharedReads<D> {
    pub(crate) fn new(driver: Arc<D>, timeout: Duration) -> Arc<Self> {
        Arc::new(SharedReads {
            driver,
            timeout,
            inflight: Mutex::new(HashMap::new()),
        })
    }

    /// Reads at most `limit` entries of `stream`'s log from `from`, sharing the answer with
    /// every caller asking for the same read while it is under way.
    pub(crate) async fn read(
        self: &Arc<Self>,
        stream: &StreamConfig,
        from: ReadFrom,
        limit: usize,
    ) -> Result<Arc<LogRead>> {
        let key = (stream.root().clone(), from, limit);
        let read = {
            let mut inflight = self.inflight.lock();
            inflight
                .entry(key.clone())
                .or_insert_with(|| self.start(stream.clone(), from, limit))
                .clone()
        };
        let outcome = read.clone().await;
        {
            let mut inflight = self.inflight.lock();
            if inflight.get(&key).is_some_and(|r| r.ptr_eq(&read)) {
                inflight.remove(&key);
            }
        }
        outcome.map_err(|(kind, text)| Error::new(kind, text))
    }

    fn start(&self, stream: StreamConfig, from: ReadFrom, limit: usize) -> SharedRead {
        let (driver, timeout) = (self.driver.clone(), self.timeout);
        async move {
            match tokio::time::timeout(timeout, driver.read_stream(&stream, from, limit)).await {
                Ok(Ok(read)) => Ok(Arc::new(read)),
                Ok(Err(error)) => Err((error.kind(), error.to_string())),
                Err(_) => Err((
                    ErrorKind::Timeout,
                    format!(
                        "reading the log of stream `{}` took over {timeout:?}",
                        stream.root()
                    ),
                )),
            }
        }
        .boxed()
        .shared()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use crate::{Message, Offset};

    /// A driver whose reads take a while and are counted.
    #[derive(Debug, Default)]
    struct Counting {
        reads: AtomicUsize,
    }

    #[async_trait]
    impl Driver for Counting {
        type Filter = String;
        const BACKEND: &'static str = "counting";
        fn max_payload(&self) -> usize {
            1024
        }
        fn native_filter(&self, pattern: &Pattern) -> Result<String> {
            Ok(pattern.to_string())
        }
        async fn publish(&self, _message: Message) -> Result<()> {
            Ok(())
        }
        async fn add_filters(&self, _filters: &[String]) -> Result<()> {
            Ok(())
        }
        async fn remove_filters(&self, _filters: &[String]) -> Result<()> {
            Ok(())
        }
        async fn read_stream(
            &self,
            _stream: &StreamConfig,
            from: ReadFrom,
            _limit: usize,
        ) -> Result<LogRead> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            if from == ReadFrom::End {
                return Err(Error::new(ErrorKind::Backend, "no end today"));
            }
            Ok(LogRead {
                epoch: 7,
                end: Offset(0, 3),
                ..LogRead::default()
            })
        }
        async fn close(&self) -> Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn concurrent_reads_of_the_same_batch_are_made_once() {
        let driver = Arc::new(Counting::default());
        let reads = SharedReads::new(driver.clone(), Duration::from_secs(5));
        let stream = StreamConfig::new("s.>".parse().unwrap());
        let from = ReadFrom::After(Offset(0, 1));
        let all = (0..100).map(|_| reads.read(&stream, from, 512));
        for read in futures::future::join_all(all).await {
            assert_eq!(read.unwrap().epoch, 7);
        }
        assert_eq!(driver.reads.load(Ordering::SeqCst), 1);
        // Done: the next read is a new one; another batch is another read.
        reads.read(&stream, from, 512).await.unwrap();
        reads.read(&stream, ReadFrom::Start, 512).await.unwrap();
        assert_eq!(driver.reads.load(Ordering::SeqCst), 3);
        // Errors reach every waiter, with their kind.
        let failed = futures::future::join(
            reads.read(&stream, ReadFrom::End, 0),
            reads.read(&stream, ReadFrom::End, 0),
        )
        .await;
        assert_eq!(failed.0.unwrap_err().kind(), ErrorKind::Backend);
        assert_eq!(failed.1.unwrap_err().kind(), ErrorKind::Backend);
        assert!(reads.inflight.lock().is_empty());
    }

    #[tokio::test]
    async fn a_read_that_hangs_ends_for_every_waiter() {
        let reads = SharedReads::new(Arc::new(Counting::default()), Duration::from_millis(1));
        let stream = StreamConfig::new("s.>".parse().unwrap());
        let e = reads.read(&stream, ReadFrom::Start, 1).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(reads.inflight.lock().is_empty());
    }
}
