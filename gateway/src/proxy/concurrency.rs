//! The in-flight limit per principal: one agent cannot hold more than its
//! share of the gateway's requests (and upstream connections) at once,
//! however many connections or HTTP/2 streams it opens. The limit is the
//! smallest `max_in_flight` of the principal's policies, else the
//! workspace's `limits.max_in_flight_per_principal`. Beyond it a request is
//! refused at once with `429 rate_limited` and `Retry-After: 1`.
//!
//! Like the global limit, a request's place moves into its response body,
//! so a stream holds it until it ends.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use super::call::Call;
use super::step::{Step, StepLayer};
use crate::error::{Code, Denial};

const SHARDS: usize = 64;

/// Requests in flight by principal, sharded so principals do not contend.
pub struct PerPrincipal {
    shards: Box<[Mutex<HashMap<String, u32>>]>,
    hasher: RandomState,
}

impl Default for PerPrincipal {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl PerPrincipal {
    fn shard(&self, principal: &str) -> &Mutex<HashMap<String, u32>> {
        &self.shards[self.hasher.hash_one(principal) as usize % SHARDS]
    }

    /// A place for one more request of `principal`, if it has fewer than
    /// `limit` in flight.
    pub fn try_acquire(self: &Arc<Self>, principal: &str, limit: u32) -> Option<PrincipalSlot> {
        let mut shard = self
            .shard(principal)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if shard.get(principal).copied().unwrap_or(0) >= limit {
            return None;
        }
        *shard.entry(principal.to_string()).or_insert(0) += 1;
        Some(PrincipalSlot {
            owner: self.clone(),
            principal: principal.to_string(),
        })
    }

    /// Requests of `principal` in flight now.
    pub fn in_flight(&self, principal: &str) -> u32 {
        let shard = self
            .shard(principal)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        shard.get(principal).copied().unwrap_or(0)
    }
}

/// One request's place under its principal's limit; given back on drop.
pub struct PrincipalSlot {
    owner: Arc<PerPrincipal>,
    principal: String,
}

impl Drop for PrincipalSlot {
    fn drop(&mut self) {
        let mut shard = self
            .owner
            .shard(&self.principal)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = shard.get_mut(&self.principal) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                shard.remove(&self.principal);
            }
        }
    }
}

/// The per-principal in-flight step.
pub struct Concurrency {
    places: Arc<PerPrincipal>,
    default_limit: u32,
}

pub fn layer(default_limit: usize) -> StepLayer<Concurrency> {
    StepLayer::new(Concurrency {
        places: Arc::default(),
        default_limit: u32::try_from(default_limit).unwrap_or(u32::MAX),
    })
}

impl Step for Concurrency {
    fn check(&self, call: &mut Call) -> Result<(), Denial> {
        let Ok(principal) = call.ctx.principal() else {
            return Ok(());
        };
        let limit = call
            .ctx
            .snapshot
            .in_flight
            .get(&principal.id)
            .copied()
            .unwrap_or(self.default_limit)
            .min(self.default_limit);
        let Some(slot) = self.places.try_acquire(&principal.id, limit) else {
            metrics::counter!("caracal_gateway_principal_in_flight_refused_total").increment(1);
            let mut d = Denial::new(
                Code::RateLimited,
                format!(
                    "principal {} has {limit} requests in flight, its limit; retry when one ends",
                    principal.id
                ),
            );
            d.retry_after = Some(1);
            return Err(d);
        };
        match call.ctx.in_flight.as_mut() {
            Some(place) => place.hold(slot),
            // Without a global place (not built that way) the slot would
            // end with the step: keep it with the call instead.
            None => call.ctx.principal_slot = Some(slot),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_counted_per_principal_and_given_back() {
        let places = Arc::new(PerPrincipal::default());
        let a1 = places.try_acquire("a", 2).unwrap();
        let a2 = places.try_acquire("a", 2).unwrap();
        assert!(places.try_acquire("a", 2).is_none(), "a is at its limit");
        let b = places.try_acquire("b", 2).unwrap();
        assert_eq!((places.in_flight("a"), places.in_flight("b")), (2, 1));
        drop(a1);
        assert_eq!(places.in_flight("a"), 1);
        let a3 = places.try_acquire("a", 2).unwrap();
        assert!(places.try_acquire("a", 2).is_none());
        drop((a2, a3, b));
        assert_eq!((places.in_flight("a"), places.in_flight("b")), (0, 0));
        // Forgotten once idle: no entry per principal ever seen.
        assert!(places.shards.iter().all(|s| s.lock().unwrap().is_empty()));
        assert!(
            places.try_acquire("c", 0).is_none(),
            "a limit of 0 admits nothing"
        );
        assert!(places.shards.iter().all(|s| s.lock().unwrap().is_empty()));
    }
}
