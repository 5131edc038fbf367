//! The distributed deployment's control plane: `caracal db` (the PostgreSQL
//! system of record), `caracal cache` (the state published in Redis for the
//! gateway replicas), and the publishing every change is followed by.
//!
//! Every command that changes the enforcement state commits to PostgreSQL
//! first; then [`publish_if_behind`] publishes the new state to Redis and
//! announces it, so every replica swaps it in. If Redis cannot be reached
//! the change stays committed and the command fails saying so: `caracal
//! cache sync` publishes it once Redis is back (replicas that cannot
//! confirm their state refuse calls meanwhile, past the staleness bound).

use std::time::Duration;

use anyhow::Context as _;
use caracal_config::Service;
use caracal_gateway::shared::{self, Keys, ReplicaReport};
use caracal_gateway::store::PgStore;
use clap::Subcommand;
use serde::Serialize;

use crate::context::{Context, Workspace};
use crate::output::{self, Exit, Io};

#[derive(Debug, Subcommand)]
pub enum DbCmd {
    /// Apply the migrations this build carries to the workspace's
    /// PostgreSQL database (idempotent).
    Migrate,
    /// Check the database: connectivity, migration version, ledger rows,
    /// standby replication lag. Exit code 0 only when healthy.
    HealthCheck {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Drop everything in the workspace's database and migrate afresh.
    /// Irreversible: every principal, policy, mandate and ledger row goes.
    Reset {
        /// Required: says you mean it.
        #[arg(long)]
        confirm: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CacheCmd {
    /// Publish the enforcement state from PostgreSQL to Redis and announce
    /// it (after Redis lost its data, or a change that could not be
    /// published).
    Sync,
    /// The state version in PostgreSQL, the one published in Redis, and the
    /// one each gateway replica runs. Exit code 0 only when every replica
    /// runs the published version and it is PostgreSQL's.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// How long a replica's report counts (replicas report every 2 s).
const REPORT_FORGET: Duration = Duration::from_secs(30);

pub(crate) async fn redis(ws: &Workspace) -> anyhow::Result<(redis::aio::ConnectionManager, Keys)> {
    let d = ws.distributed()?;
    let url = d.need(Service::Redis)?;
    let conn = shared::connect(&url)
        .await
        .with_context(|| format!("cannot reach Redis at {}", caracal_config::redact_url(&url)))?;
    Ok((conn, Keys::new(&d.redis_prefix)?))
}

/// Publishes PostgreSQL's state to Redis when Redis's is older (or `force`).
/// Returns the version now published, and whether this call published it.
async fn publish(ws: &Workspace, force: bool) -> anyhow::Result<(i64, bool)> {
    let store = ws.store().await?;
    let (conn, keys) = redis(ws).await?;
    let version = store.state_version().await?;
    let published = shared::published_version(&conn, &keys).await?;
    if !force && published.is_some_and(|p| p >= version) {
        return Ok((version, false));
    }
    let rows = store.load_state().await?;
    let v = rows.version;
    shared::publish(&conn, &keys, &rows, force).await?;
    Ok((v, true))
}

/// After a command that may have changed the enforcement state of a
/// distributed workspace: publishes it if Redis is behind. Nothing for an
/// embedded workspace (its gateway reads the SQLite file).
pub async fn publish_if_behind(ctx: &Context) -> anyhow::Result<()> {
    let Ok(ws) = ctx.workspace() else {
        return Ok(());
    };
    if ws.distributed().is_err() {
        return Ok(());
    }
    publish(&ws, false).await.context(
        "the change is committed to PostgreSQL, but the gateway replicas were not told \
         (they refuse calls once their state is stale): run `caracal cache sync` when Redis \
         answers",
    )?;
    Ok(())
}

#[derive(Serialize)]
struct Health {
    healthy: bool,
    reachable: bool,
    migration: Option<i64>,
    latest_migration: i64,
    ledger_rows: Option<i64>,
    /// Replication lag of each standby, seconds (empty without standbys).
    standbys: Vec<Standby>,
    error: Option<String>,
}

#[derive(Serialize)]
struct Standby {
    name: String,
    state: String,
    replay_lag_secs: Option<f64>,
}

async fn health(ws: &Workspace) -> Health {
    let mut h = Health {
        healthy: false,
        reachable: false,
        migration: None,
        latest_migration: PgStore::latest_migration(),
        ledger_rows: None,
        standbys: Vec::new(),
        error: None,
    };
    let pg = match ws.postgres().await {
        Ok(pg) => pg,
        Err(e) => {
            h.error = Some(output::error_chain(&e));
            return h;
        }
    };
    h.reachable = true;
    let result: anyhow::Result<()> = async {
        h.migration = pg.migration_version().await?;
        if h.migration == Some(h.latest_migration) {
            h.ledger_rows = Some(pg.ledger_rows().await?);
        }
        h.standbys = pg
            .standbys()
            .await?
            .into_iter()
            .map(|(name, state, replay_lag_secs)| Standby {
                name,
                state,
                replay_lag_secs,
            })
            .collect();
        Ok(())
    }
    .await;
    match result {
        Ok(()) if h.migration != Some(h.latest_migration) => {
            h.error = Some("migrations pending: run `caracal db migrate`".into());
        }
        Ok(()) => h.healthy = true,
        Err(e) => h.error = Some(output::error_chain(&e)),
    }
    pg.close().await;
    h
}

pub async fn run_db(cmd: DbCmd, ctx: &Context, io: &mut Io<'_>) -> anyhow::Result<Exit> {
    let ws = ctx.workspace()?;
    ws.distributed()?;
    match cmd {
        DbCmd::Migrate => {
            let pg = ws.postgres().await?;
            let before = pg.migration_version().await?;
            pg.migrate().await?;
            let after = pg.migration_version().await?;
            if before == after {
                writeln!(io.out, "database already at migration {}", show(after))?;
            } else {
                writeln!(
                    io.out,
                    "migrated the database from {} to {}",
                    show(before),
                    show(after)
                )?;
            }
            pg.close().await;
            Ok(Exit::Success)
        }
        DbCmd::HealthCheck { json } => {
            let h = health(&ws).await;
            if json {
                output::json(io.out, &h)?;
            } else {
                writeln!(
                    io.out,
                    "database:   {}",
                    if h.reachable {
                        "reachable"
                    } else {
                        "unreachable"
                    }
                )?;
                writeln!(
                    io.out,
                    "migration:  {} of {}",
                    show(h.migration),
                    h.latest_migration
                )?;
                if let Some(rows) = h.ledger_rows {
                    writeln!(io.out, "ledger:     {rows} events")?;
                }
                if h.standbys.is_empty() {
                    writeln!(io.out, "standbys:   none")?;
                }
                for s in &h.standbys {
                    let lag = s
                        .replay_lag_secs
                        .map_or("unknown".to_string(), |l| format!("{l:.3}s"));
                    writeln!(
                        io.out,
                        "standby:    {} ({}) replay lag {lag}",
                        s.name, s.state
                    )?;
                }
                if let Some(e) = &h.error {
                    writeln!(io.out, "problem:    {e}")?;
                }
                writeln!(
                    io.out,
                    "{}",
                    if h.healthy { "healthy" } else { "UNHEALTHY" }
                )?;
            }
            Ok(if h.healthy {
                Exit::Success
            } else {
                Exit::Failure
            })
        }
        DbCmd::Reset { confirm } => {
            if !confirm {
                anyhow::bail!(
                    "`caracal db reset` deletes every principal, policy, mandate and ledger row of \
                     workspace {}; add --confirm to do it",
                    ws.name
                );
            }
            let pg = ws.postgres().await?;
            pg.reset().await?;
            pg.close().await;
            writeln!(io.out, "reset the database of workspace {}", ws.name)?;
            // The replicas must forget the old state too; until they do they
            // enforce the old one, so a failure here is the command's.
            let (v, _) = publish(&ws, true).await.context(
                "the database was reset, but the gateway replicas were not told: run \
                 `caracal cache sync` when Redis answers",
            )?;
            writeln!(io.out, "published the empty state (version {v})")?;
            Ok(Exit::Success)
        }
    }
}

fn show(v: Option<i64>) -> String {
    v.map_or("none".to_string(), |v| v.to_string())
}

#[derive(Serialize)]
struct Status {
    /// PostgreSQL's state version.
    database: i64,
    /// The version published in Redis.
    published: Option<i64>,
    replicas: Vec<ReplicaReport>,
    in_sync: bool,
}

pub async fn run_cache(cmd: CacheCmd, ctx: &Context, io: &mut Io<'_>) -> anyhow::Result<Exit> {
    let ws = ctx.workspace()?;
    ws.distributed()?;
    match cmd {
        CacheCmd::Sync => {
            let (v, _) = publish(&ws, true).await?;
            writeln!(io.out, "published state version {v} to Redis")?;
            Ok(Exit::Success)
        }
        CacheCmd::Status { json } => {
            let store = ws.store().await?;
            let (conn, keys) = redis(&ws).await?;
            let database = store.state_version().await?;
            let published = shared::published_version(&conn, &keys).await?;
            let now = jiff::Timestamp::now().as_millisecond();
            let replicas = shared::replicas(&conn, &keys, now, REPORT_FORGET).await?;
            let in_sync = published == Some(database)
                && replicas.iter().all(|r| r.version == database && r.fresh);
            let status = Status {
                database,
                published,
                replicas,
                in_sync,
            };
            if json {
                output::json(io.out, &status)?;
            } else {
                writeln!(io.out, "database state version:  {database}")?;
                writeln!(io.out, "published in Redis:      {}", show(published))?;
                if status.replicas.is_empty() {
                    writeln!(io.out, "replicas:                none reporting")?;
                } else {
                    let mut t = output::table(&["REPLICA", "VERSION", "FRESH", "REPORTED"]);
                    for r in &status.replicas {
                        let age = (now - r.reported_ms).max(0) as f64 / 1000.0;
                        t.add_row([
                            r.replica.clone(),
                            r.version.to_string(),
                            if r.fresh { "yes" } else { "NO" }.to_string(),
                            format!("{age:.1}s ago"),
                        ]);
                    }
                    output::print_table(io.out, &t)?;
                }
                if !in_sync {
                    writeln!(
                        io.out,
                        "not in sync: run `caracal cache sync`, and check the replicas that lag"
                    )?;
                }
            }
            Ok(if in_sync {
                Exit::Success
            } else {
                Exit::Failure
            })
        }
    }
}
