//! `caracal kafka`: the Kafka side of a distributed workspace.

use std::io::Write;

use caracal_gateway::ledger_writer::{consumer_lag, PartitionLag, EVENTS_TOPIC, GROUP};
use clap::Subcommand;
use serde::Serialize;

use crate::context::Context;
use crate::output::{self, or_dash, Exit, Io};

#[derive(Debug, Subcommand)]
pub enum KafkaCmd {
    /// How far a consumer group's committed offsets are behind the end of
    /// each partition of the events topic.
    ConsumerLag {
        /// The consumer group.
        #[arg(long, value_name = "GROUP", default_value = GROUP)]
        consumer_group: String,
        /// The topic.
        #[arg(long, value_name = "TOPIC", default_value = EVENTS_TOPIC)]
        topic: String,
        /// Print JSON ({"group", "topic", "total_lag", "partitions"}) instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: KafkaCmd, ctx: &Context, io: &mut Io<'_>) -> anyhow::Result<Exit> {
    let KafkaCmd::ConsumerLag {
        consumer_group,
        topic,
        json,
    } = cmd;
    let brokers = ctx.workspace()?.kafka_brokers()?;
    let lags = consumer_lag(&brokers, &consumer_group, &topic).await?;
    report(io.out, &consumer_group, &topic, &lags, json)?;
    Ok(Exit::Success)
}

#[derive(Serialize)]
struct Report<'a> {
    group: &'a str,
    topic: &'a str,
    total_lag: i64,
    partitions: &'a [PartitionLag],
}

fn report(
    out: &mut dyn Write,
    group: &str,
    topic: &str,
    lags: &[PartitionLag],
    json: bool,
) -> anyhow::Result<()> {
    let total_lag = lags.iter().map(|l| l.lag).sum();
    if json {
        return output::json(
            out,
            &Report {
                group,
                topic,
                total_lag,
                partitions: lags,
            },
        );
    }
    let mut table = output::table(&["PARTITION", "COMMITTED", "HIGH WATERMARK", "LAG"]);
    for l in lags {
        table.add_row(vec![
            l.partition.to_string(),
            or_dash(l.committed),
            l.high_watermark.to_string(),
            l.lag.to_string(),
        ]);
    }
    output::print_table(out, &table)?;
    writeln!(out, "Group {group} on {topic}: total lag {total_lag}.")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_renders_as_a_table_and_json() {
        let lags = vec![
            PartitionLag {
                partition: 0,
                committed: Some(90),
                high_watermark: 100,
                lag: 10,
            },
            PartitionLag {
                partition: 1,
                committed: None,
                high_watermark: 5,
                lag: 5,
            },
        ];
        let mut out = Vec::new();
        report(&mut out, "g", "t", &lags, false).unwrap();
        let shown = String::from_utf8(out).unwrap();
        assert!(shown.ends_with("Group g on t: total lag 15.\n"), "{shown}");
        let mut out = Vec::new();
        report(&mut out, "g", "t", &lags, true).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["total_lag"], 15);
        assert_eq!(json["partitions"][1]["committed"], serde_json::Value::Null);
    }
}
