//! The process's clock for budget windows, rate-limit seconds and hold
//! expiries: the system clock, unless the distributed deployment installed
//! a reference shared by every replica (`shared::RedisClock::install`:
//! Redis's time at an instant of this process's monotonic clock). Mandate
//! validity keeps the system clock and its configured skew.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwapOption;
use jiff::{SignedDuration, Timestamp};

/// A reference time: `at` on the monotonic clock was `time`.
#[derive(Debug, Clone, Copy)]
pub struct Reference {
    pub time: Timestamp,
    pub at: Instant,
}

impl Reference {
    /// The time now, carried forward from the reference.
    pub fn now(&self) -> Timestamp {
        let elapsed = SignedDuration::try_from(self.at.elapsed()).unwrap_or(SignedDuration::MAX);
        self.time.checked_add(elapsed).unwrap_or(Timestamp::MAX)
    }
}

static REFERENCE: ArcSwapOption<Reference> = ArcSwapOption::const_empty();

/// The time now: from the installed reference, else the system clock.
pub fn now() -> Timestamp {
    match &*REFERENCE.load() {
        Some(r) => r.now(),
        None => Timestamp::now(),
    }
}

/// Makes `reference` the process's clock (renewed by its owner).
pub fn install(reference: Reference) {
    REFERENCE.store(Some(Arc::new(reference)));
}
