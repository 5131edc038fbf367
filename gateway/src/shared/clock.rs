//! The one clock of the distributed deployment: Redis's.
//!
//! Budget windows, rolling buckets, rate-limit seconds and hold expiries
//! are computed from the `now` a replica passes to the counters. If each
//! replica used its own clock, one running behind would keep charging a
//! window the others had closed, and would see holds as unexpired that
//! the others reap. So every replica reads time as Redis's `TIME` plus the
//! time elapsed on its own monotonic clock since that reading: all
//! replicas then agree to within the round trip of their last reading
//! (under a millisecond on one network), and a replica whose wall clock
//! jumps (NTP step, VM resume) is not affected at all.
//!
//! Each reading is taken [`SAMPLES`] times and the one with the shortest
//! round trip kept (its midpoint is the best estimate); readings are
//! renewed every [`RESYNC`] so the monotonic clock's drift stays
//! negligible. A replica that cannot reach Redis cannot reserve either,
//! so a stale reading never decides anything on its own.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use redis::aio::ConnectionManager;

/// Readings taken per synchronisation.
pub const SAMPLES: usize = 5;

/// How often the reading is renewed.
pub const RESYNC: Duration = Duration::from_secs(30);

/// Redis's time at an instant of this process's monotonic clock.
#[derive(Debug, Clone, Copy)]
struct Reading {
    redis: Timestamp,
    at: Instant,
    round_trip: Duration,
}

/// Time as Redis tells it (see the module docs).
#[derive(Debug, Clone)]
pub struct RedisClock {
    reading: Arc<RwLock<Reading>>,
}

async fn read(conn: &mut ConnectionManager) -> Result<Reading, redis::RedisError> {
    let mut best: Option<Reading> = None;
    for _ in 0..SAMPLES {
        let sent = Instant::now();
        let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(conn).await?;
        let received = Instant::now();
        let round_trip = received - sent;
        let redis =
            Timestamp::from_microsecond(secs.saturating_mul(1_000_000) + micros).map_err(|e| {
                redis::RedisError::from((
                    redis::ErrorKind::Parse,
                    "TIME out of range",
                    e.to_string(),
                ))
            })?;
        // Redis read its clock about half way through the round trip.
        let reading = Reading {
            redis,
            at: sent + round_trip / 2,
            round_trip,
        };
        if best.is_none_or(|b| round_trip < b.round_trip) {
            best = Some(reading);
        }
    }
    Ok(best.expect("at least one sample"))
}

impl RedisClock {
    /// Reads Redis's time now.
    pub async fn sync(conn: &ConnectionManager) -> Result<Self, redis::RedisError> {
        let reading = read(&mut conn.clone()).await?;
        Ok(Self {
            reading: Arc::new(RwLock::new(reading)),
        })
    }

    /// Redis's time now.
    pub fn now(&self) -> Timestamp {
        let r = *self.reading.read().unwrap_or_else(|e| e.into_inner());
        crate::clock::Reference {
            time: r.redis,
            at: r.at,
        }
        .now()
    }

    /// The round trip of the reading in use: how far apart two replicas'
    /// clocks can be, at most, plus drift since.
    pub fn uncertainty(&self) -> Duration {
        self.reading
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .round_trip
    }

    /// Makes this clock the process's (`crate::clock::now`), and renews
    /// its reading every [`RESYNC`] until the task is aborted.
    pub fn install(&self, conn: ConnectionManager) -> tokio::task::JoinHandle<()> {
        let reading = self.reading.clone();
        let reference = |r: &Reading| crate::clock::Reference {
            time: r.redis,
            at: r.at,
        };
        crate::clock::install(reference(
            &reading.read().unwrap_or_else(|e| e.into_inner()),
        ));
        tokio::spawn(async move {
            let mut conn = conn;
            loop {
                tokio::time::sleep(RESYNC).await;
                match read(&mut conn).await {
                    Ok(r) => {
                        crate::clock::install(reference(&r));
                        *reading.write().unwrap_or_else(|e| e.into_inner()) = r;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read Redis's time; keeping the last reading")
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::test_redis;
    use jiff::SignedDuration;

    /// The clock reads Redis's time (this Redis runs on this machine, so
    /// both agree to within the round trip) and moves forward with the
    /// monotonic clock between readings.
    #[tokio::test]
    async fn reads_redis_time_and_moves_forward() {
        let (conn, _) = test_redis::fresh().await;
        let clock = RedisClock::sync(&conn).await.expect("sync");
        let (secs, micros): (i64, i64) = redis::cmd("TIME")
            .query_async(&mut conn.clone())
            .await
            .unwrap();
        let redis = Timestamp::from_microsecond(secs * 1_000_000 + micros).unwrap();
        let ours = clock.now();
        let apart = ours.duration_since(redis).abs();
        assert!(apart < SignedDuration::from_millis(50), "{apart:?} apart");
        let a = clock.now();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let b = clock.now();
        assert!(b.duration_since(a) >= SignedDuration::from_millis(20));
        assert!(clock.uncertainty() < Duration::from_millis(50));
    }

    /// A clock is as far from Redis as its reading says, not as the wall
    /// clock of the process: a reading from another time is kept.
    #[tokio::test]
    async fn the_reading_not_the_wall_clock_decides() {
        let clock = RedisClock {
            reading: Arc::new(RwLock::new(Reading {
                redis: "2030-01-01T00:00:00Z".parse().unwrap(),
                at: Instant::now(),
                round_trip: Duration::from_micros(100),
            })),
        };
        let now = clock.now();
        assert!(now >= "2030-01-01T00:00:00Z".parse().unwrap());
        assert!(now < "2030-01-01T00:00:01Z".parse().unwrap());
    }
}
