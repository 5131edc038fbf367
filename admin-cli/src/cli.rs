//! The command line: global flags and the command groups. Each group's
//! own arguments live beside its implementation.

use clap::{Parser, Subcommand};

use crate::{
    allowlist, authority, certs, distributed, dlq, kafka, ledger, policy, pricebook, principal,
    provider, runtime, workspace,
};

/// Caracal: the enforcement gateway AI agents' outbound calls pass through.
///
/// Every command acts on one workspace (its config, database, CA and logs
/// under $CARACAL_HOME/workspaces/NAME, $CARACAL_HOME defaulting to
/// ~/.caracal): the active one, or the one named by --workspace.
#[derive(Debug, Parser)]
#[command(
    name = "caracal",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Act on workspace NAME instead of the active one (`caracal workspace
    /// use` selects the active one).
    #[arg(long, global = true, env = "CARACAL_WORKSPACE", value_name = "NAME")]
    pub workspace: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, select and list workspaces.
    #[command(subcommand)]
    Workspace(workspace::WorkspaceCmd),
    /// Run the workspace's gateway (in the foreground, or in the background
    /// with --detach).
    Up(runtime::up::UpArgs),
    /// Stop the gateway started by `caracal up` (SIGTERM, then wait up to 15 s).
    Down,
    /// Whether the gateway runs and whether /health says it can enforce.
    /// Exit code 0 only when healthy.
    Status(runtime::StatusArgs),
    /// Print the last lines of the gateway's log file.
    Logs(runtime::logs::LogsArgs),
    /// The workspace certificate authority clients must trust.
    #[command(subcommand)]
    Certs(certs::CertsCmd),
    /// Upstream providers: where calls really go and which credentials the
    /// gateway injects.
    #[command(subcommand)]
    Provider(provider::ProviderCmd),
    /// Principals (agents, users, services) and their tokens.
    #[command(subcommand)]
    Principal(principal::PrincipalCmd),
    /// Agents (shorthand for principals of type agent).
    #[command(subcommand)]
    Agent(principal::AgentCmd),
    /// URL patterns each principal may call.
    #[command(subcommand)]
    Allowlist(allowlist::AllowlistCmd),
    /// The record of every call that passed through the gateway.
    #[command(subcommand)]
    Ledger(ledger::LedgerCmd),
    /// Authority policies: what a principal may put into mandates, versioned.
    #[command(subcommand)]
    Policy(policy::PolicyCmd),
    /// Mandates: issue them under policies, dry-run the gateway's decision,
    /// manage the signing keys.
    #[command(subcommand)]
    Authority(authority::AuthorityCmd),
    /// What calls cost: the models' prices per million tokens and the
    /// resources' prices per request.
    #[command(subcommand)]
    Pricebook(pricebook::PricebookCmd),
    /// The PostgreSQL database of a distributed workspace: migrate, check,
    /// reset.
    #[command(subcommand)]
    Db(distributed::DbCmd),
    /// The enforcement state published in Redis for a distributed
    /// workspace's gateway replicas: publish it again, see what each runs.
    #[command(subcommand)]
    Cache(distributed::CacheCmd),
    /// The dead-letter queue of a distributed workspace's ledger writers:
    /// list, inspect and retry what they could not store.
    #[command(subcommand)]
    Dlq(dlq::DlqCmd),
    /// Kafka of a distributed workspace: the ledger writers' consumer lag.
    #[command(subcommand)]
    Kafka(kafka::KafkaCmd),
    /// The ledger's Merkle log: seal batches, verify them, prove an
    /// event's inclusion, check proofs offline, check consistency with a
    /// saved checkpoint.
    #[command(subcommand)]
    Merkle(crate::merkle::MerkleCmd),
    /// Snapshots of the derived state (the spend aggregates budget
    /// counters are primed from) at a checkpoint of the Merkle log:
    /// create, list, show, restore.
    #[command(subcommand)]
    Snapshot(crate::recovery::SnapshotCmd),
    /// Rebuild the derived state from a snapshot and every verified event
    /// after it, and follow its progress.
    #[command(subcommand)]
    Replay(crate::recovery::ReplayCmd),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent_and_documented() {
        Cli::command().debug_assert();
        fn walk(cmd: &clap::Command, path: &str) {
            let path = format!("{path} {}", cmd.get_name());
            assert!(cmd.get_about().is_some(), "{path} has no help text");
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                assert!(
                    builtin || arg.get_help().is_some(),
                    "{path} --{} has no help text",
                    arg.get_id()
                );
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &path);
            }
        }
        walk(&Cli::command(), "");
    }
}
