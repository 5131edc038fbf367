//! `caracal dlq`: the dead-letter queue of a distributed workspace's
//! ledger writers: messages they could not store, with why; retried on
//! demand.

use std::io::Write;

use caracal_gateway::ledger_writer::{dlq_get, dlq_list, dlq_retry, Retried, RetryTarget};
use caracal_gateway::store::DeadLetter;
use clap::Subcommand;
use serde::Serialize;

use crate::context::Context;
use crate::output::{self, or_dash, Exit, Io};

#[derive(Debug, Subcommand)]
pub enum DlqCmd {
    /// Dead letters, oldest first: where each was read, why it was
    /// refused, how often it was tried.
    List {
        /// At most N dead letters (the oldest N).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..))]
        limit: Option<i64>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The dead letters of one event, with their full error and message.
    Get {
        /// The event's id.
        #[arg(long, value_name = "ID")]
        event_id: String,
        /// Print a JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Decode and store dead letters again: those stored leave the queue,
    /// the others stay with one more attempt and their new error. Exit
    /// code 1 when any stays.
    Retry {
        /// Retry the dead letters of this event.
        #[arg(
            long,
            value_name = "ID",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        event_id: Option<String>,
        /// Retry every dead letter.
        #[arg(long)]
        all: bool,
        /// Print a JSON array of outcomes instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: DlqCmd, ctx: &Context, io: &mut Io<'_>) -> anyhow::Result<Exit> {
    let store = ctx.workspace()?.postgres().await?;
    match cmd {
        DlqCmd::List { limit, json } => {
            let letters = dlq_list(&store, limit).await?;
            list(io.out, &letters, json)?;
            Ok(Exit::Success)
        }
        DlqCmd::Get { event_id, json } => {
            let letters = dlq_get(&store, &event_id).await?;
            if letters.is_empty() {
                anyhow::bail!("no dead letter of event {event_id}");
            }
            get(io.out, &letters, json)?;
            Ok(Exit::Success)
        }
        DlqCmd::Retry {
            event_id,
            all: _,
            json,
        } => {
            let target = match event_id {
                Some(id) => RetryTarget::Event(id),
                None => RetryTarget::All,
            };
            let retried = dlq_retry(&store, &target).await?;
            if let RetryTarget::Event(id) = &target {
                if retried.is_empty() {
                    anyhow::bail!("no dead letter of event {id}");
                }
            }
            retry_report(io.out, &retried, json)?;
            Ok(Exit::from_ok(retried.iter().all(|r| r.stored)))
        }
    }
}

/// A dead letter as printed: bytes as text when they are UTF-8, else hex.
#[derive(Serialize)]
struct Letter<'a> {
    event_id: Option<&'a str>,
    topic: &'a str,
    partition: i32,
    offset: i64,
    reason: &'a str,
    error: &'a str,
    first_seen: &'a str,
    attempts: i64,
    retried_at: Option<&'a str>,
    #[serde(flatten)]
    key: Bytes,
    #[serde(flatten)]
    payload: Bytes,
}

/// `{name}` with the bytes as text, or `{name}_hex`.
struct Bytes {
    name: &'static str,
    value: Option<Vec<u8>>,
}

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(1))?;
        match self.value.as_deref().map(std::str::from_utf8) {
            None => map.serialize_entry(self.name, &None::<&str>)?,
            Some(Ok(text)) => map.serialize_entry(self.name, text)?,
            Some(Err(_)) => map.serialize_entry(
                &format!("{}_hex", self.name),
                &hex(self.value.as_deref().unwrap_or_default()),
            )?,
        }
        map.end()
    }
}

impl Bytes {
    fn text(&self) -> String {
        match self.value.as_deref().map(std::str::from_utf8) {
            None => "-".into(),
            Some(Ok(text)) => text.to_string(),
            Some(Err(_)) => format!(
                "(binary) {}",
                hex(self.value.as_deref().unwrap_or_default())
            ),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn letter(l: &DeadLetter) -> Letter<'_> {
    Letter {
        event_id: l.event_id.as_deref(),
        topic: &l.topic,
        partition: l.partition,
        offset: l.offset,
        reason: &l.reason,
        error: &l.error,
        first_seen: &l.first_seen,
        attempts: l.attempts,
        retried_at: l.retried_at.as_deref(),
        key: Bytes {
            name: "key",
            value: l.key.clone(),
        },
        payload: Bytes {
            name: "payload",
            value: l.payload.clone(),
        },
    }
}

/// The longest error shown in a table cell.
const ERROR_CELL: usize = 80;

fn list(out: &mut dyn Write, letters: &[DeadLetter], json: bool) -> anyhow::Result<()> {
    if json {
        return output::json(out, &letters.iter().map(letter).collect::<Vec<_>>());
    }
    if letters.is_empty() {
        writeln!(out, "The dead-letter queue is empty.")?;
        return Ok(());
    }
    let mut table = output::table(&[
        "EVENT ID",
        "SOURCE",
        "REASON",
        "ATTEMPTS",
        "FIRST SEEN",
        "ERROR",
    ]);
    for l in letters {
        let mut error: String = l.error.chars().take(ERROR_CELL).collect();
        if l.error.chars().count() > ERROR_CELL {
            error.push('…');
        }
        table.add_row(vec![
            or_dash(l.event_id.as_deref()),
            format!("{}/{}/{}", l.topic, l.partition, l.offset),
            l.reason.clone(),
            l.attempts.to_string(),
            l.first_seen.clone(),
            error,
        ]);
    }
    output::print_table(out, &table)
}

fn get(out: &mut dyn Write, letters: &[DeadLetter], json: bool) -> anyhow::Result<()> {
    if json {
        return output::json(out, &letters.iter().map(letter).collect::<Vec<_>>());
    }
    for (i, l) in letters.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        let shown = letter(l);
        writeln!(out, "event id:   {}", or_dash(l.event_id.as_deref()))?;
        writeln!(out, "source:     {}/{}/{}", l.topic, l.partition, l.offset)?;
        writeln!(out, "reason:     {}", l.reason)?;
        writeln!(out, "error:      {}", l.error)?;
        writeln!(out, "first seen: {}", l.first_seen)?;
        writeln!(out, "attempts:   {}", l.attempts)?;
        writeln!(out, "retried at: {}", or_dash(l.retried_at.as_deref()))?;
        writeln!(out, "key:        {}", shown.key.text())?;
        writeln!(out, "payload:    {}", shown.payload.text())?;
    }
    Ok(())
}

fn retry_report(out: &mut dyn Write, retried: &[Retried], json: bool) -> anyhow::Result<()> {
    if json {
        return output::json(out, &retried);
    }
    if retried.is_empty() {
        writeln!(out, "The dead-letter queue is empty.")?;
        return Ok(());
    }
    let mut table = output::table(&["EVENT ID", "SOURCE", "OUTCOME"]);
    for r in retried {
        table.add_row(vec![
            or_dash(r.event_id.as_deref()),
            format!("{}/{}/{}", r.topic, r.partition, r.offset),
            match &r.error {
                None => "stored".to_string(),
                Some(e) => format!("still failing: {e}"),
            },
        ]);
    }
    output::print_table(out, &table)?;
    let stored = retried.iter().filter(|r| r.stored).count();
    writeln!(out, "{stored} of {} stored.", retried.len())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letters() -> Vec<DeadLetter> {
        vec![
            DeadLetter {
                topic: "caracal.metering.events".into(),
                partition: 2,
                offset: 41,
                event_id: None,
                key: Some(b"agent-1".to_vec()),
                payload: Some(vec![0xff, 0x00]),
                reason: "malformed".into(),
                error: "not a ledger event message: expected value".into(),
                first_seen: "2026-11-30T10:00:00Z".into(),
                attempts: 1,
                retried_at: None,
            },
            DeadLetter {
                topic: "caracal.metering.events".into(),
                partition: 0,
                offset: 7,
                event_id: Some("0192e1f0-0000-7000-8000-000000000000".into()),
                key: None,
                payload: Some(br#"{"schema":2}"#.to_vec()),
                reason: "unknown_schema_version".into(),
                error: "schema version 2 is unknown to this build".into(),
                first_seen: "2026-11-30T10:00:01Z".into(),
                attempts: 3,
                retried_at: Some("2026-11-30T11:00:00Z".into()),
            },
        ]
    }

    fn text(f: impl FnOnce(&mut Vec<u8>) -> anyhow::Result<()>) -> String {
        let mut out = Vec::new();
        f(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lists_render_as_tables_and_json() {
        let table = text(|o| list(o, &letters(), false));
        assert!(table.contains("caracal.metering.events/2/41"), "{table}");
        assert!(table.contains("unknown_schema_version"), "{table}");
        let json: serde_json::Value =
            serde_json::from_str(&text(|o| list(o, &letters(), true))).unwrap();
        assert_eq!(json[0]["payload_hex"], "ff00");
        assert_eq!(json[0]["key"], "agent-1");
        assert_eq!(json[0]["event_id"], serde_json::Value::Null);
        assert_eq!(json[1]["payload"], r#"{"schema":2}"#);
        assert_eq!(json[1]["key"], serde_json::Value::Null);
        assert_eq!(json[1]["attempts"], 3);
        assert_eq!(
            text(|o| list(o, &[], false)),
            "The dead-letter queue is empty.\n"
        );
    }

    #[test]
    fn one_letter_shows_everything() {
        let shown = text(|o| get(o, &letters()[..1], false));
        assert!(shown.contains("payload:    (binary) ff00"), "{shown}");
        assert!(shown.contains("reason:     malformed"), "{shown}");
    }

    #[test]
    fn retry_reports_say_what_stayed() {
        let retried = vec![
            Retried {
                topic: "t".into(),
                partition: 0,
                offset: 1,
                event_id: Some("e1".into()),
                stored: true,
                error: None,
            },
            Retried {
                topic: "t".into(),
                partition: 0,
                offset: 2,
                event_id: None,
                stored: false,
                error: Some("malformed".into()),
            },
        ];
        let shown = text(|o| retry_report(o, &retried, false));
        assert!(shown.contains("still failing: malformed"), "{shown}");
        assert!(shown.ends_with("1 of 2 stored.\n"), "{shown}");
        let json: serde_json::Value =
            serde_json::from_str(&text(|o| retry_report(o, &retried, true))).unwrap();
        assert_eq!(json[0]["stored"], true);
    }
}
