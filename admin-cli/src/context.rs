//! Which workspace a command acts on, and opening what it holds.

use anyhow::Context as _;
use caracal_config::{CaracalHome, Config, WorkspaceName, WorkspacePaths};
use std::sync::Arc;

use caracal_config::{Deployment, Service};
use caracal_gateway::model::Principal;
use caracal_gateway::store::{PgStore, SqliteStore, Store};

/// The Caracal home and the workspace named on the command line, if any.
pub struct Context {
    home: CaracalHome,
    explicit: Option<String>,
}

/// A resolved workspace with its loaded configuration.
pub struct Workspace {
    pub name: WorkspaceName,
    pub paths: WorkspacePaths,
    pub config: Config,
}

impl Context {
    /// `$CARACAL_HOME` (default `~/.caracal`) and the `--workspace` flag
    /// (or `CARACAL_WORKSPACE`).
    pub fn from_env(explicit: Option<String>) -> anyhow::Result<Self> {
        let home = CaracalHome::from_env(|k| std::env::var(k).ok())?;
        Ok(Self {
            home,
            explicit: explicit.filter(|w| !w.is_empty()),
        })
    }

    pub fn home(&self) -> &CaracalHome {
        &self.home
    }

    /// The workspace to act on: `--workspace`, else the active one. Fails
    /// with a message naming the command that fixes what is missing.
    pub fn workspace(&self) -> anyhow::Result<Workspace> {
        let (name, paths) = self.home.resolve(self.explicit.as_deref())?;
        let config = Config::load(&paths.config_file())?;
        Ok(Workspace {
            name,
            paths,
            config,
        })
    }
}

impl Workspace {
    /// Opens the workspace's system of record: its SQLite file (created
    /// and migrated if needed), or the PostgreSQL database of a distributed
    /// workspace (which `caracal db migrate` must have migrated).
    pub async fn store(&self) -> anyhow::Result<Arc<dyn Store>> {
        match &self.config.deployment {
            Deployment::Embedded => Ok(Arc::new(self.sqlite().await?)),
            Deployment::Distributed(_) => {
                let pg = self.postgres().await?;
                let (have, want) = (pg.migration_version().await?, PgStore::latest_migration());
                if have != Some(want) {
                    anyhow::bail!(
                        "the workspace database is at migration {} of {want}: run `caracal db migrate`",
                        have.map_or("none".to_string(), |v| v.to_string())
                    );
                }
                Ok(Arc::new(pg))
            }
        }
    }

    /// The embedded workspace's SQLite file.
    pub async fn sqlite(&self) -> anyhow::Result<SqliteStore> {
        SqliteStore::open(&self.config.database)
            .await
            .with_context(|| {
                format!(
                    "cannot open the workspace database {}",
                    self.config.database.display()
                )
            })
    }

    /// The distributed workspace's PostgreSQL database (not migrated).
    pub async fn postgres(&self) -> anyhow::Result<PgStore> {
        let url = self.distributed()?.need(Service::Postgres)?;
        PgStore::connect(&url).await.with_context(|| {
            format!(
                "cannot reach the workspace database {}",
                caracal_config::redact_url(&url)
            )
        })
    }

    /// The services of a distributed workspace, or an error saying the
    /// workspace is embedded.
    pub fn distributed(&self) -> anyhow::Result<&caracal_config::Distributed> {
        match &self.config.deployment {
            Deployment::Distributed(d) => Ok(d),
            Deployment::Embedded => anyhow::bail!(
                "workspace {} is embedded: this command is for distributed workspaces \
                 (deployment.kind = \"distributed\" in its config.toml)",
                self.name
            ),
        }
    }
}

impl Workspace {
    /// A distributed workspace's Kafka bootstrap servers.
    pub fn kafka_brokers(&self) -> anyhow::Result<String> {
        Ok(self.distributed()?.need(Service::Kafka)?)
    }
}

/// Finds a principal by id or name (the `--agent-id` flags accept both).
pub async fn principal(store: &dyn Store, id_or_name: &str) -> anyhow::Result<Principal> {
    Ok(store.find_principal(id_or_name).await?)
}

/// Principal names by id, for tables that show who did what.
pub async fn principal_names(
    store: &dyn Store,
) -> anyhow::Result<std::collections::HashMap<String, String>> {
    Ok(store
        .list_principals()
        .await?
        .into_iter()
        .map(|p| (p.id, p.name))
        .collect())
}
