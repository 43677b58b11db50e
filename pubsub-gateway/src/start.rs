//! Where a subscription begins in a stream, from text: the `from` query parameter (and the
//! CLI's `--from`) and the `Last-Event-ID` header of a reconnecting `EventSource`.

use pubsub::{Position, StartAt};

/// The header an `EventSource` sends when it reconnects: the `id:` of the last event it got.
pub const LAST_EVENT_ID: &str = "last-event-id";

/// What `from` accepts, for error messages.
pub const FROM_GRAMMAR: &str = "now, start, last:N, time:<Unix ms> or a position";

/// Parses a start (`now`, `start`, `last:N`, `time:<Unix ms>` or a position). Fails with
/// [`ErrorKind::Invalid`](pubsub::ErrorKind::Invalid) and a message that names the grammar.
///
/// ```
/// use pubsub::StartAt;
/// use pubsub_gateway::start::parse_from;
/// assert_eq!(parse_from("last:5")?, StartAt::Last(5));
/// let error = parse_from("yesterday").unwrap_err();
/// assert!(error.message().contains("now, start, last:N"), "{error}");
/// # Ok::<(), pubsub::Error>(())
/// ```
pub fn parse_from(text: &str) -> Result<StartAt, pubsub::Error> {
    text.parse::<StartAt>().map_err(|error| {
        if error.message().contains("last:N") {
            return error;
        }
        // Not a keyword, so the core read it as a position: say what else it could be.
        pubsub::Error::new(
            pubsub::ErrorKind::Invalid,
            format!("{} (a start is {FROM_GRAMMAR})", error.message()),
        )
    })
}

/// Parses the `Last-Event-ID` of a reconnecting `EventSource`: the position of the last
/// message it got (the gateway's SSE `id:`); the subscription resumes after it.
pub fn parse_last_event_id(text: &str) -> Result<StartAt, pubsub::Error> {
    text.trim().parse::<Position>().map(StartAt::After)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pubsub::ErrorKind;
    use pubsub::Offset;

    #[test]
    fn starts_and_their_errors() {
        assert_eq!(parse_from("start").unwrap(), StartAt::Start);
        let position = Position::new(1, 2, Offset(3, 4));
        assert_eq!(
            parse_from(&position.to_string()).unwrap(),
            StartAt::After(position)
        );
        for bad in ["", "bogus", "last:x", "time:soon", "ps1-zz"] {
            let error = parse_from(bad).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Invalid);
            assert!(error.message().contains(FROM_GRAMMAR), "{bad}: {error}");
        }
    }

    #[test]
    fn last_event_ids_are_positions() {
        let position = Position::new(1, 2, Offset(3, 4));
        assert_eq!(
            parse_last_event_id(&position.to_string()).unwrap(),
            StartAt::After(position)
        );
        for bad in ["start", "last:3", "42", "ps1-1-2"] {
            let error = parse_last_event_id(bad).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Invalid, "{bad}");
        }
    }
}
