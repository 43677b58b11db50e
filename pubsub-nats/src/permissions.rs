//! Subject-permission violations, which a NATS server reports asynchronously.
//!
//! A `SUB` or `PUB` that the user's permissions deny gets no reply of its own: the server
//! answers with `-ERR 'Permissions Violation for Subscription to "<subject>"'` (or `for Publish
//! to`), which async-nats hands to the connection's event callback as a server error. The
//! callback records it in the kit's [`Refusals`] ([`record`]); the driver reads it:
//!
//! - a subscribe checks, once the server has processed its `SUB`s (the barrier), whether any
//!   of them was refused, and fails with `ErrorKind::Auth`;
//! - a refusal of a subscription that is live already (a permission revoked by a server
//!   configuration reload, or refused when async-nats sends it again on a new connection)
//!   ends every subscription that needs it with `EndReason::Refused` (through
//!   `Inbound::refused`), instead of leaving them open and silent;
//! - the barrier itself fails with `Auth` when its private subject is refused;
//! - a publish cannot wait for a verdict (core NATS publishes are not acknowledged), so the
//!   first one to a denied subject resolves `Ok` and the violation is logged; later publishes
//!   to that subject fail with `Auth` until the connection is re-established (permissions may
//!   have changed then).

use pubsub_core::adapter::Refusals;

/// Who refuses, as errors and logs name it.
pub(crate) const BROKER: &str = "NATS server";

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

/// Records what a server error reports in `refusals`, if it is a permission violation, and
/// returns it.
pub(crate) fn record(refusals: &Refusals, text: &str) -> Option<Violation> {
    let violation = parse(text)?;
    match &violation {
        Violation::Subscribe(subject) => refusals.subscription_refused(subject),
        Violation::Publish(subject) => refusals.publish_refused(subject),
    }
    Some(violation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use pubsub_core::ErrorKind;

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
    fn records_what_it_parses() {
        let refusals = Refusals::new(BROKER);
        let mark = refusals.mark();
        assert_eq!(record(&refusals, "Slow Consumer"), None);
        assert!(record(
            &refusals,
            r#"Permissions Violation for Subscription to "no.>""#
        )
        .is_some());
        let e = refusals.check_subscriptions(mark, ["no.>"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Auth);
        record(&refusals, r#"Permissions Violation for Publish to "p""#);
        assert_eq!(
            refusals.check_publish("p").unwrap_err().kind(),
            ErrorKind::Auth
        );
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
