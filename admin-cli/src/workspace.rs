//! `caracal workspace`: create, select, show and list workspaces.

use caracal_config::WorkspaceName;
use clap::Subcommand;
use serde::Serialize;

use crate::context::Context;
use crate::output::{self, Exit, Io};

#[derive(Debug, Subcommand)]
pub enum WorkspaceCmd {
    /// Create a workspace with a default config.toml. The first workspace
    /// created (while none is active) also becomes the active one. With
    /// --postgres-url, --redis-url or --kafka-brokers it is a distributed
    /// workspace (then run `caracal db migrate` and `caracal cache sync`).
    Create {
        /// Workspace name: 1-64 characters of letters, digits, '-' and '_'.
        name: String,
        /// PostgreSQL of a distributed workspace (system of record), e.g.
        /// postgres://caracal@db:5432/caracal.
        #[arg(long, value_name = "URL")]
        postgres_url: Option<String>,
        /// Redis of a distributed workspace (published state, budgets, rate
        /// limits), e.g. redis://cache:6379/0 (the path is the database number).
        #[arg(long, value_name = "URL")]
        redis_url: Option<String>,
        /// Prefix of the workspace's Redis keys (default caracal:NAME:), so
        /// several workspaces share one Redis.
        #[arg(long, value_name = "PREFIX")]
        redis_prefix: Option<String>,
        /// Kafka bootstrap brokers of a distributed workspace, HOST:PORT[,…].
        #[arg(long, value_name = "HOST:PORT,…")]
        kafka_brokers: Option<String>,
    },
    /// Make NAME the active workspace (what commands act on without --workspace).
    Use {
        /// Name of an existing workspace.
        name: String,
    },
    /// Show the workspace commands act on (--workspace, else the active one).
    Current {
        /// Print JSON ({"name", "path", "active"}) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List workspaces; the active one is marked.
    List {
        /// Print a JSON array of {"name", "path", "active"} instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct Row {
    name: String,
    path: String,
    active: bool,
}

pub fn run(cmd: WorkspaceCmd, ctx: &Context, io: &mut Io<'_>) -> anyhow::Result<Exit> {
    let home = ctx.home();
    match cmd {
        WorkspaceCmd::Create {
            name,
            postgres_url,
            redis_url,
            redis_prefix,
            kafka_brokers,
        } => {
            let name = WorkspaceName::parse(&name)?;
            let services = caracal_config::NewDistributed {
                postgres_url,
                redis_url,
                redis_prefix,
                kafka_brokers,
            };
            let distributed = services.postgres_url.is_some()
                || services.redis_url.is_some()
                || services.kafka_brokers.is_some();
            let config = if distributed {
                caracal_config::distributed_config_toml(&services)
            } else if services.redis_prefix.is_some() {
                anyhow::bail!("--redis-prefix is for distributed workspaces (with --redis-url)");
            } else {
                caracal_config::default_config_toml()
            };
            // Refuse bad settings before anything is written.
            let target = home.workspace(&name).config_file();
            caracal_config::Config::parse_with_env(&config, &target, |_| None)?;
            // An active file naming a removed workspace counts as none.
            let active = home
                .active()?
                .filter(|a| home.workspace(a).config_file().is_file());
            let paths = home.create_with(&name, &config)?;
            // The ledger's checkpoint key, made once with the workspace:
            // every process that seals (the gateway, each ledger writer)
            // must sign with the same one.
            let made = caracal_config::Config::load(&paths.config_file())?;
            let key = caracal_gateway::merkle::LedgerKey::load_or_create(&made.ledger_key)?;
            writeln!(
                io.out,
                "created workspace {name} at {}",
                paths.root().display()
            )?;
            writeln!(
                io.out,
                "ledger checkpoints are signed by {} ({}); `caracal merkle public-key` prints its public key",
                key.origin(),
                made.ledger_key.display()
            )?;
            if distributed {
                writeln!(
                    io.out,
                    "it is distributed: run `caracal --workspace {name} db migrate`, then \
                     `caracal --workspace {name} cache sync` once its services answer"
                )?;
            }
            if active.is_none() {
                home.set_active(&name)?;
                writeln!(io.out, "{name} is now the active workspace")?;
            } else {
                writeln!(
                    io.out,
                    "make it the active workspace with `caracal workspace use {name}`"
                )?;
            }
        }
        WorkspaceCmd::Use { name } => {
            let name = WorkspaceName::parse(&name)?;
            let paths = home.set_active(&name)?;
            writeln!(
                io.out,
                "active workspace: {name} ({})",
                paths.root().display()
            )?;
        }
        WorkspaceCmd::Current { json } => {
            let ws = ctx.workspace()?;
            let row = Row {
                active: home.active()?.as_ref() == Some(&ws.name),
                name: ws.name.to_string(),
                path: ws.paths.root().display().to_string(),
            };
            if json {
                output::json(io.out, &row)?;
            } else {
                let how = if row.active {
                    "active"
                } else {
                    "selected by --workspace"
                };
                writeln!(io.out, "{} ({how})\n{}", row.name, row.path)?;
            }
        }
        WorkspaceCmd::List { json } => {
            let active = home.active()?;
            let rows: Vec<Row> = home
                .list()?
                .into_iter()
                .map(|n| Row {
                    active: active.as_ref() == Some(&n),
                    path: home.workspace(&n).root().display().to_string(),
                    name: n.to_string(),
                })
                .collect();
            if json {
                output::json(io.out, &rows)?;
            } else if rows.is_empty() {
                writeln!(
                    io.out,
                    "no workspaces yet; create one with `caracal workspace create NAME`"
                )?;
            } else {
                let mut t = output::table(&["", "NAME", "PATH"]);
                for r in &rows {
                    t.add_row([if r.active { "*" } else { "" }, &r.name, &r.path]);
                }
                output::print_table(io.out, &t)?;
            }
        }
    }
    Ok(Exit::Success)
}
