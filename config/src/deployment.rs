//! Which deployment a workspace is: embedded (one process, SQLite) or
//! distributed (PostgreSQL, Redis, Kafka), the `[deployment]` section of
//! `config.toml`, its environment overrides, and the configuration file of
//! a new distributed workspace.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::gateway::default_config_toml;
use crate::ConfigError;

/// Which deployment the workspace is, and the services of a distributed one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDeployment {
    /// "embedded" (one process, SQLite) or "distributed" (PostgreSQL, Redis, Kafka).
    pub kind: DeploymentKind,
    /// PostgreSQL, the system of record (CLI and ledger writers).
    pub postgres_url: Option<String>,
    /// Redis: published state, budget counters, rate limits (CLI and gateways).
    pub redis_url: Option<String>,
    /// Prefix of every Redis key of the workspace; default `caracal:<workspace>:`.
    pub redis_prefix: Option<String>,
    /// Kafka bootstrap brokers, `host:port[,host:port…]` (gateways and ledger writers).
    pub kafka_brokers: Option<String>,
    /// Where a gateway spools spend events while Kafka cannot take them.
    pub spool_dir: PathBuf,
    /// Past this many spooled bytes the gateway refuses calls (`not_ready`).
    pub spool_max_bytes: u64,
    /// How long a budget hold outlives a replica that stopped renewing it
    /// (it died), seconds; live replicas renew every third of it.
    pub hold_ttl_secs: u64,
}

impl Default for RawDeployment {
    fn default() -> Self {
        Self {
            kind: DeploymentKind::Embedded,
            postgres_url: None,
            redis_url: None,
            redis_prefix: None,
            kafka_brokers: None,
            spool_dir: "spool".into(),
            spool_max_bytes: 1 << 30,
            hold_ttl_secs: 60,
        }
    }
}

/// Which deployment a workspace is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeploymentKind {
    #[default]
    Embedded,
    Distributed,
}

/// The services of a workspace.
#[derive(Clone, PartialEq, Eq)]
pub enum Deployment {
    /// One process: the SQLite store, in-process counters and ledger writer.
    Embedded,
    Distributed(Distributed),
}

/// Where the services of a distributed workspace are. Each role checks
/// that the ones it needs are set ([`Distributed::need`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Distributed {
    pub postgres_url: Option<String>,
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    pub kafka_brokers: Vec<String>,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    /// How long a budget hold outlives a replica that stopped renewing it.
    pub hold_ttl: Duration,
}

/// A service of the distributed deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Postgres,
    Redis,
    Kafka,
}

impl Distributed {
    /// The setting of `service`, or an error naming the key and variable.
    pub fn need(&self, service: Service) -> Result<String, ConfigError> {
        let (value, key, var) = match service {
            Service::Postgres => (
                self.postgres_url.clone(),
                "postgres_url",
                "CARACAL_POSTGRES_URL",
            ),
            Service::Redis => (self.redis_url.clone(), "redis_url", "CARACAL_REDIS_URL"),
            Service::Kafka => (
                (!self.kafka_brokers.is_empty()).then(|| self.kafka_brokers.join(",")),
                "kafka_brokers",
                "CARACAL_KAFKA_BROKERS",
            ),
        };
        value.ok_or_else(|| ConfigError::Invalid {
            path: PathBuf::from("config.toml"),
            message: format!(
                "this distributed workspace sets no deployment.{key} (set it in config.toml or {var})"
            ),
        })
    }
}

/// Hides the password of a URL (`scheme://user:secret@host` → `scheme://user:***@host`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

impl std::fmt::Debug for Distributed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Distributed")
            .field(
                "postgres_url",
                &self.postgres_url.as_deref().map(redact_url),
            )
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_prefix", &self.redis_prefix)
            .field("kafka_brokers", &self.kafka_brokers)
            .field("spool_dir", &self.spool_dir)
            .field("spool_max_bytes", &self.spool_max_bytes)
            .field("hold_ttl", &self.hold_ttl)
            .finish()
    }
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Deployment::Embedded => f.write_str("Embedded"),
            Deployment::Distributed(d) => d.fmt(f),
        }
    }
}

/// The environment variables that override `[deployment]` settings (for
/// containers, and several replicas on one host): `CARACAL_POSTGRES_URL`,
/// `CARACAL_REDIS_URL`, `CARACAL_KAFKA_BROKERS`, `CARACAL_REDIS_PREFIX`,
/// `CARACAL_SPOOL_DIR`.
pub const DEPLOYMENT_ENV: [(&str, &str); 5] = [
    ("CARACAL_POSTGRES_URL", "postgres_url"),
    ("CARACAL_REDIS_URL", "redis_url"),
    ("CARACAL_KAFKA_BROKERS", "kafka_brokers"),
    ("CARACAL_REDIS_PREFIX", "redis_prefix"),
    ("CARACAL_SPOOL_DIR", "spool_dir"),
];

/// No whitespace, control character or quote: a URL pasted with a line of
/// something else in it is refused, not half-used.
fn plain(url: &str) -> bool {
    !url.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '"')
}

/// Validates the `[deployment]` section.
pub(crate) fn deployment(
    d: &RawDeployment,
    dir: &Path,
    invalid: &dyn Fn(String) -> ConfigError,
) -> Result<Deployment, ConfigError> {
    let set = d.postgres_url.is_some() || d.redis_url.is_some() || d.kafka_brokers.is_some();
    if d.kind == DeploymentKind::Embedded {
        if set {
            return Err(invalid(
                "deployment.kind is \"embedded\" but PostgreSQL, Redis or Kafka is set: \
                 set kind = \"distributed\" to use them"
                    .into(),
            ));
        }
        return Ok(Deployment::Embedded);
    }
    if !set {
        return Err(invalid(
            "a distributed deployment needs deployment.postgres_url, redis_url and kafka_brokers \
             (or CARACAL_POSTGRES_URL, CARACAL_REDIS_URL, CARACAL_KAFKA_BROKERS)"
                .into(),
        ));
    }
    if let Some(url) = &d.postgres_url {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) || !plain(url) {
            return Err(invalid(format!(
                "deployment.postgres_url {:?} is not a postgres:// URL",
                redact_url(url)
            )));
        }
    }
    if let Some(url) = &d.redis_url {
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) || !plain(url) {
            return Err(invalid(format!(
                "deployment.redis_url {:?} is not a redis:// URL",
                redact_url(url)
            )));
        }
    }
    let mut brokers = Vec::new();
    if let Some(list) = &d.kafka_brokers {
        for b in list.split(',').map(str::trim) {
            let ok = b.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !ok {
                return Err(invalid(format!(
                    "deployment.kafka_brokers: {b:?} is not host:port"
                )));
            }
            brokers.push(b.to_string());
        }
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "default".into());
    let prefix = d.redis_prefix.clone().unwrap_or_else(|| {
        let clean: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("caracal:{clean}:")
    });
    if prefix.is_empty()
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    {
        return Err(invalid(format!(
            "deployment.redis_prefix {prefix:?}: use letters, digits and . _ : - (no braces)"
        )));
    }
    if !(3..=3600).contains(&d.hold_ttl_secs) {
        return Err(invalid(
            "deployment.hold_ttl_secs must be between 3 and 3600".into(),
        ));
    }
    if d.spool_max_bytes < 1 << 20 {
        return Err(invalid(
            "deployment.spool_max_bytes must be at least 1048576".into(),
        ));
    }
    let spool_dir = if d.spool_dir.is_absolute() {
        d.spool_dir.clone()
    } else {
        dir.join(&d.spool_dir)
    };
    Ok(Deployment::Distributed(Distributed {
        postgres_url: d.postgres_url.clone(),
        redis_url: d.redis_url.clone(),
        redis_prefix: prefix,
        kafka_brokers: brokers,
        spool_dir,
        spool_max_bytes: d.spool_max_bytes,
        hold_ttl: Duration::from_secs(d.hold_ttl_secs),
    }))
}

/// The services of a new distributed workspace (`caracal workspace create
/// NAME --postgres-url … --redis-url … --kafka-brokers …`).
#[derive(Debug, Clone, Default)]
pub struct NewDistributed {
    pub postgres_url: Option<String>,
    pub redis_url: Option<String>,
    pub redis_prefix: Option<String>,
    pub kafka_brokers: Option<String>,
}

/// The configuration file of a new distributed workspace: the default one
/// with `[deployment]` set to `d`. Callers validate it with
/// [`Config::parse`] before writing it.
pub fn distributed_config_toml(d: &NewDistributed) -> String {
    let quote = |v: &str| toml::Value::String(v.to_string()).to_string();
    let mut text =
        default_config_toml().replacen("kind = \"embedded\"", "kind = \"distributed\"", 1);
    for (key, value) in [
        ("postgres_url", &d.postgres_url),
        ("redis_url", &d.redis_url),
        ("redis_prefix", &d.redis_prefix),
        ("kafka_brokers", &d.kafka_brokers),
    ] {
        let Some(value) = value else { continue };
        let commented = format!("# {key} = ");
        let Some(start) = text.find(&commented) else {
            continue;
        };
        let end = text[start..].find('\n').map_or(text.len(), |e| start + e);
        text.replace_range(start..end, &format!("{key} = {}", quote(value)));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::Config;

    #[test]
    fn a_distributed_deployment_is_read_validated_and_overridden_by_the_environment() {
        let p = Path::new("/ws/prod/config.toml");
        let text = "[deployment]\nkind = \"distributed\"\npostgres_url = \"postgres://u:secret@db/caracal\"\nredis_url = \"redis://cache:6379/2\"\nkafka_brokers = \"k1:9092, k2:9092\"";
        let c = Config::parse(text, p).unwrap();
        let Deployment::Distributed(d) = &c.deployment else {
            panic!("distributed");
        };
        assert_eq!(d.kafka_brokers, ["k1:9092", "k2:9092"]);
        assert_eq!(d.redis_prefix, "caracal:prod:");
        assert_eq!(d.spool_dir, Path::new("/ws/prod/spool"));
        assert_eq!(d.need(Service::Kafka).unwrap(), "k1:9092,k2:9092");
        // Passwords never reach logs through Debug.
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("secret") && shown.contains("u:***@db"),
            "{shown}"
        );
        let env = |k: &str| match k {
            "CARACAL_REDIS_URL" => Some("redis://other:6380/0".to_string()),
            "CARACAL_SPOOL_DIR" => Some("/var/spool/caracal-2".to_string()),
            _ => None,
        };
        let c = Config::parse_with_env(text, p, env).unwrap();
        let Deployment::Distributed(d) = c.deployment else {
            panic!("distributed");
        };
        assert_eq!(d.redis_url.as_deref(), Some("redis://other:6380/0"));
        assert_eq!(d.spool_dir, Path::new("/var/spool/caracal-2"));
        // A replica needs Redis and Kafka only; missing ones are named.
        let c = Config::parse(
            "[deployment]\nkind = \"distributed\"\nredis_url = \"redis://r/\"",
            p,
        )
        .unwrap();
        let Deployment::Distributed(d) = c.deployment else {
            panic!("distributed");
        };
        let err = d.need(Service::Kafka).unwrap_err().to_string();
        assert!(err.contains("CARACAL_KAFKA_BROKERS"), "{err}");
        assert_eq!(
            Config::parse("", p).unwrap().deployment,
            Deployment::Embedded
        );
    }

    #[test]
    fn bad_deployments_are_rejected_with_the_reason() {
        let p = Path::new("/ws/config.toml");
        for (text, needle) in [
            ("[deployment]\nredis_url = \"redis://r/\"", "kind = \"distributed\""),
            ("[deployment]\nkind = \"distributed\"", "needs deployment.postgres_url"),
            ("[deployment]\nkind = \"sharded\"", "unknown variant"),
            ("[deployment]\nkind = \"distributed\"\nredis_url = \"http://r\"", "not a redis://"),
            ("[deployment]\nkind = \"distributed\"\npostgres_url = \"mysql://x:pw@h/d\"", "x:***@h"),
            ("[deployment]\nkind = \"distributed\"\nkafka_brokers = \"k1\"", "not host:port"),
            ("[deployment]\nkind = \"distributed\"\nkafka_brokers = \"k1:0\"", "not host:port"),
            ("[deployment]\nkind = \"distributed\"\nkafka_brokers = \"k:1\"\nredis_prefix = \"a{b}\"", "redis_prefix"),
            ("[deployment]\nkind = \"distributed\"\nkafka_brokers = \"k:1\"\nspool_max_bytes = 10", "spool_max_bytes"),
            ("[deployment]\nkind = \"distributed\"\nkafka_brokers = \"k:1\"\nhold_ttl_secs = 1", "hold_ttl_secs"),
            ("[snapshot]\nmax_staleness_ms = 0", "max_staleness_ms"),
            ("[snapshot]\nresync_interval_ms = 6000", "resync_interval_ms"),
        ] {
            let err = Config::parse(text, p).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
            assert!(!err.contains(":pw@"), "{err}");
        }
    }

    #[test]
    fn a_new_distributed_workspace_config_names_its_services() {
        let text = distributed_config_toml(&NewDistributed {
            postgres_url: Some("postgres://caracal@db:5432/caracal".into()),
            redis_url: Some("redis://cache:6379/3".into()),
            redis_prefix: None,
            kafka_brokers: Some("k1:9092,k2:9092".into()),
        });
        let c = Config::parse_with_env(&text, Path::new("/ws/prod/config.toml"), |_| None).unwrap();
        let Deployment::Distributed(d) = c.deployment else {
            panic!("distributed");
        };
        assert_eq!(
            d.postgres_url.as_deref(),
            Some("postgres://caracal@db:5432/caracal")
        );
        assert_eq!(d.redis_url.as_deref(), Some("redis://cache:6379/3"));
        assert_eq!(d.redis_prefix, "caracal:prod:");
        assert_eq!(d.kafka_brokers, ["k1:9092", "k2:9092"]);
        // A value that needs quoting stays one TOML string.
        let text = distributed_config_toml(&NewDistributed {
            redis_url: Some("redis://r/0\"\nkind = \"embedded".into()),
            ..Default::default()
        });
        assert!(Config::parse(&text, Path::new("/ws/config.toml"))
            .unwrap_err()
            .to_string()
            .contains("not a redis://"));
    }
}
