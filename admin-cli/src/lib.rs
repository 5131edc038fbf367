//! The `caracal` CLI: one module per command group, output through writers
//! so tests see exactly what operators see, `anyhow` errors at this edge.
#![forbid(unsafe_code)]

mod allowlist;
mod authority;
mod certs;
mod cli;
mod context;
mod distributed;
mod dlq;
mod kafka;
mod ledger;
mod merkle;
mod output;
mod policy;
mod pricebook;
mod principal;
mod probe;
mod provider;
mod recovery;
mod runtime;
mod workspace;

use std::process::ExitCode;

pub use cli::{Cli, Command};
pub use output::{Exit, Io};
pub use probe::probe_health;

use context::Context;

/// Runs a parsed command line on a fresh runtime with the process's
/// stdout and stderr: exit 0 on success, 1 on failure or error (the error
/// goes to stderr).
pub fn main(cli: Cli) -> ExitCode {
    // Unlocked handles: the gateway's log lines go to stderr from other
    // threads while `caracal up` runs.
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut io = Io {
        out: &mut out,
        err: &mut err,
    };
    let result = runtime.block_on(run(cli, &mut io));
    match result {
        Ok(Exit::Success) => ExitCode::SUCCESS,
        Ok(Exit::Failure) => ExitCode::FAILURE,
        // A closed pipe (`caracal ... | head`) is not worth a message.
        Err(e) if is_broken_pipe(&e) => ExitCode::FAILURE,
        Err(e) => {
            let _ = io.out.flush();
            eprintln!("error: {}", output::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Runs one command, writing to `io`.
pub async fn run(cli: Cli, io: &mut Io<'_>) -> anyhow::Result<Exit> {
    let ctx = Context::from_env(cli.workspace)?;
    let changes_state = matches!(
        cli.command,
        Command::Provider(_)
            | Command::Principal(_)
            | Command::Agent(_)
            | Command::Allowlist(_)
            | Command::Policy(_)
            | Command::Authority(_)
            | Command::Pricebook(_)
    );
    let result = match cli.command {
        Command::Workspace(cmd) => workspace::run(cmd, &ctx, io),
        Command::Up(args) => runtime::up::run(args, &ctx, io).await,
        Command::Down => runtime::down(&ctx, io).await,
        Command::Status(args) => runtime::status(args, &ctx, io).await,
        Command::Logs(args) => runtime::logs::run(args, &ctx, io),
        Command::Certs(cmd) => certs::run(cmd, &ctx, io),
        Command::Provider(cmd) => provider::run(cmd, &ctx, io).await,
        Command::Principal(cmd) => principal::run(cmd, &ctx, io).await,
        Command::Agent(cmd) => principal::run_agent(cmd, &ctx, io).await,
        Command::Allowlist(cmd) => allowlist::run(cmd, &ctx, io).await,
        Command::Ledger(cmd) => ledger::run(cmd, &ctx, io).await,
        Command::Policy(cmd) => policy::run(cmd, &ctx, io).await,
        Command::Authority(cmd) => authority::run(cmd, &ctx, io).await,
        Command::Pricebook(cmd) => pricebook::run(cmd, &ctx, io).await,
        Command::Db(cmd) => distributed::run_db(cmd, &ctx, io).await,
        Command::Cache(cmd) => distributed::run_cache(cmd, &ctx, io).await,
        Command::Dlq(cmd) => dlq::run(cmd, &ctx, io).await,
        Command::Kafka(cmd) => kafka::run(cmd, &ctx, io).await,
        Command::Merkle(cmd) => merkle::run(cmd, &ctx, io).await,
        Command::Snapshot(cmd) => recovery::run_snapshot(cmd, &ctx, io).await,
        Command::Replay(cmd) => recovery::run_replay(cmd, &ctx, io).await,
    };
    if changes_state {
        // A distributed workspace's replicas learn the change from Redis:
        // also when the command failed after committing part of it (a
        // change committed and never published would go unenforced).
        let published = distributed::publish_if_behind(&ctx).await;
        if let Err(e) = published {
            match &result {
                Ok(_) => return Err(e),
                Err(_) => eprintln!("error: {}", output::error_chain(&e)),
            }
        }
    }
    let exit = result?;
    io.out.flush()?;
    Ok(exit)
}
