//! A batch of messages read from the events topic, sorted into what can be
//! written (decoded events with where each came from), what cannot (dead
//! letters), and the offsets to commit once both are stored. Pure: no I/O.

use std::collections::BTreeMap;

use crate::kafka::schema::{self, DecodeError};
use crate::ledger::LedgerEvent;
use crate::store::DeadLetter;

/// A message as read, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

/// Why a message went to the dead-letter queue.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// It is not a ledger event this build reads.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The database refused its row even alone.
    #[error("the database refused the event: {0}")]
    Refused(String),
}

impl Rejection {
    /// The stable code the dead-letter queue records.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Decode(e) => e.reason(),
            Rejection::Refused(_) => "rejected",
        }
    }
}

/// Messages sorted for writing.
#[derive(Debug, Default)]
pub struct Batch {
    /// The decoded events, and the message each came from (same order).
    pub events: Vec<LedgerEvent>,
    pub sources: Vec<Message>,
    /// Messages that could not be decoded.
    pub dead: Vec<DeadLetter>,
    /// Per topic and partition, the offset after the last message read:
    /// what to commit once everything above is stored.
    pub next_offsets: BTreeMap<(String, i32), i64>,
}

impl Batch {
    /// Sorts `messages` (never panics, whatever their bytes).
    pub fn sort(messages: Vec<Message>, now: &str) -> Self {
        let mut batch = Batch::default();
        for message in messages {
            let next = batch
                .next_offsets
                .entry((message.topic.clone(), message.partition))
                .or_insert(0);
            *next = (*next).max(message.offset + 1);
            match schema::decode(message.payload.as_deref().unwrap_or_default()) {
                Ok(event) => {
                    batch.events.push(event);
                    batch.sources.push(message);
                }
                Err(e) => batch.dead.push(dead_letter(message, &e.into(), now)),
            }
        }
        batch
    }

    /// How many messages the batch holds.
    pub fn len(&self) -> usize {
        self.events.len() + self.dead.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The dead letter of `message`, rejected for `why`, first seen `now`.
pub fn dead_letter(message: Message, why: &Rejection, now: &str) -> DeadLetter {
    let event_id = match why {
        Rejection::Decode(_) => message.payload.as_deref().and_then(loose_event_id),
        Rejection::Refused(_) => None,
    };
    DeadLetter {
        topic: message.topic,
        partition: message.partition,
        offset: message.offset,
        event_id,
        key: message.key,
        payload: message.payload,
        reason: why.reason().to_string(),
        error: why.to_string(),
        first_seen: now.to_string(),
        attempts: 1,
        retried_at: None,
    }
}

/// The event id of a message that did not decode, when it is JSON with a
/// string at `event.id` (as a newer schema's message would be), cut to a
/// sane length.
pub fn loose_event_id(payload: &[u8]) -> Option<String> {
    if payload.len() > schema::MAX_MESSAGE {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let id = value.get("event")?.get("id")?.as_str()?;
    Some(id.chars().take(128).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Decision, EventCode, EventKind, Mode};

    fn message(offset: i64, payload: &[u8]) -> Message {
        Message {
            topic: "t".into(),
            partition: 1,
            offset,
            key: Some(b"k".to_vec()),
            payload: Some(payload.to_vec()),
        }
    }

    #[test]
    fn messages_are_sorted_into_events_dead_letters_and_offsets() {
        let event = LedgerEvent::new(EventKind::Call, Mode::Proxy, Decision::Allow, EventCode::OK);
        let good = schema::encode(&event);
        let newer =
            String::from_utf8(good.clone())
                .unwrap()
                .replacen("\"schema\":1", "\"schema\":9", 1);
        let batch = Batch::sort(
            vec![
                message(7, &good),
                message(8, b"\xff garbage"),
                message(9, newer.as_bytes()),
                Message {
                    payload: None,
                    ..message(10, b"")
                },
            ],
            "2026-11-30T00:00:00Z",
        );
        assert_eq!(batch.events, vec![event.clone()]);
        assert_eq!(batch.sources[0].offset, 7);
        let reasons: Vec<_> = batch.dead.iter().map(|d| d.reason.as_str()).collect();
        assert_eq!(
            reasons,
            ["malformed", "unknown_schema_version", "malformed"]
        );
        assert_eq!(batch.dead[0].event_id, None);
        assert_eq!(batch.dead[1].event_id.as_deref(), Some(event.id.as_str()));
        assert_eq!(batch.dead[1].payload.as_deref(), Some(newer.as_bytes()));
        assert_eq!(batch.next_offsets[&("t".to_string(), 1)], 11);
        assert_eq!(batch.len(), 4);
    }
}
