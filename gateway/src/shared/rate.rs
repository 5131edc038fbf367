//! Rate limits in Redis, shared by every replica, with the semantics of
//! the in-process limiter (`crate::budget::rate`): 1-second buckets over a
//! sliding minute, one hash per principal, checked and recorded in one
//! script. The wait a refusal reports is computed by the same function as
//! in process, from the buckets the script returns.

use std::collections::VecDeque;
use std::sync::LazyLock;

use jiff::Timestamp;
use redis::aio::ConnectionManager;
use redis::Script;

use super::{unavailable, Keys, MAX_EXACT};
use crate::budget::counters::{BoxFuture, CounterError};
use crate::budget::rate::{
    oldest_counted, refusal, second_of, Bucket, LimitKind, NotAdmitted, RateLimit, RateLimited,
    RateLimiter, RateTicket, RateUsage,
};

static ADMIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/rate_admit.lua")));
static FINISH: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/rate_finish.lua")));

/// A principal's buckets outlive their last admission by the window and a
/// margin.
const KEY_TTL_MS: i64 = 120_000;

/// Rate limits for many replicas.
#[derive(Clone)]
pub struct RedisRateLimiter {
    conn: ConnectionManager,
    keys: Keys,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.keys.prefix())
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    pub fn new(conn: ConnectionManager, keys: Keys) -> Self {
        Self { conn, keys }
    }

    fn key(&self, principal: &str) -> String {
        format!("{}:rate", self.keys.principal(principal))
    }
}

/// The buckets of a flattened `field, value` list, oldest first.
fn buckets(fields: &[String]) -> VecDeque<Bucket> {
    let mut by_second = std::collections::BTreeMap::<i64, Bucket>::new();
    for pair in fields.chunks_exact(2) {
        let (Some((kind, second)), Ok(value)) = (pair[0].split_once(':'), pair[1].parse::<u64>())
        else {
            continue;
        };
        let Ok(second) = second.parse::<i64>() else {
            continue;
        };
        let b = by_second.entry(second).or_insert(Bucket {
            second,
            requests: 0,
            tokens: 0,
        });
        match kind {
            "q" => b.requests = value,
            "t" => b.tokens = value,
            _ => {}
        }
    }
    by_second.into_values().collect()
}

/// The tightest limit of each kind (`''` when none).
fn tightest(limits: &[RateLimit]) -> (String, String) {
    let rpm = limits.iter().filter_map(|l| l.requests_per_minute).min();
    let tpm = limits.iter().filter_map(|l| l.tokens_per_minute).min();
    (
        rpm.map_or(String::new(), |v| v.to_string()),
        tpm.map_or(String::new(), |v| v.to_string()),
    )
}

impl RateLimiter for RedisRateLimiter {
    fn admit(
        &self,
        principal: &str,
        limits: &[RateLimit],
        estimated_tokens: u64,
        now: Timestamp,
    ) -> BoxFuture<Result<RateTicket, NotAdmitted>> {
        let (mut conn, key, principal) = (
            self.conn.clone(),
            self.key(principal),
            principal.to_string(),
        );
        let limits = limits.to_vec();
        Box::pin(async move {
            let (rpm, tpm) = tightest(&limits);
            let answer: Vec<String> = ADMIT
                .key(&key)
                .arg(second_of(now))
                .arg(estimated_tokens.min(MAX_EXACT as u64))
                .arg(rpm)
                .arg(tpm)
                .arg(KEY_TTL_MS)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            match answer.split_first() {
                Some((tag, rest)) if tag == "ok" => {
                    let second = rest.first().and_then(|s| s.parse().ok()).ok_or_else(|| {
                        CounterError("unexpected answer from the rate script".into())
                    })?;
                    Ok(RateTicket::issued(principal, second, estimated_tokens))
                }
                Some((tag, rest)) if tag == "refused" => {
                    let buckets = buckets(rest);
                    // The script and `refusal` apply the same rule; if they
                    // ever disagree, the request is still refused.
                    Err(NotAdmitted::Limited(
                        refusal(&buckets, &limits, estimated_tokens, now).unwrap_or(
                            RateLimited::Exceeded {
                                limit: LimitKind::Requests,
                                limit_value: 0,
                                used: 0,
                                retry_after: jiff::SignedDuration::from_secs(1),
                            },
                        ),
                    ))
                }
                _ => Err(CounterError("unexpected answer from the rate script".into()).into()),
            }
        })
    }

    fn settle(
        &self,
        ticket: RateTicket,
        actual_tokens: u64,
        now: Timestamp,
    ) -> BoxFuture<Result<(), CounterError>> {
        self.finish(ticket, Some(actual_tokens), now)
    }

    fn release(&self, ticket: RateTicket, now: Timestamp) -> BoxFuture<Result<(), CounterError>> {
        self.finish(ticket, None, now)
    }

    fn usage(&self, principal: &str, now: Timestamp) -> BoxFuture<Result<RateUsage, CounterError>> {
        let (mut conn, key) = (self.conn.clone(), self.key(principal));
        Box::pin(async move {
            let fields: Vec<String> = redis::cmd("HGETALL")
                .arg(&key)
                .query_async::<std::collections::HashMap<String, String>>(&mut conn)
                .await
                .map_err(unavailable)?
                .into_iter()
                .flat_map(|(f, v)| [f, v])
                .collect();
            let oldest = oldest_counted(second_of(now));
            Ok(buckets(&fields).iter().filter(|b| b.second >= oldest).fold(
                RateUsage::default(),
                |u, b| RateUsage {
                    requests: u.requests.saturating_add(b.requests),
                    tokens: u.tokens.saturating_add(b.tokens),
                },
            ))
        })
    }
}

impl RedisRateLimiter {
    fn finish(
        &self,
        ticket: RateTicket,
        actual: Option<u64>,
        now: Timestamp,
    ) -> BoxFuture<Result<(), CounterError>> {
        let (mut conn, key) = (self.conn.clone(), self.key(ticket.principal()));
        Box::pin(async move {
            let _: i64 = FINISH
                .key(&key)
                .arg(ticket.second())
                .arg(second_of(now))
                .arg(ticket.estimate().min(MAX_EXACT as u64))
                .arg(actual.map_or(String::new(), |a| a.min(MAX_EXACT as u64).to_string()))
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::test_redis;

    crate::rate_conformance!(|| async {
        let (conn, keys) = test_redis::fresh().await;
        RedisRateLimiter::new(conn, keys)
    });
}
