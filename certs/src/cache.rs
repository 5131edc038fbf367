//! A small bounded map from host to minted value, least recently used evicted
//! first, where entries past their renewal time count as misses.

use std::collections::HashMap;

use time::OffsetDateTime;

/// Bounded LRU cache keyed by normalised host name.
#[derive(Debug)]
pub(crate) struct HostCache<V> {
    entries: HashMap<String, Slot<V>>,
    capacity: usize,
    /// Monotonic use counter; the smallest `last_used` is evicted first.
    clock: u64,
}

#[derive(Debug)]
struct Slot<V> {
    value: V,
    renew_after: OffsetDateTime,
    last_used: u64,
}

impl<V: Clone> HostCache<V> {
    /// An empty cache holding at most `capacity` hosts (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity: capacity.max(1),
            clock: 0,
        }
    }

    /// The value for `host` if present and `now` is before its renewal time.
    pub(crate) fn get(&mut self, host: &str, now: OffsetDateTime) -> Option<V> {
        self.clock += 1;
        let slot = self.entries.get_mut(host)?;
        if now >= slot.renew_after {
            return None;
        }
        slot.last_used = self.clock;
        Some(slot.value.clone())
    }

    /// Stores `value` for `host` (replacing any previous one), evicting the
    /// least recently used host if the cache is full.
    pub(crate) fn insert(&mut self, host: String, value: V, renew_after: OffsetDateTime) {
        self.clock += 1;
        if !self.entries.contains_key(&host) && self.entries.len() >= self.capacity {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, slot)| slot.last_used)
                .map(|(h, _)| h.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        let slot = Slot {
            value,
            renew_after,
            last_used: self.clock,
        };
        self.entries.insert(host, slot);
    }

    /// Number of hosts held.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    fn t0() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::days(20_000)
    }

    #[test]
    fn hit_until_renewal_time() {
        let mut cache = HostCache::new(4);
        cache.insert("a".into(), 1, t0() + Duration::days(29));
        assert_eq!(cache.get("a", t0()), Some(1));
        assert_eq!(cache.get("a", t0() + Duration::days(29)), None);
        assert_eq!(cache.get("b", t0()), None);
        cache.insert("a".into(), 2, t0() + Duration::days(60));
        assert_eq!(cache.get("a", t0() + Duration::days(30)), Some(2));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn evicts_least_recently_used() {
        let far = t0() + Duration::days(365);
        let mut cache = HostCache::new(2);
        cache.insert("a".into(), 1, far);
        cache.insert("b".into(), 2, far);
        assert_eq!(cache.get("a", t0()), Some(1)); // "b" is now the oldest
        cache.insert("c".into(), 3, far);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("b", t0()), None);
        assert_eq!(cache.get("a", t0()), Some(1));
        assert_eq!(cache.get("c", t0()), Some(3));
    }

    #[test]
    fn zero_capacity_still_holds_one() {
        let mut cache = HostCache::new(0);
        cache.insert("a".into(), 1, t0() + Duration::days(1));
        cache.insert("b".into(), 2, t0() + Duration::days(1));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get("b", t0()), Some(2));
    }
}
