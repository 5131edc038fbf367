//! `caracal kafka`: the Kafka side of a distributed workspace.

use std::io::Write;

use caracal_gateway::ledger_writer::{consumer_lag, PartitionLag, EVENTS_TOPIC, GROUP};
use clap::Subcommand;
use serde::Serialize;

use crate::context::Context;
use crate::output::{self, or_dash, Exit, Io};

#[derive(Debug, Subcommand)]
pub enum KafkaCmd {
    /// Create the workspace's topics (caracal.metering.events and
    /// caracal.dlq) on its brokers; topics that exist are left as they are.
    CreateTopics {
        /// Partitions of the events topic: as many ledger writers can share
        /// the work.
        #[arg(long, default_value_t = 6)]
        partitions: u32,
        /// Replicas of each partition (at most the number of brokers).
        #[arg(long, default_value_t = 1)]
        replication_factor: u16,
    },
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
    let brokers = ctx.workspace()?.kafka_brokers()?;
    let (consumer_group, topic, json) = match cmd {
        KafkaCmd::CreateTopics {
            partitions,
            replication_factor,
        } => {
            if partitions == 0 || replication_factor == 0 {
                anyhow::bail!("--partitions and --replication-factor must be at least 1");
            }
            let topics =
                caracal_gateway::kafka::admin::deployment_topics(partitions, replication_factor);
            for (name, created) in caracal_gateway::kafka::create_topics(&brokers, &topics).await? {
                let what = match created {
                    caracal_gateway::kafka::admin::Created::Created => "created",
                    caracal_gateway::kafka::admin::Created::AlreadyExisted => "already exists",
                };
                writeln!(io.out, "{name}: {what}")?;
            }
            return Ok(Exit::Success);
        }
        KafkaCmd::ConsumerLag {
            consumer_group,
            topic,
            json,
        } => (consumer_group, topic, json),
    };
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
