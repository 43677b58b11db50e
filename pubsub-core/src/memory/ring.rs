//! [`Ring`]: the memory backend's log of one stream, bounded by count and age.

use std::collections::VecDeque;
use std::time::SystemTime;

use crate::adapter::{LogRead, ReadFrom};
use crate::{Message, Offset, Position, StreamConfig};

/// The retained messages of one stream on a bus, numbered from 1 in the order appended.
#[derive(Debug)]
pub(super) struct Ring {
    pub config: StreamConfig,
    epoch: u64,
    /// The number the next message gets.
    next: u64,
    entries: VecDeque<(u64, SystemTime, Message)>,
}

impl Ring {
    pub fn new(config: StreamConfig) -> Self {
        Ring {
            config,
            epoch: crate::adapter::random_u64(),
            next: 1,
            entries: VecDeque::new(),
        }
    }

    /// Appends `message`; returns it with its position.
    pub fn append(&mut self, message: Message) -> Message {
        let now = SystemTime::now();
        let seq = self.next;
        self.next += 1;
        let position = Position::new(self.config.tag(), self.epoch, Offset(0, seq));
        let message = message.with_position(position);
        self.entries.push_back((seq, now, message.clone()));
        self.trim(now);
        message
    }

    /// The number of the oldest entry retained (the next one's when empty), after trimming
    /// what expired.
    pub fn first_seq(&mut self) -> u64 {
        self.trim(SystemTime::now());
        self.entries.front().map_or(self.next, |(seq, _, _)| *seq)
    }

    /// The number the next message appended gets.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// The log's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The entry numbered `seq`, with its position, if it is retained.
    pub fn get(&self, seq: u64) -> Option<&Message> {
        let first = self.entries.front()?.0;
        let index = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.entries.get(index).map(|(_, _, message)| message)
    }

    /// Drops what is past the count or the age.
    fn trim(&mut self, now: SystemTime) {
        let max_len = usize::try_from(self.config.max_len()).unwrap_or(usize::MAX);
        while self.entries.len() > max_len {
            self.entries.pop_front();
        }
        while let Some((_, at, _)) = self.entries.front() {
            match now.duration_since(*at) {
                Ok(age) if age > self.config.max_age() => {
                    self.entries.pop_front();
                }
                _ => break,
            }
        }
    }

    pub fn read(&mut self, from: ReadFrom, limit: usize) -> LogRead {
        self.trim(SystemTime::now());
        let first = self.entries.front().map_or(self.next, |(seq, _, _)| *seq);
        let len = self.entries.len();
        let mut missed = None;
        let start = match from {
            ReadFrom::Start => 0,
            ReadFrom::After(Offset(_, seq)) => {
                if seq.saturating_add(1) < first {
                    missed = Some(Some(first - seq - 1));
                    0
                } else {
                    usize::try_from(seq + 1 - first).map_or(len, |i| i.min(len))
                }
            }
            ReadFrom::Last(n) => len.saturating_sub(usize::try_from(n).unwrap_or(usize::MAX)),
            ReadFrom::Time(time) => self.entries.partition_point(|(_, at, _)| *at < time),
            ReadFrom::End => len,
        };
        LogRead {
            epoch: self.epoch,
            entries: self
                .entries
                .iter()
                .skip(start)
                .take(limit)
                .map(|(seq, _, message)| (Offset(0, *seq), message.clone()))
                .collect(),
            end: Offset(0, self.next - 1),
            missed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn message(i: u8) -> Message {
        Message::new("s.a".parse().unwrap(), vec![i])
    }

    #[test]
    fn trims_by_count_and_counts_what_a_reader_missed() {
        let mut ring = Ring::new(StreamConfig::new("s.>".parse().unwrap()).with_max_len(3));
        for i in 1..=5 {
            ring.append(message(i));
        }
        let read = ring.read(ReadFrom::After(Offset(0, 1)), 10);
        assert_eq!(read.missed, Some(Some(1)), "2 was trimmed");
        let seqs: Vec<u64> = read.entries.iter().map(|(o, _)| o.1).collect();
        assert_eq!(seqs, [3, 4, 5]);
        assert_eq!(read.end, Offset(0, 5));
        let read = ring.read(ReadFrom::After(Offset(0, 3)), 10);
        assert_eq!(read.missed, None);
        assert_eq!(read.entries.len(), 2);
        assert_eq!(ring.read(ReadFrom::Last(1), 10).entries[0].0, Offset(0, 5));
        assert!(ring.read(ReadFrom::End, 10).entries.is_empty());
    }

    #[test]
    fn expires_by_age() {
        let config =
            StreamConfig::new("s.>".parse().unwrap()).with_max_age(Duration::from_millis(1));
        let mut ring = Ring::new(config);
        ring.append(message(1));
        std::thread::sleep(Duration::from_millis(5));
        let read = ring.read(ReadFrom::Start, 10);
        assert!(read.entries.is_empty());
        assert_eq!(read.end, Offset(0, 1));
    }

    #[test]
    fn rings_have_their_own_epochs() {
        let config = StreamConfig::new("s.>".parse().unwrap());
        assert_ne!(Ring::new(config.clone()).epoch, Ring::new(config).epoch);
    }
}
