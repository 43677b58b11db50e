//! The live consumer of a stream queue: delivers each message with its position.

use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use lapin::options::BasicAckOptions;
use lapin::{Channel, Consumer};
use pubsub_core::Message;

use super::Stream;

/// Consumes the stream queue from where `consumer` began (`next`), handing each message,
/// with its position, to `deliver`; acknowledges with one `multiple` ack every so many
/// deliveries or when nothing more is ready. Returns when the consumer ends.
pub(crate) async fn follow(
    stream: Arc<Stream>,
    generation: u64,
    channel: Channel,
    mut consumer: Consumer,
    prefetch: u16,
    deliver: impl Fn(Message),
) {
    let ack_every = u64::from(prefetch / 2).max(1);
    let (mut last, mut unacked) = (0, 0);
    loop {
        let next = match consumer.next().now_or_never() {
            Some(next) if unacked < ack_every => next,
            ready => {
                if unacked > 0
                    && channel
                        .basic_ack(last, BasicAckOptions { multiple: true })
                        .await
                        .is_err()
                {
                    return;
                }
                unacked = 0;
                match ready {
                    Some(next) => next,
                    None => consumer.next().await,
                }
            }
        };
        match next {
            Some(Ok(delivery)) => {
                last = delivery.delivery_tag;
                unacked += 1;
                if let Some(message) = stream.live_message(generation, &delivery) {
                    deliver(message);
                }
            }
            Some(Err(error)) => {
                tracing::debug!(%error, queue = %stream.queue, "the stream consumer failed");
                return;
            }
            None => return,
        }
    }
}
