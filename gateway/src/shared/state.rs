//! The enforcement state published in Redis: what the replicas of the
//! distributed deployment build their snapshots from (they never read
//! PostgreSQL for it).
//!
//! The control plane commits a change to PostgreSQL, then [`publish`]es
//! the whole state (the JSON form of [`StateRows`]) under its version and
//! announces the version on a pub/sub channel. A replica's [`RedisSource`]
//! reads the version key and the state it names; it is woken by the
//! announcement, and the refresher also reads the version on every resync
//! interval, because pub/sub is at-most-once (a message sent while a
//! subscriber reconnects is lost): the version key is the truth, the
//! channel only makes it fast.
//!
//! Keys (one hash tag, `{state}`, so the publish script is single-slot):
//! `<prefix>{state}:version` (the version), `<prefix>{state}:v:<version>`
//! (the state), channel `<prefix>state:changed`. A superseded state stays
//! readable for [`SUPERSEDED_TTL`], for a replica that read the old version
//! just before.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use redis::Script;
use tokio::sync::Notify;

use super::Keys;
use crate::budget::counters::BoxFuture;
use crate::snapshot::{SnapshotSource, SourceError};
use crate::store::StateRows;

/// How long a superseded state stays readable.
pub const SUPERSEDED_TTL: Duration = Duration::from_secs(60);

/// Publishes a state unless a newer one is already published (or forced).
/// KEYS: version, state. ARGV: version, state, prefix of the state keys,
/// ttl of the superseded state (ms), channel, '1' to force.
static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = tonumber(redis.call('GET', KEYS[1]) or '-1')
local version = tonumber(ARGV[1])
if version < current and ARGV[6] ~= '1' then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('PERSIST', KEYS[2])
if current >= 0 and current ~= version then
  redis.call('PEXPIRE', ARGV[3] .. string.format('%d', current), ARGV[4])
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[5], ARGV[1])
return 1
",
    )
});

/// Reads the version and the state it names, atomically.
static LOAD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('GET', KEYS[1])
if not v then return {} end
return {v, redis.call('GET', ARGV[1] .. v)}
",
    )
});

/// The names of the state's keys.
#[derive(Debug, Clone)]
struct StateKeys {
    version: String,
    state_prefix: String,
    channel: String,
}

impl StateKeys {
    fn new(keys: &Keys) -> Self {
        let p = keys.prefix();
        Self {
            version: format!("{p}{{state}}:version"),
            state_prefix: format!("{p}{{state}}:v:"),
            channel: format!("{p}state:changed"),
        }
    }
}

/// Publishes `rows` as the state at `rows.version`. Returns false (and
/// changes nothing) when a newer version is already published: a slow
/// publisher never rolls the replicas back. `force` publishes it anyway
/// (`caracal cache sync` after the database was restored from a backup
/// older than what Redis holds): replicas swap in any version that differs
/// from theirs.
pub async fn publish(
    conn: &ConnectionManager,
    keys: &Keys,
    rows: &StateRows,
    force: bool,
) -> Result<bool, redis::RedisError> {
    let k = StateKeys::new(keys);
    let json = serde_json::to_string(rows).expect("the state serialises");
    let published: i64 = PUBLISH
        .key(&k.version)
        .key(format!("{}{}", k.state_prefix, rows.version))
        .arg(rows.version)
        .arg(json)
        .arg(&k.state_prefix)
        .arg(SUPERSEDED_TTL.as_millis() as u64)
        .arg(&k.channel)
        .arg(if force { "1" } else { "0" })
        .invoke_async(&mut conn.clone())
        .await?;
    Ok(published == 1)
}

/// The published version, if any.
pub async fn published_version(
    conn: &ConnectionManager,
    keys: &Keys,
) -> Result<Option<i64>, redis::RedisError> {
    redis::cmd("GET")
        .arg(StateKeys::new(keys).version)
        .query_async(&mut conn.clone())
        .await
}

/// What a replica last reported of itself (`caracal cache status`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplicaReport {
    /// Host name and listen address, unique per replica.
    pub replica: String,
    /// The state version its snapshot is at.
    pub version: i64,
    /// Unix milliseconds of the report (replicas report every few seconds).
    pub reported_ms: i64,
    /// Whether its snapshot was confirmed current within the staleness bound.
    pub fresh: bool,
}

fn replicas_key(keys: &Keys) -> String {
    format!("{}replicas", keys.prefix())
}

/// Records `report` (a replica's own, every few seconds).
pub async fn report_replica(
    conn: &ConnectionManager,
    keys: &Keys,
    report: &ReplicaReport,
) -> Result<(), redis::RedisError> {
    let json = serde_json::to_string(report).expect("a report serialises");
    redis::cmd("HSET")
        .arg(replicas_key(keys))
        .arg(&report.replica)
        .arg(json)
        .query_async(&mut conn.clone())
        .await
}

/// Every replica's last report; reports older than `forget` are removed
/// (a replica that stopped).
pub async fn replicas(
    conn: &ConnectionManager,
    keys: &Keys,
    now_ms: i64,
    forget: Duration,
) -> Result<Vec<ReplicaReport>, redis::RedisError> {
    let all: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(replicas_key(keys))
        .query_async(&mut conn.clone())
        .await?;
    let mut out = Vec::new();
    for (field, json) in all {
        match serde_json::from_str::<ReplicaReport>(&json) {
            Ok(r) if now_ms.saturating_sub(r.reported_ms) <= forget.as_millis() as i64 => {
                out.push(r)
            }
            _ => {
                let _: i64 = redis::cmd("HDEL")
                    .arg(replicas_key(keys))
                    .arg(&field)
                    .query_async(&mut conn.clone())
                    .await?;
            }
        }
    }
    out.sort_by(|a, b| a.replica.cmp(&b.replica));
    Ok(out)
}

/// A replica's source of snapshots: the state published in Redis.
#[derive(Clone)]
pub struct RedisSource {
    conn: ConnectionManager,
    keys: StateKeys,
    wake: Arc<Notify>,
    listener: Arc<tokio::task::JoinHandle<()>>,
}

impl Drop for RedisSource {
    fn drop(&mut self) {
        if Arc::strong_count(&self.listener) == 1 {
            self.listener.abort();
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> SourceError {
    SourceError(format!("redis: {e}"))
}

impl RedisSource {
    /// A source reading through `conn`, woken by announcements received on
    /// a subscription of its own to `url` (resubscribed after any loss).
    pub fn new(url: &str, conn: ConnectionManager, keys: &Keys) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let keys = StateKeys::new(keys);
        let wake = Arc::new(Notify::new());
        let listener = tokio::spawn(listen(client, keys.channel.clone(), wake.clone()));
        Ok(Self {
            conn,
            keys,
            wake,
            listener: Arc::new(listener),
        })
    }
}

/// Wakes `wake` on every announcement; after a lost subscription,
/// subscribes again and wakes once (announcements may have been missed).
async fn listen(client: redis::Client, channel: String, wake: Arc<Notify>) {
    let mut failures = 0u32;
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    failures = 0;
                    wake.notify_one();
                    let mut messages = pubsub.on_message();
                    while messages.next().await.is_some() {
                        wake.notify_one();
                    }
                    tracing::warn!("lost the state announcement subscription; resubscribing");
                }
                Err(e) => tracing::warn!(error = %e, "cannot subscribe to state announcements"),
            },
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(error = %e, "cannot reach Redis for state announcements");
                }
            }
        }
        failures = failures.saturating_add(1);
        let backoff = Duration::from_millis(100u64.saturating_mul(u64::from(failures.min(10))));
        tokio::time::sleep(backoff).await;
    }
}

impl SnapshotSource for RedisSource {
    fn version(&self) -> BoxFuture<Result<i64, SourceError>> {
        let (mut conn, key) = (self.conn.clone(), self.keys.version.clone());
        Box::pin(async move {
            let v: Option<String> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let v = v.ok_or_else(|| {
                SourceError(
                    "no enforcement state is published in Redis (run `caracal cache sync`)".into(),
                )
            })?;
            v.parse()
                .map_err(|_| SourceError(format!("corrupt state version in Redis: {v:?}")))
        })
    }

    fn load(&self) -> BoxFuture<Result<StateRows, SourceError>> {
        let (mut conn, keys) = (self.conn.clone(), self.keys.clone());
        Box::pin(async move {
            let answer: Vec<Option<String>> = LOAD
                .key(&keys.version)
                .arg(&keys.state_prefix)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let (Some(Some(version)), Some(state)) = (answer.first(), answer.get(1)) else {
                return Err(SourceError(
                    "no enforcement state is published in Redis (run `caracal cache sync`)".into(),
                ));
            };
            let state = state.as_deref().ok_or_else(|| {
                SourceError(format!(
                    "the state of version {version} is missing from Redis (run `caracal cache sync`)"
                ))
            })?;
            let rows: StateRows = serde_json::from_str(state).map_err(|e| {
                SourceError(format!("corrupt state of version {version} in Redis: {e}"))
            })?;
            if rows.version.to_string() != *version {
                return Err(SourceError(format!(
                    "the state under version {version} in Redis says version {}",
                    rows.version
                )));
            }
            Ok(rows)
        })
    }

    fn changed(&self, max_wait: Duration) -> BoxFuture<()> {
        let wake = self.wake.clone();
        Box::pin(async move {
            let _ = tokio::time::timeout(max_wait, wake.notified()).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Principal, PrincipalKind};
    use crate::shared::test_redis;
    use std::sync::atomic::{AtomicI64, Ordering};

    /// A control plane (its own published states) and a replica's source.
    struct Published {
        conn: ConnectionManager,
        keys: Keys,
        source: RedisSource,
        version: Arc<AtomicI64>,
        rows: Arc<tokio::sync::Mutex<StateRows>>,
    }

    impl crate::conformance::snapshot_source::Harness for Published {
        fn source(&self) -> &dyn SnapshotSource {
            &self.source
        }

        fn change(&self, name: &str) -> BoxFuture<()> {
            let name = name.to_string();
            let (conn, keys) = (self.conn.clone(), self.keys.clone());
            let (version, rows) = (self.version.clone(), self.rows.clone());
            Box::pin(async move {
                let mut rows = rows.lock().await;
                rows.version = version.fetch_add(1, Ordering::SeqCst) + 1;
                rows.principals.push((principal(&name), vec![1, 2, 3]));
                assert!(publish(&conn, &keys, &rows, false).await.expect("publish"));
            })
        }
    }

    fn principal(name: &str) -> Principal {
        Principal {
            id: format!("agt_{name}"),
            kind: PrincipalKind::Agent,
            name: name.to_string(),
            email: String::new(),
            created_at: "2026-11-30T00:00:00Z".into(),
        }
    }

    async fn published() -> Published {
        let (conn, keys) = test_redis::fresh().await;
        let rows = StateRows {
            version: 1,
            ..Default::default()
        };
        publish(&conn, &keys, &rows, false).await.expect("publish");
        let source = RedisSource::new(&test_redis::url(), conn.clone(), &keys).expect("source");
        Published {
            conn,
            keys,
            source,
            version: Arc::new(AtomicI64::new(1)),
            rows: Arc::new(tokio::sync::Mutex::new(rows)),
        }
    }

    crate::snapshot_source_conformance!(published);

    /// The published state round-trips whole, token hashes included.
    #[tokio::test]
    async fn the_state_round_trips() {
        let h = published().await;
        h.change_now("alice").await;
        let rows = h.source.load().await.expect("load");
        assert_eq!(rows.version, 2);
        assert_eq!(rows.principals, vec![(principal("alice"), vec![1, 2, 3])]);
    }

    /// An older state never replaces a newer one (a slow publisher).
    #[tokio::test]
    async fn an_older_state_is_not_published_over_a_newer_one() {
        let h = published().await;
        h.change_now("alice").await;
        let old = StateRows {
            version: 1,
            ..Default::default()
        };
        assert!(!publish(&h.conn, &h.keys, &old, false)
            .await
            .expect("publish"));
        assert_eq!(h.source.version().await.expect("version"), 2);
        assert_eq!(h.source.load().await.expect("load").principals.len(), 1);
        // Forced (a database restored from an older backup), it is.
        assert!(publish(&h.conn, &h.keys, &old, true)
            .await
            .expect("publish"));
        assert_eq!(h.source.version().await.expect("version"), 1);
        assert!(h.source.load().await.expect("load").principals.is_empty());
    }

    /// Nothing published, or a corrupt state, is an error naming what to
    /// do, never an empty state (which would deny everything silently, or
    /// worse, allow by a default).
    #[tokio::test]
    async fn a_missing_or_corrupt_state_is_an_error() {
        let (conn, keys) = test_redis::fresh().await;
        let source = RedisSource::new(&test_redis::url(), conn.clone(), &keys).expect("source");
        let e = source.version().await.expect_err("nothing published");
        assert!(e.0.contains("caracal cache sync"), "{e}");
        assert!(source.load().await.is_err());
        let k = StateKeys::new(&keys);
        let mut c = conn.clone();
        let _: () = redis::pipe()
            .set(&k.version, "7")
            .set(format!("{}7", k.state_prefix), "{not json")
            .query_async(&mut c)
            .await
            .unwrap();
        let e = source.load().await.expect_err("corrupt");
        assert!(e.0.contains("corrupt state of version 7"), "{e}");
        let _: () = redis::cmd("SET")
            .arg(&k.version)
            .arg("x")
            .query_async(&mut c)
            .await
            .unwrap();
        assert!(source.version().await.is_err());
    }

    /// An announcement wakes a waiting replica at once.
    #[tokio::test]
    async fn an_announcement_wakes_the_replica() {
        let h = published().await;
        // Let the subscription settle (it wakes once when it starts).
        h.source.changed(Duration::from_millis(300)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = std::time::Instant::now();
        let waiting = h.source.changed(Duration::from_secs(10));
        let (_, ()) = tokio::join!(h.change_now("bob"), waiting);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    /// Replicas' reports are listed, and a report older than the bound
    /// (a replica that stopped) is forgotten.
    #[tokio::test]
    async fn replicas_report_their_version() {
        let (conn, keys) = test_redis::fresh().await;
        let report = |replica: &str, version, reported_ms| ReplicaReport {
            replica: replica.into(),
            version,
            reported_ms,
            fresh: true,
        };
        report_replica(&conn, &keys, &report("a:8443", 7, 10_000))
            .await
            .unwrap();
        report_replica(&conn, &keys, &report("b:8443", 6, 1_000))
            .await
            .unwrap();
        let live = replicas(&conn, &keys, 12_000, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(live, vec![report("a:8443", 7, 10_000)]);
        let all = replicas(&conn, &keys, 12_000, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(all.len(), 1, "the stale report was removed");
    }

    impl Published {
        async fn change_now(&self, name: &str) {
            use crate::conformance::snapshot_source::Harness;
            self.change(name).await;
        }
    }
}
