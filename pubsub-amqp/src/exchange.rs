//! The topic exchange every handle publishes to: declared durable by default, so that the
//! bindings of durable queues (stream queues, group queues) survive a broker restart, and
//! used as it is when it already exists with the other durability.

use lapin::options::ExchangeDeclareOptions;
use lapin::protocol::AMQPSoftError;
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection, ExchangeKind};

use crate::queue_probe::is_soft;

/// Declares the topic exchange `name` (`durable` or not) and returns an open channel for the
/// rest of the set-up. An exchange of that name with the other durability (the broker refuses
/// the declaration with `PRECONDITION_FAILED`, closing the channel) is used as it is, with a
/// warning: a transient one loses its bindings, and with them what durable queues would have
/// received, when the broker restarts.
pub(crate) async fn declare(
    connection: &Connection,
    name: &ShortString,
    durable: bool,
) -> lapin::Result<Channel> {
    let channel = connection.create_channel().await?;
    let options = ExchangeDeclareOptions {
        durable,
        ..ExchangeDeclareOptions::default()
    };
    let declared = channel
        .exchange_declare(
            name.clone(),
            ExchangeKind::Topic,
            options,
            FieldTable::default(),
        )
        .await;
    match declared {
        Ok(()) => Ok(channel),
        Err(error) if is_soft(&error, AMQPSoftError::PRECONDITIONFAILED) => {
            let channel = connection.create_channel().await?;
            let passive = ExchangeDeclareOptions {
                passive: true,
                ..ExchangeDeclareOptions::default()
            };
            channel
                .exchange_declare(
                    name.clone(),
                    ExchangeKind::Topic,
                    passive,
                    FieldTable::default(),
                )
                .await?;
            if durable {
                tracing::warn!(
                    exchange = %name,
                    "the exchange exists and is not durable: it is used as it is, but its \
                     bindings (streams, groups) are lost when the broker restarts, and so is \
                     what is published before they are made again; delete it to let a handle \
                     declare it durable"
                );
            } else {
                tracing::warn!(exchange = %name, "the exchange exists and is durable: used as it is");
            }
            Ok(channel)
        }
        Err(error) => Err(error),
    }
}
