//! The gateway configuration: a raw serde form read from `config.toml`
//! (unknown keys rejected) and the validated [`Config`] the gateway runs on.
//! Relative paths in the file are relative to the file's directory, so a
//! workspace directory can be moved or mounted as a whole.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::deployment::{deployment, Deployment, RawDeployment, DEPLOYMENT_ENV};
use crate::ConfigError;

/// Files of one workspace directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspacePaths {
    root: PathBuf,
}

impl WorkspacePaths {
    pub const CONFIG_FILE: &'static str = "config.toml";

    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn config_file(&self) -> PathBuf {
        self.root.join(Self::CONFIG_FILE)
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn log_file(&self) -> PathBuf {
        self.logs_dir().join("gateway.log")
    }
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.run_dir().join("gateway.pid")
    }
}

/// `config.toml` as written by operators. Every field has a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub gateway: RawGateway,
    pub limits: RawLimits,
    pub allowlist: RawAllowlist,
    pub storage: RawStorage,
    pub tls: RawTls,
    pub authority: RawAuthority,
    pub deployment: RawDeployment,
    pub snapshot: RawSnapshot,
    pub ledger: RawLedger,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLedger {
    /// The ledger's checkpoint signing key (Ed25519, signed-note format,
    /// mode 0600), separate from the mandate keys. Every process that
    /// seals batches (the embedded gateway, the ledger writers) needs it.
    pub signing_key: PathBuf,
    /// A batch is sealed once this many events wait (1 to 100 000).
    pub batch_events: usize,
    /// ... or once its oldest event is this old, seconds (1 to 86 400).
    pub batch_age_secs: u64,
}

impl Default for RawLedger {
    fn default() -> Self {
        Self {
            signing_key: "keys/ledger.key".into(),
            batch_events: 1000,
            batch_age_secs: 60,
        }
    }
}

/// The environment variable that overrides `ledger.signing_key`.
pub const LEDGER_KEY_ENV: &str = "CARACAL_LEDGER_KEY_FILE";

/// Most events `ledger.batch_events` may set.
pub const MAX_BATCH_EVENTS: usize = 100_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSnapshot {
    /// A gateway that cannot confirm its snapshot is current for longer than
    /// this refuses calls (`503 not_ready`), milliseconds.
    pub max_staleness_ms: u64,
    /// How often a gateway checks the state version even without a
    /// notification, milliseconds.
    pub resync_interval_ms: u64,
}

impl Default for RawSnapshot {
    fn default() -> Self {
        Self {
            max_staleness_ms: 5_000,
            resync_interval_ms: 1_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawGateway {
    /// Address of the proxy / base_url listener (TLS, and plain HTTP when allowed).
    pub listen: String,
    /// Address of the Prometheus metrics listener.
    pub metrics_listen: String,
    /// Names and addresses the gateway's own server certificate covers.
    pub server_names: Vec<String>,
    /// Accept plain-HTTP connections on the listener (`HTTPS_PROXY=http://…`).
    pub allow_plaintext: bool,
}

impl Default for RawGateway {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8443".into(),
            metrics_listen: "127.0.0.1:9090".into(),
            server_names: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            allow_plaintext: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    pub max_header_bytes: usize,
    pub max_request_body_bytes: u64,
    pub header_read_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub upstream_connect_timeout_secs: u64,
    pub upstream_response_timeout_secs: u64,
    pub max_connections: usize,
    /// Requests being enforced or streamed at once, all connections
    /// together; beyond it requests are refused at once with `503
    /// overloaded`.
    pub max_in_flight: usize,
    /// Requests of one principal in flight at once (its policies may set
    /// fewer); beyond it its requests are refused with `429 rate_limited`.
    pub max_in_flight_per_principal: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_header_bytes: 32 * 1024,
            max_request_body_bytes: 32 * 1024 * 1024,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 120,
            upstream_connect_timeout_secs: 10,
            upstream_response_timeout_secs: 300,
            max_connections: 4096,
            max_in_flight: 8192,
            max_in_flight_per_principal: 512,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAllowlist {
    /// What happens to an agent with no allowlist entries: "deny" (default) or "allow".
    pub default: AllowlistDefault,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStorage {
    /// SQLite database of the embedded deployment.
    pub database: PathBuf,
}

impl Default for RawStorage {
    fn default() -> Self {
        Self {
            database: "caracal.db".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Extra PEM roots trusted for upstream (provider) connections.
    pub upstream_ca_file: Option<PathBuf>,
    /// `/health` reports `tls` failing once the gateway certificate or the
    /// workspace CA expires within this many days.
    pub expiry_margin_days: u64,
}

impl Default for RawTls {
    fn default() -> Self {
        Self {
            ca_cert: "ca/ca.pem".into(),
            ca_key: "ca/ca.key".into(),
            server_cert: "tls/gateway.pem".into(),
            server_key: "tls/gateway.key".into(),
            upstream_ca_file: None,
            expiry_margin_days: 14,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuthority {
    /// The workspace's mandate signing keyring (private keys; mode 0600).
    pub keyring: PathBuf,
    /// Clock difference tolerated when checking a mandate's nbf/exp, seconds (0 to 300).
    pub clock_skew_secs: u64,
}

impl Default for RawAuthority {
    fn default() -> Self {
        Self {
            keyring: "keys/mandates.json".into(),
            clock_skew_secs: 30,
        }
    }
}

/// Longest clock skew `authority.clock_skew_secs` may allow.
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

/// Behaviour for a principal that has no allowlist entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllowlistDefault {
    #[default]
    Deny,
    Allow,
}

/// Size and time limits of the data path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_request_body_bytes: u64,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub upstream_connect_timeout: Duration,
    pub upstream_response_timeout: Duration,
    pub max_connections: usize,
    pub max_in_flight: usize,
    pub max_in_flight_per_principal: usize,
}

/// Command-line overrides of the listen addresses (`caracal up --listen`).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
}

/// The validated configuration the gateway runs on.
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub server_names: Vec<String>,
    pub allow_plaintext: bool,
    pub limits: Limits,
    pub allowlist_default: AllowlistDefault,
    pub database: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub upstream_ca_file: Option<PathBuf>,
    /// How long before a certificate expires `/health` reports it.
    pub tls_expiry_margin: Duration,
    /// The mandate signing keyring (only the CLI reads it: gateways verify
    /// with the public keys in the store).
    pub keyring: PathBuf,
    /// Clock difference tolerated on a mandate's nbf/exp.
    pub clock_skew: Duration,
    pub log_file: PathBuf,
    pub pid_file: PathBuf,
    pub deployment: Deployment,
    /// How long a gateway may go without confirming its snapshot is current.
    pub snapshot_max_staleness: Duration,
    /// How often it checks without a notification.
    pub snapshot_resync: Duration,
    /// The ledger's checkpoint signing key file (`CARACAL_LEDGER_KEY_FILE`
    /// overrides it).
    pub ledger_key: PathBuf,
    /// A batch of the Merkle log is sealed at this many events…
    pub ledger_batch_events: usize,
    /// …or when its oldest event is this old.
    pub ledger_batch_age: Duration,
}

impl Config {
    /// Reads and validates the configuration file at `path`.
    /// `[deployment]` settings are overridden by the environment
    /// ([`DEPLOYMENT_ENV`]).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io("read", path, e))?;
        Self::parse_with_env(&text, path, |k| std::env::var(k).ok())
    }

    /// Validates configuration text; `path` locates relative paths and names
    /// the file in errors; `env` looks up the overriding variables.
    pub fn parse_with_env(
        text: &str,
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let d = &mut raw.deployment;
        for (var, key) in DEPLOYMENT_ENV {
            let Some(value) = env(var).filter(|v| !v.is_empty()) else {
                continue;
            };
            match key {
                "postgres_url" => d.postgres_url = Some(value),
                "redis_url" => d.redis_url = Some(value),
                "kafka_brokers" => d.kafka_brokers = Some(value),
                "spool_dir" => d.spool_dir = PathBuf::from(value),
                _ => d.redis_prefix = Some(value),
            }
        }
        if let Some(key) = env(LEDGER_KEY_ENV).filter(|v| !v.is_empty()) {
            raw.ledger.signing_key = PathBuf::from(key);
        }
        Self::from_raw(raw, path)
    }

    /// Validates configuration text; `path` locates relative paths and names
    /// the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        Self::from_raw(raw, path)
    }

    fn from_raw(raw: RawConfig, path: &Path) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let addr = |field: &str, value: &str| {
            value.parse::<SocketAddr>().map_err(|_| {
                invalid(format!(
                    "{field} = {value:?} is not an address like 127.0.0.1:8443"
                ))
            })
        };
        let l = &raw.limits;
        let positive = |field: &str, v: u64| {
            if v == 0 {
                Err(invalid(format!("limits.{field} must be greater than 0")))
            } else {
                Ok(Duration::from_secs(v))
            }
        };
        if l.max_header_bytes < 1024 {
            return Err(invalid(
                "limits.max_header_bytes must be at least 1024".into(),
            ));
        }
        if l.max_connections == 0 {
            return Err(invalid(
                "limits.max_connections must be greater than 0".into(),
            ));
        }
        if l.max_in_flight == 0 {
            return Err(invalid(
                "limits.max_in_flight must be greater than 0".into(),
            ));
        }
        if l.max_in_flight_per_principal == 0 {
            return Err(invalid(
                "limits.max_in_flight_per_principal must be greater than 0".into(),
            ));
        }
        if raw.tls.expiry_margin_days > 365 {
            return Err(invalid("tls.expiry_margin_days must be at most 365".into()));
        }
        if raw.authority.clock_skew_secs > MAX_CLOCK_SKEW_SECS {
            return Err(invalid(format!(
                "authority.clock_skew_secs must be at most {MAX_CLOCK_SKEW_SECS}"
            )));
        }
        if raw.gateway.server_names.is_empty() {
            return Err(invalid(
                "gateway.server_names must name at least one host".into(),
            ));
        }
        let rel = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                dir.join(p)
            }
        };
        let ws = WorkspacePaths::new(dir.clone());
        let deployment = deployment(&raw.deployment, &dir, &invalid)?;
        let s = &raw.snapshot;
        if !(100..=600_000).contains(&s.max_staleness_ms) {
            return Err(invalid(
                "snapshot.max_staleness_ms must be between 100 and 600000".into(),
            ));
        }
        if s.resync_interval_ms == 0 || s.resync_interval_ms >= s.max_staleness_ms {
            return Err(invalid(
                "snapshot.resync_interval_ms must be greater than 0 and less than max_staleness_ms"
                    .into(),
            ));
        }
        let lg = &raw.ledger;
        if !(1..=MAX_BATCH_EVENTS).contains(&lg.batch_events) {
            return Err(invalid(format!(
                "ledger.batch_events must be between 1 and {MAX_BATCH_EVENTS}"
            )));
        }
        if !(1..=86_400).contains(&lg.batch_age_secs) {
            return Err(invalid(
                "ledger.batch_age_secs must be between 1 and 86400".into(),
            ));
        }
        let ledger_key = rel(&lg.signing_key);
        Ok(Self {
            ledger_key,
            ledger_batch_events: lg.batch_events,
            ledger_batch_age: Duration::from_secs(lg.batch_age_secs),
            deployment,
            snapshot_max_staleness: Duration::from_millis(s.max_staleness_ms),
            snapshot_resync: Duration::from_millis(s.resync_interval_ms),
            listen: addr("gateway.listen", &raw.gateway.listen)?,
            metrics_listen: addr("gateway.metrics_listen", &raw.gateway.metrics_listen)?,
            server_names: raw.gateway.server_names.clone(),
            allow_plaintext: raw.gateway.allow_plaintext,
            limits: Limits {
                max_header_bytes: l.max_header_bytes,
                max_request_body_bytes: l.max_request_body_bytes,
                header_read_timeout: positive(
                    "header_read_timeout_secs",
                    l.header_read_timeout_secs,
                )?,
                idle_timeout: positive("idle_timeout_secs", l.idle_timeout_secs)?,
                upstream_connect_timeout: positive(
                    "upstream_connect_timeout_secs",
                    l.upstream_connect_timeout_secs,
                )?,
                upstream_response_timeout: positive(
                    "upstream_response_timeout_secs",
                    l.upstream_response_timeout_secs,
                )?,
                max_connections: l.max_connections,
                max_in_flight: l.max_in_flight,
                max_in_flight_per_principal: l.max_in_flight_per_principal,
            },
            allowlist_default: raw.allowlist.default,
            database: rel(&raw.storage.database),
            ca_cert: rel(&raw.tls.ca_cert),
            ca_key: rel(&raw.tls.ca_key),
            server_cert: rel(&raw.tls.server_cert),
            server_key: rel(&raw.tls.server_key),
            upstream_ca_file: raw.tls.upstream_ca_file.as_deref().map(rel),
            tls_expiry_margin: Duration::from_secs(raw.tls.expiry_margin_days * 24 * 3600),
            keyring: rel(&raw.authority.keyring),
            clock_skew: Duration::from_secs(raw.authority.clock_skew_secs),
            log_file: ws.log_file(),
            pid_file: ws.pid_file(),
            dir,
        })
    }

    /// Applies command-line overrides.
    pub fn with_overrides(mut self, o: &Overrides) -> Self {
        if let Some(a) = o.listen {
            self.listen = a;
        }
        if let Some(a) = o.metrics_listen {
            self.metrics_listen = a;
        }
        self
    }
}

/// The configuration file a new workspace starts with: every setting, with
/// its default and what it does.
pub fn default_config_toml() -> String {
    let g = RawGateway::default();
    let l = RawLimits::default();
    let a = RawAuthority::default();
    let raw_tls = RawTls::default();
    format!(
        r#"# Caracal workspace configuration. Relative paths are relative to this file.

[gateway]
# Proxy and base_url listener: TLS, and plain HTTP when allow_plaintext is true.
listen = "{listen}"
# Prometheus metrics (GET /metrics).
metrics_listen = "{metrics}"
# Names and addresses the gateway's server certificate covers.
server_names = ["localhost", "127.0.0.1", "::1"]
# Accept plain-HTTP proxy connections (HTTPS_PROXY=http://...).
allow_plaintext = true

[limits]
max_header_bytes = {mh}
max_request_body_bytes = {mb}
header_read_timeout_secs = {hr}
idle_timeout_secs = {it}
upstream_connect_timeout_secs = {uc}
upstream_response_timeout_secs = {ur}
max_connections = {mc}
# Requests enforced or streamed at once; beyond it: 503 overloaded at once.
max_in_flight = {mi}
# Requests of one principal in flight at once (a policy's --max-in-flight may
# set fewer); beyond it: 429 rate_limited.
max_in_flight_per_principal = {mip}

[allowlist]
# An agent without allowlist entries is denied ("deny") or allowed everywhere ("allow").
default = "deny"

[storage]
database = "caracal.db"

[tls]
ca_cert = "ca/ca.pem"
ca_key = "ca/ca.key"
server_cert = "tls/gateway.pem"
server_key = "tls/gateway.key"
# upstream_ca_file = "upstream-roots.pem"
# /health reports `tls` failing this many days before a certificate expires.
expiry_margin_days = {em}

[authority]
# The mandate signing keyring: private keys, mode 0600, created on first use.
# Gateways verify with the public keys kept in the database, not this file.
keyring = "{keyring}"
# Clock difference tolerated when checking a mandate's validity window (0 to 300).
clock_skew_secs = {skew}

[ledger]
# The ledger is a Merkle log: events are sealed in batches, each with a
# checkpoint signed by this key (Ed25519, mode 0600, created with the
# workspace; separate from the mandate keys). CARACAL_LEDGER_KEY_FILE
# overrides it. `caracal merkle public-key` prints what auditors verify with.
signing_key = "keys/ledger.key"
# A batch is sealed when this many events wait, or when its oldest event is
# batch_age_secs old, whichever comes first (`caracal merkle seal`: now).
batch_events = 1000
batch_age_secs = 60

[deployment]
# "embedded": one process, the SQLite file above, nothing else to run.
# "distributed": PostgreSQL (system of record), Redis (state, budgets, rate
# limits) and Kafka (spend events); each setting below is overridden by its
# environment variable (CARACAL_POSTGRES_URL, CARACAL_REDIS_URL,
# CARACAL_KAFKA_BROKERS, CARACAL_REDIS_PREFIX).
kind = "embedded"
# postgres_url = "postgres://caracal@127.0.0.1:5432/caracal"
# redis_url = "redis://127.0.0.1:6379/0"
# redis_prefix = "caracal:<workspace>:"
# kafka_brokers = "127.0.0.1:9092"
# Spend events wait here while Kafka cannot take them; past the size, calls
# are refused (not_ready): an unrecorded call is never forwarded.
spool_dir = "spool"
spool_max_bytes = 1073741824
# A budget hold of a replica that died (stopped renewing it) counts for
# nothing after this many seconds; live replicas renew every third of it.
hold_ttl_secs = 60

[snapshot]
# A gateway that cannot confirm its enforcement state is current for this
# long refuses calls (503 not_ready); it checks at least every resync interval.
max_staleness_ms = 5000
resync_interval_ms = 1000
"#,
        keyring = a.keyring.display(),
        skew = a.clock_skew_secs,
        listen = g.listen,
        metrics = g.metrics_listen,
        mh = l.max_header_bytes,
        mb = l.max_request_body_bytes,
        hr = l.header_read_timeout_secs,
        it = l.idle_timeout_secs,
        uc = l.upstream_connect_timeout_secs,
        ur = l.upstream_response_timeout_secs,
        mc = l.max_connections,
        mi = l.max_in_flight,
        mip = l.max_in_flight_per_principal,
        em = raw_tls.expiry_margin_days,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_file_parses_to_defaults() {
        let c = Config::parse(&default_config_toml(), Path::new("/ws/config.toml")).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(c.database, Path::new("/ws/caracal.db"));
        assert_eq!(c.ca_key, Path::new("/ws/ca/ca.key"));
        assert_eq!(c.allowlist_default, AllowlistDefault::Deny);
        assert_eq!(c.keyring, Path::new("/ws/keys/mandates.json"));
        assert_eq!(c.clock_skew, Duration::from_secs(30));
        let empty = Config::parse("", Path::new("/ws/config.toml")).unwrap();
        assert_eq!(empty.limits, c.limits);
        assert_eq!(empty.keyring, Path::new("/ws/keys/mandates.json"));
        assert_eq!(empty.clock_skew, c.clock_skew);
    }

    #[test]
    fn bad_files_are_rejected_with_the_reason() {
        let p = Path::new("/ws/config.toml");
        for (text, needle) in [
            ("[gateway]\nlisten = \"nope\"", "gateway.listen"),
            ("[gateway]\nlistn = \"x\"", "unknown field"),
            ("[limits]\nidle_timeout_secs = 0", "idle_timeout_secs"),
            ("[allowlist]\ndefault = \"maybe\"", "unknown variant"),
            ("[[[", "invalid"),
            ("[authority]\nclock_skew_secs = 301", "clock_skew_secs"),
            ("[authority]\nclock_skew_secs = -1", "invalid value"),
            ("[authority]\nkeyrng = \"k.json\"", "unknown field"),
        ] {
            let err = Config::parse(text, p).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn authority_settings_are_read_and_bounded() {
        let p = Path::new("/ws/config.toml");
        let c = Config::parse(
            "[authority]\nkeyring = \"/secure/ring.json\"\nclock_skew_secs = 0",
            p,
        )
        .unwrap();
        assert_eq!(c.keyring, Path::new("/secure/ring.json"));
        assert_eq!(c.clock_skew, Duration::ZERO);
        let c = Config::parse("[authority]\nclock_skew_secs = 300", p).unwrap();
        assert_eq!(c.clock_skew, Duration::from_secs(300));
        let c = Config::parse("[authority]\nkeyring = \"k/ring.json\"", p).unwrap();
        assert_eq!(c.keyring, Path::new("/ws/k/ring.json"));
    }

    #[test]
    fn ledger_settings_are_read_bounded_and_overridden() {
        let p = Path::new("/ws/config.toml");
        let c = Config::parse("", p).unwrap();
        assert_eq!(c.ledger_key, Path::new("/ws/keys/ledger.key"));
        assert_eq!(c.ledger_batch_events, 1000);
        assert_eq!(c.ledger_batch_age, Duration::from_secs(60));
        let c = Config::parse(
            "[ledger]\nsigning_key = \"/secret/l.key\"\nbatch_events = 1\nbatch_age_secs = 86400",
            p,
        )
        .unwrap();
        assert_eq!(c.ledger_key, Path::new("/secret/l.key"));
        assert_eq!(
            (c.ledger_batch_events, c.ledger_batch_age.as_secs()),
            (1, 86_400)
        );
        for (text, needle) in [
            ("[ledger]\nbatch_events = 0", "batch_events"),
            ("[ledger]\nbatch_events = 100001", "batch_events"),
            ("[ledger]\nbatch_age_secs = 0", "batch_age_secs"),
            ("[ledger]\nbatch_age_secs = 86401", "batch_age_secs"),
            ("[ledger]\nbatch_size = 3", "unknown field"),
        ] {
            let err = Config::parse(text, p).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
        let c = Config::parse_with_env("", p, |k| {
            (k == "CARACAL_LEDGER_KEY_FILE").then(|| "/run/secrets/ledger.key".to_string())
        })
        .unwrap();
        assert_eq!(c.ledger_key, Path::new("/run/secrets/ledger.key"));
    }

    #[test]
    fn overrides_replace_listen_addresses() {
        let c = Config::parse("", Path::new("c.toml"))
            .unwrap()
            .with_overrides(&Overrides {
                listen: Some("127.0.0.1:0".parse().unwrap()),
                metrics_listen: None,
            });
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.metrics_listen.port(), 9090);
        assert_eq!(c.dir, Path::new("."));
    }
}
