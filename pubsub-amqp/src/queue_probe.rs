//! Whether a durable queue exists before declaring it ([`probe`]), and which soft error a
//! broker answered ([`is_soft`]): shared by the streams' and the groups' declarations.

use lapin::options::QueueDeclareOptions;
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection};
use pubsub_core::Result;

use crate::driver::lapin_error;

/// Whether the broker answered `error` with the soft error `kind` (the channel is closed).
pub(crate) fn is_soft(error: &lapin::Error, kind: AMQPSoftError) -> bool {
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(e) if e.kind() == &AMQPErrorKind::Soft(kind)
    )
}

/// Asks (a passive declare) whether `queue` exists; returns an open channel of its own and the
/// answer. `looking_for` is the error's context ("looking for the stream queue").
pub(crate) async fn probe(
    connection: &Connection,
    queue: &ShortString,
    looking_for: &'static str,
) -> Result<(Channel, bool)> {
    let open = || async {
        connection
            .create_channel()
            .await
            .map_err(|e| lapin_error("opening a channel", e))
    };
    let channel = open().await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    match channel
        .queue_declare(queue.clone(), passive, FieldTable::default())
        .await
    {
        Ok(_) => Ok((channel, true)),
        // NOT_FOUND closed that channel.
        Err(error) if is_soft(&error, AMQPSoftError::NOTFOUND) => Ok((open().await?, false)),
        Err(error) => Err(lapin_error(looking_for, error)),
    }
}
