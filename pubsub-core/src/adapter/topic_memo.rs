//! [`TopicMemo`]: the topic of a received message's channel or subject, checked once for a
//! run of messages to the same one.

use crate::Topic;

/// Remembers the last topic a reader made, so that a run of messages to one channel checks
/// its name once and shares one allocation.
#[derive(Debug, Default)]
pub struct TopicMemo {
    last: Option<Topic>,
}

impl TopicMemo {
    /// The topic named `name`, or `None` when it is not a portable topic (another client may
    /// publish to `a.b*c`; no portable pattern could match it).
    pub fn topic(&mut self, name: &str) -> Option<Topic> {
        match &self.last {
            Some(topic) if topic.as_str() == name => Some(topic.clone()),
            _ => {
                let topic = Topic::new(name).ok()?;
                self.last = Some(topic.clone());
                Some(topic)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_the_last_topic_and_refuses_non_topics() {
        let mut memo = TopicMemo::default();
        let a = memo.topic("a.b").unwrap();
        let again = memo.topic("a.b").unwrap();
        assert!(std::ptr::eq(a.as_str(), again.as_str()), "one allocation");
        assert_eq!(memo.topic("a.b*c"), None);
        assert_eq!(memo.topic("c").unwrap().as_str(), "c");
        assert!(!std::ptr::eq(
            memo.topic("a.b").unwrap().as_str(),
            a.as_str()
        ));
    }
}
