//! The dead-letter queue's table: messages of the events topic that the
//! ledger writers could not store, kept with why, until a retry stores
//! them or an operator deals with them.

use sqlx::Row;

use super::PgStore;
use crate::ledger::LedgerEvent;
use crate::store::StoreError;

/// One message of the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetter {
    /// Where the message was read: topic, partition and offset identify it.
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The event's id, when the message carries one that could be read.
    pub event_id: Option<String>,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// A stable code: a decode reason (`malformed`, …) or `rejected`.
    pub reason: String,
    /// The last failure's full message.
    pub error: String,
    /// RFC 3339.
    pub first_seen: String,
    pub attempts: i64,
    /// When it was last retried (RFC 3339).
    pub retried_at: Option<String>,
}

const COLUMNS: &str = "topic, kafka_partition, kafka_offset, event_id, key, payload, reason, \
                       error, first_seen, attempts, retried_at";

fn from_row(row: &sqlx::postgres::PgRow) -> Result<DeadLetter, StoreError> {
    Ok(DeadLetter {
        topic: row.try_get("topic")?,
        partition: row.try_get("kafka_partition")?,
        offset: row.try_get("kafka_offset")?,
        event_id: row.try_get("event_id")?,
        key: row.try_get("key")?,
        payload: row.try_get("payload")?,
        reason: row.try_get("reason")?,
        error: row.try_get("error")?,
        first_seen: row.try_get("first_seen")?,
        attempts: row.try_get("attempts")?,
        retried_at: row.try_get("retried_at")?,
    })
}

impl PgStore {
    /// Records a message in the dead-letter queue; a message already there
    /// (the same topic, partition and offset, redelivered) is left as it
    /// is. Answers whether it was new.
    pub async fn insert_dead_letter(&self, letter: &DeadLetter) -> Result<bool, StoreError> {
        let done = sqlx::query(&format!(
            "INSERT INTO dead_letters ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (topic, kafka_partition, kafka_offset) DO NOTHING"
        ))
        .bind(&letter.topic)
        .bind(letter.partition)
        .bind(letter.offset)
        .bind(&letter.event_id)
        .bind(&letter.key)
        .bind(&letter.payload)
        .bind(&letter.reason)
        .bind(&letter.error)
        .bind(&letter.first_seen)
        .bind(letter.attempts)
        .bind(&letter.retried_at)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The dead letters, oldest first, at most `limit` of them.
    pub async fn dead_letters(&self, limit: Option<i64>) -> Result<Vec<DeadLetter>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM dead_letters
             ORDER BY first_seen, topic, kafka_partition, kafka_offset LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// The dead letters of event `event_id` (more than one when the event
    /// was delivered more than once), oldest first.
    pub async fn dead_letters_of(&self, event_id: &str) -> Result<Vec<DeadLetter>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM dead_letters WHERE event_id = $1
             ORDER BY first_seen, topic, kafka_partition, kafka_offset"
        ))
        .bind(event_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// How many messages the dead-letter queue holds.
    pub async fn dead_letter_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM dead_letters")
            .fetch_one(self.pool())
            .await?)
    }

    /// Stores the event a dead letter held and removes the letter, in one
    /// transaction (idempotent by event id, as every ledger insert).
    pub async fn resolve_dead_letter(
        &self,
        letter: &DeadLetter,
        event: &LedgerEvent,
    ) -> Result<(), StoreError> {
        self.ensure_partitions([event.ts_ms]).await?;
        let mut tx = self.pool().begin().await?;
        super::ledger::insert_events(&mut tx, std::slice::from_ref(event)).await?;
        sqlx::query(
            "DELETE FROM dead_letters
             WHERE topic = $1 AND kafka_partition = $2 AND kafka_offset = $3",
        )
        .bind(&letter.topic)
        .bind(letter.partition)
        .bind(letter.offset)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a failed retry of a dead letter: one more attempt, its
    /// error and time.
    pub async fn record_dead_letter_retry(
        &self,
        letter: &DeadLetter,
        error: &str,
        at: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE dead_letters SET attempts = attempts + 1, error = $4, retried_at = $5
             WHERE topic = $1 AND kafka_partition = $2 AND kafka_offset = $3",
        )
        .bind(&letter.topic)
        .bind(letter.partition)
        .bind(letter.offset)
        .bind(error)
        .bind(at)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
