//! State shared by every replica of the distributed deployment, in Redis:
//! budget counters ([`RedisCounters`]), rate limits ([`RedisRateLimiter`]),
//! the published enforcement state ([`RedisSource`], [`publish`]) and the
//! deployment's one clock ([`RedisClock`]). Each seam's implementation
//! passes the same conformance suite as the embedded one.
//!
//! Keys. Every key of a workspace starts with its prefix (several
//! workspaces, and tests, share one Redis). Every key of one principal
//! carries the same hash tag, `{p:<principal>}`, so the Lua scripts that
//! touch several of them are single-slot and run on Redis Cluster too.
//!
//! Money inside Redis is an integer number of micro-units (10⁻⁶ of the
//! currency): `HINCRBY` is exact on 64-bit integers, and every sum a script
//! compares stays below 2⁵³ (the largest amount is 10⁹ units, 10¹⁵
//! micro-units), where Lua's doubles are still exact. Amounts are rounded
//! towards refusing: reservations and spend up, limits down.

pub mod clock;
mod counters;
mod rate;
pub mod state;

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub use clock::RedisClock;
pub use counters::RedisCounters;
pub use rate::RedisRateLimiter;
pub use state::{publish, published_version, replicas, report_replica, RedisSource, ReplicaReport};

use crate::budget::counters::CounterError;
use crate::money::Decimal;

/// How long a Redis command may take before the caller gives up (and the
/// call it serves is refused with `not_ready`, never admitted on a guess).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_millis(1500);

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the shared state cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("invalid key prefix {0:?}: use letters, digits and . _ : - (no braces)")]
    Prefix(String),
}

impl From<SharedError> for CounterError {
    fn from(e: SharedError) -> Self {
        CounterError(e.to_string())
    }
}

pub(crate) fn unavailable(e: redis::RedisError) -> CounterError {
    CounterError(format!("redis: {e}"))
}

/// Connects to Redis through a connection manager: it reconnects by
/// itself after a failure (a plain multiplexed connection never does), and
/// every command fails after [`RESPONSE_TIMEOUT`] instead of hanging.
pub async fn connect(url: &str) -> Result<ConnectionManager, SharedError> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    Ok(ConnectionManager::new_with_config(client, config).await?)
}

/// The names of a workspace's keys.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (e.g. `caracal:prod:`), which must not contain a
    /// brace: the hash tag has to be the principal's.
    pub fn new(prefix: &str) -> Result<Self, SharedError> {
        let ok = prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
        if !ok {
            return Err(SharedError::Prefix(prefix.to_string()));
        }
        Ok(Self {
            prefix: prefix.to_string(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The start of every key of `principal`, hash tag included. An id
    /// with a character that could end the tag early is hex-encoded.
    pub fn principal(&self, principal: &str) -> String {
        let plain = principal
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:@-".contains(&b));
        if plain {
            format!("{}{{p:{principal}}}", self.prefix)
        } else {
            format!("{}{{x:{}}}", self.prefix, hex::encode(principal))
        }
    }
}

/// Micro-units in one unit of a currency.
const MICROS: i64 = 1_000_000;

/// The largest number of micro-units (or tokens) handed to a script: 2⁵³,
/// below which Lua's doubles are exact and `HINCRBY` cannot overflow. Far
/// above any real amount (10⁹ units is 10¹⁵ micro-units); a larger one is
/// clamped, which still refuses it against any real limit.
pub(crate) const MAX_EXACT: i64 = 1 << 53;

/// `amount` in micro-units, rounded up (what is reserved or spent errs
/// towards refusing). Negative amounts count as zero.
pub(crate) fn micros_up(amount: Decimal) -> i64 {
    match amount.max(Decimal::ZERO).checked_mul(Decimal::from(MICROS)) {
        Some(scaled) => i64::try_from(scaled.ceil()).map_or(MAX_EXACT, |m| m.min(MAX_EXACT)),
        None => MAX_EXACT,
    }
}

/// `limit` in micro-units, rounded down.
pub(crate) fn micros_down(limit: Decimal) -> i64 {
    match limit.max(Decimal::ZERO).checked_mul(Decimal::from(MICROS)) {
        Some(scaled) => i64::try_from(scaled.floor()).map_or(MAX_EXACT, |m| m.min(MAX_EXACT)),
        None => MAX_EXACT,
    }
}

/// Micro-units back to an amount.
pub(crate) fn from_micros(micros: i64) -> Decimal {
    Decimal::new(micros, 6).normalize()
}

#[cfg(test)]
pub(crate) mod test_redis {
    //! The Redis the tests use: `CARACAL_TEST_REDIS_URL`, or the local
    //! server `scripts/services.sh` starts. Each test gets its own prefix.

    use super::{connect, Keys};
    use redis::aio::ConnectionManager;

    pub fn url() -> String {
        std::env::var("CARACAL_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_string())
    }

    /// A connection and a prefix no other test uses. Fails the test, with
    /// the way to fix it, when Redis is not there.
    pub async fn fresh() -> (ConnectionManager, Keys) {
        let url = url();
        let conn = connect(&url).await.unwrap_or_else(|e| {
            panic!("Redis at {url} is needed by this test ({e}); run scripts/services.sh")
        });
        let prefix = format!("caracal-test:{}:", uuid::Uuid::new_v4().simple());
        (conn, Keys::new(&prefix).expect("a prefix"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_units_round_towards_refusing() {
        let d = |s: &str| crate::money::parse_amount(s).unwrap();
        assert_eq!(micros_up(d("0.30")), 300_000);
        assert_eq!(micros_up(d("0.000000001")), 1);
        assert_eq!(micros_down(d("0.0000019")), 1);
        assert_eq!(micros_up(-Decimal::ONE), 0);
        assert_eq!(micros_up(d("1000000000")), 1_000_000_000_000_000);
        // Beyond what a script counts exactly: clamped, still refused.
        assert_eq!(micros_up(Decimal::MAX), MAX_EXACT);
        assert_eq!(micros_down(Decimal::MAX), MAX_EXACT);
        assert_eq!(from_micros(9_900_000), d("9.9"));
    }

    #[test]
    fn keys_carry_the_principals_hash_tag() {
        let k = Keys::new("caracal:prod:").unwrap();
        assert_eq!(k.principal("agent-1"), "caracal:prod:{p:agent-1}");
        // A brace would end the tag early: hex keeps it whole.
        assert_eq!(k.principal("a}b"), "caracal:prod:{x:617d62}");
        assert!(Keys::new("bad{prefix").is_err());
    }
}
